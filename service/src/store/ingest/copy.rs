//! The ingest for loading: chunks by binary `COPY` on a session of its own.

use std::collections::HashSet;

use sea_orm::sqlx;
use sea_orm::{DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::{
    EmbeddingModel, IngestReport, NewDocument, Prepared, StoreError, check, object_text, prepare,
};
use crate::db::binary_copy::BinaryCopy;
use crate::db::{Pools, SessionConnection, SessionUse};
use crate::error::DbError;

/// Lists the (document, index) of the chunks stored for documents `$1` (after
/// [`DELETE_STALE_CHUNKS_SQL`], the unchanged ones): `= ANY` of one `uuid[]`
/// parameter, whatever the batch's size.
const STORED_CHUNKS_SQL: &str =
    "SELECT document_id, chunk_index FROM document_chunks WHERE document_id = ANY($1::uuid[])";

/// Streams the new chunks into `document_chunks` (times and the `tsvector` from the
/// column defaults). The ids come from the client: the column's volatile default
/// (`gen_random_uuid()`) would make the server insert row by row instead of in
/// batches (PostgreSQL's `COPY` falls back to single inserts then), and UUIDv7 keeps
/// the primary key's inserts at its right edge.
const COPY_CHUNKS_SQL: &str = "COPY document_chunks
         (id, document_id, chunk_index, content, content_hash, metadata, embedding)
     FROM STDIN WITH (FORMAT binary)";

/// How many encoded bytes [`ingest_copy`] sends at a time, so the server parses rows
/// while the client encodes the next ones.
const COPY_SEND_BYTES: usize = 1 << 20;

#[derive(FromQueryResult)]
struct StoredChunk {
    document_id: Uuid,
    chunk_index: i32,
}

/// [`ingest`], with the chunks streamed by binary `COPY` straight into
/// `document_chunks` — for loading: faster than [`ingest`] on large batches (see
/// `docs/performance.md`). It does the same checks and is as idempotent, but it
/// cannot join a caller's transaction: it takes a session connection of `db`
/// (`DIRECT_URL` behind a pooler) for its own transaction (COPY needs the session). Statements: begin, the model
/// check, the plan setting, the document upserts, one DELETE of stale chunks and one
/// read of the chunks kept (both only when a document has a key: one without is
/// new), one COPY of the rest (none when nothing changed), commit.
pub async fn ingest_copy(
    db: &impl Pools,
    model: &EmbeddingModel,
    docs: &[NewDocument],
) -> Result<IngestReport, StoreError> {
    check(model, docs)?;
    let pool = db.session_pool(SessionUse::Copy)?;
    let mut conn = pool.acquire().await.map_err(DbError::from)?;
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(DbError::from)?;
    let session = SessionConnection::new(&mut tx);
    // Only keyed documents can have chunks stored already: their chunks are hashed
    // now, for the DELETE of stale chunks and the read of those kept. A new
    // document's chunks are hashed as they are encoded, while the server inserts the
    // rows sent before them.
    let Prepared {
        ids,
        written,
        keyed,
        new,
        keyed_ids,
        keys,
        removed,
    } = prepare(&session, model, docs).await?;
    let stored: HashSet<(Uuid, i32)> = if keyed_ids.is_empty() {
        HashSet::new()
    } else {
        StoredChunk::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            STORED_CHUNKS_SQL,
            [keyed_ids.into()],
        ))
        .all(&session)
        .await?
        .into_iter()
        .map(|c| (c.document_id, c.chunk_index))
        .collect()
    };

    let total: usize = docs.iter().map(|d| d.chunks.len()).sum();
    let mut added = 0;
    if stored.len() < total {
        let mut copy = tx
            .copy_in_raw(COPY_CHUNKS_SQL)
            .await
            .map_err(DbError::from)?;
        let mut rows = BinaryCopy::with_capacity(COPY_SEND_BYTES + (64 << 10));
        let keyed_chunks = keyed
            .iter()
            .flat_map(|(d, _)| &d.chunks)
            .enumerate()
            .map(|(i, chunk)| (chunk, keys.docs[i], keys.indexes[i], Some(&keys.hashes[i])));
        let fresh_chunks = new.iter().flat_map(|&(d, id)| {
            d.chunks
                .iter()
                .enumerate()
                .map(move |(c, chunk)| (chunk, id, c as i32, None))
        });
        for (chunk, doc, index, hash) in keyed_chunks.chain(fresh_chunks) {
            if hash.is_some() && stored.contains(&(doc, index)) {
                continue;
            }
            rows.row(7);
            rows.uuid(&Uuid::now_v7());
            rows.uuid(&doc);
            rows.int4(index);
            rows.text(&chunk.content);
            match hash {
                Some(hash) => rows.text(hash),
                None => rows.text(&chunk.hash()),
            }
            rows.jsonb(&object_text(&chunk.metadata));
            rows.vector(&chunk.embedding);
            if rows.len() >= COPY_SEND_BYTES {
                copy.send(rows.take()).await.map_err(DbError::from)?;
            }
        }
        copy.send(rows.finish()).await.map_err(DbError::from)?;
        added = copy.finish().await.map_err(DbError::from)?;
    }
    tx.commit().await.map_err(DbError::from)?;
    Ok(IngestReport::new(ids, written, total, added, removed))
}
