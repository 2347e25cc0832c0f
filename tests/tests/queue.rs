//! The job queue over real PostgreSQL — exactly-once draining by workers in
//! two processes, retries and poison jobs, graceful
//! shutdown, dedup, priority, scheduling, NOTIFY wake-ups, AI annotation jobs.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use entity::sea_orm_active_enums::AiProvider;
use serde_json::json;
use service::error::BoxError;
use service::queue::ai::{self, NewAiJob, VisionAnnotation};
use service::queue::worker::{Worker, WorkerConfig};
use service::queue::{self, AI_ANNOTATION_JOBS, JOBS, NewJob, QueueError};
use tests::TestDb;
use tests::queue::{enqueue_one, fast, never_finishes, run_until, spawn, wait_for};

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_strata-test-worker");

#[tokio::test]
async fn eight_workers_in_two_processes_drain_ten_thousand_jobs_exactly_once() {
    let t = TestDb::new().await;
    t.sql("CREATE TABLE job_runs (job_id uuid PRIMARY KEY, worker_pid int NOT NULL)")
        .await;
    let jobs: Vec<NewJob> = (0..10_000)
        .map(|i| NewJob::new("record", json!({"n": i})))
        .collect();
    let ids = queue::enqueue(&t.db, &jobs).await.expect("enqueue");
    assert_eq!(ids.len(), 10_000);
    // One process claims only for free slots, the other prefetches batches of 50.
    let children: Vec<_> = ["0", "50"]
        .into_iter()
        .map(|prefetch| {
            Command::new(WORKER_BIN)
                .args([t.url.as_str(), "drain", "4", "10000", prefetch])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn worker process")
        })
        .collect();
    let mut pids = Vec::new();
    for child in children {
        pids.push(child.id());
        let out = child.wait_with_output().expect("worker process");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        t.scalar("SELECT count(*) FROM job_runs").await,
        "10000",
        "every job ran once"
    );
    assert_eq!(
        t.sql("SELECT status, count(*), max(attempts) FROM jobs GROUP BY status")
            .await,
        [["completed", "10000", "1"]]
    );
    let per_process = t
        .column("SELECT count(*) FROM job_runs GROUP BY worker_pid")
        .await;
    assert_eq!(
        per_process.len(),
        2,
        "both processes worked: {per_process:?}"
    );
    assert_eq!(
        t.scalar("SELECT count(*) FROM jobs WHERE completed_at IS NULL")
            .await,
        "0"
    );
}

