//! An operator's view of a queue: jobs by status, type, priority, time, dedup key,
//! error text and payload, page by page along the primary key; one job whole; and
//! bulk cancel, retry or delete by the same filter, counted first, in batches.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value as SqlValue};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{COUNT_CAP, JobStatus, QueueError, QueueTable};
use crate::page::MAX_PAGE;

/// Which jobs: every field set narrows the match; the default matches all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only jobs in this status (one of [`QueueTable::statuses`]).
    pub status: Option<JobStatus>,
    /// Only jobs of this type (`jobs`' `job_type`; `ai_annotation_jobs`' provider).
    pub job_type: Option<String>,
    /// Only jobs not finished yet (pending or running); ignored beside `status`.
    pub unfinished: bool,
    /// Only jobs of this priority.
    pub priority: Option<i32>,
    /// Only jobs created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Only the job(s) with this dedup key.
    pub dedup_key: Option<String>,
    /// Only jobs whose last error contains this text (case-insensitive).
    pub error_contains: Option<String>,
    /// Only jobs whose payload contains this JSON object or array (`@>`).
    pub payload_contains: Option<Value>,
}

impl JobFilter {
    /// The filter's nine parameters, checked against `table`: an unknown status is
    /// [`QueueError::UnknownStatus`] naming it and them; a payload filter that is not
    /// a JSON object or array, or an empty text field, is [`QueueError::InvalidFilter`]
    /// — before any statement runs.
    fn values(&self, table: QueueTable) -> Result<Vec<SqlValue>, QueueError> {
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
        if let Some(payload) = &self.payload_contains
            && !(payload.is_object() || payload.is_array())
        {
            return Err(QueueError::InvalidFilter {
                field: "payload_contains",
                value: payload.to_string(),
                reason: "a JSON object or array",
            });
        }
        for (field, text) in [
            ("job_type", &self.job_type),
            ("dedup_key", &self.dedup_key),
            ("error_contains", &self.error_contains),
        ] {
            if text.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return Err(QueueError::InvalidFilter {
                    field,
                    value: format!("{text:?}"),
                    reason: "empty: leave it unset to match every job",
                });
            }
        }
        Ok(vec![
            self.status.map(JobStatus::as_str).into(),
            self.job_type.clone().into(),
            (self.unfinished && self.status.is_none()).into(),
            self.priority.into(),
            self.created_after.into(),
            self.created_before.into(),
            self.dedup_key.clone().into(),
            self.error_contains.as_deref().map(like_literal).into(),
            self.payload_contains.clone().into(),
        ])
    }
}

/// `text` as a LIKE pattern matching itself: `\`, `%` and `_` escaped.
fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Where a bulk change's sweep is ([`change_matching`]): ids after `after` (the last
/// id of the previous batch) and up to `up_to` (the newest id when it began, from
/// [`newest_id`]), so each job is seen once and jobs that arrive during the sweep
/// are left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Only ids after this one.
    pub after: Option<Uuid>,
    /// Only ids up to this one.
    pub up_to: Option<Uuid>,
}

/// The newest id of `table` (where a [`Sweep`] stops), if it has a job. One round
/// trip: the primary key's last entry.
pub async fn newest_id<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
) -> Result<Option<Uuid>, QueueError> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            table.sql().newest_id.as_str(),
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<Option<Uuid>>("", "id")?,
        None => None,
    })
}

/// A bulk change by a filter ([`change_matching`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkChange {
    /// Cancel pending and running jobs.
    Cancel,
    /// Send failed jobs back to pending with fresh attempts.
    Retry,
    /// Delete finished jobs (completed, failed, cancelled).
    Delete,
}

impl std::str::FromStr for BulkChange {
    type Err = QueueError;

    /// `retry`, `cancel` or `delete`; another word is [`QueueError::InvalidFilter`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "retry" => Ok(BulkChange::Retry),
            "cancel" => Ok(BulkChange::Cancel),
            "delete" => Ok(BulkChange::Delete),
            other => Err(QueueError::InvalidFilter {
                field: "action",
                value: other.to_owned(),
                reason: "retry, cancel or delete",
            }),
        }
    }
}

impl BulkChange {
    /// Its name, as the audit log writes it (`cancel`, `retry`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            BulkChange::Cancel => "cancel",
            BulkChange::Retry => "retry",
            BulkChange::Delete => "delete",
        }
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

/// Up to `limit` (1 to [`MAX_PAGE`]) of `table`'s jobs matching `filter`, newest
/// first by id, after `before` (the last id of the previous page; `None` for the
/// first): keyset pagination along the primary key, so page 1,000 costs what page 1
/// does and no filter reads the table whole. One round trip, on any connection.
pub async fn list_jobs<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<JobSummary>, QueueError> {
    Ok(
        JobSummary::find_by_statement(list_statement(table, filter, before, limit)?)
            .all(db)
            .await?,
    )
}

