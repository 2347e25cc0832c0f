//! Seed 001 (AI response cache): every statement of the deployment guide that can run
//! against a migrated database, verbatim, with assertions on what it returns; then the
//! triggers, functions and policies at work.

use tests::{TestDb, first_column, plan_text, sqlstate};

const LECTURE_ZERO: &str = "
INSERT INTO courses (id, title) VALUES ('00000000-0000-0000-0000-0000000000c0', 'Course');
INSERT INTO lectures (id, course_id, title, content)
VALUES ('00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-0000000000c0', 'Lecture', 'text');";

#[tokio::test]
async fn prerequisites_and_permissions() {
    let t = TestDb::new().await;
    let rows = t
        .sql(
            "SELECT table_name 
FROM information_schema.tables 
WHERE table_schema = 'public' 
AND table_name IN ('lectures', 'courses');",
        )
        .await;
    let mut names = first_column(&rows);
    names.sort();
    assert_eq!(names, ["courses", "lectures"]);

    let who = t.sql("SELECT current_user, session_user;").await;
    assert_eq!(who, [["postgres", "postgres"]]);
    let can = t
        .sql("SELECT has_table_privilege(current_user, 'public.lectures', 'SELECT');")
        .await;
    assert_eq!(can, [["t"]]);
    // auth.users exists (Supabase compatibility), as the seed assumes.
    assert_eq!(
        t.sql("SELECT to_regclass('auth.users') IS NOT NULL").await,
        [["t"]]
    );
}

#[tokio::test]
async fn step1_cache_table_indexes_and_policies() {
    let t = TestDb::new().await;
    let columns = t
        .sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'ai_response_cache' ORDER BY ordinal_position")
        .await;
    assert_eq!(
        first_column(&columns),
        [
            "id",
            "cache_key",
            "operation_type",
            "lecture_ids",
            "params",
            "content_hash",
            "response_data",
            "tokens_used",
            "content_size",
            "hit_count",
            "created_at",
            "last_accessed_at"
        ]
    );

    let rows = t
        .sql(
            "SELECT indexname, indexdef 
FROM pg_indexes 
WHERE tablename = 'ai_response_cache';",
        )
        .await;
    let mut names = first_column(&rows);
    names.sort();
    assert_eq!(
        names,
        [
            "ai_response_cache_pkey",
            "idx_ai_cache_content_hash",
            "idx_ai_cache_created_at",
            "idx_ai_cache_key",
            "idx_ai_cache_lecture_ids",
            "idx_ai_cache_operation_type"
        ]
    );
    let def = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .map(|r| r[1].clone())
            .unwrap_or_default()
    };
    assert!(
        def("idx_ai_cache_key").starts_with("CREATE UNIQUE INDEX"),
        "{}",
        def("idx_ai_cache_key")
    );
    assert!(def("idx_ai_cache_lecture_ids").contains("USING gin (lecture_ids)"));

    let policies = t
        .sql(
            "SELECT policyname, cmd, qual 
FROM pg_policies 
WHERE tablename = 'ai_response_cache';",
        )
        .await;
    let mut cmds: Vec<(String, String)> = policies
        .iter()
        .map(|r| (r[1].clone(), r[2].clone()))
        .collect();
    cmds.sort();
    assert_eq!(
        cmds,
        [
            ("ALL".into(), "true".into()),
            ("SELECT".into(), "true".into())
        ]
    );
}

#[tokio::test]
async fn step2_content_hash_table_fk_and_triggers() {
    let t = TestDb::new().await;
    let columns = t
        .sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'lecture_content_hashes' ORDER BY ordinal_position")
        .await;
    assert_eq!(
        first_column(&columns),
        ["lecture_id", "content_hash", "updated_at"]
    );
    let fks = t
        .sql(
            "SELECT conname, confrelid::regclass, conrelid::regclass
FROM pg_constraint
WHERE conname LIKE '%lecture_content_hashes%';",
        )
        .await;
    let fk = fks
        .iter()
        .find(|r| r[1] == "lectures")
        .unwrap_or_else(|| panic!("no FK to lectures in {fks:?}"));
    assert_eq!(fk[2], "lecture_content_hashes");
    let cascade = t
        .sql("SELECT confdeltype FROM pg_constraint WHERE conname = 'lecture_content_hashes_lecture_id_fkey'")
        .await;
    assert_eq!(cascade, [["c"]]);

    let triggers = t
        .sql(
            "SELECT trigger_name, event_manipulation, action_statement
FROM information_schema.triggers
WHERE event_object_table = 'lecture_content_hashes';",
        )
        .await;
    let mut names = first_column(&triggers);
    names.sort();
    names.dedup();
    assert_eq!(
        names,
        [
            "trigger_invalidate_cache_on_lecture_change",
            "trigger_update_lecture_hash_timestamp"
        ]
    );
}

