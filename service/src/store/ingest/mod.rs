//! Documents and their chunks in, idempotently and in bulk: the batch's types and
//! checks, and the preamble both write paths share (the model, the document upserts,
//! the stale chunks). The paths: `insert` ([`ingest`], in the caller's transaction)
//! and `copy` ([`ingest_copy`], binary `COPY` on a session of its own); `reuse`
//! ([`reuse_stored_embeddings`]) finds the vectors of unchanged chunks before
//! anything is embedded.

mod copy;
mod insert;
mod reuse;

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use copy::ingest_copy;
pub use insert::ingest;
pub use reuse::reuse_stored_embeddings;

use super::model::{self, EmbeddingModel};
use super::{StoreError, check_vector};
use crate::cache::canonical_json;
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

/// What both write paths do before their chunks: the documents written, the batch
/// split into keyed and new documents (only a keyed one can have chunks stored
/// already), the keyed documents' chunk keys, and their stale chunks deleted.
struct Prepared<'a> {
    ids: Vec<Uuid>,
    written: u64,
    keyed: Vec<(&'a NewDocument, Uuid)>,
    new: Vec<(&'a NewDocument, Uuid)>,
    keyed_ids: Vec<Uuid>,
    keys: ChunkKeys,
    removed: u64,
}

/// The preamble both paths share, on their transaction: records or checks the model,
/// upserts the documents, and deletes the keyed documents' stale chunks. Three to six
/// round trips (see [`write_documents`] and [`delete_stale`]).
async fn prepare<'a, C: ConnectionTrait>(
    txn: &C,
    model: &EmbeddingModel,
    docs: &'a [NewDocument],
) -> Result<Prepared<'a>, StoreError> {
    let (ids, written) = write_documents(txn, model, docs).await?;
    let (keyed, new) = split_by_key(docs, &ids);
    let keyed_ids: Vec<Uuid> = keyed.iter().map(|(_, id)| *id).collect();
    let mut keys = ChunkKeys::default();
    keys.extend(&keyed);
    let removed = delete_stale(txn, &keyed_ids, &keys).await?;
    Ok(Prepared {
        ids,
        written,
        keyed,
        new,
        keyed_ids,
        keys,
        removed,
    })
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
