//! An operator's view of a queue: jobs by status and type, page by page; one job
//! whole; and bulk cancel or retry by the same filter, with the count first.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value as SqlValue};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{JobStatus, QueueError, QueueTable};
use crate::page::Page;

/// Which jobs: by status and type (either may be any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs in this status (one of [`QueueTable::statuses`]).
    pub status: Option<JobStatus>,
    /// Only jobs of this type (`jobs`' `job_type`; `ai_annotation_jobs`' provider).
    pub job_type: Option<String>,
}

impl JobFilter {
    /// Checks the status against `table`'s words: an unknown one is
    /// [`QueueError::UnknownStatus`] naming it and them, before any statement runs.
    fn values(&self, table: QueueTable) -> Result<[SqlValue; 2], QueueError> {
        if let Some(status) = self.status {
            let known = table.statuses();
            if !known.contains(&status) {
                return Err(QueueError::UnknownStatus {
                    status: status.to_string(),
                    table: table.name(),
                    known: known.map(JobStatus::as_str).join(", "),
                });
            }
        }
        Ok([
            self.status.map(JobStatus::as_str).into(),
            self.job_type.clone().into(),
        ])
    }
}

/// A job as a listing shows it.
#[derive(Debug, Clone, PartialEq, Serialize, FromQueryResult)]
pub struct JobSummary {
    /// Its id.
    pub id: Uuid,
    /// Its type (`ai_annotation_jobs`: the provider).
    pub job_type: String,
    /// Its status.
    pub status: JobStatus,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts made.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When it may run (next).
    pub run_at: DateTime<Utc>,
    /// The worker holding it, while running.
    pub locked_by: Option<String>,
    /// When that worker's lease ends.
    pub locked_until: Option<DateTime<Utc>>,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

/// A job whole: its summary, payload and result.
#[derive(Debug, Clone, PartialEq, Serialize, FromQueryResult)]
pub struct JobDetail {
    /// What a listing shows.
    #[sea_orm(nested)]
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Its payload (`ai_annotation_jobs`: the request payload).
    pub payload: Value,
    /// Its result (`ai_annotation_jobs`: the response data), once completed.
    pub result: Option<Value>,
}

/// A page of `table`'s jobs matching `filter`, newest first. One round trip, on any
/// connection.
pub async fn list_jobs<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
    page: Page,
) -> Result<Vec<JobSummary>, QueueError> {
    let [status, job_type] = filter.values(table)?;
    Ok(
        JobSummary::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            table.sql().list.as_str(),
            [
                status,
                job_type,
                (page.limit() as i64).into(),
                (page.offset() as i64).into(),
            ],
        ))
        .all(db)
        .await?,
    )
}

/// One job of `table`, whole, if it exists. One round trip, on any connection.
pub async fn show_job<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    id: Uuid,
) -> Result<Option<JobDetail>, QueueError> {
    Ok(JobDetail::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        table.sql().show.as_str(),
        [id.into()],
    ))
    .one(db)
    .await?)
}

/// What a bulk change by a filter would touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct Matching {
    /// Pending or running jobs: what [`cancel_matching`] cancels.
    pub cancellable: i64,
    /// Failed jobs: what [`retry_matching`] retries.
    pub retryable: i64,
}

/// Counts what [`cancel_matching`] and [`retry_matching`] would change. One round
/// trip, on any connection.
pub async fn count_matching<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
) -> Result<Matching, QueueError> {
    let values = filter.values(table)?;
    Ok(Matching::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        table.sql().count_matching.as_str(),
        values,
    ))
    .one(db)
    .await?
    .unwrap_or(Matching {
        cancellable: 0,
        retryable: 0,
    }))
}

/// Cancels every pending or running job matching `filter` (a running job's worker
/// learns at its next heartbeat); how many. One statement, on any connection.
pub async fn cancel_matching<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
) -> Result<u64, QueueError> {
    change_matching(db, table, filter, &table.sql().cancel_matching).await
}

/// Sends every failed job matching `filter` back to pending with fresh attempts; how
/// many. One statement, on any connection.
pub async fn retry_matching<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
) -> Result<u64, QueueError> {
    change_matching(db, table, filter, &table.sql().retry_matching).await
}

/// Runs `sql`, a bulk change by the filter, and says how many rows it changed.
async fn change_matching<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
    sql: &str,
) -> Result<u64, QueueError> {
    let values = filter.values(table)?;
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    Ok(done.rows_affected())
}
