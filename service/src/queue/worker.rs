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

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sea_orm::sqlx;
use sea_orm::sqlx::postgres::PgListener;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::{
    ClaimedJob, Lease, Outcome, QueueError, QueueTable, backoff, claim_on, db_err, finish_on,
    heartbeat, release, rescue_expired,
};
use crate::db::OwnConnection;
use crate::error::BoxError;

/// A handler's future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, BoxError>> + Send>>;
type Handler = Arc<dyn Fn(JobContext) -> HandlerFuture + Send + Sync>;

/// What a handler gets: the job, its claim, and a signal that it was cancelled.
///
/// **A handler's side effects are at least once.** The job runs again when its
/// worker dies, and a worker that stalls past its lease (a paused VM, a blocked
/// runtime) may find its job rescued and running elsewhere while its own run goes on:
/// that run is told through [`JobContext::cancelled`] at its next heartbeat, and its
/// outcome is refused, but what it already did stays done. Make side effects
/// idempotent (keyed by the job id), or fence them: begin a transaction, call
/// [`crate::queue::fence`] with [`JobContext::lease`] first, then write; a run that
/// lost its lease gets [`QueueError::LeaseLost`] and writes nothing.
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
    /// How often this worker returns other workers' expired jobs. Default 15 s.
    pub rescue_interval: Duration,
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
            rescue_interval: Duration::from_secs(15),
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
    /// Other workers' expired jobs it returned to pending.
    pub rescued: u64,
}

/// A started run: how to tell it it was cancelled, and how to stop it.
struct InFlight {
    cancel: watch::Sender<bool>,
    abort: AbortHandle,
}

/// A worker over one job table. Build it with [`Worker::new`] and
/// [`Worker::handle`], then [`Worker::run`] it until a shutdown signal.
pub struct Worker {
    db: DatabaseConnection,
    /// `db`'s sqlx pool: the LISTEN session and the worker's own connections.
    pool: sea_orm::sqlx::PgPool,
    table: QueueTable,
    id: String,
    handlers: HashMap<String, (Handler, Option<Duration>)>,
    config: WorkerConfig,
}

impl Worker {
    /// A worker on `table` with `config`; its id (the lease owner) is
    /// `<host>-<pid>-<random>`. Refuses a concurrency of 0, a zero lease, or a
    /// heartbeat not shorter than the lease, and a connection that is not a
    /// PostgreSQL pool ([`crate::db::postgres_pool`]).
    pub fn new(
        db: DatabaseConnection,
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
        let pool = crate::db::postgres_pool(&db)?.clone();
        Ok(Self {
            db,
            pool,
            table,
            id,
            handlers: HashMap::new(),
            config,
        })
    }

    /// This worker's id, the `locked_by` of its jobs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs `handler` for jobs of `job_type`. An empty type is refused.
    pub fn handle<F, Fut>(self, job_type: &str, handler: F) -> Result<Self, QueueError>
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, BoxError>> + Send + 'static,
    {
        self.register(job_type, None, handler)
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
        Ok(handler(context(job, rx)).await)
    }

