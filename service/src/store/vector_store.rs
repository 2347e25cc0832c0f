//! [`VectorStore`]: the store's searches with a model, default knobs and a search log.

use std::time::Instant;

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::Value;

use super::StoreError;
use super::filter::Filter;
use super::hybrid::{HybridHit, HybridOptions, hybrid_search};
use super::mmr::{MmrOptions, mmr_search};
use super::model::EmbeddingModel;
use super::search::{SearchHit, SearchOptions, Served, search};
use super::search_log::{SearchKind, SearchLog, SearchLogEntry};

/// The store's searches for one embedding model, with default index knobs and,
/// optionally, a [`SearchLog`] that records every search. Cheap to clone; holds no
/// connection: each search runs on the connection it is given (a pool or the caller's
/// transaction).
#[derive(Clone)]
pub struct VectorStore {
    model: EmbeddingModel,
    options: SearchOptions,
    log: Option<SearchLog>,
}

impl VectorStore {
    /// Searches of `model`'s vectors with the default knobs and no log.
    pub fn new(model: EmbeddingModel) -> Self {
        Self {
            model,
            options: SearchOptions::default(),
            log: None,
        }
    }

    /// The knobs of [`VectorStore::search`].
    pub fn with_options(mut self, options: SearchOptions) -> Self {
        self.options = options;
        self
    }

    /// Records every search in `log`.
    pub fn with_log(mut self, log: SearchLog) -> Self {
        self.log = Some(log);
        self
    }

    /// The model.
    pub fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    /// The search log, if any.
    pub fn log(&self) -> Option<&SearchLog> {
        self.log.as_ref()
    }

    /// The `k` chunks nearest to `query` that pass `filter`, with the store's knobs:
    /// see [`super::search()`]. Round trips: begin, knobs, the query, commit.
    pub async fn search<C: ConnectionTrait + TransactionTrait>(
        &self,
        db: &C,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        self.search_with(db, query, k, filter, &self.options).await
    }

    /// [`VectorStore::search`] with other knobs.
    pub async fn search_with<C: ConnectionTrait + TransactionTrait>(
        &self,
        db: &C,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        options: &SearchOptions,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let started = Instant::now();
        let (hits, served) = search(db, &self.model, query, k, filter, options).await?;
        self.record(SearchKind::Vector, "", k, filter, &hits, &served, started);
        Ok(hits)
    }

    /// The `k` chunks that best match `text` and `query` together: see
    /// [`super::hybrid_search()`].
    pub async fn hybrid_search<C: ConnectionTrait + TransactionTrait>(
        &self,
        db: &C,
        text: &str,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        options: &HybridOptions,
    ) -> Result<Vec<HybridHit>, StoreError> {
        let started = Instant::now();
        let (hits, served) =
            hybrid_search(db, &self.model, text, query, k, filter, options).await?;
        self.record(SearchKind::Hybrid, text, k, filter, &hits, &served, started);
        Ok(hits)
    }

    /// The `k` nearest chunks re-ranked for diversity: see [`super::mmr_search()`].
    pub async fn mmr_search<C: ConnectionTrait + TransactionTrait>(
        &self,
        db: &C,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        options: &MmrOptions,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let started = Instant::now();
        let (hits, served) = mmr_search(db, &self.model, query, k, filter, options).await?;
        self.record(SearchKind::Mmr, "", k, filter, &hits, &served, started);
        Ok(hits)
    }

    #[allow(clippy::too_many_arguments)]
    fn record<H: AsRef<SearchHit>>(
        &self,
        kind: SearchKind,
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        hits: &[H],
        served: &Served,
        started: Instant,
    ) {
        let Some(log) = &self.log else { return };
        let hits = hits.iter().map(AsRef::as_ref);
        log.record(SearchLogEntry {
            kind,
            query: text.to_owned(),
            top_k: k as i32,
            filters: filter
                .and_then(|f| serde_json::to_value(f).ok())
                .unwrap_or_else(|| Value::Object(Default::default())),
            results_count: hits.len() as i32,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            best_similarity: hits.clone().map(|h| h.similarity).reduce(f64::max),
            result_ids: hits.map(|h| h.chunk_id).collect(),
            knobs: serde_json::to_value(served).unwrap_or(Value::Null),
            user_id: None,
            created_at: chrono::Utc::now(),
        });
    }
}
