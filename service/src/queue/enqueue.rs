//! Enqueueing jobs into `jobs`, one or many in one statement, on any SeaORM
//! connection (so inside the caller's transaction).

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde_json::Value;
use uuid::Uuid;

use super::{BatchInsert, InsertOptions, JOBS, JobArgs, QueueError};

/// The largest priority; priorities are 0 (default) to this, higher runs first.
pub const MAX_PRIORITY: i32 = 32_767;
/// The largest payload accepted by default, in bytes of JSON.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// How enqueues are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnqueueConfig {
    /// The largest payload accepted, in bytes of JSON. Default
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`] (1 MiB).
    pub max_payload_bytes: usize,
}

impl Default for EnqueueConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

/// Enqueues into `jobs` with an [`EnqueueConfig`]; the free functions [`enqueue`] and
/// [`insert`] are this with the default configuration. Copy it anywhere: it holds the
/// configuration only, and every method runs on the connection it is given (so
/// inside the caller's transaction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueuer {
    config: EnqueueConfig,
}

impl Enqueuer {
    /// An enqueuer with `config`.
    pub fn new(config: EnqueueConfig) -> Self {
        Self { config }
    }

    /// Its configuration.
    pub fn config(&self) -> &EnqueueConfig {
        &self.config
    }

    /// Enqueues `jobs` in one statement, whatever their number, and returns their
    /// ids in order. A job whose dedup key is already pending or running (or repeated
    /// earlier in the batch) gets that job's id and adds nothing. Every job is checked
    /// first: one bad job refuses the batch and nothing is written; payloads over
    /// `max_payload_bytes` are refused. Runs on any connection: inside the caller's
    /// transaction the jobs exist — and wake workers, by `NOTIFY` at commit — only if
    /// it commits, so an application's row and the job that processes it are written
    /// together or not at all. One round trip.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        db: &C,
        jobs: &[NewJob],
    ) -> Result<Vec<Uuid>, QueueError> {
        enqueue_checked(db, jobs, self.config.max_payload_bytes).await
    }

    /// Enqueues one job and returns its id (an existing job's when its dedup key is
    /// already pending or running): [`Enqueuer::enqueue`] of one. One round trip.
    pub async fn enqueue_one<C: ConnectionTrait>(
        &self,
        db: &C,
        job: NewJob,
    ) -> Result<Uuid, QueueError> {
        first_id(self.enqueue(db, std::slice::from_ref(&job)).await?)
    }

    /// Enqueues the job of `args` with its kind's [`JobArgs::insert_options`]; its id
    /// (an existing job's, when the dedup key is live). One round trip.
    pub async fn insert<C: ConnectionTrait, A: JobArgs>(
        &self,
        db: &C,
        args: &A,
    ) -> Result<Uuid, QueueError> {
        self.insert_with(db, args, InsertOptions::default()).await
    }

    /// Like [`Enqueuer::insert`], with `options` over the kind's defaults.
    pub async fn insert_with<C: ConnectionTrait, A: JobArgs>(
        &self,
        db: &C,
        args: &A,
        options: InsertOptions,
    ) -> Result<Uuid, QueueError> {
        let job = NewJob::from_args(args, options.or(args.insert_options()), 0)?;
        self.enqueue_one(db, job).await
    }

    /// Enqueues the jobs of `args` in one statement, each with its kind's options;
    /// their ids in order. One round trip.
    pub async fn insert_many<C: ConnectionTrait, A: JobArgs>(
        &self,
        db: &C,
        args: &[A],
    ) -> Result<Vec<Uuid>, QueueError> {
        let jobs = args
            .iter()
            .enumerate()
            .map(|(i, a)| NewJob::from_args(a, a.insert_options(), i))
            .collect::<Result<Vec<_>, _>>()?;
        self.enqueue(db, &jobs).await
    }
}

/// A job to enqueue in `jobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Its type: what handler runs it (1 to 200 characters).
    pub job_type: String,
    /// Its input.
    pub payload: Value,
    /// 0 to [`MAX_PRIORITY`]; higher runs first. Default 0.
    pub priority: i32,
    /// Not before this time (scheduled jobs); default now.
    pub run_at: Option<DateTime<Utc>>,
    /// Attempts before it stays failed; at least 1. Default 3.
    pub max_attempts: i32,
    /// While a job with this key is pending or running, enqueueing the key again
    /// returns that job instead of adding one.
    pub dedup_key: Option<String>,
}

