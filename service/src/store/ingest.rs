//! Documents and their chunks in (idempotently, in bulk) and out.

use std::collections::{HashMap, HashSet};

use sea_orm::prelude::PgVector;
use sea_orm::sqlx;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement, TransactionSession,
    TransactionTrait, Value as SqlValue,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::{self, EmbeddingModel};
use super::{StoreError, check_vector};
use crate::cache::canonical_json;
use crate::db::binary_copy::BinaryCopy;
use crate::db::{SessionConnection, postgres_pool};
use crate::error::DbError;

/// How a document is found again by a later ingest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DocumentKey {
    /// By its id.
    Id(Uuid),
    /// By the caller's key, unique per source (the document's `source` is set to it).
    External {
        /// Where the document comes from (a URL prefix, a system's name).
        source: String,
        /// The caller's key in that source, 1 to 500 characters.
        key: String,
    },
}

/// A document to ingest, with its chunks in order.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument {
    /// How to find it again; `None` makes a new document each time.
    pub key: Option<DocumentKey>,
    /// Its title.
    pub title: Option<String>,
    /// Its whole text.
    pub content: String,
    /// Where it comes from (overridden by an external key's source).
    pub source: Option<String>,
    /// A JSON object (null counts as `{}`).
    pub metadata: Value,
    /// Its chunks, at least one; a chunk's index is its position.
    pub chunks: Vec<NewChunk>,
}

/// A chunk of a document: its text, its embedding and the model that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    /// The chunk's text, not empty.
    pub content: String,
    /// The model that embedded it (the store's model).
    pub model: String,
    /// Its embedding: the model's dimension, finite components.
    pub embedding: Vec<f32>,
    /// A JSON object (null counts as `{}`).
    pub metadata: Value,
}

impl NewChunk {
    /// A chunk with no metadata.
    pub fn new(content: impl Into<String>, model: impl Into<String>, embedding: Vec<f32>) -> Self {
        Self {
            content: content.into(),
            model: model.into(),
            embedding,
            metadata: Value::Object(Default::default()),
        }
    }

    /// The chunk's hash: SHA-256 over its model, text, metadata (keys sorted) and
    /// vector, so any change of what it holds changes it.
    fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.model.as_bytes());
        hasher.update([0]);
        hasher.update(self.content.as_bytes());
        hasher.update([0]);
        hasher.update(canonical_json(&self.metadata).as_bytes());
        hasher.update([0]);
        // The components' little-endian bytes in one update: the same bytes as one
        // update per component, without 384 calls' buffering.
        let mut bytes = Vec::with_capacity(self.embedding.len() * 4);
        for v in &self.embedding {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        hasher.update(&bytes);
        format!("{:x}", hasher.finalize())
    }
}

/// What an ingest wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    /// The documents' ids, in the batch's order.
    pub ids: Vec<Uuid>,
    /// Documents inserted or changed.
    pub documents_written: u64,
    /// Chunks inserted (new, or replacing a changed one).
    pub chunks_added: u64,
    /// Chunks deleted (changed, or beyond the document's new last chunk).
    pub chunks_removed: u64,
    /// Chunks already stored as they are, untouched.
    pub chunks_unchanged: u64,
}

impl IngestReport {
    /// The report of a batch of `total` chunks.
    fn new(ids: Vec<Uuid>, written: u64, total: usize, added: u64, removed: u64) -> Self {
        Self {
            ids,
            documents_written: written,
            chunks_added: added,
            chunks_removed: removed,
            chunks_unchanged: (total as u64).saturating_sub(added),
        }
    }
}

/// Sets the planner to plan each of the ingest's statements with its batch's actual
/// arrays (a cached generic plan may rescan an `unnest` per row): a session setting,
/// local to the ingest's transaction.
const CUSTOM_PLANS_SQL: &str = "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)";

