//! The doctor: every check, ok / warn / fail, with its reason and details. The
//! examination (about 27 checks, each in a read-only transaction of its own under
//! the console's statement timeout) is reused for a minute across requests.

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use service::doctor::{self, Check, Examination, Status};

use super::{Chrome, render};
use crate::auth::Viewer;
use crate::{AppState, PageError};

#[derive(Template)]
#[template(path = "doctor.html")]
struct DoctorPage {
    chrome: Chrome,
    status: String,
    checks: Vec<Check>,
    warn: usize,
    fail: usize,
}

/// The doctor's examination: the last one if younger than a minute, else a new one
/// (on the primary: its statistics are the ones to act on), with the connection
/// checks when the console knows its URLs and the replica checks.
pub(crate) async fn examination(state: &AppState) -> Result<Arc<Examination>, PageError> {
    state
        .0
        .doctor
        .get(async {
            let mut expect = state.config().doctor.clone();
            expect.statement_timeout = state.config().statement_timeout;
            let mut found = doctor::examine(state.db(), &expect).await?;
            if let Some(urls) = &state.config().urls {
                found = found.with(doctor::connection_checks(urls).await);
            }
            Ok::<_, PageError>(found.with(doctor::replica_checks(state.db()).await))
        })
        .await
}

/// `GET /doctor`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, PageError> {
    let found = examination(&state).await?;
    let mut checks = found.checks.clone();
    // Failures first, then warnings, each group in the doctor's order.
    checks.sort_by_key(|c| std::cmp::Reverse(c.status));
    Ok(render(DoctorPage {
        chrome: Chrome::new(&state, viewer, "Doctor"),
        status: found.status.to_string(),
        warn: found.count(Status::Warn),
        fail: found.count(Status::Fail),
        checks,
    }))
}
