//! The worker runtime: handlers by job type, a concurrency limit, wake-ups by
//! `LISTEN` with polling as the fallback, leases kept alive by heartbeats, batched
//! completion, per-type timeouts, panics reported as failures, cancellation, and a
//! graceful shutdown.
//!
//! Delivery is at least once: a job runs again if its worker dies (after the lease)
//! or if its completion could not be written before the lease ran out.

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
    ClaimedJob, Outcome, QueueError, QueueTable, backoff, claim_on, db_err, finish_on, heartbeat,
    release, rescue_expired,
};
use crate::cache::BoxError;
use crate::db::OwnConnection;

/// A handler's future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, BoxError>> + Send>>;
type Handler = Arc<dyn Fn(JobContext) -> HandlerFuture + Send + Sync>;

/// What a handler gets: the job, and a signal that it was cancelled.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's id.
    pub id: Uuid,
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
            prefetch: 0,
        }
    }
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs it completed.
    pub completed: u64,
    /// Failed attempts it recorded (retried or final).
    pub failed: u64,
    /// Running jobs it gave back to pending at shutdown.
    pub released: u64,
    /// Other workers' expired jobs it returned to pending.
    pub rescued: u64,
}

struct InFlight {
    cancel: watch::Sender<bool>,
    abort: AbortHandle,
}

/// A worker over one job table. Build it with [`Worker::new`] and
/// [`Worker::handle`], then [`Worker::run`] it until a shutdown signal.
pub struct Worker {
    db: DatabaseConnection,
    table: QueueTable,
    id: String,
    handlers: HashMap<String, (Handler, Option<Duration>)>,
    config: WorkerConfig,
}

