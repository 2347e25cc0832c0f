//! Reviews: pending AI annotations, lowest confidence first, each with its image and
//! box; approve, reject, or correct (label or box) and approve — each decision and
//! its audit row in one transaction, a concurrent decision on the same annotation
//! refused; and the reviewers' statistics.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use service::page::Page;
use service::review::{self, Correction, Decision, PendingFilter};
use service::vision::BoundingBox;
use uuid::Uuid;

use super::{Chrome, Done, render};
use crate::auth::Viewer;
use crate::format::{age, time_fixed};
use crate::{AppState, PageError};

/// Annotations a page shows.
const PAGE_SIZE: u64 = 25;

/// One pending annotation as the page shows it.
pub(crate) struct PendingCard {
    id: Uuid,
    image_url: String,
    species: String,
    label: String,
    annotation_type: String,
    confidence: String,
    provider: String,
    created_at: String,
    /// The box in the image's 0..1 coordinates, for the SVG overlay.
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    has_box: bool,
}

/// One reviewer's line.
pub(crate) struct ReviewerLine {
    email: String,
    total: i64,
    approved: i64,
    rejected: i64,
    average: String,
    last: String,
}

#[derive(Template)]
#[template(path = "reviews.html")]
struct ReviewsPage {
    chrome: Chrome,
    pending: Vec<PendingCard>,
    reviewers: Vec<ReviewerLine>,
}

/// `GET /reviews`: a page of pending annotations and the reviewers' statistics, in
/// one read transaction.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let txn = state.read().await?;
    let page = Page::first(PAGE_SIZE).map_err(|e| PageError::Internal(e.to_string()))?;
    let pending = review::pending(&txn, &PendingFilter::default(), page).await?;
    let reviewers = review::reviewer_stats(&txn).await?;
    txn.commit().await?;
    let pending = pending
        .into_iter()
        .map(|a| {
            let b = BoundingBox::from_json(&a.bounding_box).ok();
            PendingCard {
                id: a.id,
                image_url: shown_url(&a.image_url),
                species: a.species.unwrap_or_default(),
                label: a.label,
                annotation_type: a.annotation_type,
                confidence: format!("{:.2}", a.confidence),
                provider: service::provider::name(&a.provider).to_owned(),
                created_at: time_fixed(a.created_at),
                x: b.map_or(0.0, |b| b.top_left.x),
                y: b.map_or(0.0, |b| b.top_left.y),
                w: b.map_or(0.0, |b| b.width),
                h: b.map_or(0.0, |b| b.height),
                has_box: b.is_some(),
            }
        })
        .collect();
    let reviewers = reviewers
        .into_iter()
        .map(|r| ReviewerLine {
            email: r.reviewer_email,
            total: r.total_reviews,
            approved: r.approved_count,
            rejected: r.rejected_count,
            average: r
                .avg_review_time_seconds
                .map_or_else(|| "–".to_owned(), age),
            last: r.last_review_at.map(time_fixed).unwrap_or_default(),
        })
        .collect();
    Ok(render(ReviewsPage {
        chrome: Chrome::new(&state, viewer, "Reviews").with_flash(&done),
        pending,
        reviewers,
    }))
}

/// `url` if the page may link and show it (`https:`, `http:` or an inline image);
/// empty otherwise, so no other scheme reaches an `href` or `src`.
fn shown_url(url: &str) -> String {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("https://")
        || lower.starts_with("http://")
        || lower.starts_with("data:image/")
    {
        url.to_owned()
    } else {
        String::new()
    }
}

/// Records `decision` on annotation `id` as the viewer, in one transaction with its
/// audit row (the service's `review`), and goes back to the queue.
async fn decide(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    decision: Decision,
) -> Result<Response, PageError> {
    let txn = state.write().await?;
    review::review(&txn, id, viewer.user_id, decision).await?;
    txn.commit().await?;
    Ok(Redirect::to("/reviews?done=reviewed").into_response())
}

/// `POST /reviews/{id}/approve`.
pub(crate) async fn approve(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<Uuid>,
) -> Result<Response, PageError> {
    decide(&state, &viewer, id, Decision::Approve).await
}

/// `POST /reviews/{id}/reject`.
pub(crate) async fn reject(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<Uuid>,
) -> Result<Response, PageError> {
    decide(&state, &viewer, id, Decision::Reject).await
}

/// A correction's form: a new label, a new box (its corners, 0..1), or both.
#[derive(Deserialize)]
pub(crate) struct CorrectForm {
    #[serde(default)]
    label: String,
    #[serde(default)]
    x1: String,
    #[serde(default)]
    y1: String,
    #[serde(default)]
    x2: String,
    #[serde(default)]
    y2: String,
}

/// `POST /reviews/{id}/correct`: the label or the box corrected, then approved.
pub(crate) async fn correct(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<Uuid>,
    Form(form): Form<CorrectForm>,
) -> Result<Response, PageError> {
    let corners = [&form.x1, &form.y1, &form.x2, &form.y2];
    let bounding_box = if corners.iter().all(|c| c.trim().is_empty()) {
        None
    } else {
        let mut v = [0.0f64; 4];
        for (slot, (name, text)) in v
            .iter_mut()
            .zip(["x1", "y1", "x2", "y2"].into_iter().zip(corners))
        {
            *slot = text.trim().parse().map_err(|_| {
                PageError::BadRequest(format!("{name} = {text:?}: a number from 0 to 1"))
            })?;
        }
        Some(
            BoundingBox::new(v[0], v[1], v[2], v[3])
                .map_err(|e| PageError::BadRequest(e.to_string()))?,
        )
    };
    let label = Some(form.label.trim().to_owned()).filter(|l| !l.is_empty());
    decide(
        &state,
        &viewer,
        id,
        Decision::Correct(Correction {
            label,
            bounding_box,
        }),
    )
    .await
}