/// Upserts documents found by id from the batch's rows (a JSON array, which carries
/// the absent titles and sources that a text array cannot), an INSERT … ON CONFLICT
/// over `jsonb_to_recordset`; a document whose fields are unchanged is not written.
const UPSERT_BY_ID_SQL: &str = "INSERT INTO documents AS d (id, title, content, source, metadata)
     SELECT id, title, content, source, metadata
     FROM jsonb_to_recordset($1::jsonb)
          AS i(id uuid, title text, content text, source text, metadata jsonb)
     ON CONFLICT (id) DO UPDATE SET
         title = EXCLUDED.title, content = EXCLUDED.content, source = EXCLUDED.source,
         metadata = EXCLUDED.metadata
     WHERE (d.title, d.content, d.source, d.metadata)
           IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.content, EXCLUDED.source, EXCLUDED.metadata)";

/// Upserts documents found by (source, external key), and returns every one's id in
/// the batch's order — written or not — in one statement: the upsert in a CTE, the
/// ids of unchanged documents from the snapshot before it. An INSERT … ON CONFLICT on
/// an expression index's inference, over `jsonb_to_recordset`: SeaORM's builder
/// cannot say it.
const UPSERT_BY_EXTERNAL_KEY_SQL: &str = "WITH input AS (
         SELECT * FROM jsonb_to_recordset($1::jsonb)
             AS i(id uuid, title text, content text, source text, metadata jsonb,
                  external_key text, ord int)
     ),
     written AS (
         INSERT INTO documents AS d (id, title, content, source, metadata, external_key)
         SELECT id, title, content, source, metadata, external_key FROM input
         ON CONFLICT ((coalesce(source, '')), external_key) WHERE external_key IS NOT NULL
         DO UPDATE SET title = EXCLUDED.title, content = EXCLUDED.content,
                       metadata = EXCLUDED.metadata
         WHERE (d.title, d.content, d.metadata)
               IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.content, EXCLUDED.metadata)
         RETURNING d.id, d.source, d.external_key
     )
     SELECT coalesce(w.id, d.id) AS id, w.id IS NOT NULL AS written
     FROM input i
     LEFT JOIN written w ON coalesce(w.source, '') = coalesce(i.source, '')
                        AND w.external_key = i.external_key
     LEFT JOIN documents d ON coalesce(d.source, '') = coalesce(i.source, '')
                          AND d.external_key = i.external_key
     ORDER BY i.ord";

/// Deletes the batch documents' chunks that are not in the batch as they are (same
/// document, index and hash): changed chunks, and those past a document's new last
/// chunk. A DELETE with an anti-join on `unnest` of the batch.
const DELETE_STALE_CHUNKS_SQL: &str = "DELETE FROM document_chunks c
     WHERE c.document_id = ANY($1::uuid[])
       AND NOT EXISTS (
           SELECT 1 FROM unnest($2::uuid[], $3::int4[], $4::text[]) AS i(doc, idx, hash)
           WHERE i.doc = c.document_id AND i.idx = c.chunk_index AND i.hash = c.content_hash)";

/// Inserts a group of the batch's chunks from `unnest` of its arrays, each vector a
/// bound `vector` parameter of its own (`{vectors}`: `$7` onwards), so the client
/// sends each vector as one binary value rather than 384 array elements. The ids are
/// the client's UUIDv7s, so the primary key's inserts stay at its right edge. After
/// [`DELETE_STALE_CHUNKS_SQL`], a chunk still stored at its (document, index) is
/// unchanged, so `ON CONFLICT DO NOTHING` on the unique index skips it. An INSERT …
/// SELECT from `unnest`: SeaORM's builder cannot say it.
const INSERT_CHUNKS_SQL: &str = "INSERT INTO document_chunks
         (id, document_id, chunk_index, content, content_hash, metadata, embedding)
     SELECT i.id, i.doc, i.idx, i.content, i.hash, i.metadata::jsonb, i.embedding
     FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::text[], $5::text[], $6::text[],
                 ARRAY[{vectors}]::vector[])
          AS i(id, doc, idx, content, hash, metadata, embedding)
     ON CONFLICT (document_id, chunk_index) DO NOTHING";

/// The most chunks one INSERT carries: one parameter per vector, under PostgreSQL's
/// 65,535 parameters per statement.
const INSERT_GROUP: usize = 8000;

/// [`INSERT_CHUNKS_SQL`] for `n` vectors.
fn insert_chunks_sql(n: usize) -> String {
    let placeholders: Vec<String> = (7..7 + n).map(|p| format!("${p}")).collect();
    INSERT_CHUNKS_SQL.replace("{vectors}", &placeholders.join(","))
}

