//! Maximal marginal relevance: the nearest candidates re-ranked for diversity.

use sea_orm::prelude::PgVector;
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionSession, TransactionTrait};
use serde::Serialize;

use super::StoreError;
use super::filter::Filter;
use super::model::EmbeddingModel;
use super::search::{SearchHit, SearchOptions, Served, check_k, nearest, open, unserved};

/// How [`mmr_search`] trades relevance for diversity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MmrOptions {
    /// 1: relevance only (plain nearest order); 0: diversity only. Default 0.5.
    pub lambda: f64,
    /// How many nearest candidates to re-rank; `None`: `max(4k, 20)`, at most 1000.
    pub fetch_k: Option<usize>,
    /// The vector index's knobs.
    pub search: SearchOptions,
}

impl Default for MmrOptions {
    fn default() -> Self {
        Self {
            lambda: 0.5,
            fetch_k: None,
            search: SearchOptions::default(),
        }
    }
}

#[derive(FromQueryResult)]
struct Candidate {
    #[sea_orm(nested)]
    hit: SearchHit,
    embedding: PgVector,
}

/// The `k` chunks chosen greedily from the `fetch_k` nearest to `query` (filtered
/// like [`super::search()`]): each next one maximises `lambda · similarity to the
/// query − (1 − lambda) · its greatest similarity to those already chosen`. Round
/// trips: begin, knobs, the candidates (with their vectors), commit; the re-ranking
/// runs in memory, O(k · fetch_k · dimension).
pub async fn mmr_search<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    model: &EmbeddingModel,
    query: &[f32],
    k: usize,
    filter: Option<&Filter>,
    options: &MmrOptions,
) -> Result<(Vec<SearchHit>, Served), StoreError> {
    if !(0.0..=1.0).contains(&options.lambda) {
        return Err(StoreError::Invalid {
            field: "lambda",
            value: options.lambda.to_string(),
            reason: "lambda is 0 to 1",
        });
    }
    let fetch_k = options
        .fetch_k
        .unwrap_or((4 * k).max(20))
        .max(k)
        .min(super::search::MAX_K);
    check_k("fetch_k", fetch_k)?;
    let Some(mut session) = open(db, model, query, k, filter, &options.search).await? else {
        return Ok((Vec::new(), unserved(&options.search)));
    };
    let candidates: Vec<Candidate> = nearest(&mut session, query, fetch_k, filter, true).await?;
    let served = session.served;
    session.txn.commit().await?;
    let relevance: Vec<f64> = candidates.iter().map(|c| c.hit.similarity).collect();
    let vectors: Vec<&[f32]> = candidates.iter().map(|c| c.embedding.as_slice()).collect();
    let order = mmr_order(&relevance, &vectors, k, options.lambda);
    let mut slots: Vec<Option<SearchHit>> = candidates.into_iter().map(|c| Some(c.hit)).collect();
    let hits = order.into_iter().filter_map(|i| slots[i].take()).collect();
    Ok((hits, served))
}

/// The greedy MMR order over candidates with these similarities to the query and these
/// vectors: the positions of the `k` chosen, in the order chosen.
pub(crate) fn mmr_order(
    relevance: &[f64],
    vectors: &[&[f32]],
    k: usize,
    lambda: f64,
) -> Vec<usize> {
    let norms: Vec<f64> = vectors
        .iter()
        .map(|v| {
            v.iter()
                .map(|x| f64::from(*x) * f64::from(*x))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let cosine = |a: usize, b: usize| -> f64 {
        let dot: f64 = vectors[a]
            .iter()
            .zip(vectors[b])
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let norm = norms[a] * norms[b];
        if norm == 0.0 { 0.0 } else { dot / norm }
    };
    let n = relevance.len();
    // For each candidate, its greatest similarity to the chosen ones so far.
    let mut redundancy = vec![f64::NEG_INFINITY; n];
    let mut chosen = Vec::with_capacity(k.min(n));
    let mut taken = vec![false; n];
    while chosen.len() < k.min(n) {
        let mut best: Option<(usize, f64)> = None;
        for i in (0..n).filter(|&i| !taken[i]) {
            let penalty = if chosen.is_empty() {
                0.0
            } else {
                redundancy[i]
            };
            let score = lambda * relevance[i] - (1.0 - lambda) * penalty;
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        let Some((pick, _)) = best else { break };
        taken[pick] = true;
        chosen.push(pick);
        for i in (0..n).filter(|&i| !taken[i]) {
            redundancy[i] = redundancy[i].max(cosine(i, pick));
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::mmr_order;

    #[test]
    fn mmr_skips_a_near_duplicate_for_a_diverse_candidate() {
        // Candidates 0 and 1 point the same way; 2 is orthogonal and a little less
        // relevant.
        let a = [1.0f32, 0.0];
        let b = [0.99f32, 0.01];
        let c = [0.0f32, 1.0];
        let vectors: Vec<&[f32]> = vec![&a, &b, &c];
        let relevance = [0.9, 0.89, 0.7];
        assert_eq!(mmr_order(&relevance, &vectors, 2, 0.5), vec![0, 2]);
        // lambda 1: relevance order.
        assert_eq!(mmr_order(&relevance, &vectors, 3, 1.0), vec![0, 1, 2]);
    }
}
