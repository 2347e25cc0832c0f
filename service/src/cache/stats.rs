//! Every cache at a glance: entries, size on disk, hits, expired entries, and the
//! hit rate those imply.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use serde::Serialize;

use std::sync::LazyLock;

use super::CacheError;
use super::registry::{CACHES, CacheKind, Expiry};

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

/// Each cache's counts, one row per table in [`CACHES`]' order: a `UNION ALL` of one
/// aggregate per cache (each a full scan of its table) and the relation sizes, built
/// once from the registry's table and column names (no value of a caller's).
static STATS_SQL: LazyLock<String> = LazyLock::new(|| {
    let branches = CACHES
        .iter()
        .enumerate()
        .map(|(ord, kind)| {
            let t = kind.describe();
            let expired = match t.expiry {
                Expiry::Never => "NULL::bigint".to_owned(),
                // The seed functions expire by `expires_at`, as the adapters read it.
                Expiry::Column(column) => format!("count(*) FILTER (WHERE {column} <= now())"),
                Expiry::Function(_) => "count(*) FILTER (WHERE expires_at <= now())".to_owned(),
            };
            format!(
                "SELECT {ord} AS ord, '{name}' AS kind, count(*) AS entries, \
                 pg_total_relation_size('{table}') AS total_bytes, \
                 coalesce(sum({hits}), 0)::bigint AS hits, {expired} AS expired, \
                 max({created}) AS newest, min({accessed}) AS least_recent FROM {table}",
                name = t.name,
                table = t.table,
                hits = t.hits_column,
                created = t.created_column,
                accessed = t.accessed_column,
            )
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL\n");
    format!(
        "SELECT kind, entries, total_bytes, hits, expired, newest, least_recent \
         FROM ({branches}) AS caches ORDER BY ord"
    )
});

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

/// Every cache's numbers, in [`CACHES`]' order. One statement that scans each cache
/// table once (no index answers a sum); on any connection.
pub async fn cache_stats<C: ConnectionTrait>(db: &C) -> Result<Vec<CacheTableStats>, CacheError> {
    let rows = Row::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        STATS_SQL.as_str(),
    ))
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
