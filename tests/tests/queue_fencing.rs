//! A run's outcome and heartbeats belong to its claim. A worker that stalls
//! past its lease cannot complete the job its newer run holds; a lost lease cancels
//! only its own run; rescued jobs keep their place in line after an outage; a
//! completer that cannot write says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::TransactionTrait;
use serde_json::json;
use service::error::BoxError;
use service::queue::worker::{Worker, WorkerConfig};
use service::queue::{self, Finished, JOBS, Lease, NewJob, QueueError};
use tests::queue::{enqueue_one, fast, never_finishes, run_until, spawn, wait_for};
use tests::{OutageRole, TestDb};
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(30);

/// Rescues `t`'s expired `jobs` with a back-off of `base` doubling up to `max`; how
/// many.
async fn rescue(t: &TestDb, base: Duration, max: Duration) -> u64 {
    queue::rescue_expired(&t.db, JOBS, base, max)
        .await
        .expect("rescue")
}

/// A stalled worker and its own next claim, in one worker. Attempt 1 stalls the whole
/// runtime (as a paused VM would: no heartbeats) until another process — here a thread with its own
/// runtime and connection — has rescued the job; the worker then resumes, claims the
/// job again (attempt 2), and attempt 1 finishes while attempt 2 runs. Attempt 1's
/// outcome must be refused, attempt 1 (only) must be told it lost its lease, and the
/// job's result must be attempt 2's.
#[tokio::test(flavor = "current_thread")]
async fn a_stalled_run_that_lost_its_lease_cannot_complete_the_job_its_newer_run_holds() {
    let t = TestDb::new().await;
    let id = enqueue_one(&t.db, "long").await;

    // The rescuer: waits for attempt 1 to start, then rescues the job once its lease
    // has expired, and says so.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (rescued_tx, rescued_rx) = std::sync::mpsc::channel::<u64>();
    let url = t.url.clone();
    let rescuer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let db = service::db::connect(&url, 1).await.expect("connect");
            started_rx.recv().expect("attempt 1 started");
            loop {
                let n = queue::rescue_expired(&db, JOBS, Duration::ZERO, Duration::ZERO)
                    .await
                    .expect("rescue");
                if n > 0 {
                    rescued_tx.send(n).expect("report the rescue");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    });

    let (finish_first, finish_second, second_started) = (
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let first_saw_cancel = Arc::new(AtomicBool::new(false));
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let rescued_rx = std::sync::Mutex::new(rescued_rx);
    let handler = {
        let (finish_first, finish_second, second_started, first_saw_cancel) = (
            Arc::clone(&finish_first),
            Arc::clone(&finish_second),
            Arc::clone(&second_started),
            Arc::clone(&first_saw_cancel),
        );
        move |mut ctx: queue::worker::JobContext| {
            let (finish_first, finish_second, second_started, first_saw_cancel) = (
                Arc::clone(&finish_first),
                Arc::clone(&finish_second),
                Arc::clone(&second_started),
                Arc::clone(&first_saw_cancel),
            );
            if ctx.attempt == 1 {
                // The stall: this blocks the test's only runtime thread, so the worker
                // sends no heartbeat until the job has been rescued.
                if let Some(tx) = started_tx.lock().expect("lock").take() {
                    tx.send(()).expect("tell the rescuer");
                }
                let rescued = rescued_rx.lock().expect("lock").recv_timeout(LONG);
                assert_eq!(rescued, Ok(1), "the rescuer returned the job to pending");
            }
            Box::pin(async move {
                if ctx.attempt == 1 {
                    finish_first.notified().await;
                    first_saw_cancel.store(ctx.is_cancelled(), Ordering::SeqCst);
                    return Ok(json!({"attempt": 1}));
                }
                second_started.notify_one();
                tokio::select! {
                    _ = finish_second.notified() => Ok(json!({"attempt": ctx.attempt})),
                    _ = ctx.cancelled() => Err::<_, BoxError>("attempt 2 was cancelled".into()),
                }
            }) as queue::worker::HandlerFuture
        }
    };
    let heartbeat = Duration::from_millis(150);
    let worker = Worker::new(
        t.db.clone(),
        JOBS,
        WorkerConfig {
            concurrency: 2,
            lease: Duration::from_millis(600),
            heartbeat_interval: heartbeat,
            poll_interval: Duration::from_millis(50),
            ..fast()
        },
    )
    .expect("worker")
    .handle("long", handler)
    .expect("handler");
    let (stop, handle) = spawn(worker);

    tokio::time::timeout(LONG, second_started.notified())
        .await
        .expect("attempt 2 started on the same worker");
    rescuer.join().expect("rescuer");
    assert_eq!(
        t.sql(&format!(
            "SELECT status, attempts::text FROM jobs WHERE id = '{id}'"
        ))
        .await,
        [["running", "2"]]
    );
    // Several heartbeats carry both runs' leases: attempt 1's answer is "lost".
    tokio::time::sleep(heartbeat * 4).await;
    finish_first.notify_one();
    // Attempt 1's outcome reaches the completer and is refused: the job is still
    // attempt 2's.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        t.sql(&format!(
            "SELECT status, attempts::text, coalesce(result::text, '-') FROM jobs WHERE id = '{id}'"
        ))
        .await,
        [["running", "2", "-"]]
    );
    finish_second.notify_one();
    wait_for(
        &t,
        &format!("SELECT status FROM jobs WHERE id = '{id}'"),
        "completed",
        LONG,
    )
    .await;
    let _ = stop.send(());
    let report = handle.await.expect("join").expect("run");

    assert_eq!(
        t.sql(&format!(
            "SELECT result::text, attempts::text, (claim_token IS NULL)::text FROM jobs WHERE id = '{id}'"
        ))
        .await,
        [["{\"attempt\": 2}", "2", "true"]]
    );
    assert!(
        first_saw_cancel.load(Ordering::SeqCst),
        "the stale run was told it lost its lease"
    );
    assert_eq!(
        (
            report.completed,
            report.stale,
            report.failed,
            report.unwritten
        ),
        (1, 1, 0, 0)
    );
}