    /// Claims and runs jobs until `shutdown` resolves, then stops claiming, lets
    /// running jobs finish for up to `shutdown_timeout`, gives the rest back to
    /// pending, writes the outcomes (see [`WorkerReport`] for those it cannot) and
    /// returns what it did.
    ///
    /// Three tasks share the work so none waits for another's round trip: this one
    /// claims (one statement for up to the free slots plus `prefetch`, on its own
    /// connection, again as soon as the local queue runs low), a dispatcher starts
    /// claimed jobs as slots free up, and a completer writes outcomes in batches (one
    /// statement each, on its own connection). One heartbeat statement per
    /// `heartbeat_interval` renews every lease. A claim that comes back short is not
    /// repeated until a `NOTIFY`, the poll interval or a rescue says there may be more.
    pub async fn run<S: Future<Output = ()>>(
        self,
        shutdown: S,
    ) -> Result<WorkerReport, QueueError> {
        if self.handlers.is_empty() {
            return Err(QueueError::InvalidConfig {
                field: "handlers",
                value: "none".into(),
                reason: "register a handler before running",
            });
        }
        let worker = Arc::new(self);
        let mut listener = PgListener::connect_with(&worker.pool)
            .await
            .map_err(db_err)?;
        listener
            .listen(worker.table.channel)
            .await
            .map_err(db_err)?;

        let types: Vec<String> = worker.handlers.keys().cloned().collect();
        let concurrency = worker.config.concurrency;
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(concurrency)),
            local: Mutex::default(),
            inflight: Mutex::default(),
            job_ready: Notify::new(),
            need: Notify::new(),
            slot_freed: Notify::new(),
        });
        let (done_tx, done_rx) = mpsc::unbounded_channel::<(Lease, Outcome)>();
        let completer = tokio::spawn(complete_loop(Arc::clone(&worker), done_rx));
        let (stop_dispatch, dispatch_stopped) = watch::channel(false);
        let dispatcher = tokio::spawn(dispatch_loop(
            Arc::clone(&worker),
            Arc::clone(&shared),
            done_tx,
            dispatch_stopped,
        ));
        let (stop_background, background_stopped) = watch::channel(false);
        let heartbeats = tokio::spawn(heartbeat_loop(
            Arc::clone(&worker),
            Arc::clone(&shared),
            background_stopped.clone(),
        ));
        let rescuer = tokio::spawn(rescue_loop(Arc::clone(&worker), background_stopped));

        tokio::pin!(shutdown);
        let mut claim_conn =
            OwnConnection::new(&worker.pool).synchronous_commit(worker.config.synchronous_commit);
        let prefetch = worker.config.prefetch;
        // The last claim came back short: wait for a NOTIFY or the poll interval
        // rather than ask again at every freed slot.
        let mut exhausted = false;
        loop {
            // Claim when the local queue cannot fill the free slots, or (prefetching)
            // when it ran down to half: never a round trip per started job.
            let free = shared.slots.available_permits();
            let queued = lock(&shared.local).ready.len();
            let want = (free + prefetch).saturating_sub(queued);
            if !exhausted && want > 0 && (queued < free || (prefetch > 0 && queued <= prefetch / 2))
            {
                let claimed = claim_conn
                    .run(db_err, async |conn| {
                        claim_on(
                            conn,
                            worker.table,
                            &worker.id,
                            &types,
                            want,
                            worker.config.lease,
                        )
                        .await
                    })
                    .await;
                match claimed {
                    Ok(jobs) => {
                        exhausted = jobs.len() < want;
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
                        tracing::warn!(worker = %worker.id, error = %e, "claim failed; retrying after the poll interval")
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                note = listener.recv() => {
                    exhausted = false;
                    if let Err(e) = note {
                        tracing::warn!(worker = %worker.id, error = %e, "LISTEN connection lost; polling until it is back");
                        tokio::time::sleep(worker.config.poll_interval).await;
                    }
                }
                _ = shared.need.notified() => {}
                _ = tokio::time::sleep(worker.config.poll_interval) => exhausted = false,
            }
        }

        // Graceful shutdown: no more claims or starts; wait for running jobs up to
        // the deadline.
        let _ = stop_dispatch.send(true);
        let _ = dispatcher.await;
        let deadline = tokio::time::Instant::now() + worker.config.shutdown_timeout;
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
        let released = match release(&worker.db, worker.table, &leases).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(worker = %worker.id, jobs = leases.len(), error = %e,
                    "releasing unfinished jobs failed; they are rescued when their leases expire");
                0
            }
        };
        let _ = stop_background.send(true);
        let written = completer.await.unwrap_or_default();
        let rescued = rescuer.await.unwrap_or(0);
        let _ = heartbeats.await;
        Ok(WorkerReport {
            released,
            rescued,
            ..written
        })
    }
}

/// What the worker's tasks share.
struct Shared {
    /// One permit per job that may run at once.
    slots: Arc<Semaphore>,
    /// Claimed jobs not started yet.
    local: Mutex<Local>,
    /// Started runs, by lease (job and claim).
    inflight: Mutex<HashMap<Lease, InFlight>>,
    /// Claimer → dispatcher: jobs were queued.
    job_ready: Notify,
    /// Dispatcher and jobs → claimer: the local queue shrank or a slot freed.
    need: Notify,
    /// Jobs → shutdown: a slot freed.
    slot_freed: Notify,
}

/// The local queue of claimed jobs (prefetch): leased and heartbeated like running
/// jobs, given back at shutdown.
#[derive(Default)]
struct Local {
    ready: VecDeque<ClaimedJob>,
    /// Leases of the queued jobs this worker still holds; a job whose lease was lost
    /// (cancelled, rescued) is dropped from here and skipped when its turn comes.
    held: HashSet<Lease>,
}

/// Starts queued jobs as slots free up, until `stop`; the claimer is told each time
/// the queue shrinks. Between taking a job from the queue and starting it there is
/// no await, so a stop never loses a job.
async fn dispatch_loop(
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

/// Locks `m`, recovering the data if a panicking holder poisoned it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn context(job: ClaimedJob, cancelled: watch::Receiver<bool>) -> JobContext {
    JobContext {
        id: job.id,
        token: job.token,
        job_type: job.job_type,
        payload: job.payload,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        cancelled,
    }
}

