//! The example application (`examples/library_tour`) runs to completion on an empty
//! database: it migrates it, writes through the entities and every cache, enqueues a
//! job in the same transaction as its document, and a worker completes the job.

use tests::TestDb;

#[tokio::test]
async fn the_library_tour_runs_to_completion_on_an_empty_database() {
    let t = TestDb::empty().await;
    let mut out = Vec::new();
    let report = library_tour::tour(&t.url, &mut out)
        .await
        .unwrap_or_else(|e| panic!("the tour failed: {e}"));
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(report.completed, 1, "{out}");
    assert_eq!(report.failed, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("migrated: {} migrations", migration::names().len())
    );
    assert!(
        lines.contains(&"ai answer: \"6 words\" (computed)"),
        "{out}"
    );
    assert!(lines.contains(&"ai answer: \"6 words\" (hit)"), "{out}");
    assert!(lines.contains(&"pdf: 26 bytes of text (computed)"), "{out}");
    assert!(
        out.contains("completed after 1 attempt(s), result {\"embedded\":"),
        "{out}"
    );
    // The store with the local embedder, then accounts and a review decision.
    for line in [
        "store: 4 chunks added",
        "vector: Ravens remember the faces of people who threatened them.",
        "hybrid: Jays bury thousands of acorns in autumn and find most of them again. (matched by text: true)",
        "filtered: Swifts sleep on the wing and land only to nest.",
        "store again: 4 unchanged, 0 added",
        "mod@example.org may review: true",
        "pending: beak (0.62, openai)",
        "approved: beak",
    ] {
        assert!(lines.contains(&line), "{line:?} not in:\n{out}");
    }
    assert_eq!(
        t.sql(
            "SELECT (SELECT count(*) FROM seaql_migrations)::text,
                    (SELECT count(*) FROM courses)::text, (SELECT count(*) FROM lectures)::text,
                    (SELECT count(*) FROM ai_response_cache WHERE hit_count = 1)::text,
                    (SELECT count(*) FROM pdf_cache)::text, (SELECT count(*) FROM vision_api_cache)::text,
                    (SELECT count(*) FROM exercise_cache)::text,
                    (SELECT count(*) FROM documents)::text,
                    (SELECT count(*) FROM jobs WHERE status = 'completed')::text"
        )
        .await,
        [[
            migration::names().len().to_string().as_str(),
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
            "4",
            "1"
        ]],
        "{out}"
    );
}

/// The example's typed job through `service::testing`: what a transaction enqueued is
/// visible to it before the commit, a rollback leaves nothing, and one job runs
/// inline through the example's own worker.
#[tokio::test]
async fn the_examples_job_is_tested_with_the_test_kit() {
    use library_tour::{EmbedDocument, add_document, embed_worker};
    use sea_orm::TransactionTrait;
    use service::testing::{assert_enqueued, assert_none_enqueued, work_one};

    let t = TestDb::new().await;
    let txn = t.db.begin().await.expect("begin");
    let (document, job) = add_document(&txn, "Jays bury acorns.").await.expect("add");
    let enqueued = assert_enqueued(&txn, &EmbedDocument { document }).await;
    assert_eq!(enqueued.id, job);
    assert_eq!(
        enqueued.dedup_key.as_deref(),
        Some(document.to_string().as_str()),
        "the kind's insert options"
    );
    assert_eq!(enqueued.max_attempts, 3);
    txn.rollback().await.expect("rollback");
    assert_none_enqueued::<EmbedDocument, _>(&t.db).await;

    let txn = t.db.begin().await.expect("begin");
    let (document, job) = add_document(&txn, "Magpies know mirrors.")
        .await
        .expect("add");
    txn.commit().await.expect("commit");
    // The same document's job again, while the first is pending: the dedup key
    // returns the live job.
    let again = service::queue::insert(&t.db, &EmbedDocument { document })
        .await
        .expect("insert");
    assert_eq!(again, job);

    let worker = embed_worker(t.db.clone()).expect("worker");
    let worked = work_one(&worker, &t.db)
        .await
        .expect("work")
        .expect("a job ran");
    assert_eq!(worked.id, job);
    assert_eq!(worked.job_type, "embed");
    assert_eq!(
        worked.result,
        Ok(serde_json::json!({ "embedded": document }))
    );
    assert_eq!(
        t.sql(&format!(
            "SELECT status, result->>'embedded' FROM jobs WHERE id = '{job}'"
        ))
        .await,
        [["completed".to_owned(), document.to_string()]]
    );
    assert_eq!(work_one(&worker, &t.db).await.expect("work"), None);
    assert_none_enqueued::<EmbedDocument, _>(&t.db).await;

    // A payload that is not the kind's arguments fails the attempt, saying so.
    service::queue::enqueue(
        &t.db,
        &[service::queue::NewJob::new(
            "embed",
            serde_json::json!({ "doc": 1 }),
        )],
    )
    .await
    .expect("enqueue");
    let bad = work_one(&worker, &t.db)
        .await
        .expect("work")
        .expect("a job ran");
    let error = bad.result.expect_err("undecodable arguments");
    assert!(
        error.contains("not valid embed arguments") && error.contains("document"),
        "{error}"
    );
}
