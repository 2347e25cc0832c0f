//! Seed 000, `20250124_0002_layer0_tables.sql`: the Layer 0 PDF cache.
//!
//! - `pdf_cache`: one row per processed PDF, keyed by `pdf_hash` (lower-case SHA-256
//!   hex of the PDF bytes, checked), holding the compressed result (`result_data`,
//!   `compression_algorithm`, `original_size_bytes`, `storage_size_bytes`,
//!   `compression_ratio` = original / stored), processing facts (`page_count`,
//!   `processing_time_ms`, `metadata`) and LRU bookkeeping (`created_at`,
//!   `last_accessed`, `access_count`).
//! - `layer0_cost_tracking` (insert-only): the processing events and what they cost.
//!   Each miss is a row of its own (`pdf_hash`, `cache_hit = false`, the `cost_usd`
//!   paid, `processing_time_ms`, `file_size_bytes`); hits are recorded in batches, a
//!   row standing for `lookups` hits with the `cost_saved_usd` they saved (`pdf_hash`
//!   is NULL when the batch spans several PDFs; their per-PDF counts are
//!   `pdf_cache.access_count`). A row per hit would make every cache hit an insert
//!   into a four-index table.
//! - `layer0_stats`: single-row materialized view of both (`total_cache_entries`,
//!   `total_size_mb`, `avg_compression_ratio`, `cache_hits`, `cache_misses`,
//!   `hit_rate` in percent, `total_cost_usd`, `total_saved_usd`, `last_updated`), with
//!   the unique index `idx_layer0_stats_id` so `REFRESH … CONCURRENTLY` works, and
//!   `refresh_layer0_stats()` that does that refresh.
//! - The seed's 8 indexes (its verification counts the primary keys): per table the
//!   primary key, and `idx_pdf_cache_created_at` (date ranges),
//!   `idx_pdf_cache_storage_size (storage_size_bytes DESC)` (largest entries),
//!   `idx_pdf_cache_processing_time (processing_time_ms DESC)` (the costliest PDFs,
//!   the last to evict by hand), `idx_layer0_cost_created_at` (date ranges),
//!   `idx_layer0_cost_pdf_hash (pdf_hash, created_at)` (one PDF's history) and
//!   `idx_layer0_cost_hit_created (cache_hit, created_at)` (hits or misses in a range).
//!   `last_accessed` and `access_count` are deliberately not indexed: every hit
//!   updates them, and an index on either would turn each of those updates into a
//!   new entry in every index of the table (no HOT update; measured 5-10× slower for
//!   a batch of 8,000). The queries that filter on them (the periodic clean-ups, the
//!   size budget) scan the table instead. `pdf_cache` keeps 15 % of each page free
//!   (`fillfactor = 85`; 70 since `m20250501_000002_cache_hot_path`) so those
//!   updates stay on their page.
//! - The autovacuum settings of the seed's "Performance Tuning".

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{create_indexes, drop_tables, empty_object, exec, index, now_column};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("pdf_cache")
                    .col(string_len("pdf_hash", 64).primary_key())
                    .col(binary("result_data"))
                    .col(text("compression_algorithm").default("zstd"))
                    .col(big_integer("original_size_bytes"))
                    .col(big_integer("storage_size_bytes"))
                    .col(double("compression_ratio"))
                    .col(integer_null("page_count"))
                    .col(integer_null("processing_time_ms"))
                    .col(json_binary("metadata").default(empty_object()))
                    .col(now_column("created_at"))
                    .col(now_column("last_accessed"))
                    .col(big_integer("access_count").default(0))
                    .check((
                        "check_pdf_hash_format",
                        Expr::cust("pdf_hash ~ '^[0-9a-f]{64}$'"),
                    ))
                    .check((
                        "check_pdf_cache_sizes",
                        Expr::cust(
                            "original_size_bytes >= 0 AND storage_size_bytes >= 0 AND compression_ratio >= 0",
                        ),
                    ))
                    .check(("check_pdf_cache_access_count", Expr::cust("access_count >= 0")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("layer0_cost_tracking")
                    .col(
                        uuid("id")
                            .primary_key()
                            .default(Expr::cust("uuid_generate_v4()")),
                    )
                    .col(string_len_null("pdf_hash", 64))
                    .col(boolean("cache_hit"))
                    .col(integer("lookups").default(1))
                    .col(decimal_len("cost_usd", 12, 6).default(0))
                    .col(decimal_len("cost_saved_usd", 12, 6).default(0))
                    .col(integer_null("processing_time_ms"))
                    .col(big_integer_null("file_size_bytes"))
                    .col(now_column("created_at"))
                    .check((
                        "check_layer0_cost_nonnegative",
                        Expr::cust("cost_usd >= 0 AND cost_saved_usd >= 0"),
                    ))
                    .check((
                        "check_layer0_cost_lookups",
                        Expr::cust(
                            "lookups >= 1 AND (cache_hit OR (pdf_hash IS NOT NULL AND lookups = 1))",
                        ),
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                index("idx_pdf_cache_processing_time", "pdf_cache")
                    .col(("processing_time_ms", IndexOrder::Desc))
                    .take(),
                index("idx_pdf_cache_created_at", "pdf_cache")
                    .col("created_at")
                    .take(),
                index("idx_pdf_cache_storage_size", "pdf_cache")
                    .col(("storage_size_bytes", IndexOrder::Desc))
                    .take(),
                index("idx_layer0_cost_created_at", "layer0_cost_tracking")
                    .col("created_at")
                    .take(),
                index("idx_layer0_cost_pdf_hash", "layer0_cost_tracking")
                    .col("pdf_hash")
                    .col("created_at")
                    .take(),
                index("idx_layer0_cost_hit_created", "layer0_cost_tracking")
                    .col("cache_hit")
                    .col("created_at")
                    .take(),
            ],
        )
        .await?;
        exec(
            manager,
            r#"
ALTER TABLE pdf_cache SET (
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    fillfactor = 85
);
ALTER TABLE layer0_cost_tracking SET (
    autovacuum_vacuum_scale_factor = 0.1
);

CREATE MATERIALIZED VIEW layer0_stats AS
SELECT
    1 AS id,
    c.total_cache_entries,
    c.total_size_mb,
    c.avg_compression_ratio,
    t.cache_hits,
    t.cache_misses,
    CASE WHEN t.cache_hits + t.cache_misses = 0 THEN 0::numeric
         ELSE round(100.0 * t.cache_hits / (t.cache_hits + t.cache_misses), 2)
    END AS hit_rate,
    t.total_cost_usd,
    t.total_saved_usd,
    now() AS last_updated
FROM (
    SELECT count(*) AS total_cache_entries,
           round(coalesce(sum(storage_size_bytes), 0) / 1048576.0, 3) AS total_size_mb,
           round(avg(compression_ratio)::numeric, 3) AS avg_compression_ratio
    FROM pdf_cache
) c
CROSS JOIN (
    SELECT coalesce(sum(lookups) FILTER (WHERE cache_hit), 0) AS cache_hits,
           coalesce(sum(lookups) FILTER (WHERE NOT cache_hit), 0) AS cache_misses,
           coalesce(sum(cost_usd), 0) AS total_cost_usd,
           coalesce(sum(cost_saved_usd), 0) AS total_saved_usd
    FROM layer0_cost_tracking
) t
WITH DATA;

CREATE UNIQUE INDEX idx_layer0_stats_id ON layer0_stats (id);

CREATE OR REPLACE FUNCTION refresh_layer0_stats() RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY layer0_stats;
END;
$fn$;
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            "DROP FUNCTION refresh_layer0_stats(); DROP MATERIALIZED VIEW layer0_stats;",
        )
        .await?;
        drop_tables(manager, &["layer0_cost_tracking", "pdf_cache"]).await
    }
}
