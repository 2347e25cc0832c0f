//! Checks of how the database is used, from the statistics views (PgHero's): unused
//! and duplicate indexes, sizes, dead tuples and vacuum, sequence headroom, the buffer
//! cache hit rate, long and idle-in-transaction sessions.

use sea_orm::{DatabaseTransaction, FromQueryResult};

use super::{Check, CheckResult, Expectations, first, human_bytes, sql};
use crate::error::DbError;

/// Indexes scanned at most 50 times since the statistics were reset, not unique
/// (a unique index enforces something), largest first: PgHero's `unused_indexes`,
/// with `pg_stat_user_indexes`' own column names.
const UNUSED_INDEXES_SQL: &str = "SELECT ui.indexrelname::text AS index, ui.relname::text AS table,
            pg_relation_size(ui.indexrelid) AS size_bytes, ui.idx_scan AS scans
     FROM pg_stat_user_indexes ui JOIN pg_index i ON i.indexrelid = ui.indexrelid
     WHERE NOT i.indisunique AND ui.idx_scan <= 50
     ORDER BY pg_relation_size(ui.indexrelid) DESC, ui.relname, ui.indexrelname";

#[derive(FromQueryResult)]
struct UnusedIndex {
    index: String,
    table: String,
    size_bytes: i64,
    scans: i64,
}

/// An unused index smaller than this is not worth a warning (a new table's indexes
/// are all unused).
const UNUSED_WORTH_WARNING: i64 = 1024 * 1024;

/// Unused indexes of 1 MB or more: `warn` (they cost every write and the cache).
pub(super) async fn unused_indexes(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let all = UnusedIndex::find_by_statement(sql(UNUSED_INDEXES_SQL))
        .all(db)
        .await?;
    let big: Vec<String> = all
        .iter()
        .filter(|u| u.size_bytes >= UNUSED_WORTH_WARNING)
        .map(|u| {
            format!(
                "{} on {} ({}, {} scans)",
                u.index,
                u.table,
                human_bytes(u.size_bytes),
                u.scans
            )
        })
        .collect();
    Ok(vec![if big.is_empty() {
        Check::ok(
            "unused indexes",
            format!(
                "none of 1 MB or more ({} smaller ones scanned at most 50 times)",
                all.len()
            ),
        )
    } else {
        Check::warn(
            "unused indexes",
            format!("{} scanned at most 50 times: {}", big.len(), first(&big, 3)),
        )
        .with_details(big)
    }])
}

/// Indexes whose key columns (with their operator classes, sort options and
/// collations) are a leading part of another valid index of the same method on the
/// same table, with the same predicate and no expressions: PgHero's
/// `duplicate_indexes`. A unique index is redundant only beside an identical unique one
/// (the primary key, or the older of the two); exclusion constraints' indexes are
/// never reported. Identical pairs are reported once.
const DUPLICATE_INDEXES_SQL: &str = "SELECT ca.relname::text AS index, cb.relname::text AS covered_by,
            t.relname::text AS table
     FROM pg_index a
     JOIN pg_index b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
     JOIN pg_class ca ON ca.oid = a.indexrelid
     JOIN pg_class cb ON cb.oid = b.indexrelid
     JOIN pg_class t ON t.oid = a.indrelid
     JOIN pg_namespace n ON n.oid = t.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
       AND ca.relam = cb.relam AND a.indisvalid AND b.indisvalid
       AND NOT a.indisexclusion AND NOT b.indisexclusion
       AND (NOT a.indisunique
            OR (b.indisunique AND a.indkey::text = b.indkey::text AND NOT a.indisprimary
                AND (b.indisprimary OR a.indexrelid > b.indexrelid)))
       AND a.indexprs IS NULL AND b.indexprs IS NULL
       AND a.indnkeyatts = a.indnatts
       AND coalesce(pg_get_expr(a.indpred, a.indrelid), '') = coalesce(pg_get_expr(b.indpred, b.indrelid), '')
       AND (b.indkey::text || ' ') LIKE (a.indkey::text || ' %')
       AND (b.indclass::text || ' ') LIKE (a.indclass::text || ' %')
       AND (b.indoption::text || ' ') LIKE (a.indoption::text || ' %')
       AND (b.indcollation::text || ' ') LIKE (a.indcollation::text || ' %')
       AND (a.indkey::text <> b.indkey::text OR b.indisunique OR a.indexrelid > b.indexrelid)
     ORDER BY 3, 1";

