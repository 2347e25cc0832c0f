//! The four caches at a glance: entries, size on disk, hits, expired entries, and the
//! hit rate those imply.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use serde::Serialize;

use super::{CacheError, CacheKind};

/// One cache's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheTableStats {
    /// Which cache.
    pub kind: CacheKind,
    /// Its table.
    pub table: &'static str,
    /// Entries stored.
    pub entries: i64,
    /// The table's size on disk with its indexes and TOAST.
    pub total_bytes: i64,
    /// Hits recorded on the entries stored (`access_count` / `hit_count`; hits of
    /// entries since removed are not counted).
    pub hits: i64,
    /// Hits ÷ (hits + entries): each entry was one miss that filled it, so this is
    /// the share of lookups of today's entries that the cache answered.
    pub hit_rate: Option<f64>,
    /// Entries past their expiry (the vision and exercise caches; `None` for the
    /// others, whose entries do not expire).
    pub expired: Option<i64>,
    /// When the newest entry was written.
    pub newest: Option<DateTime<Utc>>,
    /// When the least recently used entry was last read or written.
    pub least_recent: Option<DateTime<Utc>>,
}

/// Each cache's counts, one row per table: a `UNION ALL` of four aggregates (each a
/// full scan of its table) and the relation sizes.
const STATS_SQL: &str = "
SELECT kind, entries, total_bytes, hits, expired, newest, least_recent FROM (
SELECT 1 AS ord, 'pdf' AS kind, count(*) AS entries, pg_total_relation_size('pdf_cache') AS total_bytes,
       coalesce(sum(access_count), 0)::bigint AS hits, NULL::bigint AS expired,
       max(created_at) AS newest, min(last_accessed) AS least_recent
FROM pdf_cache
UNION ALL
SELECT 2, 'ai', count(*), pg_total_relation_size('ai_response_cache'),
       coalesce(sum(hit_count), 0)::bigint, NULL::bigint, max(created_at), min(last_accessed_at)
FROM ai_response_cache
UNION ALL
SELECT 3, 'vision', count(*), pg_total_relation_size('vision_api_cache'),
       coalesce(sum(access_count), 0)::bigint, count(*) FILTER (WHERE expires_at <= now()),
       max(created_at), min(last_accessed_at)
FROM vision_api_cache
UNION ALL
SELECT 4, 'exercise', count(*), pg_total_relation_size('exercise_cache'),
       coalesce(sum(access_count), 0)::bigint, count(*) FILTER (WHERE expires_at <= now()),
       max(created_at), min(last_accessed_at)
FROM exercise_cache
) AS caches ORDER BY ord";

#[derive(FromQueryResult)]
struct Row {
    kind: String,
    entries: i64,
    total_bytes: i64,
    hits: i64,
    expired: Option<i64>,
    newest: Option<DateTime<Utc>>,
    least_recent: Option<DateTime<Utc>>,
}

/// The four caches' numbers, in [`CacheKind::ALL`]'s order. One statement that scans
/// each cache table once (no index answers a sum); on any connection.
pub async fn cache_stats<C: ConnectionTrait>(db: &C) -> Result<Vec<CacheTableStats>, CacheError> {
    let rows = Row::find_by_statement(Statement::from_string(DbBackend::Postgres, STATS_SQL))
        .all(db)
        .await?;
    rows.into_iter()
        .map(|r| {
            let kind: CacheKind = r.kind.parse()?;
            let lookups = r.hits + r.entries;
            Ok(CacheTableStats {
                kind,
                table: kind.table(),
                entries: r.entries,
                total_bytes: r.total_bytes,
                hits: r.hits,
                hit_rate: (lookups > 0).then(|| r.hits as f64 / lookups as f64),
                expired: r.expired,
                newest: r.newest,
                least_recent: r.least_recent,
            })
        })
        .collect()
}
