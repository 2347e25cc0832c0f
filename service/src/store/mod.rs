//! Seed 003's vector document store: documents with their chunks' embeddings, ingested
//! idempotently in bulk and searched by cosine distance.
//!
//! - [`ingest`] writes documents and their chunks in one transaction (a savepoint
//!   inside the caller's), a few statements per batch (one INSERT per 8,000 chunks). Each chunk's
//!   hash covers its text, metadata, model and vector: re-ingesting an unchanged
//!   document writes no row, and a changed one has exactly its changed chunks
//!   replaced. Documents are found again by id or by the caller's
//!   `(source, external_key)`.
//! - Every vector comes from one embedding model, recorded in `embedding_model` by the
//!   first ingest ([`record_model`]); another model, a wrong dimension, a NaN or
//!   infinite component, empty text, or a document without chunks is a typed
//!   [`StoreError`] naming the document and chunk, and nothing is written.
//! - [`VectorStore`] searches: the `k` nearest chunks with their documents
//!   ([`search()`]), filtered on source, documents, time and metadata ([`Filter`],
//!   compiled to parameterised SQL), never fewer than `k` when `k` match; hybrid
//!   full-text and vector search fused by reciprocal rank fusion in one statement
//!   ([`hybrid_search()`]); MMR re-ranking for diversity ([`mmr_search()`]). Each
//!   search sets its index knobs for its own transaction only, and is recorded in a
//!   buffered [`SearchLog`] when the store has one.
//!
//! The files: `model` (the recorded model), `ingest` (documents and chunks in, and
//! out), `filter`, `search` (plain search and what the others share), `hybrid`,
//! `mmr`, `search_log`, `vector_store`, `index` (reindex, health, promoted keys),
//! `embed` (the [`Embedder`] trait and what uses it), `http_embedder`,
//! `local_embedder` (feature `local-embedder`).

use uuid::Uuid;

use crate::error::DbError;

mod any_embedder;
mod documents;
mod embed;
mod filter;
mod http_embedder;
mod hybrid;
mod index;
mod ingest;
#[cfg(feature = "local-embedder")]
mod local_embedder;
mod mmr;
mod model;
mod search;
mod search_log;
mod vector_store;

pub use any_embedder::{AnyEmbedder, EmbedderChoice};
pub use documents::{DeletedDocument, IngestDay, chunk_embedding, delete_document, ingest_history};
pub use embed::{EmbedError, Embedder, embed_all, embed_missing, ingest_texts};
pub use filter::{Filter, KeyFilter, MetaOp, MetadataOf};
pub use http_embedder::{HttpEmbedder, HttpEmbedderConfig};
pub use hybrid::{HybridHit, HybridOptions, TextMatch, hybrid_search};
pub use index::{
    BuildProgress, INDEX_NAME, IndexHealth, IndexMethod, Recommendation, build_progress,
    index_health, lists_for, promote_key, reindex,
};
pub use ingest::{
    DocumentKey, IngestReport, NewChunk, NewDocument, ingest, ingest_copy, reuse_stored_embeddings,
};
#[cfg(feature = "local-embedder")]
pub use local_embedder::{LOCAL_MODEL_DIMENSION, LOCAL_MODEL_NAME, LocalEmbedder};
pub use mmr::{MmrOptions, mmr_search};
pub use model::{EmbeddingModel, check_recorded, record_model, recorded_model};
pub use search::{MAX_K, SearchHit, SearchOptions, Served, search};
pub use search_log::{SearchKind, SearchLog, SearchLogConfig, SearchLogEntry};
pub use vector_store::VectorStore;

/// What can go wrong in the store. Each names the offending document (its position in
/// the batch) and chunk where there is one; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A chunk's (or a query's) vector is from another model than the store's.
    #[error(
        "document {document}, chunk {chunk}: model {got:?}, but the store holds {expected:?} vectors"
    )]
    ModelMismatch {
        /// The document's position in the batch.
        document: usize,
        /// The chunk's position in the document.
        chunk: usize,
        /// The store's model.
        expected: String,
        /// The chunk's.
        got: String,
    },
    /// The model given to open or search the store is not the recorded one.
    #[error("the store holds {expected:?} vectors, not {got:?}")]
    WrongModel {
        /// The recorded model.
        expected: String,
        /// The model given.
        got: String,
    },
    /// A vector whose length is not the model's dimension.
    #[error("document {document}, chunk {chunk}: {got} dimensions, the model has {expected}")]
    WrongDimension {
        /// The document's position in the batch (0 for a query).
        document: usize,
        /// The chunk's position in the document (0 for a query).
        chunk: usize,
        /// The model's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A vector with a NaN or infinite component.
    #[error("document {document}, chunk {chunk}: component {component} is {value}")]
    NonFinite {
        /// The document's position in the batch (0 for a query).
        document: usize,
        /// The chunk's position in the document (0 for a query).
        chunk: usize,
        /// The component's index.
        component: usize,
        /// Its value.
        value: f32,
    },
    /// A chunk with no text (only whitespace).
    #[error("document {document}, chunk {chunk}: empty text")]
    EmptyChunk {
        /// The document's position in the batch.
        document: usize,
        /// The chunk's position in the document.
        chunk: usize,
    },
    /// A document with no chunks.
    #[error("document {document}: no chunks")]
    NoChunks {
        /// The document's position in the batch.
        document: usize,
    },
    /// A field outside its range (a model name, an external key, `k`, metadata that is
    /// not a JSON object).
    #[error("{field} = {value}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Two documents of one batch name the same document.
    #[error("documents {first} and {second} of the batch are the same document {key}")]
    DuplicateDocument {
        /// The first's position.
        first: usize,
        /// The second's position.
        second: usize,
        /// The key they share.
        key: String,
    },
    /// No document has this id.
    #[error("no document {0}")]
    NotFound(Uuid),
    /// The embedder failed.
    #[error("embedding: {0}")]
    Embed(#[from] EmbedError),
    /// The database failed; the variant says how (see [`DbError`]).
    #[error("database: {0}")]
    Database(#[from] DbError),
}

impl From<sea_orm::DbErr> for StoreError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}

/// Checks a vector against the model: its dimension, and that every component is
/// finite. `document` and `chunk` name it in the error.
pub(crate) fn check_vector(
    model: &EmbeddingModel,
    values: &[f32],
    document: usize,
    chunk: usize,
) -> Result<(), StoreError> {
    if values.len() != model.dimension {
        return Err(StoreError::WrongDimension {
            document,
            chunk,
            expected: model.dimension,
            got: values.len(),
        });
    }
    if let Some((component, value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(StoreError::NonFinite {
            document,
            chunk,
            component,
            value: *value,
        });
    }
    Ok(())
}
