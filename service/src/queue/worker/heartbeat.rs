//! The heartbeat: one statement per interval renews every lease the worker holds.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;

use super::Worker;
use super::shared::{Shared, lock};
use crate::queue::{Lease, heartbeat};

/// Renews the leases of the running and queued jobs every `heartbeat_interval` until
/// `stop`; tells each run whose lease was lost (cancelled, or rescued after a stall)
/// to stop — that run only: another run of the same job holds another lease. One
/// statement per tick on a pooled connection.
pub(super) async fn heartbeat_loop(
    worker: Arc<Worker>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(worker.config.heartbeat_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let leases = shared.leases();
        match heartbeat(&worker.db, worker.table, &leases, worker.config.lease).await {
            Ok(held) => {
                let held: HashSet<Lease> = held.into_iter().collect();
                let inflight = lock(&shared.inflight);
                let mut local = lock(&shared.local);
                let mut lost = 0;
                for gone in leases.iter().filter(|l| !held.contains(l)) {
                    if let Some(run) = inflight.get(gone) {
                        let _ = run.cancel.send(true);
                    }
                    local.held.remove(gone);
                    lost += 1;
                }
                worker.probe.count("leases_lost", lost);
            }
            Err(e) => {
                worker.probe.error(format_args!("heartbeat: {e}"));
                tracing::warn!(worker = %worker.id, error = %e, "heartbeat failed");
            }
        }
    }
}
