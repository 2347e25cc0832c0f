//! Seed 000 (Layer 0 PDF cache): the migration guide's SQL verbatim, with assertions.

use tests::{TestDb, first_column, sqlstate};

fn hash(n: u32) -> String {
    format!("{n:064x}")
}

/// Three cache entries: an old rarely used one, an old popular one, a fresh one.
async fn fixture(t: &TestDb) {
    t.sql(&format!(
        "INSERT INTO pdf_cache (pdf_hash, result_data, original_size_bytes, storage_size_bytes, compression_ratio, last_accessed, access_count) VALUES
          ('{}', '\\x00', 4000000, 2097152, 1.9, now() - interval '100 days', 1),
          ('{}', '\\x00', 3000000, 1048576, 2.9, now() - interval '40 days', 5),
          ('{}', '\\x00', 1000000, 1048576, 1.0, now(), 0);
         INSERT INTO layer0_cost_tracking (pdf_hash, cache_hit, cost_usd, cost_saved_usd, processing_time_ms) VALUES
          ('{}', false, 0.05, 0, 900), ('{}', true, 0, 0.05, 3), ('{}', true, 0, 0.05, 2);",
        hash(1),
        hash(2),
        hash(3),
        hash(1),
        hash(1),
        hash(1)
    ))
    .await;
}

#[tokio::test]
async fn verification_tables_view_and_eight_indexes() {
    let t = TestDb::new().await;
    let tables = t
        .sql(
            "SELECT table_name 
FROM information_schema.tables 
WHERE table_name IN ('pdf_cache', 'layer0_cost_tracking');",
        )
        .await;
    assert_eq!(tables.len(), 2);
    let stats = t.sql("SELECT * FROM layer0_stats;").await;
    assert_eq!(stats.len(), 1, "a single row");
    let indexes = t
        .sql(
            "SELECT indexname 
FROM pg_indexes 
WHERE tablename IN ('pdf_cache', 'layer0_cost_tracking');",
        )
        .await;
    assert_eq!(
        indexes.len(),
        8,
        "Expected result: 8 indexes; got {indexes:?}"
    );
    let unique = t
        .sql("SELECT indexdef FROM pg_indexes WHERE tablename = 'layer0_stats'")
        .await;
    assert!(
        unique[0][0].starts_with("CREATE UNIQUE INDEX"),
        "{unique:?}"
    );
}

#[tokio::test]
async fn stats_refresh_reflects_cache_and_costs() {
    let t = TestDb::new().await;
    fixture(&t).await;
    let monitor = "SELECT 
    total_cache_entries,
    total_size_mb,
    avg_compression_ratio
FROM layer0_stats;";
    assert_eq!(
        t.sql(monitor).await,
        [["0", "0.000", "NULL"]],
        "not refreshed yet"
    );
    t.sql("SELECT refresh_layer0_stats();").await;
    assert_eq!(t.sql(monitor).await, [["3", "4.000", "1.933"]]);
    let costs = t
        .sql("SELECT cache_hits, cache_misses, hit_rate, total_cost_usd, total_saved_usd FROM layer0_stats")
        .await;
    assert_eq!(costs, [["2", "1", "66.67", "0.050000", "0.100000"]]);
    t.sql("REFRESH MATERIALIZED VIEW CONCURRENTLY layer0_stats;")
        .await;
    let updated = t.sql("SELECT last_updated FROM layer0_stats;").await;
    assert_eq!(updated.len(), 1);
}

#[tokio::test]
async fn cleanup_statements_remove_exactly_the_old_entries() {
    let t = TestDb::new().await;
    fixture(&t).await;
    let keys = "SELECT pdf_hash FROM pdf_cache ORDER BY pdf_hash";
    t.sql(
        "DELETE FROM pdf_cache 
WHERE last_accessed < NOW() - INTERVAL '30 days'
AND access_count < 2;",
    )
    .await;
    // Entry 1 (old, used once) goes; entry 2 is old but popular; entry 3 is fresh.
    assert_eq!(t.column(keys).await, [hash(2), hash(3)]);
    t.sql(
        "DELETE FROM pdf_cache 
WHERE last_accessed < NOW() - INTERVAL '90 days';

-- Refresh stats after cleanup
SELECT refresh_layer0_stats();",
    )
    .await;
    assert_eq!(t.column(keys).await, [hash(2), hash(3)]);
    assert_eq!(
        t.scalar("SELECT total_cache_entries FROM layer0_stats")
            .await,
        "2"
    );
}

#[tokio::test]
async fn largest_entries_query() {
    let t = TestDb::new().await;
    fixture(&t).await;
    let rows = t
        .sql(
            "SELECT 
    pdf_hash,
    storage_size_bytes / 1024 / 1024 as size_mb,
    last_accessed,
    access_count
FROM pdf_cache
ORDER BY storage_size_bytes DESC
LIMIT 10;",
        )
        .await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[0][0].as_str(), rows[0][1].as_str()),
        (hash(1).as_str(), "2")
    );
}

