//! The console's plan guard: with 200,000 jobs and 100,000 cache rows, the
//! overview, the job list under each filter (first and a later page) and its counts
//! run no sequential scan of `jobs` (from `EXPLAIN ANALYZE` with the filter's values,
//! as the console plans them: a scan the planner proved empty shows as never
//! executed), and each page answers under the 2-second statement timeout.
//!
//! The jobs carry time-ordered (UUIDv7-shaped) ids, as the queue writes them.

mod support;

use chrono::{Duration, Utc};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use serde_json::json;
use service::queue::{self, JobFilter, JobStatus};
use support::{Auth, Console};
use uuid::Uuid;

/// The lines of `plan` that scan `jobs` sequentially and ran.
fn seq_scans(plan: &str) -> Vec<&str> {
    plan.lines()
        .filter(|l| l.contains("Seq Scan on jobs") && !l.contains("never executed"))
        .collect()
}

/// A time-ordered id for row `i` (UUIDv7's layout: 48 bits of order, version 7).
const V7: &str = "(lpad(to_hex(i), 12, '0') || '7000' || '8000' || lpad(to_hex(i), 12, '0'))::uuid";

fn fill() -> String {
    format!(
        "
INSERT INTO jobs (id, job_type, status, run_at, completed_at, created_at, payload, dedup_key)
SELECT {V7}, CASE WHEN i % 5 = 0 THEN 'report' ELSE 'mail' END, 'completed',
       now() - (200000 - i) * interval '1 second', now() - (200000 - i) * interval '1 second',
       now() - (200000 - i) * interval '1 second',
       jsonb_build_object('user_id', i % 1000, 'n', i), NULL
FROM generate_series(1, 150000) i;
INSERT INTO jobs (id, job_type, status, run_at, created_at, payload, dedup_key, priority)
SELECT {V7}, 'mail', 'pending', now() - (i % 600) * interval '1 minute',
       now() - (200000 - i) * interval '1 second', jsonb_build_object('user_id', i % 1000),
       'mail-' || i, i % 4
FROM generate_series(150001, 180000) i;
INSERT INTO jobs (id, job_type, status, locked_by, locked_until, claim_token, started_at, attempts, created_at)
SELECT {V7}, 'resize', 'running', 'worker-1', now() + interval '5 minutes', gen_random_uuid(), now(), 1,
       now() - (200000 - i) * interval '1 second'
FROM generate_series(180001, 190000) i;
INSERT INTO jobs (id, job_type, status, completed_at, last_error, attempts, created_at)
SELECT {V7}, 'resize', CASE WHEN i % 2 = 0 THEN 'failed' ELSE 'cancelled' END, now() - interval '1 day',
       'boom ' || (i % 100), 3, now() - (200000 - i) * interval '1 second'
FROM generate_series(190001, 200000) i;
INSERT INTO pdf_cache (pdf_hash, result_data, compression_algorithm, original_size_bytes,
                       storage_size_bytes, compression_ratio)
SELECT md5(i::text) || md5(i::text), '\\x00', 'none', 1, 1, 1.0 FROM generate_series(1, 100000) i;
ANALYZE jobs; ANALYZE pdf_cache;
"
    )
}

/// Each filter the list offers, by name: the service's filter and the URL's query.
fn filters() -> Vec<(&'static str, JobFilter, String)> {
    let since = Utc::now() - Duration::hours(2);
    let until = Utc::now() - Duration::hours(1);
    let fmt = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M").to_string();
    let status = |s: JobStatus| JobFilter {
        status: Some(s),
        ..JobFilter::default()
    };
    vec![
        (
            "unfinished (the default)",
            JobFilter {
                unfinished: true,
                ..JobFilter::default()
            },
            "".to_owned(),
        ),
        ("any status", JobFilter::default(), "status=any".to_owned()),
        (
            "pending",
            status(JobStatus::Pending),
            "status=pending".into(),
        ),
        (
            "running",
            status(JobStatus::Running),
            "status=running".into(),
        ),
        (
            "completed",
            status(JobStatus::Completed),
            "status=completed".into(),
        ),
        ("failed", status(JobStatus::Failed), "status=failed".into()),
        (
            "cancelled",
            status(JobStatus::Cancelled),
            "status=cancelled".into(),
        ),
        (
            "type",
            JobFilter {
                job_type: Some("report".into()),
                ..JobFilter::default()
            },
            "status=any&job_type=report".into(),
        ),
        (
            "priority",
            JobFilter {
                priority: Some(3),
                unfinished: true,
                ..JobFilter::default()
            },
            "priority=3".into(),
        ),
        (
            "time range",
            JobFilter {
                created_after: Some(since),
                created_before: Some(until),
                ..JobFilter::default()
            },
            format!("status=any&since={}&until={}", fmt(since), fmt(until)),
        ),
        (
            "dedup key",
            JobFilter {
                dedup_key: Some("mail-170000".into()),
                unfinished: true,
                ..JobFilter::default()
            },
            "dedup_key=mail-170000".into(),
        ),
        (
            "error text",
            JobFilter {
                error_contains: Some("boom 7".into()),
                ..JobFilter::default()
            },
            "status=any&error=boom+7".into(),
        ),
        (
            "payload containment",
            JobFilter {
                payload_contains: Some(json!({"user_id": 42})),
                ..JobFilter::default()
            },
            "status=any&payload=%7B%22user_id%22%3A42%7D".into(),
        ),
        (
            "rare payload",
            JobFilter {
                payload_contains: Some(json!({"user_id": 4242})),
                ..JobFilter::default()
            },
            "status=any&payload=%7B%22user_id%22%3A4242%7D".into(),
        ),
    ]
}

