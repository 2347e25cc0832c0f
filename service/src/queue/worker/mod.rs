//! The worker runtime: handlers by job type, a concurrency limit, wake-ups by
//! `LISTEN` with polling as the fallback, leases kept alive by heartbeats, batched
//! completion, per-type timeouts, panics reported as failures, cancellation, and a
//! graceful shutdown.
//!
//! Delivery is at least once: a job runs again if its worker dies (after the lease)
//! or if its completion could not be written before the lease ran out.
//!
//! Everything the worker keeps about a run — the run in flight, its cancellation
//! signal, its outcome, its heartbeat — is keyed by its [`Lease`] (job and claim
//! token), never by the job alone: when a stalled worker's job is rescued and claimed
//! again (by another worker or by itself), the stale run's outcome is refused by the
//! database and counted in [`WorkerReport::stale`], its heartbeat answer cancels only
//! that run, and the newer run is untouched.

mod catch_panic;
mod claimer;
mod completer;
mod context;
mod dispatcher;
mod heartbeat;
mod shared;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::db::{Pools, PrimaryPool, SessionUse, Topology};
use sea_orm::sqlx::postgres::PgListener;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use uuid::Uuid;

pub use context::{HandlerFuture, JobContext};

use self::context::Handler;
use self::shared::{Shared, lock};
use super::{ClaimedJob, JobArgs, Lease, Outcome, QueueError, QueueTable, db_err, release};
use crate::error::BoxError;
use crate::runtime::Probe;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once. Default 8.
    pub concurrency: usize,
    /// How often an idle worker looks for jobs when no NOTIFY arrives (scheduled
    /// jobs, lost notifications). Default 1 s.
    pub poll_interval: Duration,
    /// How long a claim holds a job without a heartbeat. Default 30 s.
    pub lease: Duration,
    /// How often leases are renewed. Default 10 s (a third of the lease).
    pub heartbeat_interval: Duration,
    /// How long a graceful shutdown waits for running jobs. Default 30 s.
    pub shutdown_timeout: Duration,
    /// First retry delay; doubles each attempt. Default 1 s.
    pub retry_base: Duration,
    /// Longest retry delay. Default 1 h.
    pub retry_max: Duration,
    /// Most outcomes written by one statement. Default 1000.
    pub max_completion_batch: usize,
    /// How many times the completer tries to write a batch of outcomes while the
    /// database cannot be reached (waiting 50 ms, then twice as long each time: 8
    /// tries wait about 6.4 s in all) before it gives the batch up. A batch given up
    /// is logged with its count and reported in [`WorkerReport::unwritten`]; its jobs
    /// stay running under leases nobody renews, and once those expire they are
    /// rescued — run again, or failed ("lease expired") if that was their last
    /// attempt. (A batch the database refuses as a statement — an outcome it cannot
    /// store — is written outcome by outcome instead, and an outcome that still
    /// cannot be stored is recorded as a failure saying why.) At least 1. Default 8.
    pub completion_attempts: u32,
    /// Whether claims and outcomes wait for their commit to reach disk. Default
    /// `false`: they commit with `synchronous_commit = off` — a crash of the database
    /// server (not of a worker) can lose the last fraction of a second of them, and
    /// those jobs run again: the at-least-once delivery the queue promises anyway.
    /// `true` makes every claim and every outcome batch wait for a WAL flush.
    /// Enqueues, heartbeats and rescues use the application's pool and its settings.
    pub synchronous_commit: bool,
    /// Jobs claimed ahead of free slots and kept in a local queue (leased and
    /// heartbeated like running jobs, given back at shutdown). 0 (the default) claims
    /// only for free slots, which shares the work best between workers; a few hundred
    /// lets one worker claim in large batches when jobs are short.
    pub prefetch: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            max_completion_batch: 1000,
            completion_attempts: 8,
            synchronous_commit: false,
            prefetch: 0,
        }
    }
}

