//! Maintenance: the tasks with their schedules, next and last runs; the last runs
//! with their reports; run a task now; enable or disable one (audited).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use entity::maintenance_runs;
use sea_orm::{EntityTrait, QueryOrder, QuerySelect};
use serde::Deserialize;
use service::audit;
use service::maintenance::{self, Task};

use super::{Chrome, Done, render};
use crate::auth::Viewer;
use crate::format::{shorten, time_fixed};
use crate::{AppState, PageError};

/// Runs the page lists.
const RUNS_SHOWN: u64 = 30;

/// One task's line.
pub(crate) struct TaskRow {
    task: String,
    schedule: String,
    enabled: bool,
    next_run: String,
    last_run: String,
    last_status: String,
    parameters: String,
}

/// One run's line.
pub(crate) struct RunRow {
    task: String,
    status: String,
    started: String,
    duration: String,
    rows: String,
    report: String,
    runner: String,
}

#[derive(Template)]
#[template(path = "maintenance.html")]
struct MaintenancePage {
    chrome: Chrome,
    tasks: Vec<TaskRow>,
    runs: Vec<RunRow>,
}

/// `GET /maintenance`: the tasks and the last runs, in one read transaction.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let txn = state.read().await?;
    let tasks = maintenance::list(&txn).await?;
    let runs = maintenance_runs::Entity::find()
        .order_by_desc(maintenance_runs::Column::StartedAt)
        .limit(RUNS_SHOWN)
        .all(&txn)
        .await?;
    txn.commit().await?;
    let tasks = tasks
        .into_iter()
        .map(|t| TaskRow {
            task: t.task,
            schedule: t.schedule,
            enabled: t.enabled,
            next_run: time_fixed(t.next_run_at),
            last_run: t
                .last_run_at
                .map(time_fixed)
                .unwrap_or_else(|| "never".to_owned()),
            last_status: t.last_status.unwrap_or_default(),
            parameters: t.parameters.to_string(),
        })
        .collect();
    let runs = runs
        .into_iter()
        .map(|r| RunRow {
            task: r.task,
            status: r.status,
            started: time_fixed(r.started_at),
            duration: r.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
            rows: r.rows_affected.map(|n| n.to_string()).unwrap_or_default(),
            report: r
                .error
                .unwrap_or_else(|| shorten(&r.details.to_string(), 300)),
            runner: r.runner,
        })
        .collect();
    Ok(render(MaintenancePage {
        chrome: Chrome::new(&state, viewer, "Maintenance").with_flash(&done),
        tasks,
        runs,
    }))
}

/// `POST /maintenance/{task}/run`: records `maintenance.run_requested` (who asked),
/// then runs the task in the background under the maintenance runner (which records
/// the run and its report, and audits it) — a task can take longer than a request
/// should — and goes back to the page, where the run appears when it ends.
pub(crate) async fn run(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(task): Path<String>,
) -> Result<Response, PageError> {
    let task: Task = task.parse()?;
    let txn = state.write().await?;
    let event = viewer
        .event("maintenance.run_requested")
        .resource("maintenance_tasks", task.name())
        .action("run");
    audit::record(&txn, &event).await?;
    txn.commit().await?;
    let db = state.db().clone();
    tokio::spawn(async move {
        let runner = format!("console:{}", maintenance::runner_name());
        if let Err(e) = maintenance::run(&db, task, &runner).await {
            tracing::warn!(task = task.name(), error = %e, "console: maintenance run failed");
        }
    });
    Ok(Redirect::to("/maintenance?done=started").into_response())
}

/// The enable form.
#[derive(Deserialize)]
pub(crate) struct EnabledForm {
    /// `true` or `false`.
    enabled: String,
}

/// `POST /maintenance/{task}/enabled`: turns the task on or off, and records
/// `maintenance.enabled` or `maintenance.disabled`, in one transaction.
pub(crate) async fn enabled(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(task): Path<String>,
    Form(form): Form<EnabledForm>,
) -> Result<Response, PageError> {
    let task: Task = task.parse()?;
    let on = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(PageError::BadRequest(format!(
                "enabled = {other:?}: true or false"
            )));
        }
    };
    let txn = state.write().await?;
    maintenance::set_enabled(&txn, task, on).await?;
    let word = if on { "enabled" } else { "disabled" };
    let event = viewer
        .event(&format!("maintenance.{word}"))
        .resource("maintenance_tasks", task.name())
        .action(word);
    audit::record(&txn, &event).await?;
    txn.commit().await?;
    Ok(Redirect::to(&format!("/maintenance?done={word}")).into_response())
}
