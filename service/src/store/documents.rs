//! One document out, and one chunk's stored embedding.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::StoreError;
use crate::error::DbError;

/// What [`delete_document`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromQueryResult)]
pub struct DeletedDocument {
    /// Chunks that went with it (the foreign key's cascade).
    pub chunks: i64,
}

/// Deletes document `$1` and counts its chunks in the same snapshot (the cascade
/// deletes them): a data-modifying CTE.
const DELETE_DOCUMENT_SQL: &str = "WITH gone AS (DELETE FROM documents WHERE id = $1 RETURNING id)
     SELECT (SELECT count(*) FROM gone) AS found,
            (SELECT count(*) FROM document_chunks WHERE document_id = $1) AS chunks";

#[derive(FromQueryResult)]
struct Deleted {
    found: i64,
    chunks: i64,
}

/// Deletes document `id` with its chunks (the foreign key cascades) and says how many
/// chunks went; [`StoreError::NotFound`] when there is no such document. One round
/// trip, on any connection.
pub async fn delete_document<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<DeletedDocument, StoreError> {
    let row = Deleted::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        DELETE_DOCUMENT_SQL,
        [id.into()],
    ))
    .one(db)
    .await?
    .ok_or_else(|| DbError::no_row("delete_document"))?;
    if row.found == 0 {
        return Err(StoreError::NotFound(id));
    }
    Ok(DeletedDocument { chunks: row.chunks })
}

/// The stored embedding of chunk `chunk_index` of document `document_id` (to search
/// for chunks like it), if the chunk exists and has one. One round trip, through the
/// `document_chunks` entity, on any connection.
pub async fn chunk_embedding<C: ConnectionTrait>(
    db: &C,
    document_id: Uuid,
    chunk_index: i32,
) -> Result<Option<Vec<f32>>, StoreError> {
    use entity::document_chunks::{Column, Entity};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let chunk = Entity::find()
        .filter(Column::DocumentId.eq(document_id))
        .filter(Column::ChunkIndex.eq(chunk_index))
        .one(db)
        .await?;
    Ok(chunk.and_then(|c| c.embedding).map(|v| v.to_vec()))
}

/// Documents and chunks stored per day and source over the last `$1` days, newest
/// day first: a GROUP BY over a join by day, which the entities do not express.
const INGEST_HISTORY_SQL: &str =
    "SELECT to_char(date_trunc('day', d.created_at), 'YYYY-MM-DD') AS day,
            d.source, count(DISTINCT d.id) AS documents, count(c.id) AS chunks
     FROM documents d LEFT JOIN document_chunks c ON c.document_id = d.id
     WHERE d.created_at > now() - make_interval(days => $1)
     GROUP BY 1, 2 ORDER BY 1 DESC, 2 LIMIT 200";

/// One day and source of [`ingest_history`].
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult, serde::Serialize)]
pub struct IngestDay {
    /// The day (UTC), `YYYY-MM-DD`.
    pub day: String,
    /// The documents' source, if they have one.
    pub source: Option<String>,
    /// Documents stored that day (still stored).
    pub documents: i64,
    /// Their chunks.
    pub chunks: i64,
}

/// What was ingested over the last `days` days, per day and source (at most 200
/// lines), from the documents still stored. One round trip, on any connection.
pub async fn ingest_history<C: ConnectionTrait>(
    db: &C,
    days: i32,
) -> Result<Vec<IngestDay>, StoreError> {
    Ok(IngestDay::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        INGEST_HISTORY_SQL,
        [days.into()],
    ))
    .all(db)
    .await?)
}
