//! The dispatcher: starts claimed jobs as slots free up, each run in a task of its own.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use super::Worker;
use super::catch_panic::{CatchPanic, RunError};
use super::context::JobContext;
use super::shared::{InFlight, Shared, lock};
use crate::queue::{ClaimedJob, Lease, Outcome, backoff};

/// Starts queued jobs as slots free up, until `stop`; the claimer is told each time
/// the queue shrinks. Between taking a job from the queue and starting it there is
/// no await, so a stop never loses a job.
pub(super) async fn dispatch_loop(
    worker: Arc<Worker>,
    shared: Arc<Shared>,
    done_tx: mpsc::UnboundedSender<(Lease, Outcome)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // A queued job first, then a slot: a slot is taken only for a job at hand, so
        // the claimer always sees the true number of free slots.
        while lock(&shared.local).ready.is_empty() {
            tokio::select! {
                _ = shared.job_ready.notified() => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
        let permit = tokio::select! {
            permit = Arc::clone(&shared.slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        {
            // The lease moves from the local queue to the runs in flight under both
            // locks (always taken in this order), so a heartbeat never misses it.
            let mut inflight = lock(&shared.inflight);
            let next = {
                let mut local = lock(&shared.local);
                let mut next = None;
                while let Some(job) = local.ready.pop_front() {
                    if local.held.remove(&job.lease()) {
                        next = Some(job);
                        break;
                    }
                }
                next
            };
            if let Some(job) = next {
                start_job(&worker, job, permit, &shared, &done_tx, &mut inflight);
            }
        }
        shared.need.notify_one();
    }
}

/// Starts one claimed job in a task of its own: the handler under its type's timeout
/// (the future is dropped when it runs out), a panic caught as a failure (and shown in
/// the worker's health); then its outcome goes to the completer and its slot is freed.
/// `inflight` is the locked map of runs, which gets this one.
fn start_job(
    worker: &Arc<Worker>,
    job: ClaimedJob,
    permit: OwnedSemaphorePermit,
    shared: &Arc<Shared>,
    done_tx: &mpsc::UnboundedSender<(Lease, Outcome)>,
    inflight: &mut HashMap<Lease, InFlight>,
) {
    let (lease, attempt) = (job.lease(), job.attempt);
    let (retry_base, retry_max) = (worker.config.retry_base, worker.config.retry_max);
    let handler = worker.handlers.get(&job.job_type).cloned();
    let job_type = job.job_type.clone();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (shared_task, done_tx, worker_task) =
        (Arc::clone(shared), done_tx.clone(), Arc::clone(worker));
    // The map is locked (by the caller) across the spawn, so the task cannot finish
    // (and remove its entry) before the entry exists.
    let task = tokio::spawn(async move {
        let result = match handler {
            Some((handler, timeout)) => {
                let run = CatchPanic(handler(JobContext::new(job, cancel_rx)));
                match timeout {
                    Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                        Err(RunError::Failed(format!("timed out after {limit:?}")))
                    }),
                    None => run.await,
                }
            }
            // Claimed only for registered types, so this cannot happen; fail it visibly.
            None => Err(RunError::Failed(format!(
                "no handler for job type {job_type:?}"
            ))),
        };
        lock(&shared_task.inflight).remove(&lease);
        let outcome = match result {
            Ok(value) => Outcome::Completed(value),
            Err(error) => {
                if let RunError::Panicked(message) = &error {
                    worker_task.probe.count("panicked", 1);
                    worker_task.probe.error(format_args!(
                        "job {} ({job_type}): handler panicked: {message}",
                        lease.job
                    ));
                }
                Outcome::Failed {
                    error: error.into_message(),
                    retry_at: backoff(attempt, retry_base, retry_max),
                }
            }
        };
        let _ = done_tx.send((lease, outcome));
        drop(permit);
        shared_task.need.notify_one();
        shared_task.slot_freed.notify_waiters();
    });
    inflight.insert(
        lease,
        InFlight {
            cancel: cancel_tx,
            abort: task.abort_handle(),
        },
    );
}
