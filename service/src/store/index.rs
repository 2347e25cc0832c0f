//! The vector index's lifecycle: rebuilt concurrently with parameters fitted to the
//! rows it holds, recorded in `vector_index_builds`, and checked by [`index_health`];
//! metadata keys promoted to B-tree indexes.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::sqlx::{self, Row};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, Statement,
};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::StoreError;
use super::filter::{MetadataOf, check_key};
use crate::db::{Pools, SessionUse};
use crate::error::DbError;

/// The seed's vector index, which [`reindex`] rebuilds under the same name.
pub const INDEX_NAME: &str = "idx_chunks_embedding";

/// The name a rebuild builds under before it replaces [`INDEX_NAME`].
const REBUILD_NAME: &str = "idx_chunks_embedding_rebuild";

/// How to build the vector index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum IndexMethod {
    /// Chosen from the data (the default): HNSW (m 16, ef_construction 64) when its
    /// graph fits `maintenance_work_mem`, else IVFFlat with fitted lists (an HNSW
    /// build whose graph spills to disk takes many times longer). The reason is
    /// recorded with the build and shown by [`index_health`]. On the PostgreSQL manual
    /// (8,295 chunks), HNSW gave recall@10 0.999 at a tenth of exact search's time,
    /// while IVFFlat's fitted 8 lists gave 0.835 at 2 probes and a full scan at 4
    /// (docs/performance.md).
    #[default]
    Auto,
    /// IVFFlat with `lists` (`None`: fitted to the rows, see [`lists_for`]).
    Ivfflat {
        /// The number of lists.
        lists: Option<u32>,
    },
    /// HNSW with `m` and `ef_construction` (pgvector's defaults: 16 and 64).
    Hnsw {
        /// Neighbours per node per layer.
        m: u32,
        /// The candidate list while building.
        ef_construction: u32,
    },
}

/// HNSW's parameters when [`IndexMethod::Auto`] chooses it (pgvector's defaults).
const AUTO_HNSW: (u32, u32) = (16, 64);

/// Roughly the bytes of an HNSW graph pgvector builds in memory for `rows` vectors of
/// `dimension` with `m`: each element's vector, its layer-0 neighbour list (2m item
/// pointers with their distances) and bookkeeping.
fn hnsw_graph_bytes(rows: i64, dimension: i64, m: u32) -> i64 {
    rows.max(0) * (dimension.max(1) * 4 + i64::from(m) * 2 * 10 + 128)
}

/// What [`IndexMethod::Auto`] builds for `rows` vectors of `dimension` under
/// `memory` bytes of `maintenance_work_mem`, and why.
fn choose(rows: i64, dimension: i64, memory: i64) -> (IndexMethod, String) {
    let (m, ef_construction) = AUTO_HNSW;
    let graph = hnsw_graph_bytes(rows, dimension, m);
    let mb = |b: i64| b / (1024 * 1024);
    if graph <= memory {
        (
            IndexMethod::Hnsw { m, ef_construction },
            format!(
                "hnsw: its graph (about {} MB for {rows} rows of {dimension} dimensions) fits maintenance_work_mem ({} MB)",
                mb(graph).max(1),
                mb(memory)
            ),
        )
    } else {
        (
            IndexMethod::Ivfflat { lists: None },
            format!(
                "ivfflat: an hnsw graph (about {} MB for {rows} rows) would not fit maintenance_work_mem ({} MB) and its build would spill; give more memory for hnsw",
                mb(graph),
                mb(memory)
            ),
        )
    }
}

/// The build's inputs for [`IndexMethod::Auto`]: the vectors' dimension (the
/// column's type modifier) and `maintenance_work_mem` in bytes, as set for the build.
const AUTO_INPUTS_SQL: &str = "SELECT (SELECT atttypmod FROM pg_attribute
             WHERE attrelid = 'document_chunks'::regclass AND attname = 'embedding')::int8,
        pg_size_bytes(current_setting('maintenance_work_mem'))";

/// IVFFlat's lists for `rows` rows, as pgvector advises: `rows / 1000` up to a million
/// rows, `sqrt(rows)` above; at least 1.
pub fn lists_for(rows: i64) -> u32 {
    let lists = if rows <= 1_000_000 {
        rows / 1000
    } else {
        (rows as f64).sqrt() as i64
    };
    lists.clamp(1, 32_768) as u32
}

