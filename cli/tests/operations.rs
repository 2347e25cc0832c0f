//! `strata jobs`, `worker`, `cache`, `db` and `completions` as processes against a
//! per-test database: JSON checked against the tables, bulk changes that wait for
//! `--yes`, dry runs that change nothing, and a worker stopped by SIGINT with no job
//! left running.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tests::TestDb;

mod support;

use support::{STRATA, fails, interrupt, json, spawn, strata};

#[tokio::test]
async fn jobs_list_show_stats_and_bulk_changes_wait_for_yes() {
    let t = TestDb::new().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let payload = format!("{{\"to\": \"user{i}@example.org\"}}");
        let job = json(
            &t,
            &["jobs", "enqueue", "email", &payload, "--priority", "5"],
        );
        ids.push(job["id"].as_str().expect("id").to_owned());
    }
    json(&t, &["jobs", "enqueue", "report", "--delay", "1h"]);
    let listed = json(&t, &["jobs", "list", "--type", "email"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    assert!(
        listed
            .as_array()
            .expect("jobs")
            .iter()
            .all(|j| j["status"] == "pending")
    );
    let shown = json(&t, &["jobs", "show", &ids[1]]);
    assert_eq!(shown["payload"]["to"], "user1@example.org");
    assert_eq!(shown["priority"], 5);
    let stats = json(&t, &["jobs", "stats"]);
    let pending_email = stats["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .find(|c| c["status"] == "pending" && c["job_type"] == "email")
        .expect("pending email");
    assert_eq!(pending_email["count"], 3);

    // Without --yes: the count, and nothing changes.
    let asked = json(&t, &["jobs", "cancel", "--type", "email"]);
    assert_eq!(
        (asked["matching"].as_i64(), asked["changed"].as_i64()),
        (Some(3), Some(0))
    );
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM jobs WHERE status = 'cancelled'")
            .await,
        "0"
    );
    let done = json(&t, &["jobs", "cancel", "--type", "email", "--yes"]);
    assert_eq!(done["changed"], 3);
    let cancelled = json(&t, &["jobs", "list", "--status", "cancelled"]);
    assert_eq!(cancelled.as_array().map(Vec::len), Some(3));
    // The delayed report job was not touched.
    assert_eq!(
        t.scalar("SELECT status FROM jobs WHERE job_type = 'report'")
            .await,
        "pending"
    );

    // Retry: one failed job by id; a job that is not failed is an error.
    t.sql(&format!(
        "UPDATE jobs SET status = 'failed', attempts = 3, last_error = 'smtp down' WHERE id = '{}'",
        ids[0]
    ))
    .await;
    json(&t, &["jobs", "retry", &ids[0]]);
    assert_eq!(
        t.scalar(&format!(
            "SELECT status || ' ' || attempts FROM jobs WHERE id = '{}'",
            ids[0]
        ))
        .await,
        "pending 0"
    );
    fails(&t, &["jobs", "retry", &ids[1]], "is not failed");
    fails(
        &t,
        &["jobs", "list", "--status", "processing"],
        "status \"processing\" is not one of jobs's: pending, running, completed, failed, cancelled",
    );
    fails(
        &t,
        &["jobs", "enqueue", "email", "{not json"],
        "payload is not JSON",
    );
    // The AI queue: its running word is `processing`, and it is empty.
    assert_eq!(
        json(
            &t,
            &["jobs", "list", "--queue", "ai", "--status", "processing"]
        ),
        Value::Array(vec![])
    );
}

#[tokio::test]
async fn sigint_stops_the_worker_with_no_job_left_running() {
    let t = TestDb::new().await;
    for _ in 0..30 {
        json(
            &t,
            &[
                "jobs",
                "enqueue",
                "maintenance",
                r#"{"task": "analyze_tables"}"#,
            ],
        );
    }
    let child = spawn(
        &t,
        &[
            "--json",
            "worker",
            "--concurrency",
            "2",
            "--maintain-every",
            "0s",
        ],
    );
    tests::queue::wait_for(
        &t,
        "SELECT (count(*) >= 2)::text FROM jobs WHERE status = 'completed'",
        "true",
        Duration::from_secs(120),
    )
    .await;
    let out = interrupt(child).await;
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM jobs WHERE status = 'running'")
            .await,
        "0"
    );
    let completed: i64 = t
        .scalar("SELECT count(*)::text FROM jobs WHERE status = 'completed'")
        .await
        .parse()
        .expect("count");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    // The runtime's report: each queue's worker, and every service's health.
    assert_eq!(report["queues"][0]["queue"], "jobs");
    assert_eq!(
        report["queues"][0]["report"]["completed"].as_i64(),
        Some(completed)
    );
    let services: Vec<&str> = report["health"]
        .as_array()
        .expect("health")
        .iter()
        .map(|h| h["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(services, ["queue:jobs", "rescuer"], "{report}");
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM jobs WHERE status IN ('completed', 'pending')")
            .await,
        "30"
    );
    // Each completed job ran its task, recorded as a maintenance run.
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM maintenance_runs WHERE task = 'analyze_tables'")
            .await,
        completed.to_string()
    );
}