/// Starts one claimed job in a task of its own: the handler under its type's timeout
/// (the future is dropped when it runs out), a panic caught as a failure; then its
/// outcome goes to the completer and its slot is freed. `inflight` is the locked map
/// of runs, which gets this one.
fn start_job(
    worker: &Arc<Worker>,
    job: ClaimedJob,
    permit: tokio::sync::OwnedSemaphorePermit,
    shared: &Arc<Shared>,
    done_tx: &mpsc::UnboundedSender<(Lease, Outcome)>,
    inflight: &mut HashMap<Lease, InFlight>,
) {
    let (lease, attempt) = (job.lease(), job.attempt);
    let (retry_base, retry_max) = (worker.config.retry_base, worker.config.retry_max);
    let handler = worker.handlers.get(&job.job_type).cloned();
    let unknown = format!("no handler for job type {:?}", job.job_type);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (shared_task, done_tx) = (Arc::clone(shared), done_tx.clone());
    // The map is locked (by the caller) across the spawn, so the task cannot finish
    // (and remove its entry) before the entry exists.
    let task = tokio::spawn(async move {
        let result = match handler {
            Some((handler, timeout)) => {
                let run = CatchPanic(handler(context(job, cancel_rx)));
                match timeout {
                    Some(limit) => tokio::time::timeout(limit, run)
                        .await
                        .unwrap_or_else(|_| Err(format!("timed out after {limit:?}"))),
                    None => run.await,
                }
            }
            // Claimed only for registered types, so this cannot happen; fail it visibly.
            None => Err(unknown),
        };
        lock(&shared_task.inflight).remove(&lease);
        let outcome = match result {
            Ok(value) => Outcome::Completed(value),
            Err(error) => Outcome::Failed {
                error,
                retry_at: backoff(attempt, retry_base, retry_max),
            },
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

/// A handler's future whose panic becomes an error carrying the panic message.
struct CatchPanic(HandlerFuture);

impl Future for CatchPanic {
    type Output = Result<Value, String>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => Poll::Ready(result.map_err(|e| e.to_string())),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-text panic payload".into());
                Poll::Ready(Err(format!("handler panicked: {message}")))
            }
        }
    }
}

/// Writes outcomes as they come, as many per statement as are waiting (up to
/// `max_completion_batch`): one statement per flush, on a connection of its own (see
/// [`write_outcomes`]). Returns the report's `completed`, `failed`, `stale` and
/// `unwritten`, as the database answered.
async fn complete_loop(
    worker: Arc<Worker>,
    mut rx: mpsc::UnboundedReceiver<(Lease, Outcome)>,
) -> WorkerReport {
    let mut report = WorkerReport::default();
    let mut conn =
        OwnConnection::new(&worker.pool).synchronous_commit(worker.config.synchronous_commit);
    let mut batch = Vec::with_capacity(worker.config.max_completion_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < worker.config.max_completion_batch {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        write_outcomes(&worker, &mut conn, &batch, &mut report).await;
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

/// Renews the leases of the running and queued jobs; tells each run whose lease was
/// lost (cancelled, or rescued after a stall) to stop — that run only: another run of
/// the same job holds another lease.
async fn heartbeat_loop(worker: Arc<Worker>, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(worker.config.heartbeat_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let leases: Vec<Lease> = {
            let inflight = lock(&shared.inflight);
            let local = lock(&shared.local);
            inflight.keys().chain(local.held.iter()).copied().collect()
        };
        match heartbeat(&worker.db, worker.table, &leases, worker.config.lease).await {
            Ok(held) => {
                let held: HashSet<Lease> = held.into_iter().collect();
                let inflight = lock(&shared.inflight);
                let mut local = lock(&shared.local);
                for lost in leases.iter().filter(|l| !held.contains(l)) {
                    if let Some(run) = inflight.get(lost) {
                        let _ = run.cancel.send(true);
                    }
                    local.held.remove(lost);
                }
            }
            Err(e) => tracing::warn!(worker = %worker.id, error = %e, "heartbeat failed"),
        }
    }
}

/// Returns expired jobs to pending every `rescue_interval` and wakes the workers
/// when it did. Returns how many it rescued.
///
/// The wake-up after a rescue: a `NOTIFY` on the table's channel, so idle workers
/// claim the rescued jobs now (SeaORM has no builder for it).
const WAKE_SQL: &str = "SELECT pg_notify($1, '')";

async fn rescue_loop(worker: Arc<Worker>, mut stop: watch::Receiver<bool>) -> u64 {
    let mut rescued = 0;
    let mut tick = tokio::time::interval(worker.config.rescue_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return rescued,
        }
        let (base, max) = (worker.config.retry_base, worker.config.retry_max);
        match rescue_expired(&worker.db, worker.table, base, max).await {
            Ok(0) => {}
            Ok(n) => {
                rescued += n;
                let _ = sqlx::query(WAKE_SQL)
                    .bind(worker.table.channel)
                    .execute(&worker.pool)
                    .await;
            }
            Err(e) => tracing::warn!(worker = %worker.id, error = %e, "rescue failed"),
        }
    }
}