/// The plan of `statement` run with its values, under the console's settings.
async fn plan(t: &tests::TestDb, statement: Statement) -> String {
    let txn = t.db.begin().await.expect("begin");
    txn.execute_unprepared(
        "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_seqscan = off",
    )
    .await
    .expect("plan mode");
    let explain = Statement {
        sql: format!("EXPLAIN (ANALYZE, TIMING OFF) {}", statement.sql),
        ..statement
    };
    let rows = txn.query_all_raw(explain).await.expect("explain");
    txn.rollback().await.expect("rollback");
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("a plan line"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn two_hundred_thousand_jobs_are_never_read_whole() {
    // The console's default statement timeout: each page must answer under it.
    let c =
        Console::with(|config| config.statement_timeout = std::time::Duration::from_secs(2)).await;
    c.t.sql(&fill()).await;
    let later_page: Uuid =
        c.t.scalar("SELECT id::text FROM jobs ORDER BY id DESC OFFSET 5000 LIMIT 1")
            .await
            .parse()
            .expect("uuid");
    for table in [queue::JOBS, queue::AI_ANNOTATION_JOBS] {
        for (what, statement) in [
            (
                "overview",
                Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    queue::overview_statement(table),
                ),
            ),
            ("throughput", queue::throughput_statement(table)),
        ] {
            let plan = plan(&c.t, statement).await;
            assert!(seq_scans(&plan).is_empty(), "{what}:\n{plan}");
        }
    }
    for (name, filter, query) in filters() {
        for (what, statement) in [
            (
                "first page",
                queue::list_statement(queue::JOBS, &filter, None, 50),
            ),
            (
                "a later page",
                queue::list_statement(queue::JOBS, &filter, Some(later_page), 50),
            ),
            ("counts", queue::count_statement(queue::JOBS, &filter)),
        ] {
            let plan = plan(&c.t, statement.expect("statement")).await;
            assert!(seq_scans(&plan).is_empty(), "{name}, {what}:\n{plan}");
        }
        let started = std::time::Instant::now();
        let page = c
            .get(&format!("/jobs?{query}"), Auth::Bearer(&c.admin_token))
            .await;
        eprintln!("plan guard: /jobs {name}: {:?}", started.elapsed());
        assert_eq!(
            page.status,
            axum::http::StatusCode::OK,
            "{name}: {}",
            page.body
        );
        assert!(!page.text("#matching").is_empty(), "{name}: a count");
    }
    // The pages that read the queues and the caches answer under the timeout.
    for uri in ["/", "/overview/live", "/caches", "/jobs?status=completed"] {
        let page = c.get(uri, Auth::Bearer(&c.admin_token)).await;
        assert_eq!(
            page.status,
            axum::http::StatusCode::OK,
            "{uri}: {}",
            page.body
        );
    }
    let overview = c.get("/", Auth::Bearer(&c.admin_token)).await;
    assert_eq!(overview.text("#queue-jobs .runnable"), "10,000+");
    assert_eq!(overview.text("#queue-jobs .running"), "10,000");
    let completed = c
        .get("/jobs?status=completed", Auth::Bearer(&c.admin_token))
        .await;
    assert_eq!(
        completed.text("#matching"),
        "10,000+",
        "counts stop at the cap"
    );
}