#[tokio::test]
async fn a_poison_job_ends_failed_after_max_attempts_and_a_panic_is_a_failure() {
    let t = TestDb::new().await;
    let ids = queue::enqueue(
        &t.db,
        &[
            NewJob::new("poison", json!({})).max_attempts(3),
            NewJob::new("panics", json!({})).max_attempts(1),
        ],
    )
    .await
    .expect("enqueue");
    let worker = Worker::new(t.db.clone(), JOBS, fast())
        .expect("worker")
        .handle("poison", |_| async {
            Err::<serde_json::Value, BoxError>("upstream said 422".into())
        })
        .expect("handler")
        .handle("panics", |_| async { panic!("boom") })
        .expect("handler");
    let report = run_until(
        worker,
        &t,
        "SELECT count(*) FROM jobs WHERE status = 'failed'",
        "2",
    )
    .await;
    assert_eq!(report.failed, 4, "three attempts and one panic");
    let failed = queue::failed_jobs(&t.db, JOBS, 10).await.expect("failed");
    let poison = failed
        .iter()
        .find(|f| f.id == ids[0])
        .expect("poison listed");
    assert_eq!(
        (poison.attempts, poison.error.as_deref()),
        (3, Some("upstream said 422"))
    );
    let panicked = failed
        .iter()
        .find(|f| f.id == ids[1])
        .expect("panic listed");
    assert_eq!(panicked.error.as_deref(), Some("handler panicked: boom"));
    // Retrying a failed job gives it fresh attempts.
    assert_eq!(
        queue::retry_failed(&t.db, JOBS, &[ids[0]])
            .await
            .expect("retry"),
        1
    );
    assert_eq!(
        t.scalar(&format!(
            "SELECT status || attempts FROM jobs WHERE id = '{}'",
            ids[0]
        ))
        .await,
        "pending0"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_or_releases_every_running_job() {
    let t = TestDb::new().await;
    let jobs: Vec<NewJob> = (0..4)
        .map(|i| NewJob::new("quick", json!({"i": i})))
        .collect();
    let stuck = NewJob::new("stuck", json!({}));
    queue::enqueue(&t.db, &jobs).await.expect("enqueue");
    queue::enqueue(&t.db, &[stuck]).await.expect("enqueue");
    let started = Arc::new(AtomicUsize::new(0));
    let (s1, s2) = (Arc::clone(&started), Arc::clone(&started));
    let worker = Worker::new(
        t.db.clone(),
        JOBS,
        WorkerConfig {
            concurrency: 8,
            shutdown_timeout: Duration::from_millis(500),
            ..fast()
        },
    )
    .expect("worker")
    .handle("quick", move |_| {
        let s = Arc::clone(&s1);
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, BoxError>(json!("done"))
        }
    })
    .expect("handler")
    .handle("stuck", never_finishes(s2))
    .expect("handler");
    let (stop, handle) = spawn(worker);
    while started.load(Ordering::SeqCst) < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    let report = handle.await.expect("join").expect("run");
    assert_eq!((report.completed, report.released), (4, 1));
    assert_eq!(
        t.scalar("SELECT count(*) FROM jobs WHERE status = 'running'")
            .await,
        "0"
    );
    assert_eq!(
        t.sql("SELECT status, attempts::text, (locked_by IS NULL)::text FROM jobs WHERE job_type = 'stuck'").await,
        [["pending", "0", "true"]],
        "released without counting the attempt"
    );
}

#[tokio::test]
async fn dedup_priority_and_run_at() {
    let t = TestDb::new().await;
    let first = queue::enqueue(
        &t.db,
        &[
            NewJob::new("mail", json!({"to": 1})).dedup_key("user-1"),
            NewJob::new("mail", json!({"to": 1})).dedup_key("user-1"),
        ],
    )
    .await
    .expect("enqueue");
    assert_eq!(first[0], first[1], "a key repeated in one batch is one job");
    let again = queue::enqueue_one(&t.db, NewJob::new("mail", json!({})).dedup_key("user-1"))
        .await
        .expect("enqueue");
    assert_eq!(again, first[0], "an existing pending job is returned");
    assert_eq!(t.scalar("SELECT count(*) FROM jobs").await, "1");

    let types = vec!["work".to_string()];
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    queue::enqueue(
        &t.db,
        &[
            NewJob::new("work", json!("low")).priority(1),
            NewJob::new("work", json!("high")).priority(100),
            NewJob::new("work", json!("scheduled"))
                .priority(1000)
                .run_at(later),
            NewJob::new("work", json!("mid")).priority(50),
        ],
    )
    .await
    .expect("enqueue");
    let mut order = Vec::new();
    while let Some(job) = queue::claim(&t.db, JOBS, "w", &types, 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .pop()
    {
        order.push(job.payload);
    }
    assert_eq!(
        order,
        [json!("high"), json!("mid"), json!("low")],
        "the scheduled job waits"
    );
    t.sql("UPDATE jobs SET run_at = now() - interval '1 second' WHERE payload = '\"scheduled\"'")
        .await;
    let due = queue::claim(&t.db, JOBS, "w", &types, 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].payload, json!("scheduled"));

    // The dedup key is free again once its job finished.
    assert_eq!(
        queue::finish(&t.db, JOBS, &[]).await.expect("nothing"),
        queue::Finished::default()
    );
    let mail = queue::claim(
        &t.db,
        JOBS,
        "w",
        &["mail".to_string()],
        1,
        Duration::from_secs(30),
    )
    .await
    .expect("claim");
    queue::finish(
        &t.db,
        JOBS,
        &[(mail[0].lease(), queue::Outcome::Completed(json!(1)))],
    )
    .await
    .expect("finish");
    let fresh = queue::enqueue(&t.db, &[NewJob::new("mail", json!({})).dedup_key("user-1")])
        .await
        .expect("enqueue");
    assert_ne!(fresh[0], first[0]);
}

#[tokio::test]
async fn a_notify_wakes_an_idle_worker_without_waiting_for_the_poll() {
    let t = TestDb::new().await;
    let worker = Worker::new(
        t.db.clone(),
        JOBS,
        WorkerConfig {
            poll_interval: Duration::from_secs(3600),
            ..fast()
        },
    )
    .expect("worker")
    .handle("ping", |_| async { Ok::<_, BoxError>(json!("pong")) })
    .expect("handler");
    let (stop, handle) = spawn(worker);
    // Let it make its first (empty) claim and go to sleep on LISTEN.
    tokio::time::sleep(Duration::from_millis(300)).await;
    enqueue_one(&t.db, "ping").await;
    // With an hour between polls, only the NOTIFY can have woken it.
    wait_for(
        &t,
        "SELECT status FROM jobs",
        "completed",
        Duration::from_secs(60),
    )
    .await;
    let _ = stop.send(());
    assert_eq!(handle.await.expect("join").expect("run").completed, 1);
}

#[tokio::test]
async fn timeouts_stop_the_handler_and_cancellation_reaches_it() {
    let t = TestDb::new().await;
    let ids = queue::enqueue(
        &t.db,
        &[
            NewJob::new("sleepy", json!({})).max_attempts(1),
            NewJob::new("cancellable", json!({})),
        ],
    )
    .await
    .expect("enqueue");
    let finished_sleeping = Arc::new(AtomicUsize::new(0));
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let (slept, cancelled) = (Arc::clone(&finished_sleeping), Arc::clone(&saw_cancel));
    let worker = Worker::new(
        t.db.clone(),
        JOBS,
        WorkerConfig {
            heartbeat_interval: Duration::from_millis(100),
            ..fast()
        },
    )
    .expect("worker")
    .handle_with_timeout("sleepy", Duration::from_millis(200), move |_| {
        let slept = Arc::clone(&slept);
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            slept.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(json!("too late"))
        }
    })
    .expect("handler")
    .handle("cancellable", move |mut ctx| {
        let cancelled = Arc::clone(&cancelled);
        async move {
            ctx.cancelled().await;
            cancelled.fetch_add(1, Ordering::SeqCst);
            Err::<serde_json::Value, BoxError>("stopped on request".into())
        }
    })
    .expect("handler");
    let (stop, handle) = spawn(worker);
    wait_for(
        &t,
        &format!("SELECT status FROM jobs WHERE id = '{}'", ids[0]),
        "failed",
        Duration::from_secs(60),
    )
    .await;
    assert!(
        t.scalar(&format!(
            "SELECT last_error FROM jobs WHERE id = '{}'",
            ids[0]
        ))
        .await
        .starts_with("timed out after"),
    );
    wait_for(
        &t,
        &format!("SELECT status FROM jobs WHERE id = '{}'", ids[1]),
        "running",
        Duration::from_secs(60),
    )
    .await;
    assert!(queue::cancel(&t.db, JOBS, ids[1]).await.expect("cancel"));
    while saw_cancel.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    handle.await.expect("join").expect("run");
    assert_eq!(
        finished_sleeping.load(Ordering::SeqCst),
        0,
        "the timed-out future was dropped"
    );
    assert_eq!(
        t.sql(&format!(
            "SELECT status, (completed_at IS NOT NULL)::text FROM jobs WHERE id = '{}'",
            ids[1]
        ))
        .await,
        [["cancelled", "true"]],
        "the handler's late error does not overwrite the cancellation"
    );
    // A pending job cancelled never runs.
    let pending = queue::enqueue(&t.db, &[NewJob::new("sleepy", json!({}))])
        .await
        .expect("enqueue");
    assert!(
        queue::cancel(&t.db, JOBS, pending[0])
            .await
            .expect("cancel")
    );
    assert!(
        queue::claim(
            &t.db,
            JOBS,
            "w",
            &["sleepy".into()],
            10,
            Duration::from_secs(1)
        )
        .await
        .expect("claim")
        .is_empty()
    );
}

