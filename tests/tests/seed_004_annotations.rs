//! Seed 004 (Aves): its query examples verbatim, every named check constraint, the
//! triggers, the cache functions, roles and permissions.

use tests::{TestDb, first_column, sqlstate};

const ADMIN: &str = "00000000-0000-0000-0000-00000000000a";
const MODERATOR: &str = "00000000-0000-0000-0000-00000000000b";
const USER: &str = "00000000-0000-0000-0000-00000000000c";
const IMAGE: &str = "00000000-0000-0000-0000-0000000000e1";

const GOOD_BOX: &str = r#"{"topLeft": {"x": 0.1, "y": 0.2}, "bottomRight": {"x": 0.5, "y": 0.6}, "width": 0.4, "height": 0.4}"#;

async fn fixture(t: &TestDb) {
    t.sql(&format!(
        "INSERT INTO users (id, email, password_hash, role) VALUES
           ('{ADMIN}', 'admin@example.com', 'x', 'admin'),
           ('{MODERATOR}', 'mod@example.com', 'x', 'moderator'),
           ('{USER}', 'user@example.com', 'x', 'user');
         INSERT INTO images (id, url, species) VALUES ('{IMAGE}', 'https://example.com/bird.jpg', 'Pica pica');"
    ))
    .await;
}

fn annotation(columns: &str, values: &str) -> String {
    format!(
        "INSERT INTO annotations (image_id, label, bounding_box{columns}) VALUES ('{IMAGE}', 'pico', '{GOOD_BOX}'{values})"
    )
}

