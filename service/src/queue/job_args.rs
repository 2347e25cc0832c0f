//! Typed jobs (River's `JobArgs`): a job's arguments as a Rust type that names its
//! kind and its default insert options, serialised to the payload with serde.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{NewJob, QueueError};

/// The arguments of one kind of job. The kind is the `job_type` the job is stored
/// and claimed under; the arguments are its payload (serde's JSON, so renaming a
/// field changes what is stored). A worker registers a handler for the type with
/// [`crate::queue::worker::Worker::work`]; [`crate::queue::insert`] enqueues a value.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use service::queue::{InsertOptions, JobArgs};
///
/// #[derive(Serialize, Deserialize)]
/// struct ResizeImage {
///     image: uuid::Uuid,
///     width: u32,
/// }
///
/// impl JobArgs for ResizeImage {
///     const KIND: &'static str = "resize_image";
///
///     fn insert_options(&self) -> InsertOptions {
///         InsertOptions::default().max_attempts(5).dedup_key(format!("resize:{}", self.image))
///     }
/// }
/// ```
pub trait JobArgs: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The job type (1 to 200 characters).
    const KIND: &'static str;

    /// The options a job of these arguments is inserted with, unless the caller gives
    /// others. Default: [`InsertOptions::default`].
    fn insert_options(&self) -> InsertOptions {
        InsertOptions::default()
    }
}

/// How a job is inserted; an option left `None` takes the queue's default (priority
/// 0, 3 attempts, now, no dedup key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertOptions {
    /// 0 to [`super::MAX_PRIORITY`]; higher runs first.
    pub priority: Option<i32>,
    /// Attempts before it stays failed; at least 1.
    pub max_attempts: Option<i32>,
    /// Not before this time.
    pub run_at: Option<DateTime<Utc>>,
    /// While a job with this key is pending or running, inserting the key again
    /// returns that job.
    pub dedup_key: Option<String>,
}

impl InsertOptions {
    /// With a priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// With a maximum number of attempts.
    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// Scheduled at `run_at`.
    pub fn run_at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = Some(run_at);
        self
    }

    /// With a dedup key.
    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    /// `self`'s options, with `defaults`' where `self` has none.
    pub fn or(self, defaults: InsertOptions) -> Self {
        Self {
            priority: self.priority.or(defaults.priority),
            max_attempts: self.max_attempts.or(defaults.max_attempts),
            run_at: self.run_at.or(defaults.run_at),
            dedup_key: self.dedup_key.or(defaults.dedup_key),
        }
    }
}

impl NewJob {
    /// The job of `args` (kind and payload) with `options`; arguments that do not
    /// serialise to JSON are [`QueueError::InvalidJob`] (at `index` of a batch).
    pub fn from_args<A: JobArgs>(
        args: &A,
        options: InsertOptions,
        index: usize,
    ) -> Result<Self, QueueError> {
        let payload = serde_json::to_value(args).map_err(|e| QueueError::InvalidJob {
            index,
            field: "payload",
            value: e.to_string(),
            reason: "job arguments serialise to JSON",
        })?;
        let mut job = NewJob::new(A::KIND, payload);
        if let Some(priority) = options.priority {
            job = job.priority(priority);
        }
        if let Some(max_attempts) = options.max_attempts {
            job = job.max_attempts(max_attempts);
        }
        if let Some(run_at) = options.run_at {
            job = job.run_at(run_at);
        }
        if let Some(key) = options.dedup_key {
            job = job.dedup_key(key);
        }
        Ok(job)
    }
}