#[tokio::test]
async fn the_claim_stays_an_index_scan_however_many_finished_jobs_exist() {
    let t = TestDb::new().await;
    t.sql(
        "INSERT INTO jobs (job_type, status, completed_at) SELECT 'work', 'completed', now() FROM generate_series(1, 50000);
         INSERT INTO jobs (job_type, priority) SELECT 'work', i % 10 FROM generate_series(1, 5000) i;
         ANALYZE jobs;",
    )
    .await;
    let plan = tests::plan_text(
        &t.sql(
            "EXPLAIN SELECT id FROM jobs WHERE status = 'pending' AND run_at <= now() AND job_type = ANY('{work}')
             ORDER BY priority DESC, run_at LIMIT 10 FOR UPDATE SKIP LOCKED",
        )
        .await,
    );
    assert!(
        plan.contains("Index Scan using idx_jobs_priority"),
        "{plan}"
    );
    let claimed = queue::claim(
        &t.db,
        JOBS,
        "w",
        &["work".into()],
        10,
        Duration::from_secs(30),
    )
    .await
    .expect("claim");
    assert_eq!(claimed.len(), 10);
    // Retention: finished jobs older than the retention go, in batches.
    t.sql(
        "UPDATE jobs SET created_at = now() - interval '3 days', completed_at = now() - interval '2 days'
         WHERE status = 'completed'",
    )
    .await;
    let removed = queue::delete_finished(&t.db, JOBS, Duration::from_secs(86_400), 7_000)
        .await
        .expect("delete");
    assert_eq!(removed, 50_000);
    assert_eq!(t.scalar("SELECT count(*) FROM jobs").await, "5000");
    let counts = queue::counts(&t.db, JOBS).await.expect("counts");
    assert_eq!(
        counts
            .iter()
            .map(|c| (c.status.as_str(), c.count))
            .collect::<Vec<_>>(),
        [("pending", 4990), ("running", 10)]
    );
    assert!(
        queue::oldest_pending_age(&t.db, JOBS)
            .await
            .expect("age")
            .is_some()
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let t = TestDb::new().await;
    let cases = [
        (NewJob::new("x", json!({})).max_attempts(0), "max_attempts"),
        (NewJob::new("x", json!({})).priority(-1), "priority"),
        (NewJob::new("", json!({})), "job_type"),
        (
            NewJob::new("x", json!({"blob": "a".repeat(2_000)})),
            "payload",
        ),
    ];
    for (job, field) in cases {
        // The payload limit is the enqueuer's configuration.
        let small = queue::Enqueuer::new(queue::EnqueueConfig {
            max_payload_bytes: 1_000,
        });
        let err = small
            .enqueue(&t.db, &[NewJob::new("ok", json!({})), job])
            .await
            .expect_err(field);
        assert!(
            matches!(err, QueueError::InvalidJob { index: 1, field: f, .. } if f == field),
            "{err}"
        );
    }
    assert_eq!(t.scalar("SELECT count(*) FROM jobs").await, "0");
    assert!(matches!(
        Worker::new(
            t.db.clone(),
            JOBS,
            WorkerConfig {
                concurrency: 0,
                ..fast()
            }
        ),
        Err(QueueError::InvalidConfig {
            field: "concurrency",
            ..
        })
    ));
    let worker = Worker::new(t.db.clone(), JOBS, fast()).expect("worker");
    assert!(matches!(
        worker.run(async {}).await,
        Err(QueueError::InvalidConfig {
            field: "handlers",
            ..
        })
    ));
    let worker = Worker::new(t.db.clone(), JOBS, fast())
        .expect("worker")
        .handle("known", |_| async { Ok::<_, BoxError>(json!(1)) })
        .expect("h");
    let unknown = queue::ClaimedJob {
        id: uuid::Uuid::nil(),
        token: uuid::Uuid::nil(),
        job_type: "other".into(),
        payload: json!({}),
        attempt: 1,
        max_attempts: 1,
    };
    assert!(
        matches!(worker.run_handler(unknown).await, Err(QueueError::UnknownJobType(t)) if t == "other")
    );
}

#[tokio::test]
async fn completing_an_ai_job_writes_its_annotations_in_the_same_transaction() {
    let t = TestDb::new().await;
    let image = "00000000-0000-0000-0000-0000000000e1";
    t.sql(&format!(
        "INSERT INTO images (id, url) VALUES ('{image}', 'https://example.com/pica.jpg')"
    ))
    .await;
    let image_id: uuid::Uuid = image.parse().expect("uuid");
    let ids = ai::enqueue_ai_jobs(
        &t.db,
        &[NewAiJob::new(
            image_id,
            AiProvider::Anthropic,
            json!({"prompt": "birds"}),
        )],
    )
    .await
    .expect("enqueue");
    let claimed = queue::claim(
        &t.db,
        AI_ANNOTATION_JOBS,
        "w",
        &["anthropic".into()],
        5,
        Duration::from_secs(30),
    )
    .await
    .expect("claim");
    assert_eq!((claimed.len(), claimed[0].id), (1, ids[0]));
    assert_eq!(
        t.scalar("SELECT status::text FROM ai_annotation_jobs")
            .await,
        "processing"
    );
    let good_box = json!({"topLeft": {"x": 0.1, "y": 0.1}, "bottomRight": {"x": 0.5, "y": 0.6}, "width": 0.4, "height": 0.5});
    let bad_box = json!({"topLeft": {"x": 0.9, "y": 0.1}, "bottomRight": {"x": 0.5, "y": 0.6}, "width": 0.4, "height": 0.5});
    // One bad box: the statement fails, nothing is written, the job is still held.
    let err = ai::complete_ai_job(
        &t.db,
        claimed[0].lease(),
        &json!({"raw": 1}),
        &[
            VisionAnnotation {
                label: "pico".into(),
                bounding_box: good_box.clone(),
                confidence: 0.9,
            },
            VisionAnnotation {
                label: "ala".into(),
                bounding_box: bad_box,
                confidence: 0.8,
            },
        ],
    )
    .await
    .expect_err("check violation");
    assert!(
        matches!(
            &err,
            QueueError::Database(service::error::DbError::CheckViolation { constraint: Some(c), .. })
                if c == "check_bounding_box_coords"
        ),
        "{err:?}"
    );
    assert_eq!(t.scalar("SELECT count(*) FROM annotations").await, "0");
    assert_eq!(
        t.scalar("SELECT status::text FROM ai_annotation_jobs")
            .await,
        "processing"
    );

    let created = ai::complete_ai_job(
        &t.db,
        claimed[0].lease(),
        &json!({"raw": 2}),
        &[
            VisionAnnotation {
                label: "pico".into(),
                bounding_box: good_box.clone(),
                confidence: 0.9,
            },
            VisionAnnotation {
                label: "cola".into(),
                bounding_box: good_box,
                confidence: 0.55,
            },
        ],
    )
    .await
    .expect("complete")
    .expect("held");
    assert_eq!(created.len(), 2);
    assert_eq!(
        t.sql("SELECT status::text, annotations_created::text, (completed_at IS NOT NULL)::text FROM ai_annotation_jobs").await,
        [["completed", "2", "true"]]
    );
    let pending = t.sql("SELECT label, vision_confidence::text, vision_provider::text, job_status::text FROM pending_ai_annotations").await;
    assert_eq!(
        pending,
        [
            ["cola", "0.550", "anthropic", "completed"],
            ["pico", "0.900", "anthropic", "completed"]
        ]
    );
    // Completing again: the worker no longer holds it.
    assert_eq!(
        ai::complete_ai_job(&t.db, claimed[0].lease(), &json!({}), &[])
            .await
            .expect("ok"),
        None
    );
}

#[tokio::test]
async fn ai_jobs_run_through_the_same_worker_runtime() {
    let t = TestDb::new().await;
    t.sql("INSERT INTO images (id, url) VALUES ('00000000-0000-0000-0000-0000000000e2', 'https://example.com/a.jpg')").await;
    let image_id: uuid::Uuid = "00000000-0000-0000-0000-0000000000e2"
        .parse()
        .expect("uuid");
    ai::enqueue_ai_jobs(
        &t.db,
        &[
            NewAiJob::new(image_id, AiProvider::Google, json!({})),
            NewAiJob::new(image_id, AiProvider::Openai, json!({})),
        ],
    )
    .await
    .expect("enqueue");
    let worker = Worker::new(t.db.clone(), AI_ANNOTATION_JOBS, fast())
        .expect("worker")
        .handle("google", |_| async {
            Ok::<_, BoxError>(json!({"labels": []}))
        })
        .expect("handler")
        .handle("openai", |_| async {
            Err::<serde_json::Value, BoxError>("quota".into())
        })
        .expect("handler");
    run_until(
        worker,
        &t,
        "SELECT count(*) FROM ai_annotation_jobs WHERE status IN ('completed', 'failed')",
        "2",
    )
    .await;
    assert_eq!(
        t.sql("SELECT provider::text, status::text, attempts::text, coalesce(error_message, '-'), (completed_at IS NOT NULL)::text FROM ai_annotation_jobs ORDER BY 1").await,
        [["google", "completed", "1", "-", "true"], ["openai", "failed", "3", "quota", "true"]]
    );
}

#[tokio::test]
async fn batch_progress_with_item_errors() {
    let t = TestDb::new().await;
    let batch = ai::create_batch(&t.db, "annotate", 3, &json!({}), None)
        .await
        .expect("batch");
    let step = ai::record_batch_progress(&t.db, batch, 1, &[])
        .await
        .expect("progress")
        .expect("open");
    assert_eq!(
        (step.processed_items, step.status.as_str()),
        (1, "processing")
    );
    let errors = [ai::ItemError {
        item_index: 2,
        item_ref: Some("img-2".into()),
        error: "timeout".into(),
    }];
    let done = ai::record_batch_progress(&t.db, batch, 1, &errors)
        .await
        .expect("progress")
        .expect("open");
    assert_eq!(
        (
            done.processed_items,
            done.failed_items,
            done.status.as_str()
        ),
        (2, 1, "completed")
    );
    assert_eq!(
        t.sql("SELECT item_index::text, item_ref, error_message FROM batch_job_errors")
            .await,
        [["2", "img-2", "timeout"]]
    );
    assert_eq!(
        ai::record_batch_progress(&t.db, batch, 1, &[])
            .await
            .expect("closed"),
        None
    );
    assert!(matches!(
        ai::create_batch(&t.db, "x", -1, &json!({}), None).await,
        Err(QueueError::InvalidJob { .. })
    ));
}

#[tokio::test]
async fn prefetched_jobs_are_given_back_at_shutdown() {
    let t = TestDb::new().await;
    let jobs: Vec<NewJob> = (0..5)
        .map(|i| NewJob::new("stuck", json!({"i": i})))
        .collect();
    queue::enqueue(&t.db, &jobs).await.expect("enqueue");
    let started = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&started);
    let worker = Worker::new(
        t.db.clone(),
        JOBS,
        WorkerConfig {
            concurrency: 1,
            prefetch: 10,
            shutdown_timeout: Duration::from_millis(200),
            ..fast()
        },
    )
    .expect("worker")
    .handle("stuck", never_finishes(s))
    .expect("handler");
    let (stop, handle) = spawn(worker);
    while started.load(Ordering::SeqCst) < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // One runs, four wait in the local queue: all five are leased.
    assert_eq!(
        t.scalar("SELECT count(*) FROM jobs WHERE status = 'running'")
            .await,
        "5"
    );
    let _ = stop.send(());
    let report = handle.await.expect("join").expect("run");
    assert_eq!(report.released, 5);
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(
        t.sql("SELECT status, max(attempts)::text, count(*)::text FROM jobs GROUP BY status")
            .await,
        [["pending", "0", "5"]]
    );
}

