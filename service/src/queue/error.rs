//! What can go wrong in the queue.

use sea_orm::sqlx;
use uuid::Uuid;

use crate::error::DbError;

/// What can go wrong in the queue. Each names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A job field outside its range; nothing was written.
    #[error("job {index}: {field} = {value}: {reason}")]
    InvalidJob {
        /// The job's position in the batch.
        index: usize,
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A status that is not one of the queue's (`jobs`: pending, running, completed,
    /// failed, cancelled; `ai_annotation_jobs` says processing for running).
    #[error("status {status:?} is not one of {table}'s: {known}")]
    UnknownStatus {
        /// The status given.
        status: String,
        /// The queue's table.
        table: &'static str,
        /// Its statuses.
        known: String,
    },
    /// A listing's or bulk change's filter value outside its range; nothing ran.
    #[error("job filter {field} = {value}: {reason}")]
    InvalidFilter {
        /// The filter field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A worker was given or asked for a job type it has no handler for.
    #[error("no handler for job type {0:?}")]
    UnknownJobType(String),
    /// A worker setting outside its range.
    #[error("worker setting {field} = {value}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The claim named is no longer the job's: its lease expired and the job was
    /// rescued (and perhaps claimed again), or it was cancelled or finished.
    #[error("job {job}: lease {token} is no longer held")]
    LeaseLost {
        /// The job.
        job: Uuid,
        /// The claim token that lost it.
        token: Uuid,
    },
    /// The database failed; the variant says how (see [`DbError`]).
    #[error("database: {0}")]
    Database(#[from] DbError),
}

impl From<sea_orm::DbErr> for QueueError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}

/// A driver error as a [`QueueError::Database`], its class kept.
pub(crate) fn db_err(e: sqlx::Error) -> QueueError {
    QueueError::Database(e.into())
}
