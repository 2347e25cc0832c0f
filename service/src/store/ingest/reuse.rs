//! Before embedding: the stored vectors of chunks that have not changed, so a
//! re-ingest pays no embedding call for them.

use sea_orm::prelude::PgVector;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{DocumentKey, NewDocument};
use crate::store::StoreError;

/// The stored embeddings of the batch's chunks that are stored as they are: same
/// document (by id or external key), same index, same text (compared by SHA-256, so
/// the texts are not sent twice) and same metadata. The input is one JSON array
/// (`jsonb_to_recordset`), the documents found by either key in a `UNION ALL`: beyond
/// SeaORM's builders.
const STORED_EMBEDDINGS_SQL: &str = "WITH input AS (
         SELECT * FROM jsonb_to_recordset($1::jsonb)
             AS i(ord int, idx int, text_hash text, metadata jsonb, id uuid, source text,
                  external_key text)
     ),
     found AS (
         SELECT i.*, d.id AS document_id FROM input i JOIN documents d ON d.id = i.id
         UNION ALL
         SELECT i.*, d.id FROM input i JOIN documents d
             ON i.external_key IS NOT NULL AND coalesce(d.source, '') = coalesce(i.source, '')
            AND d.external_key = i.external_key
     )
     SELECT f.ord, f.idx, c.embedding
     FROM found f
     JOIN document_chunks c ON c.document_id = f.document_id AND c.chunk_index = f.idx
     WHERE c.embedding IS NOT NULL AND c.metadata = f.metadata
       AND encode(sha256(convert_to(c.content, 'UTF8')), 'hex') = f.text_hash";

#[derive(FromQueryResult)]
struct Stored {
    ord: i32,
    idx: i32,
    embedding: PgVector,
}

/// Gives every chunk of `docs` that has no embedding yet and is stored unchanged (see
/// [`STORED_EMBEDDINGS_SQL`]) its stored vector and `model`'s name; returns how many.
/// Only documents with a [`DocumentKey`] can be found again. The caller has checked
/// that `model` is the store's recorded one ([`crate::store::check_recorded`]), so a
/// stored vector is what embedding the text again would give. One round trip (none
/// when no chunk can be found again), on any connection.
pub async fn reuse_stored_embeddings<C: ConnectionTrait>(
    db: &C,
    model: &str,
    docs: &mut [NewDocument],
) -> Result<usize, StoreError> {
    let mut rows = Vec::new();
    for (ord, doc) in docs.iter().enumerate() {
        let (id, source, external_key) = match &doc.key {
            None => continue,
            Some(DocumentKey::Id(id)) => (Some(*id), None, None),
            Some(DocumentKey::External { source, key }) => (None, Some(source), Some(key)),
        };
        for (idx, chunk) in doc.chunks.iter().enumerate() {
            if !chunk.embedding.is_empty() {
                continue;
            }
            let metadata = match &chunk.metadata {
                Value::Null => json!({}),
                other => other.clone(),
            };
            rows.push(json!({
                "ord": ord,
                "idx": idx,
                "text_hash": format!("{:x}", Sha256::digest(chunk.content.as_bytes())),
                "metadata": metadata,
                "id": id,
                "source": source,
                "external_key": external_key,
            }));
        }
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let stored = Stored::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        STORED_EMBEDDINGS_SQL,
        [Value::Array(rows).into()],
    ))
    .all(db)
    .await?;
    let mut reused = 0;
    for row in stored {
        let chunk = usize::try_from(row.ord)
            .ok()
            .and_then(|d| docs.get_mut(d))
            .zip(usize::try_from(row.idx).ok())
            .and_then(|(doc, c)| doc.chunks.get_mut(c));
        if let Some(chunk) = chunk
            && chunk.embedding.is_empty()
        {
            chunk.embedding = row.embedding.to_vec();
            chunk.model = model.to_owned();
            reused += 1;
        }
    }
    Ok(reused)
}