impl NewJob {
    /// A job of `job_type` with `payload` and the defaults.
    pub fn new(job_type: impl Into<String>, payload: Value) -> Self {
        Self {
            job_type: job_type.into(),
            payload,
            priority: 0,
            run_at: None,
            max_attempts: 3,
            dedup_key: None,
        }
    }

    /// With a priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Scheduled at `run_at`.
    pub fn run_at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = Some(run_at);
        self
    }

    /// With a maximum number of attempts.
    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// With a dedup key.
    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }
}

/// Checks the fields every job table shares and the payload's encoded size; the
/// payload as JSON text, which is what the insert sends.
pub(crate) fn check_job(
    index: usize,
    priority: i32,
    max_attempts: i32,
    payload: &Value,
    max_payload_bytes: usize,
) -> Result<String, QueueError> {
    let invalid = |field, value: String, reason| QueueError::InvalidJob {
        index,
        field,
        value,
        reason,
    };
    if !(0..=MAX_PRIORITY).contains(&priority) {
        return Err(invalid(
            "priority",
            priority.to_string(),
            "priorities are 0 to 32767",
        ));
    }
    if max_attempts < 1 {
        return Err(invalid(
            "max_attempts",
            max_attempts.to_string(),
            "at least one attempt",
        ));
    }
    let text = payload.to_string();
    if text.len() > max_payload_bytes {
        return Err(invalid(
            "payload",
            format!("{} bytes", text.len()),
            "over the payload size limit",
        ));
    }
    Ok(text)
}

/// Enqueues `jobs` with the default [`EnqueueConfig`]: [`Enqueuer::enqueue`]. One
/// round trip, on any connection (so inside the caller's transaction).
pub async fn enqueue<C: ConnectionTrait>(db: &C, jobs: &[NewJob]) -> Result<Vec<Uuid>, QueueError> {
    Enqueuer::default().enqueue(db, jobs).await
}

/// Enqueues one job with the default [`EnqueueConfig`] and returns its id:
/// [`Enqueuer::enqueue_one`]. One round trip, on any connection.
pub async fn enqueue_one<C: ConnectionTrait>(db: &C, job: NewJob) -> Result<Uuid, QueueError> {
    Enqueuer::default().enqueue_one(db, job).await
}

/// The id of a one-job enqueue (the statement returns one per job).
pub(crate) fn first_id(ids: Vec<Uuid>) -> Result<Uuid, QueueError> {
    ids.into_iter()
        .next()
        .ok_or_else(|| QueueError::Database(crate::error::DbError::no_row("the enqueue")))
}

/// Enqueues the job of typed `args` with the default [`EnqueueConfig`]:
/// [`Enqueuer::insert`]. One round trip, on any connection.
pub async fn insert<C: ConnectionTrait, A: JobArgs>(db: &C, args: &A) -> Result<Uuid, QueueError> {
    Enqueuer::default().insert(db, args).await
}

/// The enqueue itself: checks, then one statement.
async fn enqueue_checked<C: ConnectionTrait>(
    db: &C,
    jobs: &[NewJob],
    max_payload_bytes: usize,
) -> Result<Vec<Uuid>, QueueError> {
    let mut payloads = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let kind = job.job_type.trim();
        if kind.is_empty() || kind.chars().count() > 200 {
            return Err(QueueError::InvalidJob {
                index: i,
                field: "job_type",
                value: job.job_type.clone(),
                reason: "job types are 1 to 200 characters",
            });
        }
        payloads.push(check_job(
            i,
            job.priority,
            job.max_attempts,
            &job.payload,
            max_payload_bytes,
        )?);
    }
    let mut batch = BatchInsert::default();
    batch.shared_or_per_row(
        "job_type",
        "text",
        jobs.iter().map(|j| j.job_type.trim().to_owned()).collect(),
    );
    batch.json_per_row("payload", payloads);
    batch.optional(
        "run_at",
        "timestamptz",
        "now()",
        jobs.iter().map(|j| j.run_at).collect(),
        DateTime::<Utc>::UNIX_EPOCH,
    );
    let queue_fields = jobs
        .iter()
        .map(|j| (j.priority, j.max_attempts, j.dedup_key.clone()))
        .collect();
    batch.insert_jobs(db, JOBS, queue_fields).await
}
