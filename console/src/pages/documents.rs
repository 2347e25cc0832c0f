//! Documents: ingest history, the vector index's health and a running build's
//! progress, reindex, and a search box — vector or hybrid, through the configured
//! embedder — that shows each hit's scores.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use service::audit;
use service::store::{
    self, Embedder, HybridOptions, IndexMethod, Recommendation, VectorStore, embed_all,
};

use super::{Chrome, Done, render};
use crate::auth::Viewer;
use crate::format::{maybe_time, shorten};
use crate::{AppState, PageError};

/// `maintenance_work_mem` of a build started here (as `strata docs reindex`).
const REINDEX_MEMORY: &str = "256MB";
/// Days of ingest history shown.
const HISTORY_DAYS: i32 = 30;
/// Hits a search shows at most.
const MAX_HITS: usize = 50;

/// One line of ingest history.
pub(crate) struct HistoryRow {
    day: String,
    source: String,
    documents: i64,
    chunks: i64,
}

/// The index as the page shows it.
pub(crate) struct IndexView {
    name: String,
    state: String,
    method: String,
    parameters: String,
    chosen_because: String,
    rows_at_build: String,
    rows_now: i64,
    built_at: String,
    size: String,
    recommendation: String,
}

/// A build in progress.
pub(crate) struct ProgressView {
    phase: String,
    blocks: String,
    tuples: String,
}

/// One search hit.
pub(crate) struct HitRow {
    rank: usize,
    similarity: String,
    score: String,
    vector_rank: String,
    text_rank: String,
    chunk: String,
    title: String,
    text: String,
}

#[derive(Template)]
#[template(path = "documents.html")]
struct DocumentsPage {
    chrome: Chrome,
    history: Vec<HistoryRow>,
    index: IndexView,
    progress: Option<ProgressView>,
    model: String,
    embedder: String,
    q: SearchQuery,
    hits: Vec<HitRow>,
    searched: bool,
    hybrid: bool,
}

/// The search box.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
    /// `hybrid` (the default) or `vector`.
    #[serde(default)]
    mode: String,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    done: Option<String>,
}

/// `GET /documents`.
pub(crate) async fn page(
    state: State<AppState>,
    viewer: Extension<Viewer>,
    Query(q): Query<SearchQuery>,
) -> Result<Response, PageError> {
    show(
        state,
        viewer,
        SearchQuery {
            q: String::new(),
            ..q
        },
    )
    .await
}

/// `GET /documents/search?q=…&mode=hybrid|vector&k=10`.
pub(crate) async fn search(
    state: State<AppState>,
    viewer: Extension<Viewer>,
    Query(q): Query<SearchQuery>,
) -> Result<Response, PageError> {
    show(state, viewer, q).await
}

