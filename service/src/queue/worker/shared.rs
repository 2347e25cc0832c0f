//! What the worker's tasks share: the slots, the local queue of claimed jobs, and the
//! runs in flight.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::AbortHandle;

use crate::queue::{ClaimedJob, Lease};

/// A started run: how to tell it it was cancelled, and how to stop it.
pub(super) struct InFlight {
    pub(super) cancel: watch::Sender<bool>,
    pub(super) abort: AbortHandle,
}

/// The local queue of claimed jobs (prefetch): leased and heartbeated like running
/// jobs, given back at shutdown.
#[derive(Default)]
pub(super) struct Local {
    pub(super) ready: VecDeque<ClaimedJob>,
    /// Leases of the queued jobs this worker still holds; a job whose lease was lost
    /// (cancelled, rescued) is dropped from here and skipped when its turn comes.
    pub(super) held: HashSet<Lease>,
}

/// What the claimer, dispatcher, runs, heartbeat and shutdown share.
pub(super) struct Shared {
    /// One permit per job that may run at once.
    pub(super) slots: Arc<Semaphore>,
    /// Claimed jobs not started yet.
    pub(super) local: Mutex<Local>,
    /// Started runs, by lease (job and claim).
    pub(super) inflight: Mutex<HashMap<Lease, InFlight>>,
    /// Claimer → dispatcher: jobs were queued.
    pub(super) job_ready: Notify,
    /// Dispatcher and jobs → claimer: the local queue shrank or a slot freed.
    pub(super) need: Notify,
    /// Jobs → shutdown: a slot freed.
    pub(super) slot_freed: Notify,
}

impl Shared {
    /// Nothing claimed, `concurrency` free slots.
    pub(super) fn new(concurrency: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency)),
            local: Mutex::default(),
            inflight: Mutex::default(),
            job_ready: Notify::new(),
            need: Notify::new(),
            slot_freed: Notify::new(),
        }
    }

    /// Every lease this worker holds: running and queued jobs.
    pub(super) fn leases(&self) -> Vec<Lease> {
        let inflight = lock(&self.inflight);
        let local = lock(&self.local);
        inflight.keys().chain(local.held.iter()).copied().collect()
    }
}

/// Locks `m`, recovering the data if a panicking holder poisoned it.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
