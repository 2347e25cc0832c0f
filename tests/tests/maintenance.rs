//! Maintenance over real PostgreSQL: each task removes exactly what it should; the
//! schedule's defaults follow the seeds; `run_due` runs what is due once and records
//! it, skips what is not due, runs missed ticks once, records a failing task while the
//! others run; many runners at once — tasks of one process, and separate processes —
//! run each due run exactly once.

use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::json;
use service::maintenance::{self, MaintenanceError, RunOutcome, Task};
use tests::TestDb;

/// A 64-hex-digit cache key.
fn key(n: u32) -> String {
    format!("{n:064x}")
}

/// A cache's task, by its name in the schedule (the registry lists them).
fn cache_task(name: &str) -> Task {
    let task: Task = name.parse().expect("a known task");
    assert!(matches!(task, Task::Cache(_)), "{name} is a cache's task");
    task
}

async fn run(t: &TestDb, task: Task, parameters: serde_json::Value) -> u64 {
    task.run(&t.db, &parameters)
        .await
        .expect("task")
        .rows_affected
}

#[tokio::test]
async fn cache_tasks_remove_exactly_what_they_should() {
    let t = TestDb::new().await;
    // Vision: two expired, two live; then LRU to the 1 most recently used.
    t.sql(&format!(
        "INSERT INTO vision_api_cache (image_url, url_hash, provider, response_data, response_size_bytes,
                                       created_at, expires_at, last_accessed_at) VALUES
           ('a', '{}', 'openai', '{{}}', 1, now() - interval '2 days', now() - interval '1 hour', now()),
           ('b', '{}', 'openai', '{{}}', 1, now() - interval '2 days', now() - interval '1 day', now()),
           ('c', '{}', 'openai', '{{}}', 1, now() - interval '2 days', now() + interval '1 day',
            now() - interval '2 hours'),
           ('d', '{}', 'google', '{{}}', 1, now() - interval '2 days', now() + interval '1 day', now())",
        key(1),
        key(2),
        key(3),
        key(4)
    ))
    .await;
    assert_eq!(
        run(&t, cache_task("cleanup_expired_vision_cache"), json!({})).await,
        2
    );
    assert_eq!(
        run(
            &t,
            cache_task("evict_vision_cache"),
            json!({"max_entries": 1})
        )
        .await,
        1
    );
    assert_eq!(
        t.column("SELECT image_url FROM vision_api_cache").await,
        ["d"]
    );

    // Exercises: the expired one goes.
    let user = t
        .scalar("INSERT INTO users (email, password_hash) VALUES ('u@example.org', 'h') RETURNING id::text")
        .await;
    t.sql(&format!(
        "INSERT INTO exercise_cache (user_id, exercise_type, difficulty_level, topic, exercise_data,
                                     created_at, expires_at) VALUES
           ('{user}', 'quiz', 1, 'old', '{{}}', now() - interval '1 day', now() - interval '1 minute'),
           ('{user}', 'quiz', 1, 'new', '{{}}', now(), now() + interval '1 day')"
    ))
    .await;
    assert_eq!(
        run(&t, cache_task("cleanup_expired_exercises"), json!({})).await,
        1
    );
    assert_eq!(t.column("SELECT topic FROM exercise_cache").await, ["new"]);

    // PDF: 90 days without access (seed 000), and the statistics refresh after it.
    t.sql(&format!(
        "INSERT INTO pdf_cache (pdf_hash, result_data, original_size_bytes, storage_size_bytes,
                                compression_ratio, last_accessed) VALUES
           ('{}', '\\x00', 2, 1, 2, now() - interval '91 days'),
           ('{}', '\\x00', 2, 1, 2, now() - interval '89 days')",
        key(5),
        key(6)
    ))
    .await;
    assert_eq!(
        run(&t, cache_task("pdf_cache_retention"), json!({})).await,
        1
    );
    assert_eq!(t.column("SELECT pdf_hash FROM pdf_cache").await, [key(6)]);
    run(&t, Task::RefreshPdfStats, json!({})).await;
    assert_eq!(
        t.scalar("SELECT total_cache_entries::text FROM layer0_stats")
            .await,
        "1"
    );

    // AI responses: 30 days by creation (seed 001); statistics: 90 days by date.
    t.sql(
        "INSERT INTO ai_response_cache (cache_key, operation_type, content_hash, response_data, created_at) VALUES
           ('old', 'quiz', 'h', '{}', now() - interval '31 days'),
           ('new', 'quiz', 'h', '{}', now() - interval '29 days');
         INSERT INTO ai_cache_stats (date, total_requests, cache_hits, cache_misses, tokens_saved) VALUES
           (CURRENT_DATE - 91, 1, 0, 1, 0), (CURRENT_DATE - 89, 1, 1, 0, 5);",
    )
    .await;
    assert_eq!(
        run(&t, cache_task("ai_response_cache_retention"), json!({})).await,
        1
    );
    assert_eq!(
        t.column("SELECT cache_key FROM ai_response_cache").await,
        ["new"]
    );
    assert_eq!(run(&t, Task::AiCacheStatsRetention, json!({})).await, 1);
    assert_eq!(
        t.column("SELECT (CURRENT_DATE - date)::text FROM ai_cache_stats")
            .await,
        ["89"]
    );
    run(&t, Task::RefreshCacheMetrics, json!({})).await;
}

