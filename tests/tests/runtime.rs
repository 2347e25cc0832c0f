//! `service::runtime::Runtime` over real PostgreSQL: it starts and stops every service
//! (workers, rescuer, schedule, flushers) and reports what each did; a stop under load
//! loses no job; a panicking handler and a failing flusher show in `health()` while
//! the other services go on; one rescuer per process returns a killed worker's job.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use service::cache::pdf::{PdfCache, PdfKey, PdfSettings};
use service::cache::{CacheConfig, Origin};
use service::error::BoxError;
use service::queue::worker::Worker;
use service::queue::{self, JOBS, NewJob};
use service::runtime::{
    RescuerConfig, Runtime, RuntimeConfig, ScheduleConfig, ServiceHealth, ServiceState,
};
use service::store::{SearchKind, SearchLog, SearchLogConfig, SearchLogEntry};
use tests::TestDb;
use tests::queue::{enqueue_one, fast, wait_for};

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_strata-test-worker");
const LONG: Duration = Duration::from_secs(60);

/// The service named `name` in `health`.
fn service<'a>(health: &'a [ServiceHealth], name: &str) -> &'a ServiceHealth {
    health
        .iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("no service {name} in {health:?}"))
}

/// Polls `runtime`'s health until `ready` says yes for the service `name`; its
/// snapshot.
async fn wait_health(
    runtime: &service::runtime::RuntimeHandle,
    name: &str,
    ready: impl Fn(&ServiceHealth) -> bool,
) -> ServiceHealth {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let health = runtime.health();
        let one = service(&health, name);
        if ready(one) {
            return one.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never got there: {one:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn search_entry(query: &str) -> SearchLogEntry {
    SearchLogEntry {
        kind: SearchKind::Vector,
        query: query.to_owned(),
        top_k: 3,
        filters: json!({}),
        results_count: 0,
        latency_ms: 1.0,
        best_similarity: None,
        result_ids: Vec::new(),
        knobs: json!({}),
        user_id: None,
        created_at: Utc::now(),
    }
}

#[tokio::test]
async fn the_runtime_starts_and_stops_every_service_and_reports_what_each_did() {
    let t = TestDb::new().await;
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let worker = Worker::new(t.db.clone(), JOBS, fast())
        .expect("worker")
        .handle("count", move |_| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, BoxError>(json!("done"))
            }
        })
        .expect("handler");
    // Bookkeeping that only the runtime's last flush can write: the cache's own
    // interval is an hour.
    let pdf = Arc::new(
        PdfCache::new(
            t.db.clone(),
            CacheConfig {
                flush_interval: Duration::from_secs(3600),
                ..CacheConfig::default()
            },
            PdfSettings::default(),
        )
        .expect("pdf cache"),
    );
    let log = SearchLog::start(
        t.db.clone(),
        SearchLogConfig {
            flush_every: Duration::from_secs(3600),
            ..SearchLogConfig::default()
        },
    );
    let runtime = Runtime::new(t.db.clone(), RuntimeConfig::default())
        .worker(worker)
        .schedule(ScheduleConfig {
            every: Duration::from_secs(1),
            ..ScheduleConfig::default()
        })
        .flush(pdf.clone())
        .flush(Arc::new(log.clone()))
        .start();
    let names: Vec<String> = runtime.health().into_iter().map(|h| h.name).collect();
    assert_eq!(
        names,
        [
            "queue:jobs",
            "rescuer",
            "schedule",
            "flush:pdf_cache",
            "flush:search_logs"
        ]
    );

    let jobs: Vec<NewJob> = (0..20)
        .map(|i| NewJob::new("count", json!({ "n": i })))
        .collect();
    queue::enqueue(&t.db, &jobs).await.expect("enqueue");
    let key = PdfKey::from_bytes(b"%PDF-1.7 runtime");
    let fetched = pdf
        .get_or_compute(&key, || async { Ok::<_, BoxError>(b"text".to_vec()) })
        .await
        .expect("compute");
    assert_eq!(fetched.origin, Origin::Computed);
    for _ in 0..5 {
        assert!(pdf.get(&key).await.expect("get").is_some());
    }
    log.record(search_entry("what the runtime writes"));

    wait_for(
        &t,
        "SELECT count(*) FROM jobs WHERE status = 'completed'",
        "20",
        LONG,
    )
    .await;
    // The 13 scheduled tasks of a fresh database are due at once: the first tick
    // runs them.
    let schedule = wait_health(&runtime, "schedule", |h| h.counts.get("runs") == Some(&13)).await;
    assert!(schedule.last_tick.is_some());
    let queue_health = wait_health(&runtime, "queue:jobs", |h| {
        h.counts.get("completed") == Some(&20)
    })
    .await;
    assert_eq!(queue_health.state, ServiceState::Running);
    assert_eq!(queue_health.counts.get("claimed"), Some(&20));
    let rescuer = wait_health(&runtime, "rescuer", |h| h.last_tick.is_some()).await;
    assert_eq!(rescuer.errors, 0);
    assert_eq!(t.scalar("SELECT access_count FROM pdf_cache").await, "0");
    assert_eq!(t.scalar("SELECT count(*) FROM search_logs").await, "0");

    let report = runtime.stop(Duration::from_secs(5)).await;
    assert_eq!(ran.load(Ordering::SeqCst), 20);
    assert_eq!(report.queues.len(), 1);
    assert_eq!(report.queues[0].queue, "jobs");
    assert_eq!(
        (
            report.queues[0].report.completed,
            report.queues[0].report.released
        ),
        (20, 0)
    );
    assert_eq!(report.maintenance_runs, 13);
    assert_eq!(report.rescued, 0);
    let flushed: Vec<(&str, Option<&String>)> = report
        .flushes
        .iter()
        .map(|f| (f.name.as_str(), f.error.as_ref()))
        .collect();
    assert_eq!(flushed, [("pdf_cache", None), ("search_logs", None)]);
    assert!(report.is_clean());
    assert!(
        report
            .health
            .iter()
            .all(|h| h.state == ServiceState::Stopped && h.errors == 0),
        "{:?}",
        report.health
    );
    // The stop's flushes wrote what was buffered.
    assert_eq!(t.scalar("SELECT access_count FROM pdf_cache").await, "5");
    assert_eq!(
        t.scalar("SELECT query FROM search_logs").await,
        "what the runtime writes"
    );
    assert_eq!(
        t.scalar("SELECT count(*) FROM maintenance_runs WHERE status = 'success'")
            .await,
        "13"
    );
}

#[tokio::test]
async fn a_stop_under_load_loses_no_job_and_reports_what_finished_and_what_went_back() {
    let t = TestDb::new().await;
    // Half the jobs are quick, half outlast the stop's deadline.
    let jobs: Vec<NewJob> = (0..200)
        .map(|i| NewJob::new(if i % 2 == 0 { "quick" } else { "slow" }, json!({ "n": i })))
        .collect();
    queue::enqueue(&t.db, &jobs).await.expect("enqueue");
    let worker = Worker::new(
        t.db.clone(),
        JOBS,
        service::queue::worker::WorkerConfig {
            concurrency: 8,
            prefetch: 16,
            ..fast()
        },
    )
    .expect("worker")
    .handle("quick", |_| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, BoxError>(json!(1))
    })
    .expect("quick")
    .handle("slow", |_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, BoxError>(json!(2))
    })
    .expect("slow");
    let runtime = Runtime::new(t.db.clone(), RuntimeConfig::default())
        .worker(worker)
        .start();
    // Under load: slow jobs fill every slot, with more claimed ahead.
    wait_for(
        &t,
        "SELECT (count(*) FILTER (WHERE status = 'running' AND job_type = 'slow') >= 8)::text FROM jobs",
        "true",
        LONG,
    )
    .await;
    let report = runtime.stop(Duration::from_millis(300)).await;
    let queue = report.queues[0].report;
    let counts = t
        .sql(
            "SELECT count(*) FILTER (WHERE status = 'completed'),
                    count(*) FILTER (WHERE status = 'pending'),
                    count(*) FILTER (WHERE status NOT IN ('completed', 'pending'))
             FROM jobs",
        )
        .await;
    let (completed, pending, other): (u64, u64, u64) = (
        counts[0][0].parse().expect("n"),
        counts[0][1].parse().expect("n"),
        counts[0][2].parse().expect("n"),
    );
    assert_eq!(other, 0, "nothing left running or failed");
    assert_eq!(completed, queue.completed, "every completion was written");
    assert!(
        queue.released >= 8,
        "the running slow jobs went back: {queue:?}"
    );
    assert_eq!(queue.failed + queue.stale + queue.unwritten, 0, "{queue:?}");
    assert_eq!(completed + pending, 200);
    // What was never claimed stays pending too; what was claimed went back without
    // an attempt counted.
    assert_eq!(
        t.scalar("SELECT count(*) FROM jobs WHERE status = 'pending' AND attempts > 0")
            .await,
        "0"
    );
}