/// What a worker did before it stopped. Every outcome its handlers produced is in
/// exactly one of `completed`, `failed`, `stale` and `unwritten`, as the database
/// answered: when a connection breaks after a commit whose reply was lost, the
/// outcomes it wrote are counted as stale (the retry finds their claims ended) or,
/// on the last try, as unwritten.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerReport {
    /// Jobs it completed (written).
    pub completed: u64,
    /// Failed attempts it recorded (written; retried or final).
    pub failed: u64,
    /// Outcomes the database refused because their run no longer held the job: its
    /// lease was lost (rescued, cancelled), or the handler finished the job itself
    /// (`queue::ai::complete_ai_job`). Nothing was written for them.
    pub stale: u64,
    /// Outcomes it gave up writing after `completion_attempts` tries (the database
    /// could not be reached): their jobs are rescued once their leases expire.
    pub unwritten: u64,
    /// Running jobs it gave back to pending at shutdown.
    pub released: u64,
}

/// A worker over one job table. Build it with [`Worker::new`] and
/// [`Worker::handle`], then give it to a [`crate::runtime::Runtime`] (which also runs
/// the lease rescuer, the schedule and the flushers), or [`Worker::run`] it alone
/// until a shutdown signal. A worker does not rescue other workers' expired leases:
/// that is the runtime's rescuer's job, one per process.
pub struct Worker {
    /// Claims, outcomes, heartbeats and releases go to its primary; `LISTEN` to its
    /// session connection (`DIRECT_URL` behind a pooler), or, without one, the worker
    /// polls.
    db: Topology,
    /// The primary's sqlx pool: the claimer's and the completer's own connections.
    pool: sea_orm::sqlx::PgPool,
    table: QueueTable,
    id: String,
    handlers: HashMap<String, (Handler, Option<Duration>)>,
    config: WorkerConfig,
    probe: Probe,
}

