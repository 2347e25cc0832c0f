//! `service::doctor`: the required-object list matches a migrated database, a dropped
//! index or an invalid one is a named failure, a missing privilege or a lock wait is
//! a warning about that check only, and stale jobs, failing maintenance and
//! duplicate indexes are found.

use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait};
use service::doctor::{
    Examination, Expectations, ObjectKind, REQUIRED_OBJECTS, Status, examine, present_objects,
};
use tests::TestDb;

fn expectations() -> Expectations {
    Expectations::new(migration::names())
}

async fn examined(t: &TestDb) -> Examination {
    examine(&t.db, &expectations()).await.expect("examine")
}

fn status(e: &Examination, name: &str) -> Status {
    e.check(name)
        .unwrap_or_else(|| panic!("no check {name}: {e:#?}"))
        .status
}

#[tokio::test]
async fn required_objects_are_exactly_what_the_migrations_create() {
    let t = TestDb::new().await;
    let present: Vec<(String, String)> = present_objects(&t.db)
        .await
        .expect("catalogue")
        .into_iter()
        .map(|o| (o.kind, o.name))
        .collect();
    let required: Vec<(String, String)> = REQUIRED_OBJECTS
        .iter()
        .map(|o| (o.kind.as_str().to_owned(), o.name.to_owned()))
        .collect();
    let missing: Vec<_> = required.iter().filter(|r| !present.contains(r)).collect();
    let unlisted: Vec<_> = present.iter().filter(|p| !required.contains(p)).collect();
    assert!(
        missing.is_empty() && unlisted.is_empty(),
        "service/src/doctor/required.rs is out of date: listed but absent {missing:?}; \
         created but not listed {unlisted:?}"
    );
    assert!(
        REQUIRED_OBJECTS
            .iter()
            .any(|o| o.kind == ObjectKind::RowLevelSecurity && o.name == "ai_response_cache")
    );
}

#[tokio::test]
async fn a_migrated_database_has_no_failing_check_and_the_seeds_duplicate_indexes_warn() {
    let t = TestDb::new().await;
    let e = examined(&t).await;
    assert_eq!(e.count(Status::Fail), 0, "{e:#?}");
    for name in [
        "server",
        "pgvector",
        "migrations",
        "required objects",
        "invalid indexes",
    ] {
        assert_eq!(status(&e, name), Status::Ok, "{name}: {e:#?}");
    }
    // The seeds create idx_ai_jobs_status (status) beside idx_ai_jobs_status_created
    // (status, created_at): a real duplicate, reported with what covers it.
    let dup = e.check("duplicate indexes").expect("check");
    assert_eq!(dup.status, Status::Warn);
    assert!(
        dup.details.iter().any(|d| d
            == "idx_ai_jobs_status on ai_annotation_jobs (covered by idx_ai_jobs_status_created)"),
        "{dup:?}"
    );
    // Unknown to this build: every migration is pending.
    let none = examine(&t.db, &Expectations::new(vec!["m_later".into()]))
        .await
        .expect("examine");
    let m = none.check("migrations").expect("check");
    assert_eq!(m.status, Status::Warn);
    assert_eq!(m.details, vec!["m_later".to_owned()]);
}

#[tokio::test]
async fn a_dropped_index_and_an_invalid_one_fail_by_name() {
    let t = TestDb::new().await;
    t.db.execute_unprepared("DROP INDEX idx_chunks_embedding")
        .await
        .expect("drop");
    let e = examined(&t).await;
    assert_eq!(e.status, Status::Fail);
    let req = e.check("required objects").expect("check");
    assert_eq!(req.status, Status::Fail);
    assert_eq!(req.details, vec!["index idx_chunks_embedding".to_owned()]);
    assert!(req.reason.contains("index idx_chunks_embedding"), "{req:?}");
    assert_eq!(status(&e, "vector index"), Status::Fail);

    // An index left invalid, as an interrupted CREATE INDEX CONCURRENTLY leaves it.
    t.db.execute_unprepared(
        "CREATE INDEX idx_doctor_probe ON jobs (priority);
         UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_doctor_probe'::regclass",
    )
    .await
    .expect("invalid index");
    let e = examined(&t).await;
    let invalid = e.check("invalid indexes").expect("check");
    assert_eq!(invalid.status, Status::Fail);
    assert_eq!(invalid.details, vec!["idx_doctor_probe on jobs".to_owned()]);
}

