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
        lines.contains(&"ai answer: \"6 words\" (hit: false)"),
        "{out}"
    );
    assert!(
        lines.contains(&"ai answer: \"6 words\" (hit: true)"),
        "{out}"
    );
    assert!(
        lines.contains(&"pdf: 26 bytes of text (hit: false)"),
        "{out}"
    );
    assert!(
        out.contains("completed after 1 attempt(s), result {\"embedded\":"),
        "{out}"
    );
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
            "1",
            "1"
        ]],
        "{out}"
    );
}
