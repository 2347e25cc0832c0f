//! The pages on real PostgreSQL, read through selectors: the overview's counts and
//! sparkline; the job list's filters, keyset pages and capped counts; a job's
//! redacted payload and audit trail; bulk actions in audited batches; purges shown
//! as a dry run first; review decisions; maintenance switches; role changes; a page
//! stopped by its statement timeout says so.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use service::accounts::Role;
use support::{Auth, Console};

const BOX: &str = r#"{"topLeft": {"x": 0.1, "y": 0.1}, "bottomRight": {"x": 0.4, "y": 0.5}, "width": 0.3, "height": 0.4}"#;

#[tokio::test]
async fn the_overview_counts_each_queue_and_draws_its_throughput() {
    let c = Console::new().await;
    c.t.sql(
        "INSERT INTO jobs (job_type, status, run_at) SELECT 'mail', 'pending', now() - interval '5 minutes' FROM generate_series(1, 3);
         INSERT INTO jobs (job_type, status, run_at) VALUES ('mail', 'pending', now() + interval '1 hour');
         INSERT INTO jobs (job_type, status, locked_by, locked_until, claim_token, attempts)
              VALUES ('mail', 'running', 'w1', now() + interval '1 minute', gen_random_uuid(), 1),
                     ('mail', 'running', 'w2', now() - interval '1 minute', gen_random_uuid(), 1);
         INSERT INTO jobs (job_type, status, completed_at, attempts, last_error)
              VALUES ('mail', 'failed', now() - interval '10 minutes', 3, 'smtp down');
         INSERT INTO jobs (job_type, status, completed_at)
              SELECT 'mail', 'completed', now() - (i * interval '7 minutes') FROM generate_series(0, 4) i;",
    )
    .await;
    let page = c.get("/", Auth::Bearer(&c.moderator_token)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.text("#queue-jobs .runnable"), "3");
    assert_eq!(page.text("#queue-jobs .running"), "2");
    assert_eq!(page.text("#queue-jobs .failed"), "1");
    assert_eq!(page.text("#queue-jobs .expired"), "1");
    assert_eq!(page.text("#queue-jobs .completed"), "5");
    assert_eq!(page.text("#queue-ai .runnable"), "0");
    assert_eq!(
        page.texts("#queue-jobs svg.sparkline title"),
        ["5 completed in the last hour, peak 1 a minute"]
    );
    assert_eq!(page.texts("#caches tbody tr").len(), 4, "the four caches");
    assert!(
        !page.texts("#tasks tbody tr").is_empty(),
        "the maintenance tasks"
    );
    assert!(page.text("#doctor-counts").contains("fail"));
    // The live part reloads on its own, every 5 s while the tab is shown.
    let live = c
        .get("/overview/live", Auth::Bearer(&c.moderator_token))
        .await;
    assert_eq!(live.attrs("#live", "hx-get"), ["/overview/live"]);
    assert_eq!(live.attrs("#live", "data-refresh").len(), 1);
    assert_eq!(live.text("#queue-jobs .runnable"), "3");
}

