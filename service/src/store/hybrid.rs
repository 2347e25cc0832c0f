//! Hybrid search: the full-text ranking and the vector ranking fused by reciprocal
//! rank fusion, in one statement.

use sea_orm::{ConnectionTrait, FromQueryResult, TransactionSession, TransactionTrait};
use serde::Serialize;

use super::StoreError;
use super::filter::Filter;
use super::model::EmbeddingModel;
use super::search::{
    SearchHit, SearchOptions, Served, candidates_sql, check_k, open, run_search, unserved,
    vector_value,
};

/// Which chunks the full-text side of [`hybrid_search`] matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextMatch {
    /// Chunks with every word of the text (`websearch_to_tsquery`: quoted phrases and
    /// `-word` work). A natural question rarely has all its words in one chunk, and
    /// then the hybrid ranking is the vector ranking alone.
    #[default]
    AllWords,
    /// Chunks with any word of the text (the lexemes of `plainto_tsquery` joined by
    /// OR), ranked by `ts_rank_cd`: more chunks found by text alone, at the price of
    /// noisier text ranks.
    AnyWord,
}

impl TextMatch {
    /// The tsquery of `$3` in this mode.
    fn query_sql(self) -> &'static str {
        match self {
            TextMatch::AllWords => "websearch_to_tsquery('english', $3)",
            // plainto_tsquery joins lexemes with `&` only (no operators from the
            // text), so turning each into `|` is the OR of the same lexemes.
            TextMatch::AnyWord => {
                "(SELECT replace(plainto_tsquery('english', $3)::text, ' & ', ' | ')::tsquery)"
            }
        }
    }
}

impl std::str::FromStr for TextMatch {
    type Err = String;

    /// `all` or `any`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "all" => Ok(TextMatch::AllWords),
            "any" => Ok(TextMatch::AnyWord),
            other => Err(format!("text match {other:?}: all or any")),
        }
    }
}

/// How [`hybrid_search`] fuses its two rankings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HybridOptions {
    /// RRF's constant: a chunk ranked `r` in a list scores `weight / (rrf_k + r)`.
    /// Default 60 (Cormack et al.).
    pub rrf_k: u32,
    /// The vector ranking's weight. Default 1.
    pub vector_weight: f64,
    /// The full-text ranking's weight. Default 1.
    pub text_weight: f64,
    /// Which chunks the full-text side matches. Default [`TextMatch::AllWords`].
    pub text_match: TextMatch,
    /// How many chunks each ranking contributes; `None`: `max(4k, 40)`, at most 1000.
    pub candidates: Option<usize>,
    /// The vector index's knobs.
    pub search: SearchOptions,
}

impl Default for HybridOptions {
    fn default() -> Self {
        Self {
            rrf_k: 60,
            vector_weight: 1.0,
            text_weight: 1.0,
            text_match: TextMatch::AllWords,
            candidates: None,
            search: SearchOptions::default(),
        }
    }
}

/// A chunk found by hybrid search: the chunk and its document, its fused score and
/// its rank in each ranking (absent when that ranking did not fetch it).
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
pub struct HybridHit {
    /// The chunk and its document; `distance` is the query vector's, whichever
    /// ranking found it.
    #[sea_orm(nested)]
    #[serde(flatten)]
    pub hit: SearchHit,
    /// The reciprocal rank fusion score.
    pub score: f64,
    /// Its rank by vector distance, from 1.
    pub vector_rank: Option<i64>,
    /// Its rank by full-text relevance (`ts_rank_cd`), from 1; `None` when the text
    /// did not match it, and its score is then the vector side's alone.
    pub text_rank: Option<i64>,
}

impl HybridHit {
    /// Whether the full-text side matched this chunk (its score has a text part).
    pub fn text_matched(&self) -> bool {
        self.text_rank.is_some()
    }
}

impl AsRef<SearchHit> for HybridHit {
    fn as_ref(&self) -> &SearchHit {
        &self.hit
    }
}

