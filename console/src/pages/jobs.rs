//! Jobs: a list with keyset pagination and filters (queue; status, by default the
//! unfinished; type; priority; creation time; dedup key; error text; JSON
//! containment on the payload) and capped counts; one job whole, its payload's
//! secret-looking values redacted, with its audit trail; retry, cancel and delete
//! of one job or of all that match, in batches, each batch audited with it.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use service::audit::{self, AuditQuery};
use service::page::Page;
use service::queue::{self, BulkChange, JobFilter, JobStatus, JobSummary, QueueTable};
use uuid::Uuid;

use super::{Chrome, Done, queue_name, queue_table, render};
use crate::auth::Viewer;
use crate::format::{field, maybe_time, shorten, time, time_fixed};
use crate::{AppState, PageError, redact};

/// Jobs a page shows.
const PAGE_SIZE: u64 = 50;
/// Jobs one batch of a bulk action changes (one transaction and audit row each).
const BATCH: u64 = 500;

/// The list's filters as the URL (or a bulk form) carries them; empty means unset.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct JobsQuery {
    #[serde(default)]
    queue: String,
    /// A status word, `unfinished` (the default) or `any`.
    #[serde(default)]
    status: String,
    #[serde(default)]
    job_type: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    dedup_key: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    n: Option<u64>,
}

/// A time as a browser's `datetime-local` sends it (read as UTC) or RFC 3339.
fn parse_time(name: &str, s: &str) -> Result<Option<DateTime<Utc>>, PageError> {
    let Some(s) = field(s) else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&s, format) {
            return Ok(Some(t.and_utc()));
        }
    }
    Err(PageError::BadRequest(format!(
        "{name} = {s:?}: a time such as 2026-12-07T15:04 (UTC) or RFC 3339"
    )))
}

impl JobsQuery {
    fn table(&self) -> Result<QueueTable, PageError> {
        queue_table(field(&self.queue).as_deref().unwrap_or("jobs"))
    }

    /// The service's filter; a bad value is a 400 naming it.
    fn filter(&self) -> Result<JobFilter, PageError> {
        let status_word = field(&self.status).unwrap_or_else(|| "unfinished".to_owned());
        let (status, unfinished) = match status_word.as_str() {
            "unfinished" => (None, true),
            "any" => (None, false),
            word => (
                Some(
                    word.parse::<JobStatus>()
                        .map_err(|e| PageError::BadRequest(e.to_string()))?,
                ),
                false,
            ),
        };
        let priority =
            match field(&self.priority) {
                Some(p) => Some(p.parse::<i32>().map_err(|_| {
                    PageError::BadRequest(format!("priority = {p:?}: a whole number"))
                })?),
                None => None,
            };
        let payload_contains =
            match field(&self.payload) {
                Some(p) => Some(serde_json::from_str::<Value>(&p).map_err(|e| {
                    PageError::BadRequest(format!("payload = {p:?}: not JSON ({e})"))
                })?),
                None => None,
            };
        Ok(JobFilter {
            status,
            job_type: field(&self.job_type),
            unfinished,
            priority,
            created_after: parse_time("since", &self.since)?,
            created_before: parse_time("until", &self.until)?,
            dedup_key: field(&self.dedup_key),
            error_contains: field(&self.error),
            payload_contains,
        })
    }

    fn before(&self) -> Result<Option<Uuid>, PageError> {
        field(&self.before)
            .map(|b| {
                b.parse()
                    .map_err(|_| PageError::BadRequest(format!("before = {b:?}: a job id")))
            })
            .transpose()
    }

    /// The filter as a query string (without the page position), for links.
    fn query_string(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.fields() {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }

    /// The filter's fields by name (for links and the bulk forms' hidden fields).
    pub(crate) fn fields(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("queue", self.queue.as_str()),
            ("status", self.status.as_str()),
            ("job_type", self.job_type.as_str()),
            ("priority", self.priority.as_str()),
            ("since", self.since.as_str()),
            ("until", self.until.as_str()),
            ("dedup_key", self.dedup_key.as_str()),
            ("error", self.error.as_str()),
            ("payload", self.payload.as_str()),
        ]
    }
}

/// A job as a row of the list.
pub(crate) struct JobRow {
    id: Uuid,
    job_type: String,
    status: String,
    priority: i32,
    attempts: String,
    run_at: String,
    created_at: String,
    last_error: String,
}

impl From<&JobSummary> for JobRow {
    fn from(j: &JobSummary) -> Self {
        Self {
            id: j.id,
            job_type: j.job_type.clone(),
            status: j.status.to_string(),
            priority: j.priority,
            attempts: format!("{}/{}", j.attempts, j.max_attempts),
            run_at: time(j.run_at),
            created_at: time(j.created_at),
            last_error: shorten(j.last_error.as_deref().unwrap_or_default(), 120),
        }
    }
}

