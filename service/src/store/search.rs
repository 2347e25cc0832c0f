//! Nearest chunks by cosine distance, with their documents, filtered, never fewer
//! than `k` when `k` match; the machinery hybrid and MMR search share.

use sea_orm::prelude::PgVector;
use sea_orm::{
    ConnectionTrait, DbBackend, FromQueryResult, Statement, TransactionSession, TransactionTrait,
    Value as SqlValue,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::filter::Filter;
use super::model::EmbeddingModel;
use super::{StoreError, check_vector};
use crate::error::DbError;

/// The largest `k` a search takes (and the most candidates hybrid and MMR search
/// fetch).
pub const MAX_K: usize = 1000;

/// Per-query knobs of the vector index, set for the query's transaction only
/// (`set_config(…, true)`: nothing leaks to pooled connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SearchOptions {
    /// IVFFlat lists probed first (`ivfflat.probes`). Default `None`: fitted to the
    /// index's recorded lists, `ceil(2 × sqrt(lists))` (at most the lists). On the
    /// PostgreSQL manual's 8,295 chunks, `sqrt(lists)`, pgvector's starting point,
    /// gave recall@10 0.92 at 91 lists; twice it gave 0.96 (docs/performance.md).
    /// [`Served`] records the number set.
    pub probes: Option<u32>,
    /// The most lists an iterative scan may probe when a filter leaves fewer than `k`
    /// rows in the first ones (`ivfflat.max_probes`; pgvector's default is every list,
    /// which turns a selective filter into a full scan). Default 100.
    pub max_probes: u32,
    /// HNSW's candidate list (`hnsw.ef_search`). Default 100.
    pub ef_search: u32,
    /// The most tuples an HNSW iterative scan visits (`hnsw.max_scan_tuples`). Default
    /// 20,000.
    pub max_scan_tuples: u32,
    /// Search every row exactly, without the index. Default off; the store also
    /// searches exactly on its own while the index was built on too little data
    /// (fewer rows than lists: its centroids mean nothing), when a filter names
    /// documents, and again when the index returned fewer than `k` rows.
    pub exact: bool,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            probes: None,
            max_probes: 100,
            ef_search: 100,
            max_scan_tuples: 20_000,
            exact: false,
        }
    }
}

/// A chunk found, with its document.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
pub struct SearchHit {
    /// The chunk's id.
    pub chunk_id: Uuid,
    /// Its position in its document.
    pub chunk_index: i32,
    /// Its text.
    pub content: String,
    /// Its metadata.
    pub chunk_metadata: Value,
    /// Its document.
    pub document_id: Uuid,
    /// The document's source.
    pub source: Option<String>,
    /// The document's title.
    pub title: Option<String>,
    /// The document's metadata.
    pub document_metadata: Value,
    /// Cosine distance to the query, 0 (same direction) to 2.
    pub distance: f64,
    /// `1 − distance`.
    pub similarity: f64,
}

impl AsRef<SearchHit> for SearchHit {
    fn as_ref(&self) -> &SearchHit {
        self
    }
}

/// How a search was served: the knobs it set, and whether the vector index served
/// it. Search logs record it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Served {
    /// The knobs set for the search.
    #[serde(flatten)]
    pub options: SearchOptions,
    /// Whether the vector index served it (else every candidate row was compared).
    pub index: bool,
    /// Whether the index returned fewer than `k` rows and the search was repeated
    /// exactly.
    pub exact_fallback: bool,
}

/// Sets the index knobs for the search's transaction, reads the store's recorded
/// model, and says whether the vector index may serve the search: not when the caller
/// asks for exact search, and not while the index was built on fewer rows than it has
/// lists (`vector_index_builds`: its centroids would send the search to empty lists).
/// `set_config` calls and catalogue reads in one statement.
const KNOBS_SQL: &str = "WITH build AS (
         SELECT method, rows_at_build, (parameters->>'lists')::int AS lists
         FROM vector_index_builds WHERE index_name = 'idx_chunks_embedding'
     ),
     fitted AS (
         SELECT coalesce($1::int,
                         greatest(1, least((SELECT lists FROM build),
                                           ceil(2 * sqrt((SELECT lists FROM build)))::int)),
                         10) AS probes
     )
     SELECT (SELECT probes FROM fitted) AS probes,
            set_config('ivfflat.probes', (SELECT probes FROM fitted)::text, true) IS NOT NULL
            AND set_config('ivfflat.iterative_scan', 'relaxed_order', true) IS NOT NULL
            AND set_config('ivfflat.max_probes',
                           greatest($2::int, (SELECT probes FROM fitted))::text, true) IS NOT NULL
            AND set_config('hnsw.ef_search', $3, true) IS NOT NULL
            AND set_config('hnsw.iterative_scan', 'relaxed_order', true) IS NOT NULL
            AND set_config('hnsw.max_scan_tuples', $4, true) IS NOT NULL
            AND NOT $5
            AND coalesce((SELECT method = 'hnsw' OR rows_at_build >= coalesce(lists, 1)
                          FROM build), false)
            AS use_index,
        (SELECT name FROM embedding_model) AS model,
        (SELECT dimension FROM embedding_model) AS dimension";