#[derive(FromQueryResult)]
struct Upserted {
    id: Uuid,
    written: bool,
}

/// Checks a batch, before anything is written.
fn check(model: &EmbeddingModel, docs: &[NewDocument]) -> Result<(), StoreError> {
    let mut seen: HashMap<&DocumentKey, usize> = HashMap::new();
    for (d, doc) in docs.iter().enumerate() {
        if doc.chunks.is_empty() {
            return Err(StoreError::NoChunks { document: d });
        }
        if !(doc.metadata.is_object() || doc.metadata.is_null()) {
            return Err(StoreError::Invalid {
                field: "metadata",
                value: doc.metadata.to_string(),
                reason: "a document's metadata is a JSON object",
            });
        }
        if let Some(key) = &doc.key {
            if let DocumentKey::External { key: k, .. } = key
                && (k.is_empty() || k.chars().count() > 500)
            {
                return Err(StoreError::Invalid {
                    field: "external_key",
                    value: k.clone(),
                    reason: "external keys are 1 to 500 characters",
                });
            }
            if let Some(first) = seen.insert(key, d) {
                return Err(StoreError::DuplicateDocument {
                    first,
                    second: d,
                    key: format!("{key:?}"),
                });
            }
        }
        for (c, chunk) in doc.chunks.iter().enumerate() {
            if chunk.model != model.name {
                return Err(StoreError::ModelMismatch {
                    document: d,
                    chunk: c,
                    expected: model.name.clone(),
                    got: chunk.model.clone(),
                });
            }
            if chunk.content.trim().is_empty() {
                return Err(StoreError::EmptyChunk {
                    document: d,
                    chunk: c,
                });
            }
            if !(chunk.metadata.is_object() || chunk.metadata.is_null()) {
                return Err(StoreError::Invalid {
                    field: "chunk metadata",
                    value: chunk.metadata.to_string(),
                    reason: "a chunk's metadata is a JSON object",
                });
            }
            check_vector(model, &chunk.embedding, d, c)?;
        }
    }
    Ok(())
}

/// A document as one row of the upserts' JSON input: `external` (source, key) sets its
/// source; `ord` is its position in the batch.
fn document_row(doc: &NewDocument, id: Uuid, external: Option<(&str, &str)>, ord: usize) -> Value {
    let (source, key) = match external {
        Some((source, key)) => (Some(source), Some(key)),
        None => (doc.source.as_deref(), None),
    };
    serde_json::json!({
        "id": id,
        "title": doc.title,
        "content": doc.content,
        "source": source,
        "metadata": if doc.metadata.is_null() { Value::Object(Default::default()) } else { doc.metadata.clone() },
        "external_key": key,
        "ord": ord,
    })
}

/// A JSON object as text, null as `{}`.
fn object_text(value: &Value) -> String {
    if value.is_null() {
        "{}".to_owned()
    } else {
        value.to_string()
    }
}