#[tokio::test]
async fn a_panicking_handler_and_a_failing_flusher_show_in_health_while_the_others_go_on() {
    let t = TestDb::new().await;
    let worker = Worker::new(t.db.clone(), JOBS, fast())
        .expect("worker")
        .handle("panics", |_| async {
            if true {
                panic!("the handler's own bug");
            }
            Ok::<_, BoxError>(json!(null))
        })
        .expect("panics")
        .handle("works", |_| async { Ok::<_, BoxError>(json!("ok")) })
        .expect("works");
    let log = SearchLog::start(
        t.db.clone(),
        SearchLogConfig {
            flush_every: Duration::from_millis(100),
            ..SearchLogConfig::default()
        },
    );
    let runtime = Runtime::new(t.db.clone(), RuntimeConfig::default())
        .worker(worker)
        .flush(Arc::new(log.clone()))
        .start();

    // The search log's table is away: its flushes fail, for real.
    t.sql("ALTER TABLE search_logs RENAME TO search_logs_away")
        .await;
    log.record(search_entry("kept while the table is away"));
    let flusher = wait_health(&runtime, "flush:search_logs", |h| h.errors >= 2).await;
    assert_eq!(flusher.state, ServiceState::Running);
    assert!(
        flusher
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("search_logs")),
        "{flusher:?}"
    );

    let panicking = queue::enqueue(&t.db, &[NewJob::new("panics", json!({})).max_attempts(1)])
        .await
        .expect("enqueue")[0];
    let queue_health = wait_health(&runtime, "queue:jobs", |h| {
        h.counts.get("panicked") == Some(&1) && h.counts.get("failed") == Some(&1)
    })
    .await;
    let last_error = queue_health
        .last_error
        .expect("the panic is the last error");
    assert!(
        last_error.contains(&panicking.to_string())
            && last_error.contains("handler panicked: the handler's own bug"),
        "{last_error}"
    );
    // The worker goes on: a job after the panic runs.
    enqueue_one(&t.db, "works").await;
    wait_for(
        &t,
        "SELECT count(*) FROM jobs WHERE job_type = 'works' AND status = 'completed'",
        "1",
        LONG,
    )
    .await;
    assert_eq!(
        t.scalar("SELECT last_error FROM jobs WHERE job_type = 'panics'")
            .await,
        "handler panicked: the handler's own bug"
    );

    // The table is back: the entry kept in the buffer is written at the next flush.
    t.sql("ALTER TABLE search_logs_away RENAME TO search_logs")
        .await;
    wait_for(&t, "SELECT count(*) FROM search_logs", "1", LONG).await;
    let report = runtime.stop(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    let queue = report.queues[0].report;
    assert_eq!((queue.completed, queue.failed), (1, 1));
    assert!(service(&report.health, "flush:search_logs").errors >= 2);
    assert_eq!(service(&report.health, "rescuer").errors, 0);
}