/// A bulk action's button: what it does and to how many.
pub(crate) struct BulkButton {
    action: &'static str,
    label: &'static str,
    count: String,
}

/// A hidden field carrying the filter into a bulk form.
pub(crate) struct Hidden {
    name: &'static str,
    value: String,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    chrome: Chrome,
    q: JobsQuery,
    bulk: Vec<BulkButton>,
    hidden: Vec<Hidden>,
    queue: &'static str,
    statuses: Vec<&'static str>,
    jobs: Vec<JobRow>,
    matching: String,
    cancellable: String,
    retryable: String,
    deletable: String,
    next: Option<String>,
    first: Option<String>,
}

/// `GET /jobs`: one page and the capped counts, in one read transaction.
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<JobsQuery>,
) -> Result<Response, PageError> {
    let table = q.table()?;
    let filter = q.filter()?;
    let before = q.before()?;
    let txn = state.read().await?;
    let jobs = queue::list_jobs(&txn, table, &filter, before, PAGE_SIZE).await?;
    let counts = queue::count_matching(&txn, table, &filter).await?;
    txn.commit().await?;
    let base = q.query_string();
    let next = (jobs.len() as u64 == PAGE_SIZE)
        .then(|| jobs.last().map(|j| format!("/jobs?{base}&before={}", j.id)))
        .flatten();
    let first = before.map(|_| format!("/jobs?{base}"));
    let mut statuses = vec!["unfinished", "any"];
    statuses.extend(table.statuses().iter().map(|s| s.as_str()));
    let done = Done {
        done: q.done.clone(),
        n: q.n,
    };
    let bulk = vec![
        BulkButton {
            action: "retry",
            label: "Retry failed",
            count: queue::capped(counts.retryable),
        },
        BulkButton {
            action: "cancel",
            label: "Cancel pending and running",
            count: queue::capped(counts.cancellable),
        },
        BulkButton {
            action: "delete",
            label: "Delete finished",
            count: queue::capped(counts.deletable),
        },
    ];
    let hidden = q
        .fields()
        .into_iter()
        .map(|(name, value)| Hidden {
            name,
            value: value.to_owned(),
        })
        .collect();
    Ok(render(JobsPage {
        chrome: Chrome::new(&state, viewer, "Jobs").with_flash(&done),
        bulk,
        hidden,
        queue: queue_name(table),
        statuses,
        jobs: jobs.iter().map(JobRow::from).collect(),
        matching: queue::capped(counts.matching),
        cancellable: queue::capped(counts.cancellable),
        retryable: queue::capped(counts.retryable),
        deletable: queue::capped(counts.deletable),
        next,
        first,
        q,
    }))
}

/// One audit row of a job's trail.
pub(crate) struct TrailRow {
    at: String,
    event: String,
    action: String,
    actor: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    chrome: Chrome,
    queue: &'static str,
    id: Uuid,
    job_type: String,
    status: String,
    priority: i32,
    attempts: String,
    run_at: String,
    created_at: String,
    completed_at: String,
    locked_by: String,
    locked_until: String,
    last_error: String,
    payload: String,
    result: String,
    retryable: bool,
    cancellable: bool,
    deletable: bool,
    trail: Vec<TrailRow>,
}

/// `GET /jobs/{queue}/{id}`.
pub(crate) async fn detail(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path((queue_arg, id)): Path<(String, Uuid)>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let table = queue_table(&queue_arg)?;
    let txn = state.read().await?;
    let job = queue::show_job(&txn, table, id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("no job {id} in {}", table.name())))?;
    let trail = audit::query(
        &txn,
        &AuditQuery {
            resource: Some(table.name().to_owned()),
            resource_id: Some(id.to_string()),
            ..AuditQuery::default()
        },
        Page::first(50).map_err(|e| PageError::Internal(e.to_string()))?,
    )
    .await?;
    txn.commit().await?;
    let pretty =
        |v: &Value| serde_json::to_string_pretty(&redact(v)).unwrap_or_else(|_| v.to_string());
    let s = &job.summary;
    Ok(render(JobPage {
        chrome: Chrome::new(&state, viewer, "Jobs").with_flash(&done),
        queue: queue_name(table),
        id,
        job_type: s.job_type.clone(),
        status: s.status.to_string(),
        priority: s.priority,
        attempts: format!("{}/{}", s.attempts, s.max_attempts),
        run_at: time(s.run_at),
        created_at: time(s.created_at),
        completed_at: maybe_time(s.completed_at),
        locked_by: s.locked_by.clone().unwrap_or_else(|| "–".to_owned()),
        locked_until: maybe_time(s.locked_until),
        last_error: s.last_error.clone().unwrap_or_default(),
        payload: pretty(&job.payload),
        result: job.result.as_ref().map(pretty).unwrap_or_default(),
        retryable: s.status == JobStatus::Failed,
        cancellable: matches!(
            s.status,
            JobStatus::Pending | JobStatus::Running | JobStatus::Processing
        ),
        deletable: s.status.is_finished(),
        trail: trail
            .into_iter()
            .map(|e| TrailRow {
                at: time_fixed(e.created_at),
                event: e.event_type,
                action: e.action.unwrap_or_default(),
                actor: e.user_id.map(|u| u.to_string()).unwrap_or_default(),
                outcome: e.outcome,
            })
            .collect(),
    }))
}