#[tokio::test]
async fn a_missing_privilege_or_a_lock_wait_is_a_warning_of_that_check_only() {
    let t = TestDb::new().await;
    // A role that can log in and read the catalogue but no table of the schema.
    let role = format!("doctor_{}", t.name);
    t.db.execute_unprepared(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN"
    ))
    .await
    .expect("role");
    let url = t.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, t.url, "URL has a user to replace: {}", t.url);
    let weak = tests::pool(&url, 2).await;
    let e = examine(&weak, &expectations()).await.expect("examine");
    for name in ["queue jobs", "maintenance", "materialized views"] {
        let c = e.check(name).expect("check");
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.reason.starts_with("missing privilege"), "{c:?}");
    }
    assert_eq!(status(&e, "required objects"), Status::Ok);
    let _ = weak.close().await;
    t.db.execute_unprepared(&format!("DROP ROLE {role}"))
        .await
        .expect("drop role");

    // Another session holds maintenance_tasks: that check gives up at its timeout.
    let holder = tests::pool(&t.url, 1).await;
    let txn = holder.begin().await.expect("begin");
    txn.execute_unprepared("LOCK TABLE maintenance_tasks IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let mut quick = expectations();
    quick.statement_timeout = Duration::from_millis(300);
    let e = examine(&t.db, &quick).await.expect("examine");
    let m = e.check("maintenance").expect("check");
    assert_eq!(m.status, Status::Warn, "{m:?}");
    assert!(
        m.reason.contains("lock") || m.reason.contains("timed out"),
        "{m:?}"
    );
    assert_eq!(status(&e, "queue jobs"), Status::Ok);
    txn.rollback().await.expect("rollback");
}

#[tokio::test]
async fn stale_jobs_and_failing_maintenance_are_reported() {
    let t = TestDb::new().await;
    t.db.execute_unprepared(
        "INSERT INTO jobs (job_type, payload, status, locked_by, locked_until, started_at, attempts)
         VALUES ('email', '{}', 'running', 'dead-worker', now() - interval '1 minute', now() - interval '10 minutes', 1);
         UPDATE maintenance_tasks SET last_status = 'failure', last_run_at = now(),
                last_result = '{\"error\": \"disk full\"}' WHERE task = 'analyze_tables'",
    )
    .await
    .expect("setup");
    let e = examined(&t).await;
    let q = e.check("queue jobs").expect("check");
    assert_eq!(q.status, Status::Warn);
    assert!(
        q.reason.starts_with("1 running with an expired lease"),
        "{q:?}"
    );
    let m = e.check("maintenance").expect("check");
    assert_eq!(m.status, Status::Fail);
    assert_eq!(m.details, vec!["analyze_tables: disk full".to_owned()]);
}

#[tokio::test]
async fn duplicate_indexes_respect_order_collation_and_uniqueness() {
    let t = TestDb::new().await;
    t.db.execute_unprepared(
        "CREATE INDEX probe_desc ON jobs (priority DESC);
         CREATE INDEX probe_pair ON jobs (priority, run_at);
         CREATE INDEX probe_asc ON jobs (priority);
         CREATE INDEX probe_c ON jobs (job_type COLLATE \"C\");
         CREATE INDEX probe_type_run ON jobs (job_type, run_at);
         CREATE UNIQUE INDEX probe_unique_a ON users (email, id);
         CREATE UNIQUE INDEX probe_unique_b ON users (email, id)",
    )
    .await
    .expect("indexes");
    let e = examined(&t).await;
    let dup = e.check("duplicate indexes").expect("check");
    let probes: Vec<&String> = dup
        .details
        .iter()
        .filter(|d| d.starts_with("probe_"))
        .collect();
    assert_eq!(
        probes,
        vec![
            "probe_asc on jobs (covered by probe_pair)",
            "probe_unique_b on users (covered by probe_unique_a)",
        ],
        "a DESC key and another collation are not covered; identical unique indexes are: {dup:?}"
    );
}