#[derive(FromQueryResult)]
struct DuplicateIndex {
    index: String,
    covered_by: String,
    table: String,
}

/// Duplicate indexes: `warn`, each with the index that covers it.
pub(super) async fn duplicate_indexes(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let found: Vec<String> = DuplicateIndex::find_by_statement(sql(DUPLICATE_INDEXES_SQL))
        .all(db)
        .await?
        .into_iter()
        .map(|d| format!("{} on {} (covered by {})", d.index, d.table, d.covered_by))
        .collect();
    Ok(vec![if found.is_empty() {
        Check::ok("duplicate indexes", "none")
    } else {
        Check::warn(
            "duplicate indexes",
            format!("{}: {}", found.len(), first(&found, 2)),
        )
        .with_details(found)
    }])
}

/// The database's size, its largest tables (with their indexes and TOAST) and its
/// largest indexes, five of each.
const SIZES_SQL: &str = "SELECT kind, name, size_bytes FROM (
         SELECT 0 AS ord, 'database' AS kind, current_database()::text AS name,
                pg_database_size(current_database()) AS size_bytes
         UNION ALL
         (SELECT 1, 'table', c.relname::text, pg_total_relation_size(c.oid)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')
          ORDER BY 4 DESC, 3 LIMIT 5)
         UNION ALL
         (SELECT 2, 'index', c.relname::text, pg_relation_size(c.oid)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind = 'i'
          ORDER BY 4 DESC, 3 LIMIT 5)
     ) AS sizes ORDER BY ord, size_bytes DESC, name";

#[derive(FromQueryResult)]
struct Size {
    kind: String,
    name: String,
    size_bytes: i64,
}

/// The database's size, its five largest tables and indexes: always `ok`, for the
/// record (the details list each).
pub(super) async fn sizes(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let rows = Size::find_by_statement(sql(SIZES_SQL)).all(db).await?;
    let total = rows
        .iter()
        .find(|r| r.kind == "database")
        .map_or(0, |r| r.size_bytes);
    let of = |kind: &str| -> Vec<String> {
        rows.iter()
            .filter(|r| r.kind == kind)
            .map(|r| format!("{} {}", r.name, human_bytes(r.size_bytes)))
            .collect()
    };
    let (tables, indexes) = (of("table"), of("index"));
    let reason = format!(
        "database {}; largest tables: {}; largest index: {}",
        human_bytes(total),
        first(&tables, 3),
        indexes.first().map_or("-", String::as_str)
    );
    let details = tables
        .iter()
        .map(|t| format!("table {t}"))
        .chain(indexes.iter().map(|i| format!("index {i}")))
        .collect();
    Ok(vec![Check::ok("sizes", reason).with_details(details)])
}

/// Tables whose dead tuples exceed 1,000 and a fifth of their live ones
/// (`pg_stat_user_tables`).
const DEAD_TUPLES_SQL: &str =
    "SELECT relname::text AS table, n_live_tup AS live, n_dead_tup AS dead
     FROM pg_stat_user_tables
     WHERE n_dead_tup > 1000 AND n_dead_tup > n_live_tup / 5
     ORDER BY n_dead_tup DESC, relname";

#[derive(FromQueryResult)]
struct DeadTuples {
    table: String,
    live: i64,
    dead: i64,
}

/// Dead tuples: `warn` naming the bloated tables (autovacuum is behind).
pub(super) async fn dead_tuples(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let found: Vec<String> = DeadTuples::find_by_statement(sql(DEAD_TUPLES_SQL))
        .all(db)
        .await?
        .into_iter()
        .map(|d| format!("{} ({} dead, {} live)", d.table, d.dead, d.live))
        .collect();
    Ok(vec![if found.is_empty() {
        Check::ok("dead tuples", "no table over 20% dead (or under 1,000)")
    } else {
        Check::warn(
            "dead tuples",
            format!("{} tables: {}", found.len(), first(&found, 3)),
        )
        .with_details(found)
    }])
}

