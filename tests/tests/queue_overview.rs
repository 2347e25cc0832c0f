//! The queue overview a dashboard refreshes every few seconds: on 200,000 jobs its
//! counts are right (capped past 10,000), its statement reads no sequential scan of
//! `jobs` (from `EXPLAIN`), and it runs under a 2-second statement timeout.

use sea_orm::{ConnectionTrait, TransactionTrait};
use service::queue::{self, AI_ANNOTATION_JOBS, COUNT_CAP, JOBS};
use tests::TestDb;

/// 200,000 jobs: 150,000 completed over two days, 25,000 runnable and 5,000 future
/// pending, 10,000 running (10 with expired leases), 10,000 failed (100 in the last
/// hour).
const FILL: &str = "
INSERT INTO jobs (job_type, status, run_at, completed_at, created_at)
SELECT 'report', 'completed', now() - i * interval '1 second', now() - i * interval '1 second',
       now() - i * interval '1 second'
FROM generate_series(1, 150000) i;
INSERT INTO jobs (job_type, status, run_at)
SELECT 'email', 'pending', now() - (i % 600) * interval '1 minute' - interval '1 second'
FROM generate_series(1, 25000) i;
INSERT INTO jobs (job_type, status, run_at)
SELECT 'email', 'pending', now() + interval '1 day' FROM generate_series(1, 5000) i;
INSERT INTO jobs (job_type, status, locked_by, locked_until, claim_token, started_at, attempts)
SELECT 'resize', 'running', 'worker-1',
       CASE WHEN i <= 10 THEN now() - interval '1 minute' ELSE now() + interval '5 minutes' END,
       gen_random_uuid(), now(), 1
FROM generate_series(1, 10000) i;
INSERT INTO jobs (job_type, status, completed_at, last_error, attempts)
SELECT 'resize', 'failed',
       CASE WHEN i <= 100 THEN now() - interval '10 minutes' ELSE now() - interval '1 day' END,
       'boom', 3
FROM generate_series(1, 10000) i;
ANALYZE jobs;
";

#[tokio::test]
async fn the_overview_of_200000_jobs_reads_no_sequential_scan_and_caps_its_counts() {
    let t = TestDb::new().await;
    t.sql(FILL).await;
    let plan = tests::plan_text(
        &t.sql(&format!("EXPLAIN {}", queue::overview_statement(JOBS)))
            .await,
    );
    assert!(!plan.contains("Seq Scan on jobs"), "{plan}");
    assert!(plan.contains("idx_jobs_pending_run_at"), "{plan}");

    let txn = t.db.begin().await.expect("begin");
    txn.execute_unprepared("SET LOCAL statement_timeout = '2s'")
        .await
        .expect("timeout");
    let overview = queue::overview(&txn, JOBS).await.expect("overview");
    txn.commit().await.expect("commit");
    assert_eq!(overview.runnable, COUNT_CAP + 1, "25,000 runnable: capped");
    assert_eq!(queue::capped(overview.runnable), "10,000+");
    assert_eq!(overview.running, 10_000);
    assert_eq!(queue::capped(overview.running), "10,000");
    assert_eq!(overview.failed_last_hour, 100);
    assert_eq!(overview.expired_leases, 10);
    let oldest = overview.oldest_runnable_seconds.expect("an oldest job");
    assert!(
        (599.0 * 60.0..601.0 * 60.0).contains(&oldest),
        "the oldest waited ~599 minutes: {oldest}"
    );
}

#[tokio::test]
async fn an_empty_queue_has_nothing_to_show() {
    let t = TestDb::new().await;
    for table in [JOBS, AI_ANNOTATION_JOBS] {
        let overview = queue::overview(&t.db, table).await.expect("overview");
        assert_eq!(
            (
                overview.runnable,
                overview.running,
                overview.failed_last_hour,
                overview.expired_leases
            ),
            (0, 0, 0, 0),
            "{}",
            table.name()
        );
        assert_eq!(overview.oldest_runnable_seconds, None);
    }
}
