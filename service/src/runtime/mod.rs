//! One [`Runtime`] runs Strata's background work in a process, as River's `Client` or
//! Oban's supervision tree do: the queues' workers with their handlers, the lease
//! rescuer (one per process, for every queue it works), the maintenance schedule, and
//! the flushers of what buffers writes in memory (the caches' bookkeeping, the search
//! log).
//!
//! Each service is a small file with the same shape — its own config and defaults, a
//! run until the stop, a [`Probe`] for its health — and runs under a supervisor: one
//! that fails is recorded in [`RuntimeHandle::health`] and started again after a
//! pause, while the others go on.
//!
//! ```text
//! Runtime::new(db, RuntimeConfig::default())
//!     .worker(worker)            // one per queue table (handlers registered on it)
//!     .schedule(ScheduleConfig::default())
//!     .flush(pdf_cache.clone())  // anything that implements Flush
//!     .start()                   // -> RuntimeHandle: health(), stop(deadline)
//! ```
//!
//! Files: `health` (the snapshot), `service` (the shape and the supervisor), `queue`,
//! `rescuer`, `schedule`, `flusher`.

mod flusher;
mod health;
mod queue;
mod rescuer;
mod schedule;
mod service;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use flusher::{Flush, FlushReport};
pub use health::{Probe, ServiceHealth, ServiceState};
pub use rescuer::RescuerConfig;
pub use schedule::{OnRuns, ScheduleConfig};
pub use service::{BoxFuture, Stop};

use self::service::{Ended, Service, supervise};
use crate::queue::worker::{Worker, WorkerReport};

/// What runs besides the workers and flushers given to [`Runtime::worker`] and
/// [`Runtime::flush`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The lease rescuer, for every table a worker of this runtime works. Default on;
    /// `None` only where another process's runtime rescues the same tables.
    pub rescuer: Option<RescuerConfig>,
    /// The maintenance schedule. Default off: one or a few processes of a deployment
    /// run it (any number may: each due run happens once).
    pub schedule: Option<ScheduleConfig>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            rescuer: Some(RescuerConfig::default()),
            schedule: None,
        }
    }
}

/// What one queue's worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueReport {
    /// The queue's table.
    pub queue: &'static str,
    /// Its worker's report.
    pub report: WorkerReport,
}

/// What the runtime did, returned by [`RuntimeHandle::stop`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeReport {
    /// Each worker's report, in the order they were given.
    pub queues: Vec<QueueReport>,
    /// Jobs the rescuer returned to pending (or failed at their last attempt).
    pub rescued: u64,
    /// Maintenance runs the schedule made.
    pub maintenance_runs: u64,
    /// Each flusher's last flush.
    pub flushes: Vec<FlushReport>,
    /// Every service's health at the end.
    pub health: Vec<ServiceHealth>,
}

impl RuntimeReport {
    /// Whether everything was written at the end: no final flush failed and no
    /// outcome was left unwritten.
    pub fn is_clean(&self) -> bool {
        self.flushes.iter().all(|f| f.error.is_none())
            && self.queues.iter().all(|q| q.report.unwritten == 0)
    }
}

/// The background services of one process, not started yet. Build it with
/// [`Runtime::new`], add workers and flushers, then [`Runtime::start`] it.
pub struct Runtime {
    db: crate::db::Topology,
    config: RuntimeConfig,
    workers: Vec<Worker>,
    flushers: Vec<Arc<dyn Flush>>,
}

impl Runtime {
    /// A runtime on `db` (the application's pool: the rescuer and the schedule use it,
    /// the workers and flushers keep connections of their own) with `config`.
    pub fn new(db: impl Into<crate::db::Topology>, config: RuntimeConfig) -> Self {
        Self {
            db: db.into(),
            config,
            workers: Vec::new(),
            flushers: Vec::new(),
        }
    }

    /// Runs `worker` (its queue and handlers) in this runtime.
    pub fn worker(mut self, worker: Worker) -> Self {
        self.workers.push(worker);
        self
    }

    /// Runs the maintenance schedule with `config`.
    pub fn schedule(mut self, config: ScheduleConfig) -> Self {
        self.config.schedule = Some(config);
        self
    }