/// Both rankings and their fusion in one statement: the vector candidates (through the
/// index or exact, `{vector}`) and the full-text matches (`{text_query}`, one of
/// [`TextMatch`]'s, over the generated `search_vector`, served by its GIN index), each
/// ranked in a CTE, fused
/// by a full outer join. `$1` vector, `$2` candidates, `$3` text, `$4` RRF k, `$5` and
/// `$6` weights, `$7` k, the filter's parameters from `$8`. Window functions, a full
/// outer join and pgvector's operator: SeaORM's builder cannot say it.
const HYBRID_SQL: &str = "WITH vector AS MATERIALIZED ({vector}),
     vector_ranked AS (
         SELECT id, row_number() OVER (ORDER BY distance, id) AS rank FROM vector
     ),
     text_ranked AS MATERIALIZED (
         SELECT c.id, row_number() OVER (ORDER BY ts_rank_cd(c.search_vector, q.query) DESC, c.id)
                    AS rank
         FROM document_chunks c, {text_query} AS q(query)
         WHERE c.search_vector @@ q.query AND ({filter})
         ORDER BY rank
         LIMIT $2
     ),
     fused AS (
         SELECT coalesce(v.id, t.id) AS id, v.rank AS vector_rank, t.rank AS text_rank,
                coalesce($5::float8 / ($4 + v.rank), 0) + coalesce($6::float8 / ($4 + t.rank), 0)
                    AS score
         FROM vector_ranked v FULL OUTER JOIN text_ranked t ON t.id = v.id
         ORDER BY score DESC, id
         LIMIT $7
     )
     SELECT c.id AS chunk_id, c.chunk_index, c.content, c.metadata AS chunk_metadata,
            c.document_id, d.source, d.title, d.metadata AS document_metadata,
            c.embedding <=> $1::vector AS distance, 1 - (c.embedding <=> $1::vector) AS similarity,
            f.score, f.vector_rank, f.text_rank
     FROM fused f
     JOIN document_chunks c ON c.id = f.id
     JOIN documents d ON d.id = c.document_id
     ORDER BY f.score DESC, f.id";

/// The `k` chunks that best match both `text` (full text, `websearch_to_tsquery`
/// syntax) and `query` (a vector of the store's model), fused by reciprocal rank
/// fusion; a chunk that matches a rare word exactly surfaces even when its vector
/// ranks it low. Filtered like [`super::search()`], and like it never fewer than `k`
/// rows when `k` match. Round trips: begin, knobs, the statement, commit.
pub async fn hybrid_search<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    model: &EmbeddingModel,
    text: &str,
    query: &[f32],
    k: usize,
    filter: Option<&Filter>,
    options: &HybridOptions,
) -> Result<(Vec<HybridHit>, Served), StoreError> {
    let candidates = options
        .candidates
        .unwrap_or((4 * k).max(40))
        .min(super::search::MAX_K);
    check_k("candidates", candidates)?;
    if !(options.vector_weight.is_finite() && options.text_weight.is_finite())
        || options.vector_weight < 0.0
        || options.text_weight < 0.0
    {
        return Err(StoreError::Invalid {
            field: "weights",
            value: format!("{} {}", options.vector_weight, options.text_weight),
            reason: "weights are finite and not negative",
        });
    }
    let Some(mut session) = open(db, model, query, k, filter, &options.search).await? else {
        return Ok((Vec::new(), unserved(&options.search)));
    };
    let values = vec![
        vector_value(query),
        (candidates as i64).into(),
        text.to_owned().into(),
        i64::from(options.rrf_k).into(),
        options.vector_weight.into(),
        options.text_weight.into(),
        (k as i64).into(),
    ];
    let hits: Vec<HybridHit> = run_search(&mut session, values, filter, k, |index, filter_sql| {
        HYBRID_SQL
            .replace("{vector}", &candidates_sql(index, filter_sql, false))
            .replace("{filter}", filter_sql)
            .replace("{text_query}", options.text_match.query_sql())
    })
    .await?;
    let served = session.served;
    session.txn.commit().await?;
    Ok((hits, served))
}