impl Worker {
    /// The primary's pool, as the topology reaches it.
    pub(super) fn primary(&self) -> PrimaryPool<'_> {
        PrimaryPool {
            pool: &self.pool,
            multiplexed: self.db.is_multiplexed(),
        }
    }

    /// A worker on `table` with `config`; its id (the lease owner) is
    /// `<host>-<pid>-<random>`. Refuses a concurrency of 0, a zero lease, or a
    /// heartbeat not shorter than the lease, and a connection that is not a
    /// PostgreSQL pool ([`crate::db::postgres_pool`]). `db` is a [`Topology`] or a
    /// `DatabaseConnection` (one URL, sessions).
    pub fn new(
        db: impl Into<Topology>,
        table: QueueTable,
        config: WorkerConfig,
    ) -> Result<Self, QueueError> {
        let invalid = |field, value: String, reason| QueueError::InvalidConfig {
            field,
            value,
            reason,
        };
        if config.concurrency == 0 {
            return Err(invalid(
                "concurrency",
                "0".into(),
                "at least one job at a time",
            ));
        }
        if config.lease.is_zero() {
            return Err(invalid("lease", "0s".into(), "a lease must last"));
        }
        if config.heartbeat_interval >= config.lease {
            return Err(invalid(
                "heartbeat_interval",
                format!("{:?}", config.heartbeat_interval),
                "must be shorter than the lease",
            ));
        }
        if config.completion_attempts == 0 {
            return Err(invalid(
                "completion_attempts",
                "0".into(),
                "at least one try to write outcomes",
            ));
        }
        if config.max_completion_batch == 0 {
            return Err(invalid(
                "max_completion_batch",
                "0".into(),
                "at least one outcome per write",
            ));
        }
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let id = format!(
            "{}-{}-{}",
            host.trim().chars().take(32).collect::<String>(),
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let db = db.into();
        let pool = db.primary_pool()?.pool.clone();
        Ok(Self {
            db,
            pool,
            table,
            id,
            handlers: HashMap::new(),
            config,
            probe: Probe::new(format!("queue:{}", table.name())),
        })
    }

    /// This worker's id, the `locked_by` of its jobs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The job types it has handlers for, sorted.
    pub fn job_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.handlers.keys().cloned().collect();
        types.sort();
        types
    }

    /// The table it works.
    pub fn table(&self) -> QueueTable {
        self.table
    }

    /// Its configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Where it reports its health (claims, outcomes by kind, errors, handler panics);
    /// clones share it, so it can be read while the worker runs.
    pub fn probe(&self) -> Probe {
        self.probe.clone()
    }

    /// Runs `handler` for jobs of `job_type`. An empty type is refused.
    pub fn handle<F, Fut>(self, job_type: &str, handler: F) -> Result<Self, QueueError>
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, BoxError>> + Send + 'static,
    {
        self.register(job_type, None, handler)
    }

    /// Runs `handler` for jobs of the typed arguments `A` (their kind,
    /// [`JobArgs::KIND`]): the payload is decoded into `A` first, and a payload that
    /// does not decode fails the attempt with an error naming the kind; the handler's
    /// result is stored as JSON.
    pub fn work<A, F, Fut, R>(self, handler: F) -> Result<Self, QueueError>
    where
        A: JobArgs,
        F: Fn(A, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, BoxError>> + Send + 'static,
        R: serde::Serialize,
    {
        let handler = Arc::new(handler);
        self.register(A::KIND, None, move |ctx: JobContext| {
            let handler = Arc::clone(&handler);
            async move {
                // Decoded from the payload in place: no copy of the JSON per job.
                let args = A::deserialize(&ctx.payload)
                    .map_err(|e| format!("the payload is not valid {} arguments: {e}", A::KIND))?;
                let result = handler(args, ctx).await?;
                Ok(serde_json::to_value(result)?)
            }
        })
    }

    /// Like [`Worker::handle`], and an attempt that runs longer than `timeout` is
    /// stopped (its future dropped) and fails with a timeout error.
    pub fn handle_with_timeout<F, Fut>(
        self,
        job_type: &str,
        timeout: Duration,
        handler: F,
    ) -> Result<Self, QueueError>
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, BoxError>> + Send + 'static,
    {
        self.register(job_type, Some(timeout), handler)
    }

    fn register<F, Fut>(
        mut self,
        job_type: &str,
        timeout: Option<Duration>,
        handler: F,
    ) -> Result<Self, QueueError>
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, BoxError>> + Send + 'static,
    {
        if job_type.trim().is_empty() {
            return Err(QueueError::UnknownJobType(job_type.to_owned()));
        }
        let handler: Handler = Arc::new(move |ctx| Box::pin(handler(ctx)));
        self.handlers
            .insert(job_type.trim().to_owned(), (handler, timeout));
        Ok(self)
    }

    /// Runs `job` through its handler right here (no claim, no bookkeeping): for
    /// tests and tools. A type without a handler is [`QueueError::UnknownJobType`].
    pub async fn run_handler(
        &self,
        job: ClaimedJob,
    ) -> Result<Result<Value, BoxError>, QueueError> {
        let (handler, _) = self
            .handlers
            .get(&job.job_type)
            .ok_or_else(|| QueueError::UnknownJobType(job.job_type.clone()))?;
        let (_tx, rx) = watch::channel(false);
        Ok(handler(JobContext::new(job, rx)).await)
    }

    /// Claims and runs jobs until `shutdown` resolves, then stops claiming, lets
    /// running jobs finish for up to `shutdown_timeout`, gives the rest back to
    /// pending, writes the outcomes (see [`WorkerReport`] for those it cannot) and
    /// returns what it did. See [`Worker::run_until`].
    pub async fn run<S: Future<Output = ()>>(
        self,
        shutdown: S,
    ) -> Result<WorkerReport, QueueError> {
        let timeout = self.config.shutdown_timeout;
        self.run_until(async move {
            shutdown.await;
            Instant::now() + timeout
        })
        .await
    }

    /// Like [`Worker::run`], with the shutdown's deadline given by `shutdown` (the
    /// instant until which running jobs may finish).
    ///
    /// Four tasks share the work so none waits for another's round trip: this one
    /// claims (`claimer`: one statement for up to the free slots plus `prefetch`, on
    /// its own connection), a `dispatcher` starts claimed jobs as slots free up, a
    /// `completer` writes outcomes in batches (one statement each, on its own
    /// connection), and a `heartbeat` renews every lease in one statement per
    /// `heartbeat_interval`. The LISTEN session is one more connection, of the
    /// topology's session pool (`DIRECT_URL` behind a pooler); without one the
    /// worker polls every `poll_interval`.
    pub async fn run_until<S: Future<Output = Instant>>(
        self,
        shutdown: S,
    ) -> Result<WorkerReport, QueueError> {
        Arc::new(self).run_shared(shutdown).await
    }

    /// [`Worker::run_until`] on a shared worker, which can run again after a run that
    /// failed to start (the runtime's supervisor does).
    pub(crate) async fn run_shared<S: Future<Output = Instant>>(
        self: Arc<Self>,
        shutdown: S,
    ) -> Result<WorkerReport, QueueError> {
        if self.handlers.is_empty() {
            return Err(QueueError::InvalidConfig {
                field: "handlers",
                value: "none".into(),
                reason: "register a handler before running",
            });
        }
        let worker = self;
        let mut listener = match worker.db.session_pool(SessionUse::Listen) {
            Ok(pool) => {
                let mut listener = PgListener::connect_with(pool).await.map_err(db_err)?;
                listener
                    .listen(worker.table.channel)
                    .await
                    .map_err(db_err)?;
                Some(listener)
            }
            Err(e) => {
                tracing::warn!(worker = %worker.id, error = %e, "no LISTEN: polling every {:?}", worker.config.poll_interval);
                None
            }
        };

        let shared = Arc::new(Shared::new(worker.config.concurrency));
        let (done_tx, done_rx) = mpsc::unbounded_channel::<(Lease, Outcome)>();
        let completer = tokio::spawn(completer::complete_loop(Arc::clone(&worker), done_rx));
        let (stop_dispatch, dispatch_stopped) = watch::channel(false);
        let dispatcher = tokio::spawn(dispatcher::dispatch_loop(
            Arc::clone(&worker),
            Arc::clone(&shared),
            done_tx,
            dispatch_stopped,
        ));
        let (stop_heartbeat, heartbeat_stopped) = watch::channel(false);
        let heartbeats = tokio::spawn(heartbeat::heartbeat_loop(
            Arc::clone(&worker),
            Arc::clone(&shared),
            heartbeat_stopped,
        ));

        let deadline = claimer::claim_loop(&worker, &shared, &mut listener, shutdown).await;

        // Graceful shutdown: no more claims or starts; wait for running jobs up to
        // the deadline.
        let _ = stop_dispatch.send(true);
        let _ = dispatcher.await;
        let released = hand_back(&worker, &shared, deadline).await;
        let _ = stop_heartbeat.send(true);
        let written = completer.await.unwrap_or_default();
        let _ = heartbeats.await;
        worker.probe.count("released", released);
        Ok(WorkerReport {
            released,
            ..written
        })
    }
}

/// Waits for the running jobs until `deadline`, stops those still running, and gives
/// them and the queued ones back to pending (one statement); how many went back.
async fn hand_back(worker: &Worker, shared: &Shared, deadline: Instant) -> u64 {
    let concurrency = worker.config.concurrency;
    loop {
        let freed = shared.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if shared.slots.available_permits() >= concurrency
            || tokio::time::timeout_at(deadline, freed).await.is_err()
        {
            break;
        }
    }
    let mut leases: Vec<Lease> = {
        let inflight = lock(&shared.inflight);
        for job in inflight.values() {
            job.abort.abort();
        }
        inflight.keys().copied().collect()
    };
    leases.extend(lock(&shared.local).held.drain());
    // A release that fails (the database is gone) is not fatal: the leases expire
    // and the jobs are rescued.
    match release(&worker.db, worker.table, &leases).await {
        Ok(n) => n,
        Err(e) => {
            worker
                .probe
                .error(format_args!("releasing unfinished jobs: {e}"));
            tracing::warn!(worker = %worker.id, jobs = leases.len(), error = %e,
                "releasing unfinished jobs failed; they are rescued when their leases expire");
            0
        }
    }
}
