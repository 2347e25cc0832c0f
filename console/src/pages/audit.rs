//! The audit log, newest first, filtered by event type, resource, resource id,
//! outcome, actor (an email) and time.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use service::accounts;
use service::audit::{self, AuditQuery, Outcome};
use service::page::Page;

use super::{Chrome, render};
use crate::auth::Viewer;
use crate::format::{field, shorten, time_fixed};
use crate::{AppState, PageError};

/// Events a page shows.
const PAGE_SIZE: u64 = 100;

/// The filters as the URL carries them; empty means unset.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditParams {
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    resource_id: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    page: u64,
}

/// One event as a row.
pub(crate) struct EventRow {
    at: String,
    event: String,
    actor: String,
    resource: String,
    action: String,
    outcome: String,
    details: String,
    ip: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    p: AuditParams,
    events: Vec<EventRow>,
    next: Option<String>,
}

/// `GET /audit`: one page of events (and the actor's id by email), in one read
/// transaction.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<AuditParams>,
) -> Result<Response, PageError> {
    let outcome = match field(&p.outcome).as_deref() {
        None => None,
        Some("success") => Some(Outcome::Success),
        Some("denied") => Some(Outcome::Denied),
        Some("failure") => Some(Outcome::Failure),
        Some(other) => {
            return Err(PageError::BadRequest(format!(
                "outcome = {other:?}: success, denied or failure"
            )));
        }
    };
    let txn = state.read().await?;
    let actor = match field(&p.actor) {
        Some(email) => Some(
            accounts::get_user_by_email(&txn, &email)
                .await?
                .ok_or_else(|| PageError::NotFound(format!("no user {email:?}")))?
                .id,
        ),
        None => None,
    };
    let query = AuditQuery {
        actor,
        event_type: field(&p.event_type),
        resource: field(&p.resource),
        resource_id: field(&p.resource_id),
        outcome,
        since: None,
        until: None,
    };
    let page = Page::new(PAGE_SIZE, p.page * PAGE_SIZE)
        .map_err(|e| PageError::BadRequest(e.to_string()))?;
    let events = audit::query(&txn, &query, page).await?;
    txn.commit().await?;
    let next = (events.len() as u64 == PAGE_SIZE).then(|| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("event_type", &p.event_type),
            ("resource", &p.resource),
            ("resource_id", &p.resource_id),
            ("outcome", &p.outcome),
            ("actor", &p.actor),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("page", &(p.page + 1).to_string());
        format!("/audit?{}", q.finish())
    });
    let events = events
        .into_iter()
        .map(|e| EventRow {
            at: time_fixed(e.created_at),
            event: e.event_type,
            actor: e.user_id.map(|u| u.to_string()).unwrap_or_default(),
            resource: match (e.resource, e.resource_id) {
                (Some(r), Some(id)) => format!("{r} {id}"),
                (Some(r), None) => r,
                (None, Some(id)) => id,
                (None, None) => String::new(),
            },
            action: e.action.unwrap_or_default(),
            outcome: e.outcome,
            details: {
                let d = e.details.to_string();
                if d == "{}" {
                    String::new()
                } else {
                    shorten(&d, 300)
                }
            },
            ip: e.ip_address.unwrap_or_default(),
        })
        .collect();
    Ok(render(AuditPage {
        chrome: Chrome::new(&state, viewer, "Audit"),
        p,
        events,
        next,
    }))
}