/// The statements themselves: after a rescue and a new claim of the same job, the old
/// claim's heartbeat, release, outcome and fence touch nothing, and the new claim's
/// work.
#[tokio::test]
async fn a_lost_leases_heartbeat_release_outcome_and_fence_never_touch_the_next_claim() {
    let t = TestDb::new().await;
    let types = ["job".to_string()];
    queue::enqueue(&t.db, &[NewJob::new("job", json!({}))])
        .await
        .expect("enqueue");
    let first = queue::claim(&t.db, JOBS, "w", &types, 1, Duration::from_millis(10))
        .await
        .expect("claim")
        .remove(0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rescue(&t, Duration::ZERO, Duration::ZERO).await, 1);
    // The same worker claims it again: same worker id, a new token.
    let second = queue::claim(&t.db, JOBS, "w", &types, 1, LONG)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!((second.id, second.attempt), (first.id, 2));
    assert_ne!(second.token, first.token);

    let (old, new) = (first.lease(), second.lease());
    assert_eq!(
        queue::heartbeat(&t.db, JOBS, &[old], LONG)
            .await
            .expect("heartbeat"),
        Vec::<Lease>::new(),
        "the old lease is lost"
    );
    assert_eq!(
        queue::heartbeat(&t.db, JOBS, &[old, new], LONG)
            .await
            .expect("heartbeat"),
        vec![new],
        "the answer names the new lease only"
    );
    assert_eq!(
        queue::release(&t.db, JOBS, &[old]).await.expect("release"),
        0
    );
    let err = queue::fence(&t.db, JOBS, old).await.expect_err("lost");
    assert!(
        matches!(err, QueueError::LeaseLost { job, token } if job == old.job && token == old.token),
        "{err}"
    );
    assert_eq!(
        queue::finish(
            &t.db,
            JOBS,
            &[(old, queue::Outcome::Completed(json!("old")))]
        )
        .await
        .expect("finish"),
        Finished {
            completed: 0,
            failed: 0,
            stale: 1
        }
    );
    assert_eq!(
        t.sql("SELECT status, attempts::text, coalesce(result::text, '-') FROM jobs")
            .await,
        [["running", "2", "-"]]
    );

    // A handler's own write, fenced by the new lease, in one transaction with it.
    t.sql("CREATE TABLE side_effects (job uuid PRIMARY KEY)")
        .await;
    let txn = t.db.begin().await.expect("begin");
    queue::fence(&txn, JOBS, new).await.expect("held");
    sea_orm::ConnectionTrait::execute_unprepared(
        &txn,
        &format!("INSERT INTO side_effects VALUES ('{}')", new.job),
    )
    .await
    .expect("insert");
    txn.commit().await.expect("commit");
    assert_eq!(
        queue::finish(
            &t.db,
            JOBS,
            &[(new, queue::Outcome::Completed(json!("new")))]
        )
        .await
        .expect("finish"),
        Finished {
            completed: 1,
            failed: 0,
            stale: 0
        }
    );
    assert_eq!(
        t.sql("SELECT status, result::text, (claim_token IS NULL)::text, (SELECT count(*) FROM side_effects)::text FROM jobs")
            .await,
        [["completed", "\"new\"", "true", "1"]]
    );
    // Once finished, the new lease is lost too.
    assert!(matches!(
        queue::fence(&t.db, JOBS, new).await,
        Err(QueueError::LeaseLost { .. })
    ));
}