/// Ingests `docs` — each with its chunks, embedded by `model` — in one transaction (a
/// savepoint inside the caller's, when `db` is one): all of the batch or nothing.
/// Every document and chunk is checked first; a bad one is a typed error naming it,
/// and nothing is written. The first ingest records `model` as the store's; later
/// ones must use it.
///
/// Idempotent: a document whose fields are unchanged is not written, a chunk stored
/// with the same hash at the same index is not touched, a changed chunk is replaced,
/// and chunks past a document's new last one go. Statements: begin, the model check,
/// the plan setting, one or two document upserts (by id, by external key), one
/// DELETE of stale chunks (when a document has a key: a document without one is new,
/// with nothing stored), one INSERT of chunks per 8,000 chunks, commit. For loading
/// many chunks
/// outside a caller's transaction, [`ingest_copy`] is faster.
pub async fn ingest<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    model: &EmbeddingModel,
    docs: &[NewDocument],
) -> Result<IngestReport, StoreError> {
    check(model, docs)?;
    let txn = db.begin().await?;
    let (ids, written) = write_documents(&txn, model, docs).await?;
    // The keyed documents' chunks first (only they can be stored already), then the
    // new documents'.
    let (keyed, new) = split_by_key(docs, &ids);
    let keyed_ids: Vec<Uuid> = keyed.iter().map(|(_, id)| *id).collect();
    let mut keys = ChunkKeys::default();
    keys.extend(&keyed);
    let removed = delete_stale(&txn, &keyed_ids, &keys).await?;
    keys.extend(&new);
    let ChunkKeys {
        docs: mut chunk_docs,
        mut indexes,
        mut hashes,
    } = keys;

    let total = chunk_docs.len();
    let mut texts = Vec::with_capacity(total);
    let mut metadata = Vec::with_capacity(total);
    let mut vectors: Vec<SqlValue> = Vec::with_capacity(total);
    for chunk in keyed.iter().chain(&new).flat_map(|(d, _)| &d.chunks) {
        texts.push(chunk.content.clone());
        metadata.push(object_text(&chunk.metadata));
        vectors.push(PgVector::from(chunk.embedding.clone()).into());
    }
    // Each group moves its share of the arrays into its statement: no vector is
    // copied again.
    let mut added = 0;
    while !vectors.is_empty() {
        let n = vectors.len().min(INSERT_GROUP);
        let mut values: Vec<SqlValue> = vec![
            (0..n).map(|_| Uuid::now_v7()).collect::<Vec<_>>().into(),
            chunk_docs.drain(..n).collect::<Vec<_>>().into(),
            indexes.drain(..n).collect::<Vec<_>>().into(),
            texts.drain(..n).collect::<Vec<_>>().into(),
            hashes.drain(..n).collect::<Vec<_>>().into(),
            metadata.drain(..n).collect::<Vec<_>>().into(),
        ];
        values.extend(vectors.drain(..n));
        added += txn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                insert_chunks_sql(n),
                values,
            ))
            .await?
            .rows_affected();
    }
    txn.commit().await?;
    Ok(IngestReport::new(ids, written, total, added, removed))
}

/// The batch's documents with their ids: those that carry a key, then those that do
/// not. Only a keyed document can have chunks stored already: one without gets a new
/// id.
type Split<'a> = (Vec<(&'a NewDocument, Uuid)>, Vec<(&'a NewDocument, Uuid)>);

/// Splits `docs` (with their `ids`) into the keyed and the new ([`Split`]).
fn split_by_key<'a>(docs: &'a [NewDocument], ids: &[Uuid]) -> Split<'a> {
    docs.iter()
        .zip(ids.iter().copied())
        .partition(|(d, _)| d.key.is_some())
}

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
/// cannot join a caller's transaction: it takes a connection of `db`'s pool for its
/// own transaction (COPY needs the session itself). Statements: begin, the model
/// check, the plan setting, the document upserts, one DELETE of stale chunks and one
/// read of the chunks kept (both only when a document has a key: one without is
/// new), one COPY of the rest (none when nothing changed), commit.
pub async fn ingest_copy(
    db: &DatabaseConnection,
    model: &EmbeddingModel,
    docs: &[NewDocument],
) -> Result<IngestReport, StoreError> {
    check(model, docs)?;
    let pool = postgres_pool(db)?;
    let mut conn = pool.acquire().await.map_err(DbError::from)?;
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(DbError::from)?;
    let session = SessionConnection::new(&mut tx);
    let (ids, written) = write_documents(&session, model, docs).await?;
    // Only keyed documents can have chunks stored already: their chunks are hashed
    // now, for the DELETE of stale chunks and the read of those kept. A new
    // document's chunks are hashed as they are encoded, while the server inserts the
    // rows sent before them.
    let (keyed, new) = split_by_key(docs, &ids);
    let keyed_ids: Vec<Uuid> = keyed.iter().map(|(_, id)| *id).collect();
    let mut keys = ChunkKeys::default();
    keys.extend(&keyed);
    let removed = delete_stale(&session, &keyed_ids, &keys).await?;
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

/// Records or checks the model, then upserts the batch's documents: their ids in
/// the batch's order, and how many were written. Two to four round trips on `txn`.
async fn write_documents<C: ConnectionTrait>(
    txn: &C,
    model: &EmbeddingModel,
    docs: &[NewDocument],
) -> Result<(Vec<Uuid>, u64), StoreError> {
    model::record_model(txn, model).await?;
    txn.execute_unprepared(CUSTOM_PLANS_SQL).await?;

    let mut ids = vec![Uuid::nil(); docs.len()];
    let mut written = 0u64;
    let (by_id, by_external): (Vec<usize>, Vec<usize>) =
        (0..docs.len()).partition(|&i| !matches!(docs[i].key, Some(DocumentKey::External { .. })));
    if !by_id.is_empty() {
        for &i in &by_id {
            ids[i] = match &docs[i].key {
                Some(DocumentKey::Id(id)) => *id,
                _ => Uuid::now_v7(),
            };
        }
        let rows: Vec<Value> = by_id
            .iter()
            .map(|&i| document_row(&docs[i], ids[i], None, i))
            .collect();
        let done = txn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                UPSERT_BY_ID_SQL,
                [Value::Array(rows).into()],
            ))
            .await?;
        written += done.rows_affected();
    }
    if !by_external.is_empty() {
        let rows: Vec<Value> = by_external
            .iter()
            .map(|&i| {
                let external = match &docs[i].key {
                    Some(DocumentKey::External { source, key }) => {
                        Some((source.as_str(), key.as_str()))
                    }
                    _ => None,
                };
                document_row(&docs[i], Uuid::now_v7(), external, i)
            })
            .collect();
        let upserted = Upserted::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            UPSERT_BY_EXTERNAL_KEY_SQL,
            [Value::Array(rows).into()],
        ))
        .all(txn)
        .await?;
        if upserted.len() != by_external.len() {
            return Err(DbError::no_row("document upsert by external key").into());
        }
        for (&i, row) in by_external.iter().zip(upserted) {
            ids[i] = row.id;
            written += u64::from(row.written);
        }
    }
    Ok((ids, written))
}

