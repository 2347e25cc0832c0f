//! The claimer: takes runnable jobs for the free slots (and the prefetch), woken by
//! `LISTEN`, by the dispatcher, or by the poll interval.

use std::future::Future;
use std::sync::Arc;

use sea_orm::sqlx::postgres::PgListener;

use super::Worker;
use super::shared::{Shared, lock};
use crate::db::OwnConnection;
use crate::queue::{claim_on, db_err};

/// Claims until `shutdown` resolves, and returns what it resolved to. One statement
/// claims up to the free slots plus `prefetch`, on a connection of its own, again as
/// soon as the local queue runs low; a claim that comes back short is not repeated
/// until a `NOTIFY`, the poll interval or a freed slot says there may be more.
pub(super) async fn claim_loop<T>(
    worker: &Worker,
    shared: &Arc<Shared>,
    listener: &mut Option<PgListener>,
    shutdown: impl Future<Output = T>,
) -> T {
    tokio::pin!(shutdown);
    let types: Vec<String> = worker.handlers.keys().cloned().collect();
    let mut conn =
        OwnConnection::new(worker.primary()).synchronous_commit(worker.config.synchronous_commit);
    let prefetch = worker.config.prefetch;
    // The last claim came back short: wait for a NOTIFY or the poll interval rather
    // than ask again at every freed slot.
    let mut exhausted = false;
    loop {
        // Claim when the local queue cannot fill the free slots, or (prefetching) when
        // it ran down to half: never a round trip per started job.
        let free = shared.slots.available_permits();
        let queued = lock(&shared.local).ready.len();
        let want = (free + prefetch).saturating_sub(queued);
        if !exhausted && want > 0 && (queued < free || (prefetch > 0 && queued <= prefetch / 2)) {
            let claimed = conn
                .run(db_err, async |c| {
                    claim_on(
                        c,
                        worker.table,
                        &worker.id,
                        &types,
                        want,
                        worker.config.lease,
                    )
                    .await
                })
                .await;
            worker.probe.tick();
            match claimed {
                Ok(jobs) => {
                    exhausted = jobs.len() < want;
                    worker.probe.count("claimed", jobs.len() as u64);
                    if !jobs.is_empty() {
                        let mut local = lock(&shared.local);
                        for job in jobs {
                            local.held.insert(job.lease());
                            local.ready.push_back(job);
                        }
                        drop(local);
                        shared.job_ready.notify_one();
                    }
                    if !exhausted {
                        continue;
                    }
                }
                Err(e) => {
                    exhausted = true;
                    worker.probe.error(format_args!("claim: {e}"));
                    tracing::warn!(worker = %worker.id, error = %e, "claim failed; retrying after the poll interval")
                }
            }
        }
        tokio::select! {
            value = &mut shutdown => return value,
            note = next_notification(listener) => {
                exhausted = false;
                if let Err(e) = note {
                    worker.probe.error(format_args!("LISTEN: {e}"));
                    tracing::warn!(worker = %worker.id, error = %e, "LISTEN connection lost; polling until it is back");
                    tokio::time::sleep(worker.config.poll_interval).await;
                }
            }
            _ = shared.need.notified() => {}
            _ = tokio::time::sleep(worker.config.poll_interval) => exhausted = false,
        }
    }
}

/// The next notification, or never without a listener (the worker polls).
async fn next_notification(
    listener: &mut Option<PgListener>,
) -> Result<sea_orm::sqlx::postgres::PgNotification, sea_orm::sqlx::Error> {
    match listener {
        Some(listener) => listener.recv().await,
        None => std::future::pending().await,
    }
}