/// An outage longer than the lease: a worker loses the database with two jobs
/// running, jobs are enqueued behind them, the leases expire. The rescued jobs run
/// before the jobs enqueued after them (same priority), in their original order; a
/// job rescued a second time waits a back-off.
#[tokio::test]
async fn after_an_outage_longer_than_the_lease_rescued_jobs_run_before_later_ones() {
    let t = TestDb::new().await;
    t.sql("CREATE TABLE run_order (seq bigserial PRIMARY KEY, name text NOT NULL)")
        .await;
    let job = |name: &str| NewJob::new("job", json!(name));
    queue::enqueue(&t.db, &[job("rescued-1"), job("rescued-2")])
        .await
        .expect("enqueue");

    // Worker A takes both and then loses the database.
    let role = OutageRole::new(&t).await;
    let a_db = service::db::connect(&role.url, 4)
        .await
        .expect("connect as the role");
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = Worker::new(
        a_db.clone(),
        JOBS,
        WorkerConfig {
            concurrency: 2,
            lease: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(300),
            shutdown_timeout: Duration::from_millis(100),
            completion_attempts: 1,
            ..fast()
        },
    )
    .expect("worker")
    .handle("job", never_finishes(Arc::clone(&started)))
    .expect("handler");
    let (stop_a, a_handle) = spawn(a);
    wait_for(
        &t,
        "SELECT count(*) FROM jobs WHERE status = 'running'",
        "2",
        LONG,
    )
    .await;
    queue::enqueue(&t.db, &[job("later-1"), job("later-2"), job("later-3")])
        .await
        .expect("enqueue");
    role.cut_off(&t).await;
    wait_for(
        &t,
        "SELECT count(*) FROM jobs WHERE status = 'running' AND locked_until < now()",
        "2",
        LONG,
    )
    .await;
    assert_eq!(
        rescue(&t, Duration::from_secs(60), Duration::from_secs(60)).await,
        2
    );
    assert_eq!(
        t.column("SELECT payload->>0 FROM jobs WHERE status = 'pending' ORDER BY priority DESC, run_at, id")
            .await,
        ["rescued-1", "rescued-2", "later-1", "later-2", "later-3"],
        "the claim's order: rescued jobs first"
    );

    // Worker B, one job at a time, runs them all.
    let pool = t.db.get_postgres_connection_pool().clone();
    let b = Worker::new(
        t.db.clone(),
        JOBS,
        WorkerConfig {
            concurrency: 1,
            ..fast()
        },
    )
    .expect("worker")
    .handle("job", move |ctx| {
        let pool = pool.clone();
        async move {
            sea_orm::sqlx::query("INSERT INTO run_order (name) VALUES ($1)")
                .bind(ctx.payload.as_str().unwrap_or("?").to_owned())
                .execute(&pool)
                .await?;
            Ok::<_, BoxError>(json!(null))
        }
    })
    .expect("handler");
    run_until(
        b,
        &t,
        "SELECT count(*) FROM jobs WHERE status = 'completed'",
        "5",
    )
    .await;
    assert_eq!(
        t.column("SELECT name FROM run_order ORDER BY seq").await,
        ["rescued-1", "rescued-2", "later-1", "later-2", "later-3"]
    );

    // A job rescued at its second attempt may be what kills its workers: it waits.
    queue::enqueue(&t.db, &[job("again")])
        .await
        .expect("enqueue");
    t.sql("UPDATE jobs SET status = 'running', attempts = 2, locked_until = now() - interval '1 second' WHERE payload = '\"again\"'")
        .await;
    assert_eq!(
        rescue(&t, Duration::from_secs(60), Duration::from_secs(600)).await,
        1
    );
    assert_eq!(
        t.scalar("SELECT run_at > now() + interval '50 seconds' AND run_at < now() + interval '70 seconds' FROM jobs WHERE payload = '\"again\"'")
            .await,
        "t"
    );

    let _ = stop_a.send(());
    let report = a_handle
        .await
        .expect("join")
        .expect("worker A stops despite the outage");
    assert_eq!(started.load(Ordering::SeqCst), 2);
    assert_eq!(report.released, 0, "A could not give its jobs back");
    a_db.close().await.ok();
}