#[tokio::test]
async fn cache_stats_purges_dry_runs_and_cleanup() {
    let t = TestDb::new().await;
    t.sql(
        "INSERT INTO vision_api_cache (image_url, url_hash, provider, response_data, response_size_bytes,
                                       expires_at, access_count, last_accessed_at, created_at)
         SELECT 'https://img.example/' || i,
                encode(sha256(convert_to('https://img.example/' || i, 'UTF8')), 'hex'), 'openai', '{}', 2,
                now() + CASE WHEN i <= 3 THEN interval '-1 day' ELSE interval '1 day' END, i,
                now() - i * interval '1 minute', now() - interval '2 days'
         FROM generate_series(1, 5) AS i",
    )
    .await;
    let stats = json(&t, &["cache", "stats"]);
    let vision = stats
        .as_array()
        .expect("caches")
        .iter()
        .find(|c| c["kind"] == "vision")
        .expect("vision");
    assert_eq!(
        (vision["entries"].as_i64(), vision["expired"].as_i64()),
        (Some(5), Some(3))
    );
    assert_eq!(vision["hits"], 15);

    let dry = json(
        &t,
        &[
            "cache",
            "purge",
            "--kind",
            "vision",
            "--expired",
            "--dry-run",
        ],
    );
    assert_eq!(dry[0]["rows"], 3);
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM vision_api_cache")
            .await,
        "5"
    );
    assert_eq!(t.scalar("SELECT count(*)::text FROM audit_logs").await, "0");

    // The least recently used entry (image 5, not expired) goes first.
    let evicted = json(&t, &["cache", "evict", "--max", "4"]);
    assert_eq!(evicted[0]["rows"], 1);
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM vision_api_cache WHERE image_url LIKE '%/5'")
            .await,
        "0"
    );
    let purged = json(&t, &["cache", "purge", "--kind", "vision", "--expired"]);
    assert_eq!(purged[0]["rows"], 3);
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM audit_logs WHERE event_type = 'cache.purged'")
            .await,
        "2"
    );
    let cleanup = json(&t, &["cache", "cleanup", "--dry-run"]);
    assert_eq!(cleanup.as_array().map(Vec::len), Some(4));
    fails(
        &t,
        &["cache", "evict", "--max", "1", "--kind", "pdf"],
        "the caches with one: vision",
    );
    let usage = strata(&t, &["cache", "purge", "--kind", "pdf"]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "--expired or --all is required"
    );
}

#[tokio::test]
async fn db_url_status_and_completions() {
    let t = TestDb::new().await;
    let url = json(&t, &["db", "url"]);
    assert_eq!(url["url"].as_str(), Some(t.url.as_str()));
    let status = json(&t, &["db", "status"]);
    assert!(status["running"].is_boolean(), "{status}");
    let out = Command::new(STRATA)
        .args(["completions", "bash"])
        .output()
        .expect("completions");
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("_strata()"), "a bash completion function");
    assert!(script.contains("reindex"), "it knows the subcommands");
}