#[tokio::test]
async fn queue_audit_and_catalogue_tasks_do_their_part() {
    let t = TestDb::new().await;
    t.sql(
        "INSERT INTO jobs (job_type, status, completed_at, created_at) VALUES
           ('old', 'completed', now() - interval '8 days', now() - interval '9 days'),
           ('recent', 'completed', now() - interval '1 day', now() - interval '1 day'),
           ('waiting', 'pending', NULL, now() - interval '30 days');
         INSERT INTO jobs (job_type, status, locked_by, locked_until, attempts, started_at) VALUES
           ('stuck', 'running', 'gone-worker', now() - interval '1 minute', 1, now() - interval '5 minutes'),
           ('alive', 'running', 'live-worker', now() + interval '1 minute', 1, now());
         INSERT INTO audit_logs (event_type, created_at) VALUES
           ('x.old', now() - interval '91 days'), ('x.new', now() - interval '1 day');",
    )
    .await;
    assert_eq!(run(&t, Task::JobRetention, json!({})).await, 1);
    assert_eq!(
        t.column("SELECT job_type FROM jobs ORDER BY job_type")
            .await,
        ["alive", "recent", "stuck", "waiting"]
    );
    assert_eq!(run(&t, Task::AuditLogRetention, json!({})).await, 1);
    assert_eq!(
        t.column("SELECT event_type FROM audit_logs").await,
        ["x.new"]
    );

    t.sql(
        "INSERT INTO maintenance_runs (task, scheduled_for, runner, status, started_at) VALUES
           ('analyze_tables', now() - interval '100 days', 'r', 'success', now() - interval '100 days'),
           ('analyze_tables', now() - interval '101 days', 'r', 'running', now() - interval '101 days'),
           ('analyze_tables', now() - interval '1 day', 'r', 'success', now() - interval '1 day')",
    )
    .await;
    assert_eq!(run(&t, Task::MaintenanceRunRetention, json!({})).await, 1);
    assert_eq!(
        t.column("SELECT status FROM maintenance_runs ORDER BY started_at")
            .await,
        ["running", "success"],
        "a run still marked running is left to the stale-run check"
    );

    match tests::test_role() {
        None => {
            run(&t, Task::AnalyzeTables, json!({})).await;
            assert_eq!(
                t.scalar("SELECT (last_analyze IS NOT NULL)::text FROM pg_stat_user_tables WHERE relname = 'audit_logs'")
                    .await,
                "true"
            );
        }
        // A role that owns no table (Supabase's service_role): refused by name, not
        // skipped in silence as the server's ANALYZE would.
        Some(role) => {
            let refused = Task::AnalyzeTables.run(&t.db, &json!({})).await;
            assert!(
                matches!(&refused, Err(MaintenanceError::NotOwner { role: r, tables, .. })
                    if *r == role && tables.iter().any(|t| t == "audit_logs")),
                "{refused:?}"
            );
        }
    }
    let health = Task::VectorIndexHealth
        .run(&t.db, &json!({}))
        .await
        .expect("health");
    assert_eq!(health.details["index_name"], "idx_chunks_embedding");
    assert_eq!(health.details["built_on_too_little_data"], true);

    // Parameters are checked.
    assert!(matches!(
        Task::AuditLogRetention
            .run(&t.db, &json!({"days": 0}))
            .await,
        Err(maintenance::MaintenanceError::Invalid(_))
    ));
}