#[tokio::test]
async fn performance_tuning_and_troubleshooting() {
    let t = TestDb::new().await;
    let options = "SELECT relname, array(SELECT unnest(reloptions) ORDER BY 1)::text FROM pg_class WHERE relname IN ('pdf_cache', 'layer0_cost_tracking') ORDER BY relname";
    let expected = [
        [
            "layer0_cost_tracking",
            "{autovacuum_vacuum_scale_factor=0.1}",
        ],
        [
            "pdf_cache",
            "{autovacuum_analyze_scale_factor=0.02,autovacuum_vacuum_scale_factor=0.05,fillfactor=70}",
        ],
    ];
    assert_eq!(
        t.sql(options).await,
        expected,
        "the migration applied the tuning"
    );
    t.sql(
        "ALTER TABLE pdf_cache SET (
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);
ALTER TABLE layer0_cost_tracking SET (
    autovacuum_vacuum_scale_factor = 0.1
);",
    )
    .await;
    assert_eq!(t.sql(options).await, expected);

    // The extension is already there, so the troubleshooting step reports exactly that.
    let err = t
        .try_sql("CREATE EXTENSION \"uuid-ossp\";")
        .await
        .expect_err("already installed");
    assert_eq!(sqlstate(&err), "42710");
    t.rolled_back("CREATE ROLE your_app_user; GRANT CREATE ON SCHEMA public TO your_app_user;")
        .await
        .expect("grant");
}

#[tokio::test]
async fn index_usage_query_with_the_real_column_names() {
    let t = TestDb::new().await;
    // The seed's query names columns pg_stat_user_indexes does not have (SPEC: a bug).
    let seed = "SELECT 
    schemaname,
    tablename,
    indexname,
    idx_scan,
    idx_tup_read,
    idx_tup_fetch
FROM pg_stat_user_indexes
WHERE tablename IN ('pdf_cache', 'layer0_cost_tracking')
ORDER BY idx_scan DESC;";
    let err = t
        .try_sql(seed)
        .await
        .expect_err("tablename is not a column");
    assert_eq!(sqlstate(&err), "42703");
    let fixed = seed
        .replace("    tablename,", "    relname,")
        .replace("    indexname,", "    indexrelname,")
        .replace("WHERE tablename", "WHERE relname");
    let rows = t.sql(&fixed).await;
    assert_eq!(rows.len(), 8);
}

#[tokio::test]
async fn bad_rows_are_refused() {
    let t = TestDb::new().await;
    for (sql, state) in [
        (
            "INSERT INTO pdf_cache (pdf_hash, result_data, original_size_bytes, storage_size_bytes, compression_ratio) VALUES ('NOT-HEX', '\\x00', 1, 1, 1)".to_string(),
            "23514",
        ),
        (
            format!("INSERT INTO pdf_cache (pdf_hash, result_data, original_size_bytes, storage_size_bytes, compression_ratio) VALUES ('{}', '\\x00', -1, 1, 1)", hash(9)),
            "23514",
        ),
        (
            format!("INSERT INTO layer0_cost_tracking (pdf_hash, cache_hit, cost_usd) VALUES ('{}', false, -0.01)", hash(9)),
            "23514",
        ),
    ] {
        let err = t.try_sql(&sql).await.expect_err(&sql);
        assert_eq!(sqlstate(&err), state, "{sql}");
    }
    assert_eq!(
        first_column(
            &t.sql(
                "SELECT count(*) FROM pdf_cache UNION ALL SELECT count(*) FROM layer0_cost_tracking"
            )
            .await
        ),
        ["0", "0"]
    );
}

/// Seed 000 logs every processing event: one whose PDF hash was never computed (a
/// failed upload, a stream) is still an event, and is kept; a row counting no lookup
/// at all is still refused.
#[tokio::test]
async fn a_processing_event_without_a_hash_is_logged() {
    let t = TestDb::new().await;
    t.sql(
        "INSERT INTO layer0_cost_tracking (cache_hit, cost_usd, processing_time_ms) VALUES (false, 0.02, 1500)",
    )
    .await;
    t.sql(
        "INSERT INTO layer0_cost_tracking (cache_hit, lookups, cost_usd) VALUES (false, 2, 0.04)",
    )
    .await;
    assert_eq!(
        t.scalar("SELECT count(*) FILTER (WHERE pdf_hash IS NULL AND NOT cache_hit) FROM layer0_cost_tracking")
            .await,
        "2"
    );
    let err = t
        .try_sql("INSERT INTO layer0_cost_tracking (cache_hit, lookups) VALUES (true, 0)")
        .await
        .expect_err("no lookup");
    assert_eq!(sqlstate(&err), "23514");
}