/// Chunks' document ids, indexes and hashes, in the order they were added.
#[derive(Default)]
struct ChunkKeys {
    docs: Vec<Uuid>,
    indexes: Vec<i32>,
    hashes: Vec<String>,
}

impl ChunkKeys {
    /// Adds the keys of the chunks of these documents (with their ids), in order.
    fn extend(&mut self, docs: &[(&NewDocument, Uuid)]) {
        let n: usize = docs.iter().map(|(d, _)| d.chunks.len()).sum();
        self.docs.reserve(n);
        self.indexes.reserve(n);
        self.hashes.reserve(n);
        for &(doc, id) in docs {
            for (c, chunk) in doc.chunks.iter().enumerate() {
                self.docs.push(id);
                self.indexes.push(c as i32);
                self.hashes.push(chunk.hash());
            }
        }
    }
}

/// Deletes the stale chunks of documents `ids` ([`DELETE_STALE_CHUNKS_SQL`]), given
/// the keys of their chunks in the batch: how many went. One round trip; none when
/// `ids` is empty.
async fn delete_stale<C: ConnectionTrait>(
    txn: &C,
    ids: &[Uuid],
    keys: &ChunkKeys,
) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let done = txn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            DELETE_STALE_CHUNKS_SQL,
            [
                ids.to_vec().into(),
                keys.docs.clone().into(),
                keys.indexes.clone().into(),
                keys.hashes.clone().into(),
            ],
        ))
        .await?;
    Ok(done.rows_affected())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunks_hash_covers_what_it_holds() {
        let a = NewChunk::new("ravens", "m", vec![0.5, 1.0]);
        let mut b = a.clone();
        assert_eq!(a.hash(), b.hash());
        b.embedding[1] = 1.5;
        assert_ne!(a.hash(), b.hash());
        let mut c = a.clone();
        c.metadata = serde_json::json!({"page": 1});
        assert_ne!(a.hash(), c.hash());
        let mut d = a.clone();
        d.model = "n".into();
        assert_ne!(a.hash(), d.hash());
    }

    #[test]
    fn a_chunks_hash_is_the_one_stored_chunks_carry() {
        // Hashes stored by earlier ingests stay valid: the vector's bytes hashed in
        // one update give what one update per component gave.
        let c = NewChunk::new("ravens", "m", vec![0.5, -1.25, 3.0e-7]);
        let mut h = Sha256::new();
        for part in ["m", "ravens", "{}"] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for v in &c.embedding {
            h.update(v.to_le_bytes());
        }
        assert_eq!(c.hash(), format!("{:x}", h.finalize()));
    }
}