/// What [`reindex`] built.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReindexReport {
    /// `ivfflat` or `hnsw`.
    pub method: String,
    /// Its parameters (`lists`, or `m` and `ef_construction`).
    pub parameters: Value,
    /// Rows with an embedding when the build began.
    pub rows: i64,
    /// How long the build and the swap took.
    pub duration: Duration,
}

/// Counts the rows the index will hold.
const COUNT_SQL: &str = "SELECT count(*) FROM document_chunks WHERE embedding IS NOT NULL";

/// Rebuilds the vector index `idx_chunks_embedding` with `method` while searches and
/// ingests go on: `CREATE INDEX CONCURRENTLY` under another name, `DROP INDEX
/// CONCURRENTLY` of the old one, a rename, and the build recorded in
/// `vector_index_builds` (from then on the store searches through it). A leftover of
/// an interrupted rebuild is dropped first. `maintenance_work_mem` (e.g. `"1GB"`) is
/// set for the build; [`IndexMethod::Auto`] chooses HNSW when its graph fits in it,
/// and records why.
///
/// Needs a connection of its own, outside any transaction (concurrent index builds
/// cannot run in one): it holds one of `db`'s session connections (`DIRECT_URL`
/// behind a pooler) for the whole build
/// — minutes on a large table — and resets its setting before giving it back.
pub async fn reindex(
    db: &impl Pools,
    method: IndexMethod,
    maintenance_work_mem: &str,
) -> Result<ReindexReport, StoreError> {
    let started = Instant::now();
    if let IndexMethod::Hnsw { m, ef_construction } = method
        && (!(2..=100).contains(&m)
            || !(4..=1000).contains(&ef_construction)
            || ef_construction < 2 * m)
    {
        return Err(StoreError::Invalid {
            field: "hnsw",
            value: format!("m = {m}, ef_construction = {ef_construction}"),
            reason: "m is 2 to 100, ef_construction 4 to 1000 and at least 2m",
        });
    }
    // The method's name, its WITH clause and its parameters as recorded: this
    // function's own numbers, never a caller's text.
    // `Auto` is resolved to one of the others before this runs.
    let build = |method: IndexMethod, rows: i64| match method {
        IndexMethod::Ivfflat { lists } => {
            let lists = lists.unwrap_or_else(|| lists_for(rows)).max(1);
            (
                "ivfflat",
                format!("lists = {lists}"),
                json!({"lists": lists}),
            )
        }
        hnsw => {
            let (m, ef_construction) = match hnsw {
                IndexMethod::Hnsw { m, ef_construction } => (m, ef_construction),
                _ => AUTO_HNSW,
            };
            (
                "hnsw",
                format!("m = {m}, ef_construction = {ef_construction}"),
                json!({"m": m, "ef_construction": ef_construction}),
            )
        }
    };
    let pool = db.session_pool(SessionUse::ConcurrentIndex)?;
    let mut conn = pool.acquire().await.map_err(DbError::from)?;
    let result = async {
        sqlx::query("SELECT set_config('maintenance_work_mem', $1, false)")
            .bind(maintenance_work_mem)
            .execute(&mut *conn)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {REBUILD_NAME}"
        )))
        .execute(&mut *conn)
        .await?;
        let rows: i64 = sqlx::query(COUNT_SQL)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        let (method, reason) = match method {
            IndexMethod::Auto => {
                let inputs = sqlx::query(AUTO_INPUTS_SQL).fetch_one(&mut *conn).await?;
                let (chosen, reason) = choose(rows, inputs.try_get(0)?, inputs.try_get(1)?);
                (chosen, Some(reason))
            }
            other => (other, None),
        };
        let (name, with, mut parameters) = build(method, rows);
        if let (Some(reason), Value::Object(map)) = (reason, &mut parameters) {
            map.insert("chosen_because".to_owned(), Value::String(reason));
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE INDEX CONCURRENTLY {REBUILD_NAME} ON document_chunks
             USING {name} (embedding vector_cosine_ops) WITH ({with})"
        )))
        .execute(&mut *conn)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {INDEX_NAME}"
        )))
        .execute(&mut *conn)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER INDEX {REBUILD_NAME} RENAME TO {INDEX_NAME}"
        )))
        .execute(&mut *conn)
        .await?;
        Ok::<_, sqlx::Error>((name, rows, parameters))
    }
    .await;
    let reset = sqlx::query("RESET maintenance_work_mem")
        .execute(&mut *conn)
        .await;
    drop(conn);
    let (name, rows, parameters) = result.map_err(DbError::from)?;
    reset.map_err(DbError::from)?;
    record_build(db, name, &parameters, rows).await?;
    Ok(ReindexReport {
        method: name.to_owned(),
        parameters,
        rows,
        duration: started.elapsed(),
    })
}