#[tokio::test]
async fn step3_statistics_table_and_functions() {
    let t = TestDb::new().await;
    let columns = t
        .sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'ai_cache_stats' ORDER BY ordinal_position")
        .await;
    assert_eq!(columns.len(), 7, "{columns:?}");
    let functions = t
        .sql(
            "SELECT proname, prosrc 
FROM pg_proc 
WHERE proname IN ('increment_cache_stats', 'get_cache_stats');",
        )
        .await;
    let mut names = first_column(&functions);
    names.sort();
    names.dedup();
    assert_eq!(names, ["get_cache_stats", "increment_cache_stats"]);
    // The argument-less get_cache_stats() is the vision cache's (SPEC decision 3).
    let stats = t.sql("SELECT * FROM get_cache_stats();").await;
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0][0], "0", "total_entries of an empty vision cache");
    let unique = t
        .sql("SELECT contype FROM pg_constraint WHERE conname = 'idx_ai_cache_stats_date'")
        .await;
    assert_eq!(unique, [["u"]]);
}

#[tokio::test]
async fn post_deployment_cache_operations() {
    let t = TestDb::new().await;
    t.sql(
        "INSERT INTO public.ai_response_cache (
  cache_key, operation_type, lecture_ids, params, content_hash,
  response_data, tokens_used, content_size
) VALUES (
  'test_key_123', 'test_generation', ARRAY['00000000-0000-0000-0000-000000000000']::UUID[],
  '{\"questionsCount\": 5}', 'test_hash_456',
  '{\"questions\": [\"Test question?\"]}', 100, 1024
);",
    )
    .await;
    let read = "SELECT cache_key, operation_type, hit_count 
FROM public.ai_response_cache 
WHERE cache_key = 'test_key_123';";
    assert_eq!(
        t.sql(read).await,
        [["test_key_123", "test_generation", "0"]]
    );
    let before = t
        .sql("SELECT last_accessed_at FROM ai_response_cache WHERE cache_key = 'test_key_123'")
        .await;
    t.sql(
        "UPDATE public.ai_response_cache 
SET hit_count = hit_count + 1, last_accessed_at = NOW()
WHERE cache_key = 'test_key_123';",
    )
    .await;
    assert_eq!(
        t.sql(read).await,
        [["test_key_123", "test_generation", "1"]]
    );
    let after = t
        .sql("SELECT last_accessed_at FROM ai_response_cache WHERE cache_key = 'test_key_123'")
        .await;
    assert_ne!(before, after, "a hit dates the access");
    t.sql("DELETE FROM public.ai_response_cache WHERE cache_key = 'test_key_123';")
        .await;
    assert!(t.sql(read).await.is_empty());
}

#[tokio::test]
async fn post_deployment_content_hash_operations() {
    let t = TestDb::new().await;
    t.sql(LECTURE_ZERO).await;
    let upsert = "INSERT INTO public.lecture_content_hashes (lecture_id, content_hash)
VALUES ('00000000-0000-0000-0000-000000000000', 'sample_hash_789')
ON CONFLICT (lecture_id) DO UPDATE SET 
  content_hash = EXCLUDED.content_hash;";
    t.sql(upsert).await;
    t.sql(upsert).await; // the same hash again: an update that changes nothing
    let rows = t
        .sql(
            "SELECT lecture_id, content_hash, updated_at
FROM public.lecture_content_hashes
WHERE lecture_id = '00000000-0000-0000-0000-000000000000';",
        )
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][1], "sample_hash_789");
    t.sql(
        "DELETE FROM public.lecture_content_hashes 
WHERE lecture_id = '00000000-0000-0000-0000-000000000000';",
    )
    .await;
    assert_eq!(
        t.scalar("SELECT count(*) FROM lecture_content_hashes")
            .await,
        "0"
    );
}