/// Autovacuum's setting, and tables of over 1,000 rows never analysed or with
/// changes since the last analyse above autovacuum's own threshold (10% + 50).
const VACUUM_SQL: &str = "SELECT current_setting('autovacuum') AS autovacuum,
        ARRAY(SELECT relname::text || CASE WHEN coalesce(last_analyze, last_autoanalyze) IS NULL
                                            THEN ' (never analysed)'
                                            ELSE ' (' || n_mod_since_analyze || ' changes since '
                                                 || to_char(greatest(last_analyze, last_autoanalyze), 'YYYY-MM-DD HH24:MI') || ')' END
              FROM pg_stat_user_tables
              WHERE n_live_tup > 1000
                AND (coalesce(last_analyze, last_autoanalyze) IS NULL
                     OR n_mod_since_analyze > n_live_tup / 10 + 50)
              ORDER BY relname) AS stale,
        (SELECT max(greatest(last_vacuum, last_autovacuum))::text FROM pg_stat_user_tables) AS last_vacuum";

#[derive(FromQueryResult)]
struct Vacuum {
    autovacuum: String,
    stale: Vec<String>,
    last_vacuum: Option<String>,
}

/// Vacuum and analyse: `warn` when autovacuum is off or a large table's statistics are
/// missing or stale (the planner guesses).
pub(super) async fn vacuum_and_analyze(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let v = Vacuum::find_by_statement(sql(VACUUM_SQL))
        .one(db)
        .await?
        .ok_or_else(|| DbError::no_row("vacuum statistics"))?;
    let name = "vacuum and analyze";
    Ok(vec![if v.autovacuum != "on" {
        Check::warn(name, "autovacuum is off")
    } else if !v.stale.is_empty() {
        Check::warn(
            name,
            format!(
                "statistics stale on {}: {}",
                v.stale.len(),
                first(&v.stale, 3)
            ),
        )
        .with_details(v.stale)
    } else {
        Check::ok(
            name,
            format!(
                "autovacuum on; last vacuum {}",
                v.last_vacuum.as_deref().unwrap_or("never")
            ),
        )
    }])
}

/// Sequences by the share of their range used (`pg_sequences`; `last_value` is NULL
/// for a sequence never used or not readable).
const SEQUENCES_SQL: &str = "SELECT schemaname::text || '.' || sequencename::text AS name,
            ((last_value::numeric - min_value::numeric) / nullif(max_value::numeric - min_value::numeric, 0))::float8 AS used
     FROM pg_sequences WHERE last_value IS NOT NULL
     ORDER BY 2 DESC NULLS LAST, 1";

#[derive(FromQueryResult)]
struct Sequence {
    name: String,
    used: Option<f64>,
}

/// Sequence headroom: `fail` above 90% of a sequence's range, `warn` above 50%.
pub(super) async fn sequences(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let all = Sequence::find_by_statement(sql(SEQUENCES_SQL))
        .all(db)
        .await?;
    let used = |s: &Sequence| s.used.unwrap_or(0.0);
    let over = |limit: f64| -> Vec<String> {
        all.iter()
            .filter(|s| used(s) > limit)
            .map(|s| format!("{} {:.1}% used", s.name, used(s) * 100.0))
            .collect()
    };
    let (critical, high) = (over(0.9), over(0.5));
    Ok(vec![if !critical.is_empty() {
        Check::fail(
            "sequences",
            format!("near their maximum: {}", first(&critical, 3)),
        )
        .with_details(critical)
    } else if !high.is_empty() {
        Check::warn("sequences", format!("over half used: {}", first(&high, 3))).with_details(high)
    } else {
        let most = all
            .first()
            .map(|s| format!("; most used {} at {:.4}%", s.name, used(s) * 100.0))
            .unwrap_or_default();
        Check::ok(
            "sequences",
            format!("{} in use, all under half their range{most}", all.len()),
        )
    }])
}