#[tokio::test]
async fn the_schedule_follows_the_seeds_and_refuses_bad_cron() {
    let t = TestDb::new().await;
    let rows = maintenance::list(&t.db).await.expect("list");
    assert_eq!(rows.len(), Task::all().len());
    let schedule = |name: &str| {
        rows.iter()
            .find(|r| r.task == name)
            .map(|r| r.schedule.clone())
            .expect("listed")
    };
    assert_eq!(
        schedule("refresh_layer0_stats"),
        "0 * * * *",
        "hourly (seed 000)"
    );
    assert_eq!(
        schedule("ai_response_cache_retention"),
        "0 4 * * 0",
        "weekly (seed 001)"
    );
    assert_eq!(
        schedule("pdf_cache_retention"),
        "0 4 1 * *",
        "monthly (seed 000)"
    );
    for row in &rows {
        maintenance::Schedule::parse(&row.schedule).expect("every default parses");
        row.task.parse::<Task>().expect("every row is a task");
    }
    assert!(matches!(
        maintenance::set_schedule(&t.db, Task::AnalyzeTables, "every sunday").await,
        Err(maintenance::MaintenanceError::Invalid(_))
    ));
    let changed = maintenance::set_schedule(&t.db, Task::AnalyzeTables, "30 2 * * *")
        .await
        .expect("set");
    assert_eq!(changed.schedule, "30 2 * * *");
    assert!(changed.next_run_at > chrono::Utc::now());
}

/// Runs per task recorded in `maintenance_runs`, as `task:count` for the tasks with runs.
async fn runs_per_task(t: &TestDb) -> Vec<String> {
    t.column("SELECT task || ':' || count(*) FROM maintenance_runs GROUP BY task ORDER BY task")
        .await
}