#[tokio::test]
async fn one_outcome_batch_records_each_jobs_own_result_or_error() {
    let t = TestDb::new().await;
    let jobs: Vec<NewJob> = (0..6)
        .map(|i| NewJob::new("work", json!({ "i": i })).max_attempts(if i == 3 { 1 } else { 3 }))
        .collect();
    let ids = queue::enqueue(&t.db, &jobs).await.expect("enqueue");
    let claimed = queue::claim(
        &t.db,
        JOBS,
        "w",
        &["work".to_string()],
        6,
        Duration::from_secs(30),
    )
    .await
    .expect("claim");
    assert_eq!(claimed.len(), 6);
    let lease = |i: usize| {
        claimed
            .iter()
            .find(|c| c.id == ids[i])
            .expect("claimed")
            .lease()
    };
    let retry_at = chrono::Utc::now() + chrono::Duration::hours(1);
    let failed = |error: &str| queue::Outcome::Failed {
        error: error.into(),
        retry_at,
    };
    // A mixed batch: two different results, a failure with attempts left, a final one.
    // With an outcome of a lease that never held job 1: refused, counted stale.
    let mixed = [
        (lease(0), queue::Outcome::Completed(json!({ "a": 1 }))),
        (lease(1), queue::Outcome::Completed(json!([2]))),
        (lease(2), failed("try again")),
        (lease(3), failed("gave up")),
        (
            queue::Lease {
                job: ids[1],
                token: uuid::Uuid::new_v4(),
            },
            queue::Outcome::Completed(json!("stale")),
        ),
    ];
    assert_eq!(
        queue::finish(&t.db, JOBS, &mixed).await.expect("finish"),
        queue::Finished {
            completed: 2,
            failed: 2,
            stale: 1
        }
    );
    // Completions sharing one result; with other claims' tokens they change nothing.
    let forged = |i: usize| queue::Lease {
        job: ids[i],
        token: uuid::Uuid::new_v4(),
    };
    let null = || queue::Outcome::Completed(json!(null));
    assert_eq!(
        queue::finish(&t.db, JOBS, &[(forged(4), null()), (forged(5), null())])
            .await
            .expect("finish"),
        queue::Finished {
            completed: 0,
            failed: 0,
            stale: 2
        }
    );
    assert_eq!(
        queue::finish(&t.db, JOBS, &[(lease(4), null()), (lease(5), null())])
            .await
            .expect("finish"),
        queue::Finished {
            completed: 2,
            failed: 0,
            stale: 0
        }
    );
    let rows = t
        .sql(
            "SELECT status, coalesce(result::text, '-'), coalesce(last_error, '-'),
                    completed_at IS NOT NULL, run_at > now() + interval '50 minutes',
                    locked_by IS NULL, started_at IS NOT NULL
             FROM jobs ORDER BY payload->>'i'",
        )
        .await;
    let row = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rows,
        vec![
            row(&["completed", "{\"a\": 1}", "-", "t", "f", "t", "t"]),
            row(&["completed", "[2]", "-", "t", "f", "t", "t"]),
            row(&["pending", "-", "try again", "f", "t", "t", "t"]),
            row(&["failed", "-", "gave up", "t", "f", "t", "t"]),
            row(&["completed", "null", "-", "t", "f", "t", "t"]),
            row(&["completed", "null", "-", "t", "f", "t", "t"]),
        ]
    );
}

