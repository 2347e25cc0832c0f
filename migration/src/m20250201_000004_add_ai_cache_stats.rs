//! Seed 001, `add_ai_cache_stats.sql`: daily statistics of the AI response cache.
//!
//! `ai_cache_stats (id, date, total_requests, cache_hits, cache_misses, tokens_saved,
//! updated_at)`, seven columns; `idx_ai_cache_stats_date` is the UNIQUE constraint on
//! `date` (one row a day, and the index date-range queries use).
//!
//! Functions (SPEC.md "Function signatures"):
//! - `increment_cache_stats(p_date date, p_hit boolean, p_tokens_saved integer)`:
//!   counts one request (a hit or a miss) and the tokens it saved on `p_date`, creating
//!   the day's row if needed (one upsert).
//! - `increment_cache_stats(p_date date, p_hits bigint, p_misses bigint,
//!   p_tokens_saved bigint)`: the same for many requests at once, for callers that
//!   buffer their counts (one upsert per flush instead of one per request).
//! - `get_cache_stats(p_start date, p_end date)`: totals over the inclusive range
//!   (`total_requests`, `cache_hits`, `cache_misses`, `tokens_saved`, `hit_rate` in
//!   percent, 0 when there were no requests). Both arguments are required: the
//!   argument-less `get_cache_stats()` is the vision cache's (SPEC.md decision 3).
//! - `update_cache_stats_timestamp()`: trigger function keeping `updated_at` current
//!   (trigger `trigger_update_cache_stats_timestamp`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{drop_tables, exec, id, now_column};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `updated_at` of `ai_cache_stats`, kept by a trigger.
const STATS_TIMESTAMP: &str = r#"
CREATE OR REPLACE FUNCTION update_cache_stats_timestamp() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$fn$;
CREATE TRIGGER trigger_update_cache_stats_timestamp
    BEFORE UPDATE ON ai_cache_stats
    FOR EACH ROW EXECUTE FUNCTION update_cache_stats_timestamp();

"#;

/// The batched statistics upsert (removed again by `m20250601_000002_seed_fidelity`,
/// whose `down` restores it from here).
pub(crate) const INCREMENT_BATCH: &str = r#"
CREATE OR REPLACE FUNCTION increment_cache_stats(p_date date, p_hits bigint, p_misses bigint, p_tokens_saved bigint)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_hits < 0 OR p_misses < 0 OR p_tokens_saved < 0 THEN
        RAISE EXCEPTION 'increment_cache_stats: counts must not be negative (hits %, misses %, tokens %)',
            p_hits, p_misses, p_tokens_saved USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO ai_cache_stats AS s (date, total_requests, cache_hits, cache_misses, tokens_saved)
    VALUES (p_date, p_hits + p_misses, p_hits, p_misses, p_tokens_saved)
    ON CONFLICT (date) DO UPDATE SET
        total_requests = s.total_requests + EXCLUDED.total_requests,
        cache_hits = s.cache_hits + EXCLUDED.cache_hits,
        cache_misses = s.cache_misses + EXCLUDED.cache_misses,
        tokens_saved = s.tokens_saved + EXCLUDED.tokens_saved;
END;
$fn$;

"#;

/// The seed's one-event function, through [`INCREMENT_BATCH`].
pub(crate) const INCREMENT_ONE_VIA_BATCH: &str = r#"
CREATE OR REPLACE FUNCTION increment_cache_stats(p_date date, p_hit boolean, p_tokens_saved integer)
RETURNS void LANGUAGE sql AS $fn$
    SELECT increment_cache_stats(p_date,
        CASE WHEN p_hit THEN 1 ELSE 0 END::bigint,
        CASE WHEN p_hit THEN 0 ELSE 1 END::bigint,
        coalesce(p_tokens_saved, 0)::bigint);
$fn$;

"#;

/// `get_cache_stats(start, end)`.
const GET_CACHE_STATS: &str = r#"
CREATE OR REPLACE FUNCTION get_cache_stats(p_start date, p_end date)
RETURNS TABLE (
    total_requests bigint,
    cache_hits bigint,
    cache_misses bigint,
    tokens_saved bigint,
    hit_rate numeric
) LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(sum(s.total_requests), 0)::bigint,
           coalesce(sum(s.cache_hits), 0)::bigint,
           coalesce(sum(s.cache_misses), 0)::bigint,
           coalesce(sum(s.tokens_saved), 0)::bigint,
           CASE WHEN coalesce(sum(s.total_requests), 0) = 0 THEN 0::numeric
                ELSE round(100.0 * sum(s.cache_hits) / sum(s.total_requests), 2)
           END
    FROM ai_cache_stats s
    WHERE s.date BETWEEN p_start AND p_end;
$fn$;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("ai_cache_stats")
                    .col(id())
                    .col(date("date"))
                    .col(big_integer("total_requests").default(0))
                    .col(big_integer("cache_hits").default(0))
                    .col(big_integer("cache_misses").default(0))
                    .col(big_integer("tokens_saved").default(0))
                    .col(now_column("updated_at"))
                    .index(
                        Index::create()
                            .unique()
                            .name("idx_ai_cache_stats_date")
                            .col("date"),
                    )
                    .check((
                        "check_ai_cache_stats_counts",
                        Expr::cust(
                            "cache_hits >= 0 AND cache_misses >= 0 AND tokens_saved >= 0 \
                             AND total_requests = cache_hits + cache_misses",
                        ),
                    ))
                    .to_owned(),
            )
            .await?;
        exec(
            manager,
            &format!(
                "{STATS_TIMESTAMP}{INCREMENT_BATCH}{INCREMENT_ONE_VIA_BATCH}{GET_CACHE_STATS}"
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            "DROP FUNCTION get_cache_stats(date, date);
             DROP FUNCTION increment_cache_stats(date, boolean, integer);
             DROP FUNCTION increment_cache_stats(date, bigint, bigint, bigint);",
        )
        .await?;
        drop_tables(manager, &["ai_cache_stats"]).await?;
        exec(manager, "DROP FUNCTION update_cache_stats_timestamp();").await
    }
}
