//! The `strata` command run as a process against a per-test database: exit codes,
//! `--json` output parsed and checked, errors as one line on stderr, and SIGINT
//! stopping `maintain --every` cleanly with no run left running.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::Value;
use tests::TestDb;

mod support;

use support::{fails, interrupt, json, spawn, strata};

#[tokio::test]
async fn users_review_and_audit_commands() {
    let t = TestDb::new().await;
    let admin = json(
        &t,
        &["users", "create", "Admin@Example.org", "--role", "admin"],
    );
    assert_eq!(
        (admin["email"].as_str(), admin["role"].as_str()),
        (Some("admin@example.org"), Some("admin"))
    );
    fails(&t, &["users", "create", "admin@example.org"], "exists");
    fails(&t, &["users", "create", "not-an-email"], "invalid email");
    json(&t, &["users", "create", "mod@example.org"]);
    let change = json(
        &t,
        &[
            "users",
            "role",
            "mod@example.org",
            "moderator",
            "--by",
            "admin@example.org",
        ],
    );
    assert_eq!(
        (change["old"].as_str(), change["new"].as_str()),
        (Some("user"), Some("moderator"))
    );
    fails(
        &t,
        &[
            "users",
            "role",
            "admin@example.org",
            "user",
            "--by",
            "admin@example.org",
        ],
        "last admin",
    );
    let users = json(&t, &["users", "list"]);
    assert_eq!(users.as_array().map(Vec::len), Some(2));
    assert!(users[0].get("password_hash").is_none(), "no hashes listed");
    let table = strata(&t, &["users", "list", "--role", "moderator"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("mod@example.org"));

    let image = t
        .scalar("INSERT INTO images (url) VALUES ('https://img.example/1.jpg') RETURNING id::text")
        .await;
    let annotation = t
        .scalar(&format!(
            "INSERT INTO annotations (image_id, label, bounding_box, vision_generated,
                                      vision_confidence, vision_provider)
             VALUES ('{image}', 'raven',
                     '{{\"topLeft\": {{\"x\": 0.1, \"y\": 0.1}}, \"bottomRight\": {{\"x\": 0.5, \"y\": 0.5}},
                        \"width\": 0.4, \"height\": 0.4}}', true, 0.7, 'openai')
             RETURNING id::text"
        ))
        .await;
    let pending = json(&t, &["review", "list"]);
    assert_eq!(pending[0]["id"].as_str(), Some(annotation.as_str()));
    let approved = json(
        &t,
        &["review", "approve", &annotation, "--by", "mod@example.org"],
    );
    assert_eq!(approved["review_status"], "Approved");
    fails(
        &t,
        &["review", "reject", &annotation, "--by", "admin@example.org"],
        "already approved",
    );
    let stats = json(&t, &["review", "stats"]);
    assert_eq!(stats["reviewers"][0]["approved_count"], 1);

    let events = json(&t, &["audit", "list", "--type", "user.role_changed"]);
    assert_eq!(events.as_array().map(Vec::len), Some(1));
    let by_actor = json(&t, &["audit", "list", "--actor", "mod@example.org"]);
    assert_eq!(by_actor[0]["event_type"], "annotation.reviewed");
}

#[tokio::test]
async fn maintain_runs_what_is_due_once_and_lists_the_schedule() {
    let t = TestDb::new().await;
    let runs = json(&t, &["maintain"]);
    let runs = runs.as_array().expect("runs");
    assert_eq!(runs.len(), 13);
    assert!(runs.iter().all(|r| r["status"] == "success"), "{runs:?}");
    assert_eq!(json(&t, &["maintain"]), Value::Array(vec![]), "nothing due");
    let schedule = json(&t, &["maintain", "list"]);
    assert_eq!(schedule.as_array().map(Vec::len), Some(13));
    let now = json(&t, &["maintain", "run", "analyze_tables"]);
    assert_eq!(now[0]["status"], "success");
    fails(
        &t,
        &["maintain", "run", "vacuum_everything"],
        "unknown maintenance task",
    );
    // A usage error is clap's: exit status 2, naming the bad value.
    let usage = strata(&t, &["maintain", "--every", "soon"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("soon"));
}

#[tokio::test]
async fn sigint_stops_maintain_every_cleanly() {
    let t = TestDb::new().await;
    let child = spawn(&t, &["maintain", "--every", "1s"]);
    // Wait until its first pass has run everything that was due.
    tests::queue::wait_for(
        &t,
        "SELECT count(*)::text FROM maintenance_runs WHERE status = 'success'",
        "13",
        Duration::from_secs(60),
    )
    .await;
    interrupt(child).await;
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM maintenance_runs WHERE status = 'running'")
            .await,
        "0"
    );
}

#[tokio::test]
async fn doctor_fails_naming_a_dropped_required_index() {
    let t = TestDb::new().await;
    let healthy = json(&t, &["doctor"]);
    // The seeds' duplicate indexes make a fresh database a warning, never a failure.
    assert_eq!(healthy["status"], "warn", "{healthy}");
    let checks = healthy["checks"].as_array().expect("checks");
    assert!(checks.len() >= 20);
    assert!(checks.iter().all(|c| c["status"] != "fail"), "{healthy}");

    t.db.execute_unprepared("DROP INDEX idx_annotations_vision_review")
        .await
        .expect("drop");
    let out = strata(&t, &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["status"], "fail");
    let required = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "required objects")
        .expect("required objects check");
    assert_eq!(required["status"], "fail");
    assert_eq!(
        required["details"],
        serde_json::json!(["index idx_annotations_vision_review"])
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l == "strata: doctor: 1 failing: required objects"),
        "{err}"
    );
    // The table names the index too.
    let table = strata(&t, &["doctor"]);
    assert_eq!(table.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&table.stdout).contains("idx_annotations_vision_review"));
}