    /// Flushes `target` from now on: it stops its own timer at once.
    pub fn flush(mut self, target: Arc<dyn Flush>) -> Self {
        self.flushers.push(target);
        self
    }

    /// Starts every service, each in a task of its own (so it must be called inside a
    /// Tokio runtime), and returns the handle that reads their health and stops them.
    /// Nothing is awaited: a service that cannot reach the database shows it in its
    /// health and tries again.
    pub fn start(self) -> RuntimeHandle {
        let mut services: Vec<Arc<dyn Service>> = Vec::new();
        let mut tables = Vec::new();
        for worker in self.workers {
            if !tables.contains(&worker.table()) {
                tables.push(worker.table());
            }
            services.push(Arc::new(queue::QueueService::new(worker)));
        }
        if let Some(config) = self.config.rescuer
            && !tables.is_empty()
        {
            services.push(Arc::new(rescuer::Rescuer::new(
                self.db.clone(),
                tables,
                config,
            )));
        }
        if let Some(config) = self.config.schedule {
            services.push(Arc::new(schedule::Schedule::new(self.db.clone(), config)));
        }
        for target in self.flushers {
            services.push(Arc::new(flusher::Flusher::new(target)));
        }
        let (stop_tx, stop) = Stop::new();
        let probes = services.iter().map(|s| s.probe()).collect();
        let tasks = services
            .into_iter()
            .map(|service| tokio::spawn(supervise(service, stop.clone())))
            .collect();
        RuntimeHandle {
            probes,
            tasks,
            stop_tx,
        }
    }
}

/// Reads a running [`Runtime`]'s health ([`RuntimeHandle::health_source`]); clones
/// share it.
#[derive(Debug, Clone)]
pub struct HealthSource {
    probes: Vec<Probe>,
}

impl HealthSource {
    /// A snapshot of every service's health, as [`RuntimeHandle::health`]. No I/O.
    pub fn health(&self) -> Vec<ServiceHealth> {
        self.probes.iter().map(Probe::snapshot).collect()
    }
}

/// A started [`Runtime`]. Dropping it without [`RuntimeHandle::stop`] asks every
/// service to stop at once (running jobs are given back, buffers flushed), without
/// waiting for them.
pub struct RuntimeHandle {
    probes: Vec<Probe>,
    tasks: Vec<JoinHandle<Option<Ended>>>,
    stop_tx: watch::Sender<Option<Instant>>,
}

impl RuntimeHandle {
    /// A snapshot of every service's health, in start order: workers, rescuer,
    /// schedule, flushers. No I/O.
    pub fn health(&self) -> Vec<ServiceHealth> {
        self.probes.iter().map(Probe::snapshot).collect()
    }

    /// A handle on the services' health alone, to give to a reader elsewhere (the
    /// web console) while this handle keeps the power to stop them.
    pub fn health_source(&self) -> HealthSource {
        HealthSource {
            probes: self.probes.clone(),
        }
    }

    /// Stops every service: the workers claim nothing more and let running jobs
    /// finish until `deadline` from now (then give the rest back to pending), the
    /// schedule finishes a run in progress, the flushers write what is buffered. Waits
    /// for all of them and returns one report.
    pub async fn stop(self, deadline: Duration) -> RuntimeReport {
        let _ = self.stop_tx.send(Some(Instant::now() + deadline));
        let mut report = RuntimeReport {
            queues: Vec::new(),
            rescued: 0,
            maintenance_runs: 0,
            flushes: Vec::new(),
            health: Vec::new(),
        };
        for (task, probe) in self.tasks.into_iter().zip(&self.probes) {
            match task.await {
                Ok(Some(Ended::Queue(queue))) => report.queues.push(queue),
                Ok(Some(Ended::Rescuer(n))) => report.rescued += n,
                Ok(Some(Ended::Schedule(n))) => report.maintenance_runs += n,
                Ok(Some(Ended::Flush(flush))) => report.flushes.push(flush),
                Ok(None) => {}
                Err(e) => probe.error(format_args!("supervisor: {e}")),
            }
        }
        report.health = self.probes.iter().map(Probe::snapshot).collect();
        report
    }
}
