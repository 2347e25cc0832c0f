//! The completer: writes the runs' outcomes in batches, one statement each, on a
//! connection of its own.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Worker, WorkerReport};
use crate::db::OwnConnection;
use crate::queue::{Lease, Outcome, QueueError, backoff, db_err, finish_on};

/// Writes outcomes as they come, as many per statement as are waiting (up to
/// `max_completion_batch`): one statement per flush, on a connection of its own (see
/// [`write_outcomes`]). Returns the report's `completed`, `failed`, `stale` and
/// `unwritten`, as the database answered; the worker's health counts them as they go.
pub(super) async fn complete_loop(
    worker: Arc<Worker>,
    mut rx: mpsc::UnboundedReceiver<(Lease, Outcome)>,
) -> WorkerReport {
    let mut report = WorkerReport::default();
    let mut conn =
        OwnConnection::new(worker.primary()).synchronous_commit(worker.config.synchronous_commit);
    let mut batch = Vec::with_capacity(worker.config.max_completion_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < worker.config.max_completion_batch {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let before = report;
        write_outcomes(&worker, &mut conn, &batch, &mut report).await;
        let probe = &worker.probe;
        probe.count("completed", report.completed - before.completed);
        probe.count("failed", report.failed - before.failed);
        probe.count("stale", report.stale - before.stale);
        probe.count("unwritten", report.unwritten - before.unwritten);
        batch.clear();
    }
    report
}

/// Writes one batch of outcomes and counts it into `report`. While the database
/// cannot be reached the batch is tried `completion_attempts` times (pauses from
/// 50 ms, doubling), then given up (`unwritten`). When the database refuses the
/// statement itself — an outcome it cannot store, such as a result with a `\u0000`
/// — retrying the batch cannot help: its outcomes are written one by one, and one
/// that is still refused is written as a failure saying why, so one bad outcome
/// costs no other job its result.
async fn write_outcomes(
    worker: &Worker,
    conn: &mut OwnConnection,
    batch: &[(Lease, Outcome)],
    report: &mut WorkerReport,
) {
    let mut pause = Duration::from_millis(50);
    let mut tries = 0;
    loop {
        tries += 1;
        let written = conn
            .run(db_err, async |c| finish_on(c, worker.table, batch).await)
            .await;
        let e = match written {
            Ok(done) => {
                report.completed += done.completed;
                report.failed += done.failed;
                report.stale += done.stale;
                if done.stale > 0 {
                    tracing::info!(worker = %worker.id, stale = done.stale,
                        "outcomes refused: their runs no longer held their jobs (lost leases, or jobs their handlers finished)");
                }
                return;
            }
            Err(e) => e,
        };
        worker.probe.error(format_args!("writing outcomes: {e}"));
        if refused_by_database(&e) && batch.len() > 1 {
            tracing::warn!(worker = %worker.id, outcomes = batch.len(), error = %e,
                "the database refused a batch of outcomes; writing them one by one");
            for one in batch {
                Box::pin(write_outcomes(
                    worker,
                    conn,
                    std::slice::from_ref(one),
                    report,
                ))
                .await;
            }
            return;
        }
        if let [(lease, Outcome::Completed(_))] = batch
            && refused_by_database(&e)
        {
            tracing::warn!(worker = %worker.id, job = %lease.job, error = %e,
                "the database refused a job's result; recording the attempt as failed");
            let failed = Outcome::Failed {
                error: format!("the handler's result could not be stored: {e}"),
                retry_at: backoff(1, worker.config.retry_base, worker.config.retry_max),
            };
            Box::pin(write_outcomes(worker, conn, &[(*lease, failed)], report)).await;
            return;
        }
        if tries >= worker.config.completion_attempts || refused_by_database(&e) {
            report.unwritten += batch.len() as u64;
            tracing::error!(worker = %worker.id, outcomes = batch.len(), tries, error = %e,
                "gave up writing outcomes; their jobs are rescued when their leases expire");
            return;
        }
        tracing::warn!(worker = %worker.id, outcomes = batch.len(), tries, error = %e,
            "writing outcomes failed; retrying");
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

/// Whether the database refused the statement (answered with an error that sending
/// the same statement again cannot fix), as opposed to a connection that failed or a
/// transaction that lost to another.
fn refused_by_database(e: &QueueError) -> bool {
    match e {
        QueueError::Database(db) => !db.is_transient() && db.code().is_some(),
        _ => false,
    }
}