/// The completer cannot reach the database: after `completion_attempts` tries it gives
/// the outcome up and reports it as not written — not as completed — and the job,
/// leased to no one, is rescued once its lease expires.
#[tokio::test]
async fn a_completer_that_cannot_write_reports_the_outcomes_as_not_written() {
    let t = TestDb::new().await;
    let id = enqueue_one(&t.db, "job").await;
    let role = OutageRole::new(&t).await;
    let db = service::db::connect(&role.url, 4)
        .await
        .expect("connect as the role");
    let go = Arc::new(Notify::new());
    let handler_go = Arc::clone(&go);
    let worker = Worker::new(
        db.clone(),
        JOBS,
        WorkerConfig {
            concurrency: 1,
            lease: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(300),
            completion_attempts: 3,
            ..fast()
        },
    )
    .expect("worker")
    .handle("job", move |_| {
        let go = Arc::clone(&handler_go);
        async move {
            go.notified().await;
            Ok::<_, BoxError>(json!("done"))
        }
    })
    .expect("handler");
    let (stop, handle) = spawn(worker);
    wait_for(&t, "SELECT status FROM jobs", "running", LONG).await;
    role.cut_off(&t).await;
    go.notify_one();
    // Give the completer its tries (50 + 100 ms of pauses), then stop.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _ = stop.send(());
    let report = handle.await.expect("join").expect("run");
    assert_eq!(
        (
            report.completed,
            report.failed,
            report.stale,
            report.unwritten
        ),
        (0, 0, 0, 1)
    );
    assert_eq!(
        t.sql(&format!(
            "SELECT status, coalesce(result::text, '-') FROM jobs WHERE id = '{id}'"
        ))
        .await,
        [["running", "-"]]
    );
    wait_for(
        &t,
        "SELECT (locked_until < now())::text FROM jobs",
        "true",
        LONG,
    )
    .await;
    assert_eq!(rescue(&t, Duration::ZERO, Duration::ZERO).await, 1);
    assert_eq!(t.scalar("SELECT status FROM jobs").await, "pending");
    db.close().await.ok();
}

