//! What a handler is and what it gets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::BoxError;
use crate::queue::{ClaimedJob, Lease};

/// A handler's future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, BoxError>> + Send>>;

/// A registered handler.
pub(super) type Handler = Arc<dyn Fn(JobContext) -> HandlerFuture + Send + Sync>;

/// What a handler gets: the job, its claim, and a signal that it was cancelled.
///
/// **A handler's side effects are at least once.** The job runs again when its
/// worker dies, and a worker that stalls past its lease (a paused VM, a blocked
/// runtime) may find its job rescued and running elsewhere while its own run goes on:
/// that run is told through [`JobContext::cancelled`] at its next heartbeat, and its
/// outcome is refused, but what it already did stays done. Make side effects
/// idempotent (keyed by the job id), or fence them: begin a transaction, call
/// [`crate::queue::fence`] with [`JobContext::lease`] first, then write; a run that
/// lost its lease gets [`crate::queue::QueueError::LeaseLost`] and writes nothing.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's id.
    pub id: Uuid,
    /// This claim's token: with the id, the [`Lease`] this run holds.
    pub token: Uuid,
    /// Its type.
    pub job_type: String,
    /// Its input.
    pub payload: Value,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Its maximum attempts.
    pub max_attempts: i32,
    cancelled: watch::Receiver<bool>,
}

impl JobContext {
    /// The context of `job`'s run, told of a cancellation through `cancelled`.
    pub(super) fn new(job: ClaimedJob, cancelled: watch::Receiver<bool>) -> Self {
        Self {
            id: job.id,
            token: job.token,
            job_type: job.job_type,
            payload: job.payload,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            cancelled,
        }
    }

    /// The claim this run holds (for [`crate::queue::fence`]).
    pub fn lease(&self) -> Lease {
        Lease {
            job: self.id,
            token: self.token,
        }
    }

    /// Whether the job was cancelled (or taken from this worker) while running.
    pub fn is_cancelled(&self) -> bool {
        *self.cancelled.borrow()
    }

    /// Resolves when the job is cancelled; a long handler can `select!` on it.
    pub async fn cancelled(&mut self) {
        while !*self.cancelled.borrow() {
            if self.cancelled.changed().await.is_err() {
                // The worker is gone: nobody will ever cancel; wait forever.
                std::future::pending::<()>().await;
            }
        }
    }
}
