//! Seed 004, `004_create_vision_cache.sql`: cached vision-API responses.
//!
//! `vision_api_cache (id, image_url, url_hash, provider, response_data,
//! response_size_bytes, response_time_ms, created_at, expires_at, last_accessed_at,
//! access_count)`: `url_hash` is the lower-case SHA-256 hex of the normalised image URL
//! (checked); one entry per (`url_hash`, `provider`).
//!
//! Indexes: `idx_cache_url_hash_provider` UNIQUE (`url_hash`, `provider`), the primary
//! lookup; `idx_cache_expires_at` (cleanup); `idx_cache_last_accessed`
//! (`last_accessed_at`, LRU eviction); `idx_cache_lookup (url_hash, provider,
//! expires_at) INCLUDE (id)`: answers "is there a valid entry" from the index alone;
//! `idx_cache_active (provider, last_accessed_at) WHERE access_count > 0`: the entries
//! that have served at least one hit. (PostgreSQL forbids `now()` in an index
//! predicate, so "active" cannot mean "not expired" there.)
//!
//! Functions:
//! - `cleanup_expired_cache() RETURNS integer`: deletes expired entries, returns how
//!   many;
//! - `evict_lru_cache(max_entries integer DEFAULT 10000) RETURNS integer`: keeps the
//!   `max_entries` most recently accessed entries (ties: the most used, then the
//!   newest id) and deletes the rest, returning how many; a negative `max_entries` is
//!   refused (22023);
//! - `get_cache_stats() RETURNS TABLE (total_entries, active_entries,
//!   expired_entries, total_hits, total_size_mb, avg_response_time_ms,
//!   oldest_entry, newest_entry)`: one row over the whole cache;
//! - `refresh_cache_metrics()`: `REFRESH MATERIALIZED VIEW CONCURRENTLY
//!   cache_performance_metrics`.
//!
//! View `cache_stats`, per provider: `total_entries`, `active_entries`,
//! `expired_entries`, `total_hits`, `cache_hit_potential` (the share of lookups a
//! cache served, in percent: hits / (hits + entries), each entry having cost one miss),
//! `total_size_mb`, `avg_response_time_ms`, `avg_response_size_bytes`.
//! Materialized view `cache_performance_metrics`, per day of creation and provider:
//! `entries_created`, `total_hits`, `avg_response_time_ms`, `total_size_bytes`, with
//! the unique index `idx_cache_performance_metrics_day_provider` for concurrent
//! refreshes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{create_indexes, drop_tables, exec, id, index, now_column};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("vision_api_cache")
                    .col(id())
                    .col(text("image_url"))
                    .col(char_len("url_hash", 64))
                    .col(custom("provider", "ai_provider"))
                    .col(json_binary("response_data"))
                    .col(integer("response_size_bytes"))
                    .col(integer_null("response_time_ms"))
                    .col(now_column("created_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(now_column("last_accessed_at"))
                    .col(big_integer("access_count").default(0))
                    .index(
                        Index::create()
                            .unique()
                            .name("idx_cache_url_hash_provider")
                            .col("url_hash")
                            .col("provider"),
                    )
                    .check(("check_cache_url_hash", Expr::cust("url_hash ~ '^[0-9a-f]{64}$'")))
                    .check((
                        "check_cache_sizes",
                        Expr::cust(
                            "response_size_bytes >= 0 AND (response_time_ms IS NULL OR response_time_ms >= 0) AND access_count >= 0",
                        ),
                    ))
                    .check(("check_cache_expiry", Expr::cust("expires_at >= created_at")))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                index("idx_cache_expires_at", "vision_api_cache")
                    .col("expires_at")
                    .take(),
                index("idx_cache_last_accessed", "vision_api_cache")
                    .col("last_accessed_at")
                    .take(),
                index("idx_cache_lookup", "vision_api_cache")
                    .col("url_hash")
                    .col("provider")
                    .col("expires_at")
                    .include("id")
                    .take(),
                index("idx_cache_active", "vision_api_cache")
                    .col("provider")
                    .col("last_accessed_at")
                    .and_where(Expr::cust("access_count > 0"))
                    .take(),
            ],
        )
        .await?;
        exec(
            manager,
            r#"
ALTER TABLE vision_api_cache SET (
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);

CREATE OR REPLACE FUNCTION cleanup_expired_cache() RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    removed integer;
BEGIN
    DELETE FROM vision_api_cache WHERE expires_at <= now();
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END;
$fn$;

CREATE OR REPLACE FUNCTION evict_lru_cache(max_entries integer DEFAULT 10000) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    removed integer;
BEGIN
    IF max_entries IS NULL OR max_entries < 0 THEN
        RAISE EXCEPTION 'evict_lru_cache: max_entries must be 0 or more, got %', max_entries
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM vision_api_cache
    WHERE id IN (
        SELECT id FROM vision_api_cache
        ORDER BY last_accessed_at DESC, access_count DESC, id DESC
        OFFSET max_entries
    );
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END;
$fn$;

CREATE OR REPLACE FUNCTION get_cache_stats()
RETURNS TABLE (
    total_entries bigint,
    active_entries bigint,
    expired_entries bigint,
    total_hits bigint,
    total_size_mb numeric,
    avg_response_time_ms numeric,
    oldest_entry timestamptz,
    newest_entry timestamptz
) LANGUAGE sql STABLE AS $fn$
    SELECT count(*),
           count(*) FILTER (WHERE expires_at > now()),
           count(*) FILTER (WHERE expires_at <= now()),
           coalesce(sum(access_count), 0)::bigint,
           round(coalesce(sum(response_size_bytes), 0) / 1048576.0, 3),
           round(avg(response_time_ms), 1),
           min(created_at),
           max(created_at)
    FROM vision_api_cache;
$fn$;

CREATE VIEW cache_stats AS
SELECT provider,
       count(*) AS total_entries,
       count(*) FILTER (WHERE expires_at > now()) AS active_entries,
       count(*) FILTER (WHERE expires_at <= now()) AS expired_entries,
       sum(access_count) AS total_hits,
       round(100.0 * sum(access_count) / (sum(access_count) + count(*)), 2) AS cache_hit_potential,
       round(sum(response_size_bytes) / 1048576.0, 3) AS total_size_mb,
       round(avg(response_time_ms), 1) AS avg_response_time_ms,
       round(avg(response_size_bytes), 1) AS avg_response_size_bytes
FROM vision_api_cache
GROUP BY provider;

CREATE MATERIALIZED VIEW cache_performance_metrics AS
SELECT date_trunc('day', created_at)::date AS day,
       provider,
       count(*) AS entries_created,
       sum(access_count) AS total_hits,
       round(avg(response_time_ms), 1) AS avg_response_time_ms,
       sum(response_size_bytes) AS total_size_bytes
FROM vision_api_cache
GROUP BY 1, 2
WITH DATA;
CREATE UNIQUE INDEX idx_cache_performance_metrics_day_provider
    ON cache_performance_metrics (day, provider);

CREATE OR REPLACE FUNCTION refresh_cache_metrics() RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY cache_performance_metrics;
END;
$fn$;
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            "DROP FUNCTION refresh_cache_metrics();
             DROP MATERIALIZED VIEW cache_performance_metrics;
             DROP VIEW cache_stats;
             DROP FUNCTION get_cache_stats();
             DROP FUNCTION evict_lru_cache(integer);
             DROP FUNCTION cleanup_expired_cache();",
        )
        .await?;
        drop_tables(manager, &["vision_api_cache"]).await
    }
}