#[tokio::test]
async fn run_due_runs_what_is_due_once_records_it_and_skips_the_rest() {
    let t = TestDb::new().await;
    // A new schedule is due at once; one task fails on a bad parameter.
    maintenance::set_parameters(&t.db, Task::AuditLogRetention, json!({"days": 0}))
        .await
        .expect("parameters");
    let runs = maintenance::run_due(&t.db, "test-runner")
        .await
        .expect("run_due");
    assert_eq!(runs.len(), Task::all().len());
    let failed: Vec<Task> = runs
        .iter()
        .filter(|r| matches!(r.outcome, RunOutcome::Failure { .. }))
        .map(|r| r.task)
        .collect();
    // A role that owns no table (STRATA_TEST_ROLE=service_role) cannot ANALYZE.
    let expected: Vec<Task> = match tests::test_role() {
        None => vec![Task::AuditLogRetention],
        Some(_) => vec![Task::AnalyzeTables, Task::AuditLogRetention],
    };
    assert_eq!(failed, expected, "the others still ran");
    assert_eq!(
        t.sql(
            "SELECT status, last_status, (error LIKE '%days%')::text FROM maintenance_runs
             JOIN maintenance_tasks USING (task) WHERE task = 'audit_log_retention'"
        )
        .await,
        [["failure", "failure", "true"]]
    );
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM maintenance_runs WHERE status = 'success'")
            .await,
        (Task::all().len() - expected.len()).to_string()
    );
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM audit_logs WHERE event_type = 'maintenance.run'")
            .await,
        Task::all().len().to_string(),
        "each run audited, the failure too"
    );
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM maintenance_tasks WHERE next_run_at <= now()")
            .await,
        "0",
        "each next run is in the future"
    );

    // A run whose runner died long ago is ended as failed, not repeated.
    t.sql(
        "INSERT INTO maintenance_runs (task, scheduled_for, runner, started_at)
         VALUES ('analyze_tables', now() - interval '7 hours', 'gone', now() - interval '7 hours')",
    )
    .await;

    // Nothing is due now: nothing runs.
    assert!(
        maintenance::run_due(&t.db, "test-runner")
            .await
            .expect("run_due")
            .is_empty()
    );

    assert_eq!(
        t.sql("SELECT status, error FROM maintenance_runs WHERE runner = 'gone'")
            .await,
        [[
            "failure",
            "abandoned: its runner stopped before recording it"
        ]]
    );

    // An hourly task last due three days ago runs once, not 72 times.
    t.sql(
        "UPDATE maintenance_tasks SET next_run_at = now() - interval '3 days'
           WHERE task = 'refresh_layer0_stats'",
    )
    .await;
    let runs = maintenance::run_due(&t.db, "test-runner")
        .await
        .expect("run_due");
    assert_eq!(
        runs.iter().map(|r| r.task).collect::<Vec<_>>(),
        [Task::RefreshPdfStats]
    );
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM maintenance_runs WHERE task = 'refresh_layer0_stats'")
            .await,
        "2"
    );
    assert_eq!(
        t.scalar(
            "SELECT (next_run_at <= now() + interval '1 hour' AND next_run_at > now())::text
                  FROM maintenance_tasks WHERE task = 'refresh_layer0_stats'"
        )
        .await,
        "true"
    );

    // A disabled task is skipped even when due; run() runs one now.
    maintenance::set_enabled(&t.db, Task::VectorIndexHealth, false)
        .await
        .expect("disable");
    t.sql("UPDATE maintenance_tasks SET next_run_at = now() - interval '1 minute' WHERE task = 'vector_index_health'")
        .await;
    assert!(
        maintenance::run_due(&t.db, "test-runner")
            .await
            .expect("run_due")
            .is_empty()
    );
    let now = maintenance::run(&t.db, Task::VectorIndexHealth, "test-runner")
        .await
        .expect("run");
    assert!(matches!(now.outcome, RunOutcome::Success(_)));
}

#[tokio::test]
async fn concurrent_runners_in_one_process_run_each_due_run_once() {
    let t = Arc::new(TestDb::new().await);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move { maintenance::run_due(&t.db, &format!("runner-{i}")).await })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("join").expect("run_due").len();
    }
    assert_eq!(total, Task::all().len());
    let once: Vec<String> = Task::all().iter().map(|t| format!("{t}:1")).collect();
    let mut once = once;
    once.sort();
    assert_eq!(runs_per_task(&t).await, once);
}

#[tokio::test]
async fn runner_processes_started_together_run_each_due_run_once() {
    let t = TestDb::new().await;
    // All four start before any is waited for.
    let children: Vec<_> = (0..4)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_strata-test-maintain"))
                .args([t.url.as_str(), &format!("process-{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("runner process")
        })
        .collect();
    let mut lines = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("runner process");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    assert_eq!(lines.len(), Task::all().len(), "{lines:?}");
    let mut once: Vec<String> = Task::all().iter().map(|t| format!("{t}:1")).collect();
    once.sort();
    assert_eq!(runs_per_task(&t).await, once);
}