#[tokio::test]
async fn post_deployment_statistics_operations() {
    let t = TestDb::new().await;
    t.sql("SELECT increment_cache_stats(CURRENT_DATE, true, 150);")
        .await;
    t.sql("SELECT increment_cache_stats(CURRENT_DATE, false, 0);")
        .await;
    let stats = t
        .sql("SELECT * FROM get_cache_stats(CURRENT_DATE, CURRENT_DATE);")
        .await;
    assert_eq!(stats, [["2", "1", "1", "150", "50.00"]]);
    let raw = t
        .sql("SELECT * FROM public.ai_cache_stats WHERE date = CURRENT_DATE;")
        .await;
    assert_eq!(raw.len(), 1);
    assert_eq!(&raw[0][2..6], ["2", "1", "1", "150"]);
    t.sql("DELETE FROM public.ai_cache_stats WHERE date = CURRENT_DATE;")
        .await;
    assert_eq!(
        t.sql("SELECT * FROM get_cache_stats(CURRENT_DATE, CURRENT_DATE);")
            .await,
        [["0", "0", "0", "0", "0"]]
    );
    // Negative tokens are refused with a typed SQLSTATE and change nothing.
    let err = t
        .try_sql("SELECT increment_cache_stats(CURRENT_DATE, true, -1)")
        .await
        .expect_err("negative tokens are refused");
    assert_eq!(sqlstate(&err), "22023");
    assert_eq!(t.scalar("SELECT count(*) FROM ai_cache_stats").await, "0");
}

#[tokio::test]
async fn performance_verification_uses_the_named_indexes() {
    let t = TestDb::new().await;
    let explain = |query: &str| format!("SET LOCAL enable_seqscan = off;\n{query}");
    let cases = [
        (
            "EXPLAIN ANALYZE 
SELECT * FROM public.ai_response_cache 
WHERE cache_key = 'some_key';",
            "idx_ai_cache_key",
        ),
        (
            "EXPLAIN ANALYZE 
SELECT * FROM public.ai_response_cache 
WHERE lecture_ids @> ARRAY['00000000-0000-0000-0000-000000000000']::UUID[];",
            "idx_ai_cache_lecture_ids",
        ),
        (
            "EXPLAIN ANALYZE 
SELECT * FROM public.ai_cache_stats 
WHERE date BETWEEN '2024-01-01' AND '2024-01-31';",
            "idx_ai_cache_stats_date",
        ),
    ];
    for (query, index) in cases {
        let plan = plan_text(&t.rolled_back(&explain(query)).await.expect(query));
        assert!(plan.contains(index), "{query}\nplan:\n{plan}");
    }
}

#[tokio::test]
async fn storage_usage_queries() {
    let t = TestDb::new().await;
    let tables = t
        .sql(
            "SELECT 
  schemaname,
  tablename,
  pg_size_pretty(pg_total_relation_size(schemaname||'.'||tablename)) as size
FROM pg_tables 
WHERE tablename IN ('ai_response_cache', 'lecture_content_hashes', 'ai_cache_stats')
ORDER BY pg_total_relation_size(schemaname||'.'||tablename) DESC;",
        )
        .await;
    assert_eq!(tables.len(), 3);
    let indexes = t
        .sql(
            "SELECT 
  indexname,
  pg_size_pretty(pg_relation_size(indexname::regclass)) as size
FROM pg_indexes 
WHERE tablename IN ('ai_response_cache', 'lecture_content_hashes', 'ai_cache_stats');",
        )
        .await;
    // 6 on the cache, the primary key of the hashes, primary key + date on the stats.
    assert_eq!(indexes.len(), 9, "{indexes:?}");
}