#[tokio::test]
async fn one_rescuer_returns_a_killed_workers_job_and_another_worker_finishes_it() {
    let t = TestDb::new().await;
    let id = enqueue_one(&t.db, "slow").await;
    let mut child = Command::new(WORKER_BIN)
        .args([t.url.as_str(), "hang", "1", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), format!("started {id}"));
    assert_eq!(t.scalar("SELECT status FROM jobs").await, "running");
    // SIGKILL: no cleanup, no release; only the lease can tell.
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    child.wait().expect("reap");

    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let worker = Worker::new(t.db.clone(), JOBS, fast())
        .expect("worker")
        .handle("slow", move |ctx| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, BoxError>(json!({"attempt": ctx.attempt}))
            }
        })
        .expect("handler");
    let runtime = Runtime::new(
        t.db.clone(),
        RuntimeConfig {
            rescuer: Some(RescuerConfig {
                interval: Duration::from_millis(200),
                retry_base: Duration::from_millis(10),
                retry_max: Duration::from_millis(50),
            }),
            schedule: None,
        },
    )
    .worker(worker)
    .start();
    wait_for(&t, "SELECT status FROM jobs", "completed", LONG).await;
    let report = runtime.stop(Duration::from_secs(5)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        report.rescued, 1,
        "the rescuer, and nothing else, rescued it"
    );
    assert_eq!(
        service(&report.health, "rescuer").counts.get("rescued"),
        Some(&1)
    );
    assert_eq!(report.queues[0].report.completed, 1);
    assert_eq!(
        t.sql("SELECT attempts, result->>'attempt', last_error LIKE 'lease expired%' FROM jobs")
            .await,
        [["2", "2", "t"]]
    );

    // A worker run alone rescues nothing: the same crash, no runtime, and the job
    // stays running past its lease.
    let id = enqueue_one(&t.db, "slow").await;
    t.sql(&format!(
        "UPDATE jobs SET status = 'running', attempts = 1, locked_by = 'gone',
                locked_until = now() - interval '1 minute', claim_token = gen_random_uuid()
         WHERE id = '{id}'"
    ))
    .await;
    let alone = Worker::new(t.db.clone(), JOBS, fast())
        .expect("worker")
        .handle("slow", |_| async { Ok::<_, BoxError>(json!(null)) })
        .expect("handler");
    let (stop, handle) = tests::queue::spawn(alone);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        t.scalar(&format!("SELECT status FROM jobs WHERE id = '{id}'"))
            .await,
        "running"
    );
    let _ = stop.send(());
    handle.await.expect("join").expect("run");
}