impl Worker {
    /// A worker on `table` with `config`; its id (the lease owner) is
    /// `<host>-<pid>-<random>`. Refuses a concurrency of 0, a zero lease, or a
    /// heartbeat not shorter than the lease.
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
        Ok(Self {
            db,
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
    /// pending, writes every outcome and returns what it did.
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
        let pool = worker.db.get_postgres_connection_pool().clone();
        let mut listener = PgListener::connect_with(&pool).await.map_err(db_err)?;
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
        let (done_tx, done_rx) = mpsc::unbounded_channel::<(Uuid, Outcome)>();
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
        let mut claim_conn = OwnConnection::new(&pool);
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
                                local.held.insert(job.id);
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
        let mut ids: Vec<Uuid> = {
            let inflight = lock(&shared.inflight);
            for job in inflight.values() {
                job.abort.abort();
            }
            inflight.keys().copied().collect()
        };
        ids.extend(lock(&shared.local).held.drain());
        let released = release(&worker.db, worker.table, &worker.id, &ids).await?;
        let _ = stop_background.send(true);
        let (completed, failed) = completer.await.unwrap_or((0, 0));
        let rescued = rescuer.await.unwrap_or(0);
        let _ = heartbeats.await;
        Ok(WorkerReport {
            completed,
            failed,
            released,
            rescued,
        })
    }
}

/// What the worker's tasks share.
struct Shared {
    /// One permit per job that may run at once.
    slots: Arc<Semaphore>,
    /// Claimed jobs not started yet.
    local: Mutex<Local>,
    /// Started jobs, by id.
    inflight: Mutex<HashMap<Uuid, InFlight>>,
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
    /// Ids of the queued jobs this worker still holds; a job whose lease was lost
    /// (cancelled, rescued) is dropped from here and skipped when its turn comes.
    held: HashSet<Uuid>,
}

/// Starts queued jobs as slots free up, until `stop`; the claimer is told each time
/// the queue shrinks. Between taking a job from the queue and starting it there is
/// no await, so a stop never loses a job.
async fn dispatch_loop(
    worker: Arc<Worker>,
    shared: Arc<Shared>,
    done_tx: mpsc::UnboundedSender<(Uuid, Outcome)>,
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
        let next = {
            let mut local = lock(&shared.local);
            let mut next = None;
            while let Some(job) = local.ready.pop_front() {
                if local.held.remove(&job.id) {
                    next = Some(job);
                    break;
                }
            }
            next
        };
        if let Some(job) = next {
            start_job(&worker, job, permit, &shared, &done_tx);
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
        job_type: job.job_type,
        payload: job.payload,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        cancelled,
    }
}

/// Starts one claimed job in a task of its own: the handler under its type's timeout
/// (the future is dropped when it runs out), a panic caught as a failure; then its
/// outcome goes to the completer and its slot is freed.
fn start_job(
    worker: &Arc<Worker>,
    job: ClaimedJob,
    permit: tokio::sync::OwnedSemaphorePermit,
    shared: &Arc<Shared>,
    done_tx: &mpsc::UnboundedSender<(Uuid, Outcome)>,
) {
    let (id, attempt) = (job.id, job.attempt);
    let (retry_base, retry_max) = (worker.config.retry_base, worker.config.retry_max);
    let handler = worker.handlers.get(&job.job_type).cloned();
    let unknown = format!("no handler for job type {:?}", job.job_type);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (shared_task, done_tx) = (Arc::clone(shared), done_tx.clone());
    // The map is locked across the spawn so the task cannot finish (and remove its
    // entry) before the entry exists.
    let mut inflight = lock(&shared.inflight);
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
        lock(&shared_task.inflight).remove(&id);
        let outcome = match result {
            Ok(value) => Outcome::Completed(value),
            Err(error) => Outcome::Failed {
                error,
                retry_at: backoff(attempt, retry_base, retry_max),
            },
        };
        let _ = done_tx.send((id, outcome));
        drop(permit);
        shared_task.need.notify_one();
        shared_task.slot_freed.notify_waiters();
    });
    inflight.insert(
        id,
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
/// `max_completion_batch`): one statement per flush. Returns (completed, failed).
async fn complete_loop(
    worker: Arc<Worker>,
    mut rx: mpsc::UnboundedReceiver<(Uuid, Outcome)>,
) -> (u64, u64) {
    let (mut completed, mut failed) = (0u64, 0u64);
    let mut conn = OwnConnection::new(worker.db.get_postgres_connection_pool());
    let mut batch = Vec::with_capacity(worker.config.max_completion_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < worker.config.max_completion_batch {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut pause = Duration::from_millis(50);
        for _ in 0..8 {
            let written = conn
                .run(db_err, async |c| {
                    finish_on(c, worker.table, &worker.id, &batch).await
                })
                .await;
            match written {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(worker = %worker.id, error = %e, "writing outcomes failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        for (_, outcome) in &batch {
            match outcome {
                Outcome::Completed(_) => completed += 1,
                Outcome::Failed { .. } => failed += 1,
            }
        }
        batch.clear();
    }
    (completed, failed)
}

/// Renews the leases of the running jobs; tells the handlers of jobs this worker no
/// longer holds (cancelled, or rescued after a stall) to stop.
async fn heartbeat_loop(worker: Arc<Worker>, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(worker.config.heartbeat_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let mut ids: Vec<Uuid> = lock(&shared.inflight).keys().copied().collect();
        ids.extend(lock(&shared.local).held.iter().copied());
        match heartbeat(
            &worker.db,
            worker.table,
            &worker.id,
            &ids,
            worker.config.lease,
        )
        .await
        {
            Ok(held) => {
                let inflight = lock(&shared.inflight);
                let mut local = lock(&shared.local);
                for id in ids.iter().filter(|id| !held.contains(id)) {
                    if let Some(job) = inflight.get(id) {
                        let _ = job.cancel.send(true);
                    }
                    local.held.remove(id);
                }
            }
            Err(e) => tracing::warn!(worker = %worker.id, error = %e, "heartbeat failed"),
        }
    }
}

/// Returns expired jobs to pending every `rescue_interval` and wakes the workers
/// when it did. Returns how many it rescued.
async fn rescue_loop(worker: Arc<Worker>, mut stop: watch::Receiver<bool>) -> u64 {
    let mut rescued = 0;
    let mut tick = tokio::time::interval(worker.config.rescue_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return rescued,
        }
        match rescue_expired(&worker.db, worker.table).await {
            Ok(0) => {}
            Ok(n) => {
                rescued += n;
                let _ = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(worker.table.channel)
                    .execute(worker.db.get_postgres_connection_pool())
                    .await;
            }
            Err(e) => tracing::warn!(worker = %worker.id, error = %e, "rescue failed"),
        }
    }
}