#[tokio::test]
async fn rollback_procedures_run_and_are_undone() {
    let t = TestDb::new().await;
    let full = "DROP TABLE IF EXISTS public.ai_cache_stats CASCADE;
DROP TABLE IF EXISTS public.lecture_content_hashes CASCADE;
DROP TABLE IF EXISTS public.ai_response_cache CASCADE;

DROP FUNCTION IF EXISTS increment_cache_stats(DATE, BOOLEAN, INTEGER);
DROP FUNCTION IF EXISTS get_cache_stats(DATE, DATE);
DROP FUNCTION IF EXISTS update_cache_access();
DROP FUNCTION IF EXISTS update_lecture_hash_timestamp();
DROP FUNCTION IF EXISTS invalidate_cache_on_lecture_change();
DROP FUNCTION IF EXISTS update_cache_stats_timestamp();";
    let stats_only = "DROP TABLE IF EXISTS public.ai_cache_stats CASCADE;
DROP FUNCTION IF EXISTS increment_cache_stats(DATE, BOOLEAN, INTEGER);
DROP FUNCTION IF EXISTS get_cache_stats(DATE, DATE);";
    let hashes_only = "DROP TABLE IF EXISTS public.lecture_content_hashes CASCADE;
DROP FUNCTION IF EXISTS update_lecture_hash_timestamp();
DROP FUNCTION IF EXISTS invalidate_cache_on_lecture_change();";
    let probe = "SELECT (to_regclass('ai_response_cache') IS NULL)::text, \
                 (to_regclass('lecture_content_hashes') IS NULL)::text, \
                 (to_regclass('ai_cache_stats') IS NULL)::text, \
                 (to_regprocedure('invalidate_cache_on_lecture_change()') IS NULL)::text";
    let full_probe = t
        .rolled_back(&format!("{full}\n{probe}"))
        .await
        .expect("full rollback");
    assert_eq!(full_probe, [["true", "true", "true", "true"]]);
    // The full rollback leaves no function of seed 001's migrations behind — no
    // overload of a name the seed drops by its one signature. (`get_cache_stats()`,
    // without arguments, is seed 004's vision-cache summary, not seed 001's.)
    let left = t
        .rolled_back(&format!(
            "{full}\nSELECT coalesce(string_agg(oid::regprocedure::text, ', '), 'none') FROM pg_proc \
             WHERE proname IN ('increment_cache_stats', 'get_cache_stats', 'update_cache_access', \
             'update_lecture_hash_timestamp', 'invalidate_cache_on_lecture_change', \
             'update_cache_stats_timestamp') AND oid::regprocedure::text <> 'get_cache_stats()'"
        ))
        .await
        .expect("full rollback");
    assert_eq!(left, [["none"]]);
    let stats_probe = t
        .rolled_back(&format!("{stats_only}\n{probe}"))
        .await
        .expect("partial rollback");
    assert_eq!(stats_probe, [["false", "false", "true", "false"]]);
    let hashes_probe = t
        .rolled_back(&format!("{hashes_only}\n{probe}"))
        .await
        .expect("partial rollback");
    assert_eq!(hashes_probe, [["false", "true", "false", "true"]]);
    // Rolled back: everything is still there.
    assert_eq!(t.sql(probe).await, [["false", "false", "false", "false"]]);
}