/// The `$2` nearest chunks to `$1` that pass `{filter}`, through the index: its `ORDER
/// BY` is the index's operator on the column. pgvector's operator: SeaORM's builder
/// cannot say it.
const CANDIDATES_INDEXED: &str = "SELECT c.id, c.chunk_index, c.content, c.metadata, c.document_id,
                c.embedding <=> $1::vector AS distance{embedding}
         FROM document_chunks c
         WHERE c.embedding IS NOT NULL AND ({filter})
         ORDER BY c.embedding <=> $1::vector
         LIMIT $2";

/// The same, exactly: a distance the index cannot serve (`+ 0`), so every row that
/// passes the filter is compared.
const CANDIDATES_EXACT: &str = "SELECT c.id, c.chunk_index, c.content, c.metadata, c.document_id,
                (c.embedding <=> $1::vector) + 0 AS distance{embedding}
         FROM document_chunks c
         WHERE c.embedding IS NOT NULL AND ({filter})
         ORDER BY distance
         LIMIT $2";

/// The nearest chunks with their documents, re-ordered by distance outside a
/// `MATERIALIZED` CTE (an iterative scan in relaxed order may return them slightly out
/// of order). `{columns}` adds the vectors for MMR.
const SEARCH_SQL: &str = "WITH nearest AS MATERIALIZED ({candidates})
     SELECT n.id AS chunk_id, n.chunk_index, n.content, n.metadata AS chunk_metadata,
            n.document_id, d.source, d.title, d.metadata AS document_metadata,
            n.distance, 1 - n.distance AS similarity{columns}
     FROM nearest n JOIN documents d ON d.id = n.document_id
     ORDER BY n.distance, n.id";

#[derive(FromQueryResult)]
struct Knobs {
    probes: i32,
    use_index: bool,
    model: Option<String>,
    dimension: Option<i32>,
}

/// A search's transaction with the index knobs set.
pub(crate) struct Session<T> {
    /// The transaction (a savepoint inside the caller's).
    pub txn: T,
    /// How the search is served.
    pub served: Served,
}

/// Checks the query and `k`, opens the search's transaction (a savepoint inside the
/// caller's) and sets its knobs; `None` when the store holds nothing yet. Round trips:
/// begin, one statement.
pub(crate) async fn open<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    model: &EmbeddingModel,
    query: &[f32],
    k: usize,
    filter: Option<&Filter>,
    options: &SearchOptions,
) -> Result<Option<Session<C::Transaction>>, StoreError> {
    check_vector(model, query, 0, 0)?;
    check_k("k", k)?;
    let txn = db.begin().await?;
    let exact = options.exact || filter.is_some_and(Filter::names_documents);
    let knobs = Knobs::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        KNOBS_SQL,
        [
            options
                .probes
                .map(|p| i32::try_from(p.max(1)).unwrap_or(i32::MAX))
                .into(),
            i32::try_from(options.max_probes).unwrap_or(i32::MAX).into(),
            options.ef_search.max(1).to_string().into(),
            options.max_scan_tuples.max(1).to_string().into(),
            exact.into(),
        ],
    ))
    .one(&txn)
    .await?
    .ok_or_else(|| DbError::no_row("search knobs"))?;
    match (knobs.model, knobs.dimension) {
        (None, _) => {
            txn.commit().await?;
            Ok(None)
        }
        (Some(name), Some(dimension))
            if name == model.name && dimension.max(0) as usize == model.dimension =>
        {
            Ok(Some(Session {
                txn,
                served: Served {
                    options: SearchOptions {
                        probes: Some(knobs.probes.max(1) as u32),
                        ..*options
                    },
                    index: knobs.use_index,
                    exact_fallback: false,
                },
            }))
        }
        (Some(name), _) => Err(StoreError::WrongModel {
            expected: name,
            got: model.name.clone(),
        }),
    }
}