/// The timestamp triggers skip the queue's own statements (which set every
/// timestamp) but still fill in what any other statement leaves out.
#[tokio::test]
async fn the_timestamp_triggers_fill_what_a_statement_leaves_out() {
    let t = TestDb::new().await;
    t.sql("INSERT INTO jobs (job_type, updated_at) VALUES ('a', now() - interval '1 day'), ('b', now() - interval '1 day')")
        .await;
    // Sets updated_at itself but not started_at / completed_at: the trigger fills them.
    t.sql("UPDATE jobs SET status = 'running', updated_at = now() - interval '1 hour' WHERE job_type = 'a'")
        .await;
    assert_eq!(
        t.scalar("SELECT started_at IS NOT NULL FROM jobs WHERE job_type = 'a'")
            .await,
        "t"
    );
    t.sql("UPDATE jobs SET status = 'completed', updated_at = now() - interval '1 minute' WHERE job_type = 'a'")
        .await;
    assert_eq!(
        t.scalar("SELECT completed_at IS NOT NULL FROM jobs WHERE job_type = 'a'")
            .await,
        "t"
    );
    // Leaves updated_at alone: the trigger bumps it, as before the guard.
    t.sql("UPDATE jobs SET priority = 5 WHERE job_type = 'b'")
        .await;
    assert_eq!(
        t.scalar("SELECT updated_at > now() - interval '1 minute' FROM jobs WHERE job_type = 'b'")
            .await,
        "t"
    );
    // Back to pending with a stale completed_at: cleared.
    t.sql("UPDATE jobs SET status = 'pending', updated_at = now() WHERE job_type = 'a'")
        .await;
    assert_eq!(
        t.scalar("SELECT completed_at IS NULL FROM jobs WHERE job_type = 'a'")
            .await,
        "t"
    );
    // The same on ai_annotation_jobs (its running word is 'processing').
    t.sql(
        "INSERT INTO images (url) VALUES ('https://example.com/a.jpg');
         INSERT INTO ai_annotation_jobs (image_id, provider) SELECT id, 'openai' FROM images;
         UPDATE ai_annotation_jobs SET status = 'processing', updated_at = now() - interval '1 hour';",
    )
    .await;
    assert_eq!(
        t.scalar("SELECT started_at IS NOT NULL FROM ai_annotation_jobs")
            .await,
        "t"
    );
}