#[tokio::test]
async fn monitoring_and_maintenance_queries() {
    let t = TestDb::new().await;
    t.sql(
        "INSERT INTO ai_cache_stats (date, total_requests, cache_hits, cache_misses, tokens_saved)
         SELECT CURRENT_DATE - d, 4, 3, 1, 30 * d FROM generate_series(0, 9) d;
         INSERT INTO ai_cache_stats (date, total_requests, cache_hits, cache_misses, tokens_saved)
         VALUES (CURRENT_DATE - 120, 1, 0, 1, 0);
         INSERT INTO ai_response_cache (cache_key, operation_type, content_hash, response_data, content_size, hit_count, created_at)
         VALUES ('k1', 'quiz', 'h', '{}', 100, 7, now()),
                ('k2', 'summary', 'h', '{}', 300, 2, now() - interval '40 days');",
    )
    .await;
    let daily = t
        .sql(
            "SELECT 
  date,
  total_requests,
  cache_hits,
  cache_misses,
  ROUND((cache_hits::NUMERIC / total_requests::NUMERIC) * 100, 2) as hit_rate,
  tokens_saved
FROM public.ai_cache_stats 
ORDER BY date DESC 
LIMIT 7;",
        )
        .await;
    assert_eq!(daily.len(), 7);
    assert_eq!(daily[0][4], "75.00");
    let growth = t
        .sql(
            "SELECT 
  COUNT(*) as total_entries,
  pg_size_pretty(pg_total_relation_size('public.ai_response_cache')) as table_size,
  AVG(content_size) as avg_entry_size,
  MAX(created_at) as newest_entry,
  MIN(created_at) as oldest_entry
FROM public.ai_response_cache;",
        )
        .await;
    assert_eq!(growth[0][0], "2");
    assert!(growth[0][2].starts_with("200"), "{growth:?}");
    let top = t
        .sql(
            "SELECT 
  operation_type,
  hit_count,
  content_size,
  created_at,
  last_accessed_at
FROM public.ai_response_cache 
ORDER BY hit_count DESC 
LIMIT 10;",
        )
        .await;
    assert_eq!(first_column(&top), ["quiz", "summary"]);

    t.sql(
        "DELETE FROM public.ai_response_cache 
WHERE created_at < NOW() - INTERVAL '30 days';",
    )
    .await;
    assert_eq!(
        t.column("SELECT cache_key FROM ai_response_cache").await,
        ["k1"]
    );
    t.sql(
        "DELETE FROM public.ai_cache_stats 
WHERE date < CURRENT_DATE - INTERVAL '90 days';",
    )
    .await;
    assert_eq!(t.scalar("SELECT count(*) FROM ai_cache_stats").await, "10");
    t.sql(
        "ANALYZE public.ai_response_cache;
ANALYZE public.lecture_content_hashes;
ANALYZE public.ai_cache_stats;",
    )
    .await;
}

#[tokio::test]
async fn troubleshooting_queries() {
    let t = TestDb::new().await;
    t.rolled_back(
        "GRANT CREATE ON SCHEMA public TO current_user;
GRANT USAGE ON SCHEMA public TO current_user;",
    )
    .await
    .expect("grants");
    assert_eq!(
        t.sql("SELECT COUNT(*) FROM public.lectures;").await,
        [["0"]]
    );
    t.sql(LECTURE_ZERO).await;
    // The lecture's insert made its content hash (migration m20250601_000003).
    assert_eq!(
        t.scalar("SELECT count(*) FROM lecture_content_hashes WHERE lecture_id = '00000000-0000-0000-0000-000000000000'")
            .await,
        "1"
    );
    let orphans = t
        .sql(
            "SELECT lecture_id 
FROM public.lecture_content_hashes 
WHERE lecture_id NOT IN (SELECT id FROM public.lectures);",
        )
        .await;
    assert!(orphans.is_empty());
    t.sql("SELECT * FROM pg_stat_progress_create_index;").await;
    let rls = t
        .sql(
            "SELECT schemaname, tablename, rowsecurity 
FROM pg_tables 
WHERE tablename = 'ai_response_cache';",
        )
        .await;
    assert_eq!(rls, [["public", "ai_response_cache", "t"]]);
    assert_eq!(
        t.sql("SELECT * FROM pg_policies WHERE tablename = 'ai_response_cache';")
            .await
            .len(),
        2
    );
}

/// Two lectures, a response over each, one over both, and one over none.
const INVALIDATION_FIXTURE: &str = "
INSERT INTO courses (id, title) VALUES ('00000000-0000-0000-0000-0000000000c0', 'C');
INSERT INTO lectures (id, course_id, title) VALUES
  ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000c0', 'A'),
  ('00000000-0000-0000-0000-0000000000b2', '00000000-0000-0000-0000-0000000000c0', 'B');
INSERT INTO lecture_content_hashes (lecture_id, content_hash) VALUES
  ('00000000-0000-0000-0000-0000000000a1', 'ha'),
  ('00000000-0000-0000-0000-0000000000b2', 'hb')