/// Refuses a `k` (or candidate count) outside 1..=[`MAX_K`].
pub(crate) fn check_k(field: &'static str, k: usize) -> Result<(), StoreError> {
    if k == 0 || k > MAX_K {
        return Err(StoreError::Invalid {
            field,
            value: k.to_string(),
            reason: "1 to 1000",
        });
    }
    Ok(())
}

/// The candidates' SQL, through the index or exact, with `filter` (SQL over `c`),
/// and with each candidate's vector when `with_embedding` (MMR needs them).
pub(crate) fn candidates_sql(index: bool, filter: &str, with_embedding: bool) -> String {
    let template = if index {
        CANDIDATES_INDEXED
    } else {
        CANDIDATES_EXACT
    };
    template.replace("{filter}", filter).replace(
        "{embedding}",
        if with_embedding { ", c.embedding" } else { "" },
    )
}

/// The query vector as a parameter.
pub(crate) fn vector_value(query: &[f32]) -> SqlValue {
    PgVector::from(query.to_vec()).into()
}

/// Runs a search statement in `session` with `values` and then `filter`'s parameters
/// (compiled from `$values.len() + 1`): `render` gives the statement for the index or
/// for exact search, with the filter's SQL. When the index returns fewer than `want`
/// rows, the statement runs again exactly (a selective filter may leave fewer rows in
/// the lists an iterative scan may visit), so it never returns fewer than `want` rows
/// when that many match.
pub(crate) async fn run_search<T: ConnectionTrait, R: FromQueryResult>(
    session: &mut Session<T>,
    mut values: Vec<SqlValue>,
    filter: Option<&Filter>,
    want: usize,
    render: impl Fn(bool, &str) -> String,
) -> Result<Vec<R>, StoreError> {
    let compiled = match filter {
        Some(f) => Some(f.compile(values.len() + 1)?),
        None => None,
    };
    let filter_sql = compiled.as_ref().map_or("true", |c| c.sql.as_str());
    if let Some(c) = &compiled {
        values.extend(c.values.iter().cloned());
    }
    let run = |index: bool| {
        R::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            render(index, filter_sql),
            values.clone(),
        ))
        .all(&session.txn)
    };
    let rows = run(session.served.index).await?;
    if session.served.index && rows.len() < want {
        let exact = run(false).await?;
        session.served.exact_fallback = true;
        return Ok(exact);
    }
    Ok(rows)
}

/// The `limit` chunks nearest to `query` that pass `filter`, in `session` (through
/// [`run_search`]), with their vectors (column `embedding`) when `with_embedding`.
pub(crate) async fn nearest<T: ConnectionTrait, R: FromQueryResult>(
    session: &mut Session<T>,
    query: &[f32],
    limit: usize,
    filter: Option<&Filter>,
    with_embedding: bool,
) -> Result<Vec<R>, StoreError> {
    let values = vec![vector_value(query), (limit as i64).into()];
    run_search(session, values, filter, limit, |index, filter_sql| {
        SEARCH_SQL
            .replace(
                "{candidates}",
                &candidates_sql(index, filter_sql, with_embedding),
            )
            .replace(
                "{columns}",
                if with_embedding { ", n.embedding" } else { "" },
            )
    })
    .await
}

/// The `k` chunks nearest to `query` (a vector of `model`, the store's recorded model:
/// [`StoreError::WrongModel`] otherwise) that pass `filter`, nearest first, and how
/// the search was served. Runs in a transaction of its own (a savepoint inside the
/// caller's) so the knobs of `options` apply to it alone. Round trips: begin, knobs,
/// the query (twice when the index under-returns), commit.
pub async fn search<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    model: &EmbeddingModel,
    query: &[f32],
    k: usize,
    filter: Option<&Filter>,
    options: &SearchOptions,
) -> Result<(Vec<SearchHit>, Served), StoreError> {
    let Some(mut session) = open(db, model, query, k, filter, options).await? else {
        return Ok((Vec::new(), unserved(options)));
    };
    let hits = nearest(&mut session, query, k, filter, false).await?;
    let served = session.served;
    session.txn.commit().await?;
    Ok((hits, served))
}

/// How a search of an empty store was served: by nothing.
pub(crate) fn unserved(options: &SearchOptions) -> Served {
    Served {
        options: *options,
        index: false,
        exact_fallback: false,
    }
}