#[tokio::test]
async fn named_checks_reject_bad_rows_and_accept_good_ones() {
    let t = TestDb::new().await;
    fixture(&t).await;
    let boxed = |b: &str| {
        format!(
            "INSERT INTO annotations (image_id, label, bounding_box) VALUES ('{IMAGE}', 'pico', '{b}')"
        )
    };
    let bad = [
        (annotation(", vision_generated, vision_provider", ", true, 'openai'"), "check_vision_confidence"),
        (annotation(", vision_confidence", ", 1.5"), "check_vision_confidence"),
        (annotation(", vision_generated, vision_confidence", ", true, 0.9"), "check_vision_provider"),
        (annotation(", review_status", ", 'approved'"), "check_review_metadata"),
        (annotation(", review_status, reviewed_by", &format!(", 'rejected', '{MODERATOR}'")), "check_review_metadata"),
        (boxed(r#"{"topLeft": {"x": 0.1, "y": 0.2}, "width": 0.4, "height": 0.4}"#), "check_bounding_box_structure"),
        (boxed(r#"{"topLeft": {"x": "a", "y": 0.2}, "bottomRight": {"x": 0.5, "y": 0.6}, "width": 0.4, "height": 0.4}"#), "check_bounding_box_structure"),
        (boxed(r#"[1, 2, 3]"#), "check_bounding_box_structure"),
        (boxed(r#"{"topLeft": {"x": 0.6, "y": 0.2}, "bottomRight": {"x": 0.5, "y": 0.6}, "width": -0.1, "height": 0.4}"#), "check_bounding_box_coords"),
        (boxed(r#"{"topLeft": {"x": 0.1, "y": 0.2}, "bottomRight": {"x": 1.5, "y": 0.6}, "width": 1.4, "height": 0.4}"#), "check_bounding_box_coords"),
        (boxed(r#"{"topLeft": {"x": 0.1, "y": 0.2}, "bottomRight": {"x": 0.5, "y": 0.6}, "width": 0.3, "height": 0.4}"#), "check_bounding_box_coords"),
        (
            "INSERT INTO users (email, password_hash, role) VALUES ('x@example.com', 'x', 'superuser')".to_string(),
            "check_user_role",
        ),
    ];
    for (sql, constraint) in bad {
        let err = t.try_sql(&sql).await.expect_err(&sql);
        assert_eq!(sqlstate(&err), "23514", "{sql}: {err}");
        assert!(
            err.to_string().contains(constraint),
            "{sql}: expected {constraint}, got {err}"
        );
    }
    assert_eq!(
        t.scalar("SELECT count(*) FROM annotations").await,
        "0",
        "nothing written"
    );

    let good = [
        annotation("", ""),
        annotation(
            ", vision_generated, vision_confidence, vision_provider",
            ", true, 0.87, 'google'",
        ),
        annotation(
            ", review_status, reviewed_by, reviewed_at",
            &format!(", 'approved', '{MODERATOR}', now()"),
        ),
        boxed(
            r#"{"topLeft": {"x": 0, "y": 0}, "bottomRight": {"x": 1, "y": 1}, "width": 1, "height": 1}"#,
        ),
    ];
    for sql in good {
        t.sql(&sql).await;
    }
    assert_eq!(t.scalar("SELECT count(*) FROM annotations").await, "4");
}

#[tokio::test]
async fn completed_at_is_set_only_on_terminal_transitions() {
    let t = TestDb::new().await;
    fixture(&t).await;
    let id = t
        .scalar(&format!("INSERT INTO ai_annotation_jobs (image_id, provider) VALUES ('{IMAGE}', 'anthropic') RETURNING id"))
        .await;
    let completed = format!("SELECT completed_at FROM ai_annotation_jobs WHERE id = '{id}'");
    let set = |status: &str| {
        format!("UPDATE ai_annotation_jobs SET status = '{status}' WHERE id = '{id}'")
    };
    assert_eq!(t.column(&completed).await, ["NULL"]);
    t.sql(&set("processing")).await;
    assert_eq!(t.column(&completed).await, ["NULL"]);
    assert_eq!(
        t.scalar(&format!(
            "SELECT (started_at IS NOT NULL)::text FROM ai_annotation_jobs WHERE id = '{id}'"
        ))
        .await,
        "true"
    );
    t.sql(&set("completed")).await;
    let first = t.column(&completed).await;
    assert_ne!(first, ["NULL"]);
    // completed → failed is terminal → terminal: the first completion time stays.
    t.sql(&set("failed")).await;
    assert_eq!(t.column(&completed).await, first);
    // Back to pending (a retry) clears it; failing again sets it anew.
    t.sql(&set("pending")).await;
    assert_eq!(t.column(&completed).await, ["NULL"]);
    t.sql(&set("failed")).await;
    assert_ne!(t.column(&completed).await, ["NULL"]);

    let stale = t
        .sql(
            "SELECT * FROM ai_annotation_jobs
WHERE status = 'processing'
  AND created_at < NOW() - INTERVAL '1 hour';",
        )
        .await;
    assert!(stale.is_empty());
}

#[tokio::test]
async fn query_examples_and_views() {
    let t = TestDb::new().await;
    fixture(&t).await;
    let job = t
        .scalar(&format!("INSERT INTO ai_annotation_jobs (image_id, provider, status, annotations_created) VALUES ('{IMAGE}', 'openai', 'completed', 2) RETURNING id"))
        .await;
    for confidence in ["0.95", "0.42", "0.71"] {
        t.sql(&annotation(
            ", vision_generated, vision_confidence, vision_provider, ai_job_id",
            &format!(", true, {confidence}, 'openai', '{job}'"),
        ))
        .await;
    }
    t.sql(&annotation(
        ", vision_generated, vision_confidence, vision_provider, review_status, reviewed_by, reviewed_at",
        &format!(", true, 0.5, 'openai', 'approved', '{MODERATOR}', now()"),
    ))
    .await;
    t.sql(&annotation(
        ", review_status, reviewed_by, reviewed_at",
        &format!(", 'rejected', '{MODERATOR}', now()"),
    ))
    .await;

    let pending = t
        .sql(
            "SELECT * FROM pending_ai_annotations
WHERE vision_confidence < 0.8
LIMIT 10;",
        )
        .await;
    let confidences: Vec<String> = pending.iter().map(|r| r[7].clone()).collect();
    assert_eq!(confidences, ["0.420", "0.710"], "lowest confidence first");

    t.sql(&format!(
        "INSERT INTO vision_api_cache (image_url, url_hash, provider, response_data, response_size_bytes, expires_at, access_count) VALUES
          ('u1', '{}', 'openai', '{{}}', 1000, now() + interval '1 day', 3),
          ('u2', '{}', 'openai', '{{}}', 1000, now() + interval '1 day', 1)",
        "a".repeat(64),
        "b".repeat(64)
    ))
    .await;
    let hit_rate = t
        .sql(
            "SELECT
  provider,
  cache_hit_potential as hit_rate_percent
FROM cache_stats;",
        )
        .await;
    // 4 hits over 2 entries: 4 of 6 lookups were served from the cache.
    assert_eq!(hit_rate, [["openai", "66.67"]]);

    let reviewers = t
        .sql(
            "SELECT * FROM reviewer_stats
ORDER BY total_reviews DESC
LIMIT 10;",
        )
        .await;
    assert_eq!(reviewers.len(), 1);
    assert_eq!(&reviewers[0][1..5], ["mod@example.com", "2", "1", "1"]);

    let jobs = t
        .sql("SELECT provider, status, job_count, annotations_created FROM ai_job_stats")
        .await;
    assert_eq!(jobs, [["openai", "completed", "1", "2"]]);
    let roles = t
        .sql("SELECT role, user_count FROM user_roles_summary ORDER BY role")
        .await;
    assert_eq!(roles, [["admin", "1"], ["moderator", "1"], ["user", "1"]]);
}

#[tokio::test]
async fn vision_cache_functions() {
    let t = TestDb::new().await;
    // Ten entries accessed at distinct times (entry 9 most recently), two expired.
    let mut sql = String::new();
    for i in 0..10 {
        sql.push_str(&format!(
            "INSERT INTO vision_api_cache (image_url, url_hash, provider, response_data, response_size_bytes, response_time_ms, created_at, expires_at, last_accessed_at)
             VALUES ('u{i}', '{:064x}', 'google', '{{}}', 2048, 100, now() - interval '2 days', now() + interval '{}', now() - interval '{} minutes');\n",
            i,
            if i < 2 { "-1 day" } else { "1 day" },
            100 - i
        ));
    }
    t.sql(&sql).await;
    let stats = t
        .sql("SELECT total_entries, active_entries, expired_entries FROM get_cache_stats()")
        .await;
    assert_eq!(stats, [["10", "8", "2"]]);
    assert_eq!(t.scalar("SELECT cleanup_expired_cache()").await, "2");
    assert_eq!(t.scalar("SELECT cleanup_expired_cache()").await, "0");
    assert_eq!(t.scalar("SELECT evict_lru_cache(5)").await, "3");
    assert_eq!(
        t.column("SELECT image_url FROM vision_api_cache ORDER BY image_url")
            .await,
        ["u5", "u6", "u7", "u8", "u9"],
        "the five most recently used remain"
    );
    assert_eq!(
        t.scalar("SELECT evict_lru_cache()").await,
        "0",
        "default keeps 10000"
    );
    let err = t
        .try_sql("SELECT evict_lru_cache(-1)")
        .await
        .expect_err("negative");
    assert_eq!(sqlstate(&err), "22023");

    t.sql("SELECT refresh_cache_metrics();").await;
    let metrics = t
        .sql("SELECT provider, entries_created FROM cache_performance_metrics")
        .await;
    assert_eq!(metrics, [["google", "5"]]);
    t.sql("REFRESH MATERIALIZED VIEW CONCURRENTLY cache_performance_metrics")
        .await;

    let dup = format!(
        "INSERT INTO vision_api_cache (image_url, url_hash, provider, response_data, response_size_bytes, expires_at) VALUES ('again', '{:064x}', 'google', '{{}}', 1, now() + interval '1 day')",
        9
    );
    let err = t
        .try_sql(&dup)
        .await
        .expect_err("one entry per url hash and provider");
    assert_eq!(sqlstate(&err), "23505");
    let other = dup.replace("'google'", "'openai'");
    t.sql(&other).await;
}

#[tokio::test]
async fn permissions_and_role_changes() {
    let t = TestDb::new().await;
    fixture(&t).await;
    let can = |user: &str, permission: &str| {
        format!("SELECT has_permission('{user}', '{permission}')::text")
    };
    for (user, permission, expected) in [
        (USER, "annotations.create", "true"),
        (USER, "annotations.review", "false"),
        (MODERATOR, "annotations.review", "true"),
        (MODERATOR, "annotations.create", "true"),
        (MODERATOR, "users.change_role", "false"),
        (ADMIN, "users.change_role", "true"),
        (ADMIN, "annotations.review", "true"),
        (ADMIN, "no.such.permission", "false"),
        // A role name means "has at least this role": user ⊂ moderator ⊂ admin.
        (MODERATOR, "moderator", "true"),
        (MODERATOR, "user", "true"),
        (MODERATOR, "admin", "false"),
        (USER, "user", "true"),
        (USER, "moderator", "false"),
        (ADMIN, "moderator", "true"),
        (ADMIN, "admin", "true"),
        ("00000000-0000-0000-0000-000000000999", "user", "false"),
        (
            "00000000-0000-0000-0000-000000000999",
            "images.read",
            "false",
        ),
    ] {
        assert_eq!(
            t.scalar(&can(user, permission)).await,
            expected,
            "{user} {permission}"
        );
    }
    // admin ⊇ moderator ⊇ user over the whole matrix.
    let subset = t
        .scalar(
            "SELECT bool_and(EXISTS (SELECT 1 FROM role_permissions() hi WHERE hi.role = h.role AND hi.permission = lo.permission))::text
             FROM role_permissions() lo
             JOIN (VALUES ('user', 'moderator'), ('moderator', 'admin')) AS h(low, role) ON h.low = lo.role",
        )
        .await;
    assert_eq!(subset, "true");

    let change = |target: &str, role: &str, by: &str| {
        format!("SELECT change_user_role('{target}', '{role}', '{by}')")
    };
    let cases = [
        (change(USER, "moderator", MODERATOR), "42501"),
        (change(USER, "owner", ADMIN), "22023"),
        (
            change("00000000-0000-0000-0000-000000000999", "user", ADMIN),
            "P0002",
        ),
        (change(ADMIN, "user", ADMIN), "P0001"),
    ];
    for (sql, state) in cases {
        let err = t.try_sql(&sql).await.expect_err(&sql);
        assert_eq!(sqlstate(&err), state, "{sql}: {err}");
    }
    assert_eq!(
        t.scalar("SELECT count(*) FROM audit_logs").await,
        "0",
        "refusals write nothing"
    );

    assert_eq!(t.scalar(&change(USER, "moderator", ADMIN)).await, "user");
    assert_eq!(
        t.scalar(&format!("SELECT role FROM users WHERE id = '{USER}'"))
            .await,
        "moderator"
    );
    let audit = t
        .sql("SELECT event_type, user_id, resource_id, details->>'old_role', details->>'new_role' FROM audit_logs")
        .await;
    assert_eq!(
        audit,
        [["user.role_changed", ADMIN, USER, "user", "moderator"]]
    );
    // With a second admin, the first may step down.
    t.sql(&change(MODERATOR, "admin", ADMIN)).await;
    assert_eq!(t.scalar(&change(ADMIN, "user", ADMIN)).await, "admin");
    let err = t
        .try_sql(&change(MODERATOR, "user", MODERATOR))
        .await
        .expect_err("last admin");
    assert_eq!(sqlstate(&err), "P0001");
}

#[tokio::test]
async fn migration_009_indexes_exist_and_are_distinct() {
    let t = TestDb::new().await;
    let names = t
        .column("SELECT indexname FROM pg_indexes WHERE indexname IN ('idx_exercise_cache_lookup', 'idx_exercise_cache_expires_at', 'idx_annotations_image_confidence', 'idx_annotations_ai_review_queue', 'idx_batch_jobs_status', 'idx_batch_jobs_type_status_created', 'idx_batch_job_errors_job_created') ORDER BY 1")
        .await;
    assert_eq!(names.len(), 7);
    // No two indexes anywhere share a table, a column list, a predicate and a method.
    let duplicates = t
        .sql(
            "SELECT indrelid::regclass, indkey::text, array_agg(indexrelid::regclass::text)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
             WHERE c.relnamespace = 'public'::regnamespace
             GROUP BY indrelid, indkey, coalesce(pg_get_expr(indpred, indrelid), ''),
                      (SELECT relam FROM pg_class WHERE oid = i.indexrelid)
             HAVING count(*) > 1",
        )
        .await;
    assert!(duplicates.is_empty(), "{duplicates:?}");
    let seed_names = first_column(
        &t.sql(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE ANY (ARRAY['idx_ai_jobs_%', 'idx_annotations_%', 'idx_cache_%']) ORDER BY 1",
        )
        .await,
    );
    for expected in [
        "idx_ai_jobs_image_id",
        "idx_ai_jobs_provider",
        "idx_ai_jobs_status",
        "idx_ai_jobs_status_created",
        "idx_annotations_ai_job_id",
        "idx_annotations_review_status",
        "idx_annotations_review_status_created",
        "idx_annotations_reviewed_by",
        "idx_annotations_vision_generated",
        "idx_annotations_vision_review",
        "idx_cache_active",
        "idx_cache_expires_at",
        "idx_cache_last_accessed",
        "idx_cache_lookup",
        "idx_cache_url_hash_provider",
    ] {
        assert!(
            seed_names.iter().any(|n| n == expected),
            "{expected} missing"
        );
    }
}

#[tokio::test]
async fn batch_and_exercise_tables() {
    let t = TestDb::new().await;
    fixture(&t).await;
    let job = t
        .scalar(
            "INSERT INTO batch_jobs (job_type, total_items) VALUES ('annotate', 3) RETURNING id",
        )
        .await;
    t.sql(&format!("INSERT INTO batch_job_errors (job_id, item_index, error_message) VALUES ('{job}', 2, 'timeout')")).await;
    let err = t
        .try_sql(&format!(
            "UPDATE batch_jobs SET processed_items = 3, failed_items = 1 WHERE id = '{job}'"
        ))
        .await
        .expect_err("more items than the batch has");
    assert_eq!(sqlstate(&err), "23514");
    t.sql(&format!(
        "UPDATE batch_jobs SET status = 'processing' WHERE id = '{job}'"
    ))
    .await;
    t.sql(&format!("UPDATE batch_jobs SET status = 'completed', processed_items = 2, failed_items = 1 WHERE id = '{job}'")).await;
    assert_eq!(
        t.sql(&format!("SELECT started_at IS NOT NULL, completed_at IS NOT NULL FROM batch_jobs WHERE id = '{job}'")).await,
        [["t", "t"]]
    );
    t.sql(&format!("DELETE FROM batch_jobs WHERE id = '{job}'"))
        .await;
    assert_eq!(t.scalar("SELECT count(*) FROM batch_job_errors").await, "0");

    let insert = format!(
        "INSERT INTO exercise_cache (user_id, exercise_type, difficulty_level, topic, exercise_data, expires_at) VALUES ('{USER}', 'quiz', 2, 'birds', '{{}}', now() + interval '1 day')"
    );
    t.sql(&insert).await;
    let err = t.try_sql(&insert).await.expect_err("one entry per key");
    assert_eq!(sqlstate(&err), "23505");
    let err = t
        .try_sql(&insert.replace(", 2, ", ", 9, "))
        .await
        .expect_err("difficulty out of range");
    assert_eq!(sqlstate(&err), "23514");
}
