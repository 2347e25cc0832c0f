//! What the queue tests share: a fast worker configuration, and running a worker
//! until the database says it is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use service::queue::worker::{HandlerFuture, JobContext, Worker, WorkerConfig, WorkerReport};
use service::queue::{self, NewJob, QueueError};
use tokio::sync::oneshot;

use crate::TestDb;

/// Short intervals and a 5 s lease, so tests finish quickly.
pub fn fast() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        poll_interval: Duration::from_millis(100),
        lease: Duration::from_secs(5),
        heartbeat_interval: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(5),
        retry_base: Duration::from_millis(10),
        retry_max: Duration::from_millis(50),
        ..WorkerConfig::default()
    }
}

/// A handler that counts its starts in `started` and never finishes.
pub fn never_finishes(
    started: Arc<AtomicUsize>,
) -> impl Fn(JobContext) -> HandlerFuture + Send + Sync + 'static {
    move |_| {
        let started = Arc::clone(&started);
        Box::pin(async move {
            started.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(json!(null))
        })
    }
}

/// Runs `worker` in a task; send on the returned channel to shut it down.
pub fn spawn(
    worker: Worker,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<WorkerReport, QueueError>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    (stop, handle)
}

/// Runs `worker` until `sql` returns `expected` (at most a minute), then shuts it
/// down gracefully and returns its report.
pub async fn run_until(worker: Worker, t: &TestDb, sql: &str, expected: &str) -> WorkerReport {
    let (stop, handle) = spawn(worker);
    wait_for(t, sql, expected, Duration::from_secs(60)).await;
    let _ = stop.send(());
    handle.await.expect("join").expect("run")
}

/// Waits (polling) until `sql` returns `expected`; fails after `limit` of trying.
pub async fn wait_for(t: &TestDb, sql: &str, expected: &str, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let got = t.scalar(sql).await;
        if got == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: still {got}, wanted {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Enqueues one job of `job_type` with an empty payload into `jobs` on `db` (a
/// test's pool, a pool of its own, a transaction); its id.
pub async fn enqueue_one(db: &impl sea_orm::ConnectionTrait, job_type: &str) -> uuid::Uuid {
    queue::enqueue_one(db, NewJob::new(job_type, json!({})))
        .await
        .expect("enqueue")
}
