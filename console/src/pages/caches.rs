//! Caches: each cache's statistics (entries, size, hits, hit rate, expired, newest,
//! least recent) and the AI response cache's daily hit-rate history; purges of
//! expired entries, all but the most recent, or all — each shown first as a dry
//! run (the real statements, rolled back) and audited when confirmed.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{Duration, Utc};
use entity::ai_cache_stats;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Deserialize;
use service::cache::{self, CacheKind, Expiry, Purge};

use super::{Chrome, Done, render};
use crate::auth::Viewer;
use crate::format::{maybe_time, percent};
use crate::{AppState, PageError};

/// One cache's card.
pub(crate) struct CacheCard {
    name: &'static str,
    table: &'static str,
    entries: i64,
    size: String,
    hits: i64,
    hit_rate: String,
    expired: String,
    newest: String,
    least_recent: String,
    expires: bool,
    evicts: bool,
}

/// One day of the AI response cache.
pub(crate) struct Day {
    date: String,
    requests: i64,
    hits: i64,
    hit_rate: String,
}

#[derive(Template)]
#[template(path = "caches.html")]
struct CachesPage {
    chrome: Chrome,
    caches: Vec<CacheCard>,
    history: Vec<Day>,
}

/// `GET /caches`: the statistics (one statement scanning each cache table) and 30
/// days of history, in one read transaction.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let txn = state.read().await?;
    let stats = cache::cache_stats(&txn).await?;
    let since = (Utc::now() - Duration::days(30)).date_naive();
    let days = ai_cache_stats::Entity::find()
        .filter(ai_cache_stats::Column::Date.gte(since))
        .order_by_desc(ai_cache_stats::Column::Date)
        .all(&txn)
        .await?;
    txn.commit().await?;
    let caches = stats
        .into_iter()
        .map(|s| CacheCard {
            name: s.kind.name(),
            table: s.table,
            entries: s.entries,
            size: service::doctor::human_bytes(s.total_bytes),
            hits: s.hits,
            hit_rate: percent(s.hit_rate),
            expired: s.expired.map_or_else(|| "–".to_owned(), |e| e.to_string()),
            newest: maybe_time(s.newest),
            least_recent: maybe_time(s.least_recent),
            expires: s.kind.describe().expiry != Expiry::Never,
            evicts: s.kind.describe().keep_recent.is_some(),
        })
        .collect();
    let history = days
        .into_iter()
        .map(|d| Day {
            date: d.date.to_string(),
            requests: d.total_requests,
            hits: d.cache_hits,
            hit_rate: percent(
                (d.total_requests > 0).then(|| d.cache_hits as f64 / d.total_requests as f64),
            ),
        })
        .collect();
    Ok(render(CachesPage {
        chrome: Chrome::new(&state, viewer, "Caches").with_flash(&done),
        caches,
        history,
    }))
}

/// A purge's form.
#[derive(Deserialize)]
pub(crate) struct PurgeForm {
    /// `expired`, `keep_recent` or `all`.
    what: String,
    /// How many to keep, for `keep_recent`.
    #[serde(default)]
    max: String,
    /// `yes` once the operator has seen the dry run.
    #[serde(default)]
    confirm: String,
}

#[derive(Template)]
#[template(path = "purge_confirm.html")]
struct PurgeConfirm {
    chrome: Chrome,
    cache: &'static str,
    what: String,
    max: String,
    described: String,
    rows: u64,
}

/// `POST /caches/{kind}/purge`: without `confirm=yes`, the dry run — the purge in a
/// transaction rolled back — and a form to confirm it; with it, the purge and its
/// `cache.purged` audit row in one transaction.
pub(crate) async fn purge(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(kind): Path<String>,
    Form(form): Form<PurgeForm>,
) -> Result<Response, PageError> {
    let kind: CacheKind = kind.parse()?;
    let what = match form.what.as_str() {
        "expired" => Purge::Expired,
        "all" => Purge::All,
        "keep_recent" => Purge::KeepRecent(form.max.trim().parse().map_err(|_| {
            PageError::BadRequest(format!("max = {:?}: how many entries to keep", form.max))
        })?),
        other => {
            return Err(PageError::BadRequest(format!(
                "what = {other:?}: expired, keep_recent or all"
            )));
        }
    };
    let confirmed = form.confirm == "yes";
    let txn = state.write().await?;
    let rows = cache::purge(&txn, kind, what, Some(viewer.user_id)).await?;
    if !confirmed {
        txn.rollback().await?;
        let described = match what {
            Purge::Expired => "expired entries".to_owned(),
            Purge::All => "every entry".to_owned(),
            Purge::KeepRecent(max) => format!("all but the {max} most recently used entries"),
        };
        return Ok(render(PurgeConfirm {
            chrome: Chrome::new(&state, viewer, "Caches"),
            cache: kind.name(),
            what: form.what,
            max: form.max,
            described,
            rows,
        }));
    }
    txn.commit().await?;
    Ok(Redirect::to(&format!("/caches?done=purged&n={rows}")).into_response())
}