/// The statement [`list_jobs`] sends (for `EXPLAIN`); a `limit` outside 1 to
/// [`MAX_PAGE`] is [`QueueError::InvalidFilter`].
pub fn list_statement(
    table: QueueTable,
    filter: &JobFilter,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Statement, QueueError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(QueueError::InvalidFilter {
            field: "limit",
            value: limit.to_string(),
            reason: "outside 1..=1000",
        });
    }
    let mut values = filter.values(table)?;
    values.push(before.into());
    values.push((limit as i64).into());
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        table.sql().list.as_str(),
        values,
    ))
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

/// What a bulk change by a filter would touch, each count stopping past
/// [`COUNT_CAP`] (show them with [`super::capped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct Matching {
    /// Jobs the filter matches.
    pub matching: i64,
    /// Pending or running jobs: what [`BulkChange::Cancel`] cancels.
    pub cancellable: i64,
    /// Failed jobs: what [`BulkChange::Retry`] retries.
    pub retryable: i64,
    /// Finished jobs: what [`BulkChange::Delete`] deletes.
    pub deletable: i64,
}

/// The statement [`count_matching`] sends (for `EXPLAIN`).
pub fn count_statement(table: QueueTable, filter: &JobFilter) -> Result<Statement, QueueError> {
    let mut values = filter.values(table)?;
    values.push((COUNT_CAP + 1).into());
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        table.sql().count_matching.as_str(),
        values,
    ))
}

/// Counts what `filter` matches and what each bulk change would touch, each up to
/// `COUNT_CAP + 1` along the primary key: bounded work on any table size. One round
/// trip, on any connection.
pub async fn count_matching<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
) -> Result<Matching, QueueError> {
    Ok(Matching::find_by_statement(count_statement(table, filter)?)
        .one(db)
        .await?
        .unwrap_or(Matching {
            matching: 0,
            cancellable: 0,
            retryable: 0,
            deletable: 0,
        }))
}

/// Applies `change` to at most `batch` (1 to [`MAX_PAGE`]) jobs matching `filter`
/// within `sweep`, in id order, and returns their ids (the last is the next batch's
/// `sweep.after`): one bounded statement, so a caller can commit and audit batch by
/// batch. A job that stopped matching between the pick and the change (a worker
/// claimed it) is left alone. On any connection.
pub async fn change_matching<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
    change: BulkChange,
    sweep: Sweep,
    batch: u64,
) -> Result<Vec<Uuid>, QueueError> {
    if batch == 0 || batch > MAX_PAGE {
        return Err(QueueError::InvalidFilter {
            field: "batch",
            value: batch.to_string(),
            reason: "outside 1..=1000",
        });
    }
    let mut values = filter.values(table)?;
    values.push((batch as i64).into());
    values.push(sweep.after.into());
    values.push(sweep.up_to.into());
    let sql = table.sql();
    let sql = match change {
        BulkChange::Cancel => &sql.cancel_matching,
        BulkChange::Retry => &sql.retry_matching,
        BulkChange::Delete => &sql.delete_matching,
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql.as_str(),
            values,
        ))
        .await?;
    let mut ids = rows
        .iter()
        .map(|r| r.try_get::<Uuid>("", "id").map_err(QueueError::from))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort();
    Ok(ids)
}

/// Cancels every pending or running job matching `filter` (a running job's worker
/// learns at its next heartbeat), [`BULK_BATCH`] at a time; how many. One statement
/// per batch and one more that finds none left.
pub async fn cancel_matching<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
) -> Result<u64, QueueError> {
    change_all(db, table, filter, BulkChange::Cancel).await
}

/// Sends every failed job matching `filter` back to pending with fresh attempts,
/// [`BULK_BATCH`] at a time; how many. One statement per batch and one more.
pub async fn retry_matching<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
) -> Result<u64, QueueError> {
    change_all(db, table, filter, BulkChange::Retry).await
}

/// The batch size of [`cancel_matching`] and [`retry_matching`].
pub const BULK_BATCH: u64 = 500;

/// Applies `change` batch by batch over the jobs there are now, each seen once.
async fn change_all<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    filter: &JobFilter,
    change: BulkChange,
) -> Result<u64, QueueError> {
    let mut sweep = Sweep {
        after: None,
        up_to: newest_id(db, table).await?,
    };
    if sweep.up_to.is_none() {
        return Ok(0);
    }
    let mut total = 0;
    loop {
        let done = change_matching(db, table, filter, change, sweep, BULK_BATCH).await?;
        match done.last() {
            None => return Ok(total),
            Some(last) => sweep.after = Some(*last),
        }
        total += done.len() as u64;
    }
}
