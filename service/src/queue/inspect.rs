//! Reading the queues: jobs by status and type, the oldest wait, the failed, one job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, Statement};
use uuid::Uuid;

use super::{JobStatus, QueueError, QueueTable};
use crate::error::DbError;

/// Jobs per (status, type).
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult, serde::Serialize)]
pub struct StatusCount {
    /// The status.
    pub status: JobStatus,
    /// The job type.
    pub job_type: String,
    /// How many.
    pub count: i64,
}

/// Counts jobs by status and type. One round trip, on any connection.
pub async fn counts<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
) -> Result<Vec<StatusCount>, QueueError> {
    Ok(StatusCount::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        table.sql().counts.as_str(),
    ))
    .all(db)
    .await?)
}

/// How long the oldest runnable pending job has waited, if any. One round trip, on
/// any connection.
pub async fn oldest_pending_age<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
) -> Result<Option<Duration>, QueueError> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            table.sql().oldest_pending.as_str(),
        ))
        .await?
        .ok_or_else(|| DbError::no_row("oldest pending job"))?;
    let age: Option<f64> = row.try_get("", "age")?;
    Ok(age.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// A queue's state, as an operator's health check reads it.
#[derive(Debug, Clone, Copy, PartialEq, FromQueryResult, serde::Serialize)]
pub struct QueueHealth {
    /// Running jobs whose lease ran out: their worker is gone;
    /// [`super::rescue_expired`] returns them.
    pub expired_leases: i64,
    /// Running jobs.
    pub running: i64,
    /// Pending jobs whose time has come.
    pub runnable: i64,
    /// Jobs that ended failed.
    pub failed: i64,
    /// How long the oldest runnable job has waited, in seconds.
    pub oldest_wait_seconds: Option<f64>,
}

/// The queue's [`QueueHealth`]. One statement (a scan of the table), on any
/// connection.
pub async fn health<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
) -> Result<QueueHealth, QueueError> {
    QueueHealth::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        table.sql().health.as_str(),
    ))
    .one(db)
    .await?
    .ok_or_else(|| DbError::no_row("queue health").into())
}

/// A job that ended `failed`.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct FailedJob {
    /// Its id.
    pub id: Uuid,
    /// Its type.
    pub job_type: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last error.
    pub error: Option<String>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

/// The most recently failed jobs, at most `limit`. One round trip, on any connection.
pub async fn failed_jobs<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    limit: i64,
) -> Result<Vec<FailedJob>, QueueError> {
    Ok(FailedJob::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        table.sql().failed.as_str(),
        [limit.max(0).into()],
    ))
    .all(db)
    .await?)
}

/// One job of `jobs`, whole, through its entity. One round trip, on any connection.
pub async fn job<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<entity::jobs::Model>, QueueError> {
    Ok(entity::jobs::Entity::find_by_id(id).one(db).await?)
}