/// A bulk enqueue sends a field shared by the whole batch once and a varying one per
/// row; either way every row gets its own values, and unset ones their defaults.
#[tokio::test]
async fn a_bulk_enqueue_keeps_each_jobs_own_fields() {
    let t = TestDb::new().await;
    let at = chrono::Utc::now() + chrono::Duration::hours(2);
    let ids = queue::enqueue(
        &t.db,
        &[
            NewJob::new("a", json!({"k": 1}))
                .priority(7)
                .max_attempts(5),
            NewJob::new("b", json!([1, "x"]))
                .run_at(at)
                .dedup_key("only-me"),
            NewJob::new("a", json!(null)),
        ],
    )
    .await
    .expect("enqueue");
    assert_eq!(ids.len(), 3);
    let rows = t
        .sql(
            "SELECT job_type, payload::text, priority, max_attempts, coalesce(dedup_key, '-'),
                    run_at > now() + interval '1 hour', status
             FROM jobs ORDER BY id",
        )
        .await;
    let row = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rows,
        vec![
            row(&["a", "{\"k\": 1}", "7", "5", "-", "f", "pending"]),
            row(&["b", "[1, \"x\"]", "0", "3", "only-me", "t", "pending"]),
            row(&["a", "null", "0", "3", "-", "f", "pending"]),
        ],
        "ids are time-ordered, so ORDER BY id is the batch order"
    );
    let same = queue::enqueue(
        &t.db,
        &[
            NewJob::new("b", json!(1)).dedup_key("only-me"),
            NewJob::new("c", json!(2)),
        ],
    )
    .await
    .expect("enqueue");
    assert_eq!(same[0], ids[1], "a live dedup key returns its job");
    assert_eq!(t.scalar("SELECT count(*) FROM jobs").await, "4");
}

/// A worker with one slot and no prefetch claims a job each time its slot frees: the
/// dispatcher must not hold the only slot while it waits for work (it did, and such a
/// worker then never claimed again).
#[tokio::test]
async fn a_one_slot_worker_without_prefetch_runs_job_after_job() {
    let t = TestDb::new().await;
    let jobs: Vec<NewJob> = (0..3).map(|i| NewJob::new("one", json!(i))).collect();
    queue::enqueue(&t.db, &jobs).await.expect("enqueue");
    let worker = Worker::new(
        t.db.clone(),
        JOBS,
        WorkerConfig {
            concurrency: 1,
            prefetch: 0,
            poll_interval: Duration::from_secs(3600),
            ..fast()
        },
    )
    .expect("worker")
    .handle("one", |_| async { Ok::<_, BoxError>(json!(null)) })
    .expect("handler");
    let (stop, handle) = spawn(worker);
    wait_for(
        &t,
        "SELECT count(*) FROM jobs WHERE status = 'completed'",
        "3",
        Duration::from_secs(10),
    )
    .await;
    let _ = stop.send(());
    assert_eq!(handle.await.expect("join").expect("run").completed, 3);
}