/// Records a build of [`INDEX_NAME`] in `vector_index_builds`, through its entity.
async fn record_build<C: ConnectionTrait>(
    db: &C,
    method: &str,
    parameters: &Value,
    rows: i64,
) -> Result<(), StoreError> {
    use entity::vector_index_builds::{ActiveModel, Column, Entity};
    let row = ActiveModel {
        index_name: Set(INDEX_NAME.to_owned()),
        method: Set(method.to_owned()),
        parameters: Set(parameters.clone()),
        rows_at_build: Set(rows),
        built_at: Set(Utc::now().into()),
    };
    Entity::insert(row)
        .on_conflict(
            OnConflict::column(Column::IndexName)
                .update_columns([
                    Column::Method,
                    Column::Parameters,
                    Column::RowsAtBuild,
                    Column::BuiltAt,
                ])
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// What [`index_health`] recommends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "reason")]
pub enum Recommendation {
    /// The index fits its rows.
    Keep,
    /// Rebuild it ([`reindex`]), for this reason.
    Rebuild(String),
    /// Nothing to build on yet; searches are exact meanwhile.
    Wait(String),
}

/// The vector index's state and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexHealth {
    /// The index (`idx_chunks_embedding`).
    pub index_name: String,
    /// Whether it exists.
    pub exists: bool,
    /// Whether it is valid (an interrupted concurrent build leaves an invalid index).
    pub valid: bool,
    /// Its access method (`ivfflat`, `hnsw`), from the catalogue.
    pub method: Option<String>,
    /// The parameters it was built with, as recorded.
    pub parameters: Value,
    /// Why [`IndexMethod::Auto`] chose its method, when it did.
    pub chosen_because: Option<String>,
    /// Rows when it was built, as recorded (none: never recorded).
    pub rows_at_build: Option<i64>,
    /// When it was built, as recorded.
    pub built_at: Option<DateTime<Utc>>,
    /// Rows with an embedding now.
    pub rows_now: i64,
    /// Its size on disk.
    pub size_bytes: i64,
    /// IVFFlat built on fewer rows than lists: its centroids mean nothing, and the
    /// store searches exactly until it is rebuilt.
    pub built_on_too_little_data: bool,
    /// What to do.
    pub recommendation: Recommendation,
}

/// The index as the catalogue and `vector_index_builds` see it, and the rows now, in
/// one statement of catalogue reads and a count.
const HEALTH_SQL: &str = "SELECT i.indexrelid IS NOT NULL AS exists,
            coalesce(i.indisvalid, false) AS valid,
            am.amname AS method,
            coalesce(pg_relation_size(i.indexrelid), 0) AS size_bytes,
            b.parameters, b.rows_at_build, b.built_at,
            (SELECT count(*) FROM document_chunks WHERE embedding IS NOT NULL) AS rows_now
     FROM (SELECT 1) AS one
     LEFT JOIN pg_class ic ON ic.relname = $1 AND ic.relkind = 'i'
                          AND ic.relnamespace = 'public'::regnamespace
     LEFT JOIN pg_index i ON i.indexrelid = ic.oid
     LEFT JOIN pg_am am ON am.oid = ic.relam
     LEFT JOIN vector_index_builds b ON b.index_name = $1";

#[derive(FromQueryResult)]
struct HealthRow {
    exists: bool,
    valid: bool,
    method: Option<String>,
    size_bytes: i64,
    parameters: Option<Value>,
    rows_at_build: Option<i64>,
    built_at: Option<DateTime<Utc>>,
    rows_now: i64,
}

/// The vector index's health: its kind and parameters, rows when built and now,
/// whether it was built on too little data, and a recommendation — rebuild when it is
/// missing or invalid, was built on too little data, or its rows have doubled since.
/// One statement (it counts the chunks), on any connection.
pub async fn index_health<C: ConnectionTrait>(db: &C) -> Result<IndexHealth, StoreError> {
    let row = HealthRow::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        HEALTH_SQL,
        [INDEX_NAME.into()],
    ))
    .one(db)
    .await?
    .ok_or_else(|| DbError::no_row("index health"))?;
    let parameters = row.parameters.unwrap_or_else(|| json!({}));
    let chosen_because = parameters
        .get("chosen_because")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let lists = parameters.get("lists").and_then(Value::as_i64);
    let too_little = row.method.as_deref() == Some("ivfflat")
        && lists.is_some_and(|lists| row.rows_at_build.unwrap_or(0) < lists);
    let recommendation = if !row.exists {
        Recommendation::Rebuild("the index does not exist".into())
    } else if !row.valid {
        Recommendation::Rebuild("the index is invalid (an interrupted concurrent build)".into())
    } else if row.rows_at_build.is_none() {
        Recommendation::Rebuild("no build is recorded: its parameters are unknown".into())
    } else if too_little && row.rows_now == 0 {
        Recommendation::Wait("the table is empty; searches are exact until it has data".into())
    } else if too_little {
        Recommendation::Rebuild(format!(
            "built on {} rows for {} lists; searches are exact until it is rebuilt (lists = {} for {} rows)",
            row.rows_at_build.unwrap_or(0),
            lists.unwrap_or(0),
            lists_for(row.rows_now),
            row.rows_now
        ))
    } else if row
        .rows_at_build
        .is_some_and(|built| built > 0 && row.rows_now >= 2 * built)
    {
        Recommendation::Rebuild(format!(
            "rows have doubled since the build ({} then, {} now)",
            row.rows_at_build.unwrap_or(0),
            row.rows_now
        ))
    } else {
        Recommendation::Keep
    };
    Ok(IndexHealth {
        index_name: INDEX_NAME.to_owned(),
        exists: row.exists,
        valid: row.valid,
        method: row.method,
        parameters,
        chosen_because,
        rows_at_build: row.rows_at_build,
        built_at: row.built_at,
        rows_now: row.rows_now,
        size_bytes: row.size_bytes,
        built_on_too_little_data: too_little,
        recommendation,
    })
}