/// Buffer cache hit rates of tables and indexes, with the block reads they cover
/// (PgHero's `table_hit_rate` / `index_hit_rate`).
const HIT_RATE_SQL: &str = "SELECT
       (SELECT sum(heap_blks_hit)::float8 / nullif(sum(heap_blks_hit) + sum(heap_blks_read), 0)
        FROM pg_statio_user_tables) AS table_rate,
       (SELECT sum(idx_blks_hit)::float8 / nullif(sum(idx_blks_hit) + sum(idx_blks_read), 0)
        FROM pg_statio_user_indexes) AS index_rate,
       (SELECT coalesce(sum(heap_blks_hit + heap_blks_read), 0)::float8 FROM pg_statio_user_tables) AS accesses";

#[derive(FromQueryResult)]
struct HitRate {
    table_rate: Option<f64>,
    index_rate: Option<f64>,
    accesses: f64,
}

/// Below this many block accesses, a hit rate means nothing.
const HIT_RATE_MIN_ACCESSES: f64 = 10_000.0;

/// The buffer cache hit rate: `warn` below 99% for tables or indexes (the working
/// set does not fit `shared_buffers`), once there is traffic to judge.
pub(super) async fn cache_hit_rate(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let h = HitRate::find_by_statement(sql(HIT_RATE_SQL))
        .one(db)
        .await?
        .ok_or_else(|| DbError::no_row("hit rates"))?;
    let pct = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0));
    let text = format!(
        "tables {}, indexes {}",
        pct(h.table_rate),
        pct(h.index_rate)
    );
    let name = "buffer cache hit rate";
    let low = [h.table_rate, h.index_rate]
        .iter()
        .any(|r| r.is_some_and(|r| r < 0.99));
    Ok(vec![if h.accesses < HIT_RATE_MIN_ACCESSES {
        Check::ok(name, format!("{text} (too little traffic to judge)"))
    } else if low {
        Check::warn(
            name,
            format!("{text}: below 99%, consider more shared_buffers"),
        )
    } else {
        Check::ok(name, text)
    }])
}

/// Other sessions' statements running for over five minutes.
const LONG_RUNNING_SQL: &str = "SELECT pid, extract(epoch FROM now() - query_start)::float8 AS seconds,
            coalesce(usename::text, '?') AS who, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) AS query
     FROM pg_stat_activity
     WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'
       AND query_start < now() - interval '5 minutes'
     ORDER BY query_start";

/// Sessions idle inside an open transaction for over a minute.
const IDLE_IN_TRANSACTION_SQL: &str = "SELECT pid, extract(epoch FROM now() - state_change)::float8 AS seconds,
            coalesce(usename::text, '?') AS who, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) AS query
     FROM pg_stat_activity
     WHERE state IN ('idle in transaction', 'idle in transaction (aborted)') AND pid <> pg_backend_pid()
       AND state_change < now() - interval '1 minute'
     ORDER BY state_change";

#[derive(FromQueryResult)]
struct Session {
    pid: i32,
    seconds: f64,
    who: String,
    query: Option<String>,
}

/// Sessions by `text`: `warn` listing pid, age, user and statement.
async fn sessions(
    db: &DatabaseTransaction,
    text: &str,
    name: &'static str,
    what: &str,
) -> CheckResult {
    let found: Vec<String> = Session::find_by_statement(sql(text))
        .all(db)
        .await?
        .into_iter()
        .map(|s| {
            format!(
                "pid {} ({}) for {:.0}s: {}",
                s.pid,
                s.who,
                s.seconds,
                s.query.unwrap_or_default()
            )
        })
        .collect();
    Ok(vec![if found.is_empty() {
        Check::ok(name, "none")
    } else {
        Check::warn(
            name,
            format!("{} {what}: {}", found.len(), first(&found, 2)),
        )
        .with_details(found)
    }])
}

/// Statements running over five minutes: `warn`.
pub(super) async fn long_running_queries(
    db: &DatabaseTransaction,
    _: &Expectations,
) -> CheckResult {
    sessions(
        db,
        LONG_RUNNING_SQL,
        "long-running queries",
        "over 5 minutes",
    )
    .await
}

/// Sessions idle in a transaction over a minute (they hold locks and stop vacuum):
/// `warn`.
pub(super) async fn idle_in_transaction(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    sessions(
        db,
        IDLE_IN_TRANSACTION_SQL,
        "idle in transaction",
        "idle in a transaction over 1 minute",
    )
    .await
}