/// Writers that know nothing of claim tokens — a worker of the previous version during
/// a rolling deploy, an operator's UPDATE — end the claim for the fence too: a status
/// change that leaves the token as it was clears it, so a stale run's token cannot
/// match the row after such a writer claims it again.
#[tokio::test]
async fn a_writer_that_does_not_know_tokens_still_ends_the_claim() {
    let t = TestDb::new().await;
    queue::enqueue(&t.db, &[NewJob::new("job", json!({}))])
        .await
        .expect("enqueue");
    let claimed = queue::claim(&t.db, JOBS, "w", &["job".into()], 1, LONG)
        .await
        .expect("claim")
        .remove(0);
    // An older worker's rescue, then its claim: neither touches claim_token.
    t.sql("UPDATE jobs SET status = 'pending', locked_by = NULL, locked_until = NULL")
        .await;
    assert_eq!(
        t.scalar("SELECT (claim_token IS NULL)::text FROM jobs")
            .await,
        "true"
    );
    t.sql("UPDATE jobs SET status = 'running', locked_by = 'old-worker', attempts = attempts + 1, locked_until = now() + interval '1 minute'")
        .await;
    let stale = claimed.lease();
    assert_eq!(
        queue::heartbeat(&t.db, JOBS, &[stale], LONG)
            .await
            .expect("heartbeat"),
        Vec::<Lease>::new()
    );
    assert_eq!(
        queue::finish(
            &t.db,
            JOBS,
            &[(stale, queue::Outcome::Completed(json!("stale")))]
        )
        .await
        .expect("finish")
        .stale,
        1
    );
    assert_eq!(
        t.sql("SELECT status, locked_by, coalesce(result::text, '-') FROM jobs")
            .await,
        [["running", "old-worker", "-"]]
    );
    // The queue's own statements never fire the trigger: a claim keeps its token.
    t.sql("UPDATE jobs SET status = 'pending', locked_by = NULL")
        .await;
    let again = queue::claim(&t.db, JOBS, "w", &["job".into()], 1, LONG)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(
        t.scalar("SELECT claim_token::text FROM jobs").await,
        again.token.to_string()
    );
}

/// A result PostgreSQL cannot store (a `\u0000` in JSON) fails its own attempt, with
/// the reason; the other outcomes written with it keep their results.
#[tokio::test]
async fn an_outcome_the_database_cannot_store_fails_only_its_own_job() {
    let t = TestDb::new().await;
    let jobs: Vec<NewJob> = ["bad", "good-1", "good-2"]
        .into_iter()
        .map(|name| NewJob::new("job", json!(name)).max_attempts(1))
        .collect();
    queue::enqueue(&t.db, &jobs).await.expect("enqueue");
    let worker = Worker::new(
        t.db.clone(),
        JOBS,
        WorkerConfig {
            concurrency: 3,
            prefetch: 10,
            ..fast()
        },
    )
    .expect("worker")
    .handle("job", |ctx| async move {
        match ctx.payload.as_str() {
            Some("bad") => Ok::<_, BoxError>(json!("nul \u{0} byte")),
            _ => Ok(json!({"ok": ctx.payload})),
        }
    })
    .expect("handler");
    let report = run_until(
        worker,
        &t,
        "SELECT count(*) FROM jobs WHERE status IN ('completed', 'failed')",
        "3",
    )
    .await;
    assert_eq!(
        (
            report.completed,
            report.failed,
            report.stale,
            report.unwritten
        ),
        (2, 1, 0, 0)
    );
    let rows = t
        .sql("SELECT payload->>0, status, coalesce(result::text, '-'), coalesce(last_error, '-') FROM jobs ORDER BY 1")
        .await;
    assert_eq!(rows[0][..3], ["bad", "failed", "-"]);
    assert!(
        rows[0][3].starts_with("the handler's result could not be stored"),
        "{rows:?}"
    );
    assert_eq!(
        rows[1],
        ["good-1", "completed", "{\"ok\": \"good-1\"}", "-"]
    );
    assert_eq!(
        rows[2],
        ["good-2", "completed", "{\"ok\": \"good-2\"}", "-"]
    );
}
