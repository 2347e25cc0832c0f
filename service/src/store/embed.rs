//! Embedders: texts in batches to vectors of one model, and the store's conveniences
//! that use one ([`ingest_texts`], [`VectorStore::search_text`]).

use std::future::Future;

use sea_orm::{ConnectionTrait, TransactionTrait};

use super::StoreError;
use super::filter::Filter;
use super::hybrid::{HybridHit, HybridOptions};
use super::ingest::{IngestReport, NewDocument, ingest, reuse_stored_embeddings};
use super::model::{EmbeddingModel, check_recorded};
use super::vector_store::VectorStore;

/// What can go wrong while embedding.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The request did not get an answer (connection, timeout, TLS).
    #[error("embedding request to {endpoint} failed: {message}")]
    Transport {
        /// The endpoint called.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// The service answered with an error status (after the retries a 429 or 5xx
    /// gets).
    #[error("embedding service {endpoint} answered {status}: {body}")]
    Status {
        /// The endpoint called.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// The answer is not what the API promises: not JSON of its shape, or a vector
    /// count or index that does not match the texts sent.
    #[error("embedding service answered badly: {0}")]
    BadAnswer(String),
    /// A vector of another length than the model's dimension.
    #[error("text {text}: {got} dimensions, the model has {expected}")]
    WrongDimension {
        /// The text's position in the batch.
        text: usize,
        /// The model's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// The local model could not be loaded or run.
    #[error("local model: {0}")]
    Local(String),
    /// The configuration is incomplete or wrong (a missing endpoint, a bad URL).
    #[error("embedder configuration: {0}")]
    Config(String),
}

impl From<crate::http::HttpError> for EmbedError {
    fn from(e: crate::http::HttpError) -> Self {
        use crate::http::HttpError;
        match e {
            HttpError::Config(m) => Self::Config(m),
            HttpError::Transport { endpoint, message } => Self::Transport { endpoint, message },
            HttpError::Status {
                endpoint,
                status,
                body,
            } => Self::Status {
                endpoint,
                status,
                body,
            },
            HttpError::BadAnswer(m) => Self::BadAnswer(m),
        }
    }
}

/// Turns texts into vectors of one model.
pub trait Embedder: Send + Sync {
    /// The model (its name, as chunks record it, and its dimension).
    fn model(&self) -> &EmbeddingModel;

    /// The most texts one call of [`Embedder::embed`] takes.
    fn batch_size(&self) -> usize;

    /// The vectors of `texts` (at most [`Embedder::batch_size`]), in order, each of the
    /// model's dimension.
    fn embed(
        &self,
        texts: &[String],
    ) -> impl Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send;
}

/// Embeds `texts` in batches of the embedder's size, checking each vector's length.
pub async fn embed_all<E: Embedder>(
    embedder: &E,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(embedder.batch_size().max(1)) {
        let vectors = embedder.embed(batch).await?;
        if vectors.len() != batch.len() {
            return Err(EmbedError::BadAnswer(format!(
                "{} vectors for {} texts",
                vectors.len(),
                batch.len()
            )));
        }
        for vector in vectors {
            let expected = embedder.model().dimension;
            if vector.len() != expected {
                return Err(EmbedError::WrongDimension {
                    text: out.len(),
                    expected,
                    got: vector.len(),
                });
            }
            out.push(vector);
        }
    }
    Ok(out)
}

/// Embeds with `embedder` every chunk of `docs` whose embedding is empty, `group`
/// texts per call of [`embed_all`] (each call then batches by the embedder's size),
/// and calls `progress` with each group's count as it is done; the chunks it embeds
/// take the embedder's model name. Returns how many it embedded. No database work;
/// the cost is the embedder's.
pub async fn embed_missing<E: Embedder>(
    embedder: &E,
    docs: &mut [NewDocument],
    group: usize,
    mut progress: impl FnMut(usize),
) -> Result<usize, StoreError> {
    let model = embedder.model();
    let texts: Vec<String> = docs
        .iter()
        .flat_map(|d| d.chunks.iter())
        .filter(|c| c.embedding.is_empty())
        .map(|c| c.content.clone())
        .collect();
    let mut vectors = Vec::with_capacity(texts.len());
    for texts in texts.chunks(group.max(1)) {
        vectors.extend(embed_all(embedder, texts).await?);
        progress(texts.len());
    }
    let mut vectors = vectors.into_iter();
    for chunk in docs.iter_mut().flat_map(|d| d.chunks.iter_mut()) {
        if chunk.embedding.is_empty() {
            chunk.embedding = vectors.next().unwrap_or_default();
            chunk.model = model.name.clone();
        }
    }
    Ok(texts.len())
}

/// Ingests `docs`, first embedding with `embedder` every chunk whose embedding is
/// empty and that is not stored already as it is (those with one keep it, and must be
/// of the embedder's model). An embedder of another model than the store's recorded
/// one is refused before any embedding call (one read of `embedding_model`). A chunk
/// of a document with a key, stored at the same index with the same text and
/// metadata, takes its stored vector instead of an embedding call
/// ([`reuse_stored_embeddings`]: one round trip), so re-ingesting unchanged documents
/// embeds nothing. The embedding calls happen before the ingest's transaction
/// begins: no transaction waits on the embedding service. Then as [`ingest`].
pub async fn ingest_texts<C: ConnectionTrait + TransactionTrait, E: Embedder>(
    db: &C,
    embedder: &E,
    mut docs: Vec<NewDocument>,
) -> Result<IngestReport, StoreError> {
    check_recorded(db, embedder.model()).await?;
    reuse_stored_embeddings(db, &embedder.model().name, &mut docs).await?;
    embed_missing(embedder, &mut docs, usize::MAX, |_| ()).await?;
    ingest(db, embedder.model(), &docs).await
}

impl VectorStore {
    /// Hybrid search for `text`: embeds it with `embedder` (of the store's model) and
    /// runs [`VectorStore::hybrid_search`] with the text and its vector. One embedding
    /// call, then the search's round trips.
    pub async fn search_text<C: ConnectionTrait + TransactionTrait, E: Embedder>(
        &self,
        db: &C,
        embedder: &E,
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        options: &HybridOptions,
    ) -> Result<Vec<HybridHit>, StoreError> {
        if embedder.model() != self.model() {
            return Err(StoreError::WrongModel {
                expected: self.model().name.clone(),
                got: embedder.model().name.clone(),
            });
        }
        let query = embed_all(embedder, &[text.to_owned()]).await?;
        let vector = query.into_iter().next().unwrap_or_default();
        self.hybrid_search(db, text, &vector, k, filter, options)
            .await
    }
}