#[tokio::test]
async fn the_job_list_filters_pages_by_keyset_and_counts() {
    let c = Console::new().await;
    c.t.sql(
        "INSERT INTO jobs (job_type, status, priority, payload, dedup_key, created_at)
              SELECT 'mail', 'pending', i % 3, jsonb_build_object('user_id', i % 10, 'n', i),
                     'mail-' || i, now() - i * interval '1 minute'
              FROM generate_series(1, 110) i;
         INSERT INTO jobs (job_type, status, attempts, last_error, completed_at, payload)
              SELECT 'resize', 'failed', 3, CASE WHEN i % 2 = 0 THEN 'Upstream TIMEOUT' ELSE 'bad image' END,
                     now(), jsonb_build_object('user_id', 42)
              FROM generate_series(1, 10) i;
         INSERT INTO jobs (job_type, status, completed_at) SELECT 'resize', 'completed', now() FROM generate_series(1, 5);",
    )
    .await;
    let auth = Auth::Bearer(&c.admin_token);
    // By default: the unfinished jobs, 50 a page, the count over all that match.
    let first = c.get("/jobs", auth).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.texts("tr.job").len(), 50);
    assert_eq!(first.text("#matching"), "110");
    assert!(first.texts("td.status").iter().all(|s| s == "pending"));
    let next = first.attrs("#next-page", "href");
    assert_eq!(next.len(), 1);
    let second = c.get(&next[0], auth).await;
    let third = c.get(&second.attrs("#next-page", "href")[0], auth).await;
    assert_eq!(third.texts("tr.job").len(), 10);
    assert!(
        third.attrs("#next-page", "href").is_empty(),
        "the last page"
    );
    let mut seen: Vec<String> = [&first, &second, &third]
        .iter()
        .flat_map(|p| p.attrs("tr.job", "data-id"))
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 110, "three pages, every job once");
    // Each filter.
    let count = |uri: &'static str| {
        let c = &c;
        async move {
            let p = c.get(uri, auth).await;
            assert_eq!(p.status, StatusCode::OK, "{uri}: {}", p.body);
            p.text("#matching")
        }
    };
    assert_eq!(count("/jobs?status=any").await, "125");
    assert_eq!(count("/jobs?status=failed").await, "10");
    assert_eq!(count("/jobs?status=any&job_type=resize").await, "15");
    assert_eq!(count("/jobs?priority=0").await, "36");
    assert_eq!(count("/jobs?dedup_key=mail-7").await, "1");
    assert_eq!(count("/jobs?status=any&error=timeout").await, "5");
    assert_eq!(
        count("/jobs?status=any&payload=%7B%22user_id%22%3A42%7D").await,
        "10"
    );
    assert_eq!(count("/jobs?payload=%7B%22user_id%22%3A3%7D").await, "11");
    let since = (chrono::Utc::now() - chrono::Duration::minutes(30))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let recent = c
        .get(&format!("/jobs?status=pending&since={since}"), auth)
        .await;
    let n: i64 = recent.text("#matching").parse().expect("a count");
    assert!(
        (29..=31).contains(&n),
        "created in the last 30 minutes: {n}"
    );
    // The error text is matched literally: `%` and `_` are no wildcards.
    c.t.sql(
        "INSERT INTO jobs (job_type, status, last_error, completed_at)
         VALUES ('x', 'failed', 'disk 100% full', now()), ('x', 'failed', 'disk 1000 full', now()),
                ('x', 'failed', 'a_b', now()), ('x', 'failed', 'axb', now())",
    )
    .await;
    assert_eq!(count("/jobs?status=failed&error=100%25").await, "1");
    assert_eq!(count("/jobs?status=failed&error=a_b").await, "1");
    // Bad input: 400 naming the value, nothing run.
    let bad = c.get("/jobs?payload=%7Bnope", auth).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text("#error").contains("payload"), "{}", bad.body);
    let scalar = c.get("/jobs?payload=42", auth).await;
    assert_eq!(scalar.status, StatusCode::BAD_REQUEST);
    assert!(scalar.text("#error").contains("JSON object or array"));
    assert_eq!(
        c.get("/jobs?status=sleeping", auth).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        c.get("/jobs?queue=nope", auth).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bulk_actions_run_in_batches_each_audited() {
    let c = Console::new().await;
    c.t.sql(
        "INSERT INTO jobs (job_type, status, attempts, last_error, completed_at)
              SELECT 'x', 'failed', 3, 'boom', now() FROM generate_series(1, 1200);
         INSERT INTO jobs (job_type, status, attempts, completed_at)
              SELECT 'y', 'failed', 3, now() FROM generate_series(1, 10);",
    )
    .await;
    let session = c.sign_in(Role::Admin).await;
    let list = c
        .get("/jobs?status=failed&job_type=x", Auth::Session(&session))
        .await;
    assert_eq!(
        list.text("#bulk-retry"),
        "Retry failed (1,200)",
        "the count comes first"
    );
    let done = c
        .post(
            "/jobs/bulk",
            Auth::Session(&session),
            &[("action", "retry"), ("status", "failed"), ("job_type", "x")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(
        done.location().contains("done=bulk_retry&n=1200"),
        "{}",
        done.location()
    );
    assert_eq!(
        c.t.column(
            "SELECT job_type || ' ' || status || ' ' || count(*) FROM jobs
             GROUP BY job_type, status ORDER BY 1"
        )
        .await,
        ["x pending 1200", "y failed 10"],
        "every x retried, y untouched"
    );
    // Three batches (500, 500, 200), each with its audit row, by whom and which.
    assert_eq!(
        c.t.column("SELECT (details->>'rows') FROM audit_logs WHERE event_type = 'jobs.bulk_retry' ORDER BY created_at, (details->>'rows')::int DESC")
            .await,
        ["500", "500", "200"]
    );
    assert_eq!(
        c.t.scalar(&format!(
            "SELECT count(*) FROM audit_logs WHERE event_type = 'jobs.bulk_retry' AND user_id = '{}'
               AND jsonb_array_length(details->'ids') = (details->>'rows')::int
               AND details->'filter'->>'job_type' = 'x'",
            c.admin
        ))
        .await,
        "3"
    );
    // Cancel, then delete, by the same filter.
    let cancel = c
        .post(
            "/jobs/bulk",
            Auth::Session(&session),
            &[("action", "cancel"), ("job_type", "x")],
        )
        .await;
    assert!(
        cancel.location().contains("n=1200"),
        "{}",
        cancel.location()
    );
    let delete = c
        .post(
            "/jobs/bulk",
            Auth::Session(&session),
            &[
                ("action", "delete"),
                ("status", "cancelled"),
                ("job_type", "x"),
            ],
        )
        .await;
    assert!(
        delete.location().contains("n=1200"),
        "{}",
        delete.location()
    );
    assert_eq!(c.t.scalar("SELECT count(*) FROM jobs").await, "10");
    assert_eq!(c.audits("jobs.bulk_delete").await, 3);
    // An unknown action writes nothing.
    let bad = c
        .post(
            "/jobs/bulk",
            Auth::Session(&session),
            &[("action", "explode")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_job_page_redacts_secrets_and_shows_its_audit_trail() {
    let c = Console::new().await;
    c.t.sql(
        r#"INSERT INTO jobs (job_type, status, attempts, max_attempts, last_error, completed_at, payload)
           VALUES ('fetch', 'failed', 3, 3, 'HTTP 503', now(),
                   '{"url": "https://example.com/a.pdf", "api_key": "sk-live-123",
                     "headers": {"Authorization": "Bearer abc"}}')"#,
    )
    .await;
    let id = c.t.scalar("SELECT id::text FROM jobs").await;
    let session = c.sign_in(Role::Admin).await;
    let page = c
        .get(&format!("/jobs/jobs/{id}"), Auth::Session(&session))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let payload = page.text("#payload");
    assert!(payload.contains("https://example.com/a.pdf"), "{payload}");
    assert!(!page.body.contains("sk-live-123") && !page.body.contains("Bearer abc"));
    assert_eq!(payload.matches("[redacted]").count(), 2, "{payload}");
    assert_eq!(page.text("#job-status"), "failed");
    assert_eq!(page.text("#job-error"), "HTTP 503");
    assert_eq!(
        page.attrs("#retry", "id").len(),
        1,
        "a failed job offers retry"
    );
    let retried = c
        .post(
            &format!("/jobs/jobs/{id}/retry"),
            Auth::Session(&session),
            &[],
        )
        .await;
    assert_eq!(retried.location(), format!("/jobs/jobs/{id}?done=retried"));
    let after = c.get(&retried.location(), Auth::Session(&session)).await;
    assert_eq!(after.text("#job-status"), "pending");
    assert_eq!(after.text("#flash"), "Job sent back to pending.");
    assert_eq!(
        after.texts("#trail tbody tr td:nth-child(2)"),
        ["job.retried"]
    );
    // Retrying it again changes nothing and says why.
    let again = c
        .post(
            &format!("/jobs/jobs/{id}/retry"),
            Auth::Session(&session),
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.text("#error").contains("is not failed"));
    assert_eq!(c.audits("job.retried").await, 1);
    // Cancel the pending job, then delete it.
    c.post(
        &format!("/jobs/jobs/{id}/cancel"),
        Auth::Session(&session),
        &[],
    )
    .await;
    let deleted = c
        .post(
            &format!("/jobs/jobs/{id}/delete"),
            Auth::Session(&session),
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(c.t.scalar("SELECT count(*) FROM jobs").await, "0");
    assert_eq!(
        c.get(&format!("/jobs/jobs/{id}"), Auth::Session(&session))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.t.column("SELECT event_type FROM audit_logs WHERE resource = 'jobs' ORDER BY created_at")
            .await,
        ["job.retried", "job.cancelled", "job.deleted"]
    );
}

#[tokio::test]
async fn a_purge_shows_its_dry_run_count_before_it_removes_anything() {
    let c = Console::new().await;
    c.t.sql(
        "INSERT INTO pdf_cache (pdf_hash, result_data, compression_algorithm, original_size_bytes,
                                storage_size_bytes, compression_ratio)
         SELECT md5(i::text) || md5(i::text), '\\x00', 'none', 1, 1, 1.0 FROM generate_series(1, 7) i",
    )
    .await;
    let session = c.sign_in(Role::Admin).await;
    let page = c.get("/caches", Auth::Session(&session)).await;
    assert_eq!(page.text("#pdf .entries"), "7");
    let dry = c
        .post(
            "/caches/pdf/purge",
            Auth::Session(&session),
            &[("what", "all")],
        )
        .await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    assert_eq!(dry.text("#dry-run-rows"), "7");
    assert_eq!(
        c.t.scalar("SELECT count(*) FROM pdf_cache").await,
        "7",
        "a dry run removes nothing"
    );
    assert_eq!(c.audits("cache.purged").await, 0, "and audits nothing");
    let done = c
        .post(
            "/caches/pdf/purge",
            Auth::Session(&session),
            &[("what", "all"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.location(), "/caches?done=purged&n=7");
    assert_eq!(c.t.scalar("SELECT count(*) FROM pdf_cache").await, "0");
    assert_eq!(
        c.t.scalar(&format!(
            "SELECT count(*) FROM audit_logs WHERE event_type = 'cache.purged' AND user_id = '{}'",
            c.admin
        ))
        .await,
        "1"
    );
    // A purge the cache has no notion of is refused by name.
    let refused = c
        .post(
            "/caches/pdf/purge",
            Auth::Session(&session),
            &[("what", "expired")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
}

#[tokio::test]
async fn reviewers_decide_from_the_page_and_each_decision_is_audited() {
    let c = Console::new().await;
    let image = c
        .t
        .scalar("INSERT INTO images (url, species) VALUES ('https://img.example/1.jpg', 'Corvus corax') RETURNING id::text")
        .await;
    for (label, confidence) in [("raven", 0.9), ("crow", 0.4), ("rook", 0.6)] {
        c.t.sql(&format!(
            "INSERT INTO annotations (image_id, label, bounding_box, vision_generated, vision_confidence, vision_provider)
             VALUES ('{image}', '{label}', '{BOX}', true, {confidence}, 'openai')"
        ))
        .await;
    }
    let session = c.sign_in(Role::Moderator).await;
    let page = c.get("/reviews", Auth::Session(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.texts(".annotation .confidence"),
        ["0.40", "0.60", "0.90"],
        "lowest first"
    );
    assert_eq!(
        page.attrs(".annotation img", "src")[0],
        "https://img.example/1.jpg"
    );
    assert_eq!(page.attrs(".annotation svg rect", "width")[0], "0.3");
    let ids = page.attrs(".annotation", "data-id");
    let approve = c
        .post(
            &format!("/reviews/{}/approve", ids[0]),
            Auth::Session(&session),
            &[],
        )
        .await;
    assert_eq!(approve.status, StatusCode::SEE_OTHER, "{}", approve.body);
    c.post(
        &format!("/reviews/{}/reject", ids[1]),
        Auth::Session(&session),
        &[],
    )
    .await;
    let corrected = c
        .post(
            &format!("/reviews/{}/correct", ids[2]),
            Auth::Session(&session),
            &[
                ("label", "common raven"),
                ("x1", "0.2"),
                ("y1", "0.2"),
                ("x2", "0.6"),
                ("y2", "0.7"),
            ],
        )
        .await;
    assert_eq!(
        corrected.status,
        StatusCode::SEE_OTHER,
        "{}",
        corrected.body
    );
    assert_eq!(
        c.t.column(
            "SELECT label || ' ' || review_status::text FROM annotations ORDER BY vision_confidence"
        )
        .await,
        ["crow approved", "rook rejected", "common raven approved"]
    );
    assert_eq!(c.audits("annotation.reviewed").await, 3);
    let after = c.get("/reviews", Auth::Session(&session)).await;
    assert!(after.texts(".annotation").is_empty());
    assert_eq!(
        after.texts("#reviewers tbody tr td:first-child"),
        ["mod@example.org"]
    );
    // A second decision on a decided annotation is refused.
    let twice = c
        .post(
            &format!("/reviews/{}/approve", ids[0]),
            Auth::Session(&session),
            &[],
        )
        .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{}", twice.body);
    // A bad box writes nothing.
    let bad = c
        .post(
            &format!("/reviews/{}/correct", ids[0]),
            Auth::Session(&session),
            &[("x1", "2")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn maintenance_switches_and_runs_are_audited_and_roles_change() {
    let c = Console::new().await;
    let session = c.sign_in(Role::Admin).await;
    let page = c.get("/maintenance", Auth::Session(&session)).await;
    let task = page.attrs("tr.task", "id")[0]
        .trim_start_matches("task-")
        .to_owned();
    let off = c
        .post(
            &format!("/maintenance/{task}/enabled"),
            Auth::Session(&session),
            &[("enabled", "false")],
        )
        .await;
    assert_eq!(off.location(), "/maintenance?done=disabled");
    assert_eq!(
        c.t.scalar(&format!(
            "SELECT enabled::text FROM maintenance_tasks WHERE task = '{task}'"
        ))
        .await,
        "false"
    );
    assert_eq!(c.audits("maintenance.disabled").await, 1);
    let run = c
        .post(
            &format!("/maintenance/{task}/run"),
            Auth::Session(&session),
            &[],
        )
        .await;
    assert_eq!(run.location(), "/maintenance?done=started");
    assert_eq!(c.audits("maintenance.run_requested").await, 1);
    let mut runs = 0;
    for _ in 0..100 {
        runs = c
            .t
            .scalar(&format!("SELECT count(*) FROM maintenance_runs WHERE task = '{task}' AND finished_at IS NOT NULL"))
            .await
            .parse()
            .expect("count");
        if runs > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(runs, 1, "the run happened in the background");
    let unknown = c
        .post(
            "/maintenance/no_such_task/run",
            Auth::Session(&session),
            &[],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    // Roles: an admin makes the plain user a moderator (the seed audits it).
    let role = c
        .post(
            &format!("/users/{}/role", c.plain),
            Auth::Session(&session),
            &[("role", "moderator")],
        )
        .await;
    assert_eq!(role.location(), "/users?done=role");
    assert_eq!(
        c.get("/", Auth::Bearer(&c.plain_token)).await.status,
        StatusCode::OK
    );
    assert_eq!(c.audits("user.role_changed").await, 1);
}

#[tokio::test]
async fn a_page_stopped_by_its_statement_timeout_says_so() {
    let c = Console::new().await;
    c.t.sql(
        "INSERT INTO jobs (job_type, status, completed_at, last_error)
         SELECT 'x', 'completed', now(), repeat('y', 200) FROM generate_series(1, 200000)",
    )
    .await;
    let slow = Console::router(&c.t, |config| {
        config.statement_timeout = Duration::from_millis(5);
    });
    let page = Console::send_to(
        &slow,
        axum::http::Method::GET,
        "/jobs?status=any&error=no-such-text",
        Auth::Bearer(&c.admin_token),
        &[],
    )
    .await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert!(
        page.text("#error").contains("statement timeout"),
        "{}",
        page.body
    );
    // The same page under a timeout of seconds answers.
    let fine = c
        .get(
            "/jobs?status=any&error=no-such-text",
            Auth::Bearer(&c.admin_token),
        )
        .await;
    assert_eq!(fine.status, StatusCode::OK, "{}", fine.body);
    assert_eq!(fine.text("#matching"), "0");
}

#[tokio::test]
async fn a_bulk_sweep_sees_each_job_once_and_leaves_later_jobs_alone() {
    use service::queue::{self, BulkChange, JobFilter, JobStatus, Sweep};
    let c = Console::new().await;
    // Time-ordered ids, as the queue writes them.
    let v7 = |i: u32| format!("00000000-{i:04x}-7000-8000-000000000000");
    for i in 1..=3 {
        c.t.sql(&format!(
            "INSERT INTO jobs (id, job_type, status, attempts, completed_at)
             VALUES ('{}', 'x', 'failed', 3, now())",
            v7(i)
        ))
        .await;
    }
    let up_to = queue::newest_id(&c.t.db, queue::JOBS)
        .await
        .expect("newest");
    assert_eq!(up_to.map(|u| u.to_string()), Some(v7(3)));
    // A job that fails after the sweep began is not part of it.
    c.t.sql(&format!(
        "INSERT INTO jobs (id, job_type, status, attempts, completed_at) VALUES ('{}', 'x', 'failed', 3, now())",
        v7(4)
    ))
    .await;
    let failed = JobFilter {
        status: Some(JobStatus::Failed),
        ..JobFilter::default()
    };
    let mut sweep = Sweep { after: None, up_to };
    let first = queue::change_matching(&c.t.db, queue::JOBS, &failed, BulkChange::Retry, sweep, 2)
        .await
        .expect("batch");
    assert_eq!(first.len(), 2);
    // The retried jobs fail again at once: the sweep does not take them twice.
    c.t.sql("UPDATE jobs SET status = 'failed'").await;
    sweep.after = first.last().copied();
    let second = queue::change_matching(&c.t.db, queue::JOBS, &failed, BulkChange::Retry, sweep, 2)
        .await
        .expect("batch");
    assert_eq!(
        second.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
        [v7(3)]
    );
    sweep.after = second.last().copied();
    let third = queue::change_matching(&c.t.db, queue::JOBS, &failed, BulkChange::Retry, sweep, 2)
        .await
        .expect("batch");
    assert!(third.is_empty(), "the sweep ends: {third:?}");
    assert_eq!(
        c.t.scalar(&format!("SELECT status FROM jobs WHERE id = '{}'", v7(4)))
            .await,
        "failed",
        "the later job was left alone"
    );
    // A batch size outside 1..=1000 is refused by name.
    let refused = queue::change_matching(
        &c.t.db,
        queue::JOBS,
        &failed,
        BulkChange::Retry,
        Sweep::default(),
        0,
    )
    .await;
    assert!(matches!(
        refused,
        Err(queue::QueueError::InvalidFilter { field: "batch", .. })
    ));
}