/// Builds (concurrently, if missing) an expression B-tree index on a metadata key,
/// `(metadata -> 'key')`, which serves `lt`, `lte`, `gt` and `gte` filters on it (and
/// equality on a promoted key through the GIN index as before). Returns the index's
/// name. Needs a connection outside any transaction: one of `db`'s session
/// connections (`DIRECT_URL` behind a pooler), for the build.
pub async fn promote_key(db: &impl Pools, of: MetadataOf, key: &str) -> Result<String, StoreError> {
    check_key(key)?;
    let table = match of {
        MetadataOf::Chunk => "document_chunks",
        MetadataOf::Document => "documents",
    };
    let readable: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let digest = Sha256::digest(format!("{table}\0{key}").as_bytes());
    let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("idx_{table}_meta_{readable}_{suffix}");
    // The key passed `check_key` (no quote can reach the SQL); the name is built from it.
    let pool = db.session_pool(SessionUse::ConcurrentIndex)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ((metadata -> '{key}'))"
    )))
    .execute(pool)
    .await
    .map_err(DbError::from)?;
    Ok(name)
}

/// How far a running build of the vector index has got, from
/// `pg_stat_progress_create_index`.
#[derive(Debug, Clone, PartialEq, Serialize, FromQueryResult)]
pub struct BuildProgress {
    /// The build's phase (`building index: loading tuples in tree`, …).
    pub phase: String,
    /// Blocks scanned, and of how many (0 when the phase does not count blocks).
    pub blocks_done: i64,
    /// Blocks to scan.
    pub blocks_total: i64,
    /// Tuples processed, and of how many (0 when the phase does not count tuples).
    pub tuples_done: i64,
    /// Tuples to process.
    pub tuples_total: i64,
}

/// The progress of any index build on `document_chunks` (the rebuild of
/// [`reindex`]): a system view SeaORM has no entity for.
const PROGRESS_SQL: &str = "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total
     FROM pg_stat_progress_create_index
     WHERE relid = 'document_chunks'::regclass
     ORDER BY pid LIMIT 1";

/// How far a running [`reindex`] has got (from another connection), or `None` when
/// no build runs. One round trip, on any connection.
pub async fn build_progress<C: ConnectionTrait>(
    db: &C,
) -> Result<Option<BuildProgress>, StoreError> {
    Ok(
        BuildProgress::find_by_statement(Statement::from_string(DbBackend::Postgres, PROGRESS_SQL))
            .one(db)
            .await?,
    )
}