/// The page, with the search's hits when `q` asks one. The query is embedded
/// before any transaction opens (an embedding call is slow); then one read
/// transaction reads history, index health, progress and the hits.
async fn show(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    q: SearchQuery,
) -> Result<Response, PageError> {
    let hybrid = q.mode != "vector";
    let k = q.k.unwrap_or(10).clamp(1, MAX_HITS);
    let text = q.q.trim().to_owned();
    let embedder = state.config().embedder.clone();
    let vector = match (&embedder, text.is_empty()) {
        (_, true) => None,
        (None, false) => {
            return Err(PageError::BadRequest(
                "this console has no embedder: start it with --embed local or --embed http".into(),
            ));
        }
        (Some(e), false) => Some(
            embed_all(e.as_ref(), std::slice::from_ref(&text))
                .await?
                .into_iter()
                .next()
                .unwrap_or_default(),
        ),
    };
    let txn = state.read().await?;
    let history = store::ingest_history(&txn, HISTORY_DAYS).await?;
    let health = store::index_health(&txn).await?;
    let progress = store::build_progress(&txn).await?;
    let model = store::recorded_model(&txn).await?;
    let mut hits = Vec::new();
    if let (Some(vector), Some(model)) = (&vector, &model) {
        if let Some(e) = &embedder
            && e.model() != model
        {
            return Err(PageError::BadRequest(format!(
                "the embedder's model {} is not the store's ({})",
                e.model().name,
                model.name
            )));
        }
        let vectors = VectorStore::new(model.clone());
        if hybrid {
            let found = vectors
                .hybrid_search(&txn, &text, vector, k, None, &HybridOptions::default())
                .await?;
            for (i, h) in found.into_iter().enumerate() {
                let rank = |r: Option<i64>| r.map_or_else(|| "–".to_owned(), |r| r.to_string());
                hits.push(hit_row(
                    i,
                    &h.hit,
                    format!("{:.4}", h.score),
                    rank(h.vector_rank),
                    rank(h.text_rank),
                ));
            }
        } else {
            let found = vectors.search(&txn, vector, k, None).await?;
            for (i, h) in found.iter().enumerate() {
                hits.push(hit_row(
                    i,
                    h,
                    String::new(),
                    (i + 1).to_string(),
                    String::new(),
                ));
            }
        }
    }
    txn.commit().await?;
    let index = IndexView {
        state: match (health.exists, health.valid) {
            (false, _) => "missing".to_owned(),
            (true, false) => "invalid (a build failed or runs)".to_owned(),
            (true, true) => "valid".to_owned(),
        },
        name: health.index_name,
        method: health.method.unwrap_or_else(|| "–".to_owned()),
        parameters: health.parameters.to_string(),
        chosen_because: health.chosen_because.unwrap_or_default(),
        rows_at_build: health
            .rows_at_build
            .map_or_else(|| "–".to_owned(), |n| n.to_string()),
        rows_now: health.rows_now,
        built_at: maybe_time(health.built_at),
        size: service::doctor::human_bytes(health.size_bytes),
        recommendation: match health.recommendation {
            Recommendation::Keep => "keep".to_owned(),
            Recommendation::Rebuild(why) => format!("rebuild: {why}"),
            Recommendation::Wait(why) => format!("wait: {why}"),
        },
    };
    let progress = progress.map(|p| ProgressView {
        phase: p.phase,
        blocks: format!("{} / {}", p.blocks_done, p.blocks_total),
        tuples: format!("{} / {}", p.tuples_done, p.tuples_total),
    });
    let done = Done {
        done: q.done.clone(),
        n: None,
    };
    Ok(render(DocumentsPage {
        chrome: Chrome::new(&state, viewer, "Documents").with_flash(&done),
        history: history
            .into_iter()
            .map(|h| HistoryRow {
                day: h.day,
                source: h.source.unwrap_or_else(|| "–".to_owned()),
                documents: h.documents,
                chunks: h.chunks,
            })
            .collect(),
        index,
        progress,
        model: model.map_or_else(
            || "none yet".to_owned(),
            |m| format!("{} ({} dimensions)", m.name, m.dimension),
        ),
        embedder: embedder.map_or_else(
            || "none (start strata serve with --embed)".to_owned(),
            |e| e.model().name.clone(),
        ),
        searched: vector.is_some(),
        hybrid,
        hits,
        q,
    }))
}

fn hit_row(
    i: usize,
    h: &store::SearchHit,
    score: String,
    vector_rank: String,
    text_rank: String,
) -> HitRow {
    let text = h.content.split_whitespace().collect::<Vec<_>>().join(" ");
    HitRow {
        rank: i + 1,
        similarity: format!("{:.3}", h.similarity),
        score,
        vector_rank,
        text_rank,
        chunk: format!("{}:{}", h.document_id, h.chunk_index),
        title: h.title.clone().unwrap_or_default(),
        text: shorten(&text, 240),
    }
}

/// `POST /documents/reindex`: records `store.reindex_requested`, then rebuilds the
/// vector index in the background (`IndexMethod::Auto`, 256 MB; a concurrent build
/// on a session connection of its own, as `strata docs reindex` does); the page
/// shows the build's progress while it runs. A second request while a build runs
/// (started here, or seen in `pg_stat_progress_create_index`) is refused (409):
/// two rebuilds would drop each other's new index.
pub(crate) async fn reindex(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, PageError> {
    let busy = || PageError::Conflict("a rebuild of the vector index is already running".into());
    let txn = state.write().await?;
    if store::build_progress(&txn).await?.is_some() {
        return Err(busy());
    }
    let event = viewer
        .event("store.reindex_requested")
        .resource("document_chunks", "embedding")
        .action("reindex");
    use std::sync::atomic::Ordering;
    if state
        .0
        .reindexing
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(busy());
    }
    if let Err(e) = async {
        audit::record(&txn, &event).await?;
        txn.commit().await?;
        Ok::<_, PageError>(())
    }
    .await
    {
        state.0.reindexing.store(false, Ordering::Release);
        return Err(e);
    }
    let running = state.clone();
    tokio::spawn(async move {
        if let Err(e) = store::reindex(running.db(), IndexMethod::Auto, REINDEX_MEMORY).await {
            tracing::warn!(error = %e, "console: reindex failed");
        }
        running.0.reindexing.store(false, Ordering::Release);
    });
    Ok(Redirect::to("/documents?done=reindex").into_response())
}
