//! Maintenance that runs itself, once: the seeds' schedules (seeds 000, 001, 003, 004)
//! as tasks — refreshes, expiries, retention, eviction, lease rescue, `ANALYZE`, the
//! vector index's health — each a function returning a [`TaskReport`], scheduled in
//! `maintenance_tasks` by cron expressions, and run by [`run_due`] from any number of
//! runners (threads or processes), each due run once (a run whose runner dies is
//! marked failed, not repeated).
//!
//! The files: `task` (the tasks), `schedule` (cron expressions and the schedule's
//! rows), `runner` (claiming and running what is due).

use crate::audit::AuditError;
use crate::cache::CacheError;
use crate::error::{DbError, InvalidInput};
use crate::queue::QueueError;
use crate::store::StoreError;

mod runner;
mod schedule;
mod task;

pub use runner::{RunOutcome, RunRecord, STALE_RUN, run, run_due, runner_name};
pub use schedule::{Schedule, list, set_enabled, set_parameters, set_schedule};
pub use task::{Task, TaskReport};

/// What can go wrong in maintenance. A task's own failure is recorded as a failed run
/// by the runner; these reach the caller when a task is run directly, or when the
/// schedule itself cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// No task has this name.
    #[error("unknown maintenance task {0:?}")]
    UnknownTask(String),
    /// A schedule or parameter refused.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A cache task failed.
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    /// A queue task failed.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// The audit task failed.
    #[error("audit: {0}")]
    Audit(#[from] AuditError),
    /// The vector index check failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The task needs the tables' owner (`ANALYZE`): the session's role owns none
    /// of `tables`, so the server would skip them with a warning. Supabase's
    /// `service_role` owns nothing: run this task as the role that ran the migrations.
    #[error("{task} needs the owner of {tables:?}; the role {role:?} does not own them")]
    NotOwner {
        /// The task.
        task: &'static str,
        /// The session's role (`current_user`).
        role: String,
        /// The tables it does not own.
        tables: Vec<String>,
    },
    /// The database failed; the variant says how.
    #[error("database: {0}")]
    Database(#[from] DbError),
}

impl From<sea_orm::DbErr> for MaintenanceError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}