/// One job's change: the statement and its audit row in one transaction; a job not
/// in a state the change applies to is a 400 and nothing is written.
async fn change_one(
    state: &AppState,
    viewer: &Viewer,
    queue_arg: &str,
    id: Uuid,
    change: BulkChange,
) -> Result<Response, PageError> {
    let table = queue_table(queue_arg)?;
    let txn = state.write().await?;
    let (changed, needs, done) = match change {
        BulkChange::Retry => (
            queue::retry_failed(&txn, table, &[id]).await? == 1,
            "failed",
            "retried",
        ),
        BulkChange::Cancel => (
            queue::cancel(&txn, table, id).await?,
            "pending or running",
            "cancelled",
        ),
        BulkChange::Delete => (
            queue::delete_job(&txn, table, id).await?,
            "finished",
            "deleted",
        ),
    };
    if !changed {
        return Err(PageError::BadRequest(format!(
            "job {id} of {} is not {needs} (or does not exist): nothing changed",
            table.name()
        )));
    }
    let event = viewer
        .event(&format!("job.{done}"))
        .resource(table.name(), id)
        .action(change.as_str());
    audit::record(&txn, &event).await?;
    txn.commit().await?;
    let to = if change == BulkChange::Delete {
        format!("/jobs?queue={}&done={done}", queue_name(table))
    } else {
        format!("/jobs/{}/{id}?done={done}", queue_name(table))
    };
    Ok(Redirect::to(&to).into_response())
}

/// `POST /jobs/{queue}/{id}/{action}`: `retry`, `cancel` or `delete` one job.
pub(crate) async fn change(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path((queue_arg, id, action)): Path<(String, Uuid, String)>,
) -> Result<Response, PageError> {
    change_one(&state, &viewer, &queue_arg, id, action.parse()?).await
}

/// A bulk action's form: the filter and what to do.
#[derive(Deserialize)]
pub(crate) struct BulkForm {
    action: String,
    #[serde(flatten)]
    q: JobsQuery,
}

/// `POST /jobs/bulk`: `action` (retry, cancel, delete) on every job the filter
/// matches when it starts — a sweep in id order that sees each job once and leaves
/// jobs enqueued meanwhile alone — [`BATCH`] at a time, each batch and its
/// `jobs.bulk_<action>` audit row (the filter, the count and the ids) in one
/// transaction under the statement timeout; then back to the list with the total.
pub(crate) async fn bulk(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(form): Form<BulkForm>,
) -> Result<Response, PageError> {
    let change: BulkChange = form.action.parse()?;
    let table = form.q.table()?;
    let filter = form.q.filter()?;
    let described: serde_json::Map<String, Value> = form
        .q
        .fields()
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    // The jobs there are now, each seen once: ids up to the newest at the start,
    // after the last of the previous batch.
    let txn = state.write().await?;
    let mut sweep = queue::Sweep {
        after: None,
        up_to: queue::newest_id(&txn, table).await?,
    };
    txn.commit().await?;
    let mut total = 0u64;
    while sweep.up_to.is_some() {
        let txn = state.write().await?;
        let ids = queue::change_matching(&txn, table, &filter, change, sweep, BATCH).await?;
        let Some(last) = ids.last().copied() else {
            txn.rollback().await?;
            break;
        };
        total += ids.len() as u64;
        let event = viewer
            .event(&format!("jobs.bulk_{}", change.as_str()))
            .resource(table.name(), "*")
            .action(change.as_str())
            .details(json!({"filter": described, "rows": ids.len(), "ids": ids}));
        audit::record(&txn, &event).await?;
        txn.commit().await?;
        sweep.after = Some(last);
    }
    let to = format!(
        "/jobs?{}&done=bulk_{}&n={total}",
        form.q.query_string(),
        change.as_str()
    );
    Ok(Redirect::to(&to).into_response())
}