ON CONFLICT (lecture_id) DO UPDATE SET content_hash = EXCLUDED.content_hash;
INSERT INTO ai_response_cache (cache_key, operation_type, lecture_ids, content_hash, response_data) VALUES
  ('only_a', 'quiz', ARRAY['00000000-0000-0000-0000-0000000000a1']::uuid[], 'x', '{}'),
  ('only_b', 'quiz', ARRAY['00000000-0000-0000-0000-0000000000b2']::uuid[], 'x', '{}'),
  ('both', 'quiz', ARRAY['00000000-0000-0000-0000-0000000000b2', '00000000-0000-0000-0000-0000000000a1']::uuid[], 'x', '{}'),
  ('none', 'quiz', '{}', 'x', '{}');";

#[tokio::test]
async fn changing_a_lecture_hash_invalidates_only_its_responses() {
    let t = TestDb::new().await;
    t.sql(INVALIDATION_FIXTURE).await;
    let keys = "SELECT cache_key FROM ai_response_cache ORDER BY cache_key";
    // The same hash again: nothing changes.
    t.sql("UPDATE lecture_content_hashes SET content_hash = 'ha' WHERE lecture_id = '00000000-0000-0000-0000-0000000000a1'")
        .await;
    assert_eq!(t.column(keys).await, ["both", "none", "only_a", "only_b"]);
    let stamp = "SELECT updated_at FROM lecture_content_hashes WHERE lecture_id = '00000000-0000-0000-0000-0000000000a1'";
    let before = t.column(stamp).await;
    // A new hash for A (through the seed's upsert form): A's responses go.
    t.sql(
        "INSERT INTO lecture_content_hashes (lecture_id, content_hash)
           VALUES ('00000000-0000-0000-0000-0000000000a1', 'ha2')
           ON CONFLICT (lecture_id) DO UPDATE SET content_hash = EXCLUDED.content_hash",
    )
    .await;
    assert_eq!(t.column(keys).await, ["none", "only_b"]);
    assert_ne!(t.column(stamp).await, before, "the timestamp trigger ran");
    // Deleting lecture B cascades to its hash, which invalidates B's responses.
    t.sql("DELETE FROM lectures WHERE id = '00000000-0000-0000-0000-0000000000b2'")
        .await;
    assert_eq!(t.column(keys).await, ["none"]);
    assert_eq!(
        t.scalar("SELECT count(*) FROM lecture_content_hashes")
            .await,
        "1"
    );
}

#[tokio::test]
async fn rls_lets_authenticated_read_but_not_write_and_service_role_do_both() {
    let t = TestDb::new().await;
    t.sql(INVALIDATION_FIXTURE).await;
    let as_role = |role: &str, sql: &str| format!("SET LOCAL ROLE {role};\n{sql}");
    let count = "SELECT count(*) FROM ai_response_cache";

    assert_eq!(
        t.rolled_back(&as_role("authenticated", count))
            .await
            .expect("read"),
        [["4"]]
    );
    let insert = "INSERT INTO ai_response_cache (cache_key, operation_type, content_hash, response_data) VALUES ('new', 'quiz', 'x', '{}')";
    let err = t
        .rolled_back(&as_role("authenticated", insert))
        .await
        .expect_err("authenticated may not insert");
    assert_eq!(sqlstate(&err), "42501", "{err}");
    let updated = t
        .rolled_back(&as_role(
            "authenticated",
            "WITH u AS (UPDATE ai_response_cache SET hit_count = 9 RETURNING 1) SELECT count(*) FROM u",
        ))
        .await
        .expect("update runs");
    assert_eq!(updated, [["0"]], "no row is visible for update");
    let deleted = t
        .rolled_back(&as_role(
            "authenticated",
            "WITH d AS (DELETE FROM ai_response_cache RETURNING 1) SELECT count(*) FROM d",
        ))
        .await
        .expect("delete runs");
    assert_eq!(deleted, [["0"]]);
    // anon has no policy: it sees nothing (and has no grant at all).
    assert!(t.rolled_back(&as_role("anon", count)).await.is_err());

    let service = t
        .rolled_back(&as_role(
            "service_role",
            &format!("{insert};\nUPDATE ai_response_cache SET hit_count = 9;\n{count}"),
        ))
        .await
        .expect("service_role writes");
    assert_eq!(service, [["5"]]);
    assert_eq!(t.scalar(count).await, "4", "all of that was rolled back");
}
