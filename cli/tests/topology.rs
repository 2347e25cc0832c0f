//! `strata` in production topology: through a real PgBouncer in transaction mode
//! `migrate` runs on `--direct-url`, commands work on the pooled URL, and `doctor`
//! says which components need `DIRECT_URL` when only the pooler is given; with a real
//! streaming replica in `REPLICA_URLS`, `doctor` reports it and listings are answered
//! whether it is up or not.

use std::process::{Command, Output};

use serde_json::Value;
use tests::TestDb;
use tests::pgbouncer::PgBouncer;

mod support;

use support::STRATA;

/// `strata ARGS… --json` with `DATABASE_URL` = `pooled` and, when given, `DIRECT_URL`.
fn strata(pooled: &str, direct: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(STRATA);
    command
        .env_remove("DIRECT_URL")
        .env_remove("REPLICA_URLS")
        .env("DATABASE_URL", pooled)
        .args(args)
        .arg("--json");
    if let Some(direct) = direct {
        command.env("DIRECT_URL", direct);
    }
    command.output().expect("run strata")
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report}"))
}

#[tokio::test]
async fn doctor_names_what_needs_a_direct_url_and_passes_with_one() {
    let t = TestDb::new().await;
    let bouncer = PgBouncer::start(4);
    let pooled = bouncer.url(&t.name);

    let alone = strata(&pooled, None, &["doctor"]);
    assert_eq!(alone.status.code(), Some(1), "a missing DIRECT_URL fails");
    let report: Value = serde_json::from_slice(&alone.stdout).expect("JSON report");
    let pooler = check(&report, "pooler");
    assert_eq!(pooler["status"], "ok", "{pooler}");
    assert!(
        pooler["reason"]
            .as_str()
            .is_some_and(|r| r.contains("transaction-mode pooler"))
    );
    let session = check(&report, "session connection");
    assert_eq!(session["status"], "fail", "{session}");
    let needs: Vec<&str> = session["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for component in [
        "LISTEN",
        "single flight",
        "COPY",
        "CREATE INDEX CONCURRENTLY",
        "migrations",
    ] {
        assert!(
            needs.iter().any(|n| n.contains(component)),
            "{component} is named in {needs:?}"
        );
    }
    // Every other check ran through the pooler.
    assert_eq!(check(&report, "required objects")["status"], "ok");

    let direct = t.owner_url();
    let with = strata(&pooled, Some(&direct), &["doctor"]);
    let report: Value = serde_json::from_slice(&with.stdout).expect("JSON report");
    assert_eq!(
        check(&report, "session connection")["status"],
        "ok",
        "{report}"
    );
}

#[tokio::test]
async fn migrate_runs_on_the_direct_url_and_commands_on_the_pooler() {
    let t = TestDb::empty().await;
    let bouncer = PgBouncer::start(4);
    let pooled = bouncer.url(&t.name);
    let direct = t.owner_url();
    let up = Command::new(STRATA)
        .env_remove("DATABASE_URL")
        .args([
            "--database-url",
            &pooled,
            "--direct-url",
            &direct,
            "migrate",
            "up",
        ])
        .output()
        .expect("migrate");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(
        t.scalar("SELECT count(*) FROM seaql_migrations").await,
        migration::names().len().to_string()
    );
    let job = strata(&pooled, Some(&direct), &["jobs", "enqueue", "email", "{}"]);
    assert!(
        job.status.success(),
        "{}",
        String::from_utf8_lossy(&job.stderr)
    );
    let listed = strata(&pooled, Some(&direct), &["jobs", "list"]);
    let jobs: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn doctor_reports_the_replica_and_listings_are_answered_when_it_is_down() {
    let pair = tests::replica::ReplicaPair::start().await;
    let run = |args: &[&str]| {
        Command::new(STRATA)
            .env_remove("DIRECT_URL")
            .env("DATABASE_URL", pair.primary_url())
            .env("REPLICA_URLS", pair.replica_url())
            .args(args)
            .arg("--json")
            .output()
            .expect("run strata")
    };
    let out = run(&["doctor"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let replicas = check(&report, "replicas");
    assert_eq!(replicas["status"], "ok", "{replicas}");
    assert!(
        replicas["details"][0]
            .as_str()
            .is_some_and(|d| d.contains("replayed"))
    );
    let enqueued = run(&["jobs", "enqueue", "email", "{}"]);
    assert!(
        enqueued.status.success(),
        "{}",
        String::from_utf8_lossy(&enqueued.stderr)
    );

    pair.stop_replica();
    let out = run(&["doctor"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let replicas = check(&report, "replicas");
    assert_eq!(replicas["status"], "fail", "{replicas}");
    assert!(
        replicas["details"][0]
            .as_str()
            .is_some_and(|d| d.ends_with("down"))
    );
    let listed = run(&["jobs", "list"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let jobs: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(
        jobs.as_array().map(Vec::len),
        Some(1),
        "answered by the primary"
    );
}
