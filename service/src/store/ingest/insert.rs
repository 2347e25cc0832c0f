//! The ingest that joins the caller's transaction: chunks by `INSERT … SELECT FROM
//! unnest`, in groups.

use sea_orm::prelude::PgVector;
use sea_orm::{
    ConnectionTrait, DbBackend, Statement, TransactionSession, TransactionTrait, Value as SqlValue,
};
use uuid::Uuid;

use super::{
    ChunkKeys, EmbeddingModel, IngestReport, NewDocument, Prepared, StoreError, check, object_text,
    prepare,
};

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
    let Prepared {
        ids,
        written,
        keyed,
        new,
        mut keys,
        removed,
        ..
    } = prepare(&txn, model, docs).await?;
    // The keyed documents' chunks first (only they can be stored already), then the
    // new documents'.
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
