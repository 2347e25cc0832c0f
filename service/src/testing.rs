//! A test kit for applications (River's `rivertest`), behind the `testing` feature:
//! assert what a transaction enqueued, and run one job inline, against the real
//! database — on the connection the test gives, so inside its transaction too.
//!
//! ```toml
//! [dev-dependencies]
//! service = { …, features = ["testing"] }
//! ```
//!
//! The assertions panic with what they found, as test assertions do; the functions
//! that read return typed errors.

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use entity::jobs;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;
use uuid::Uuid;

use crate::queue::worker::Worker;
use crate::queue::{self, JobArgs, Outcome, QueueError};

/// A pending job of typed arguments, as [`enqueued`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueuedJob<A> {
    /// Its id.
    pub id: Uuid,
    /// Its arguments, decoded.
    pub args: A,
    /// Its priority.
    pub priority: i32,
    /// Its maximum attempts.
    pub max_attempts: i32,
    /// When it may run.
    pub run_at: DateTime<Utc>,
    /// Its dedup key.
    pub dedup_key: Option<String>,
}

/// The pending jobs of kind `A::KIND` visible on `db` (inside a transaction: its own
/// uncommitted enqueues too), oldest first, with their arguments decoded. A payload
/// that does not decode as `A` is [`QueueError::InvalidJob`] naming the job. One round
/// trip.
pub async fn enqueued<A: JobArgs, C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<EnqueuedJob<A>>, QueueError> {
    let rows = jobs::Entity::find()
        .filter(jobs::Column::JobType.eq(A::KIND))
        .filter(jobs::Column::Status.eq("pending"))
        .order_by_asc(jobs::Column::CreatedAt)
        .order_by_asc(jobs::Column::Id)
        .all(db)
        .await?;
    rows.into_iter()
        .enumerate()
        .map(|(index, row)| {
            let args = serde_json::from_value(row.payload).map_err(|e| QueueError::InvalidJob {
                index,
                field: "payload",
                value: format!("job {}: {e}", row.id),
                reason: "a pending job's payload decodes as its kind's arguments",
            })?;
            Ok(EnqueuedJob {
                id: row.id,
                args,
                priority: row.priority,
                max_attempts: row.max_attempts,
                run_at: row.run_at.with_timezone(&Utc),
                dedup_key: row.dedup_key,
            })
        })
        .collect()
}

/// Asserts that exactly one pending job of `A`'s kind with arguments equal to
/// `expected` is visible on `db`, and returns it; panics listing what is there
/// otherwise.
pub async fn assert_enqueued<A, C>(db: &C, expected: &A) -> EnqueuedJob<A>
where
    A: JobArgs + PartialEq + Debug,
    C: ConnectionTrait,
{
    let all = enqueued::<A, C>(db)
        .await
        .unwrap_or_else(|e| panic!("reading the enqueued {} jobs: {e}", A::KIND));
    let pending = format!("{:?}", all.iter().map(|j| &j.args).collect::<Vec<_>>());
    let mut matching: Vec<EnqueuedJob<A>> =
        all.into_iter().filter(|j| &j.args == expected).collect();
    match matching.len() {
        1 => matching.remove(0),
        0 => panic!(
            "no pending {} job with arguments {expected:?}; pending: {pending}",
            A::KIND
        ),
        n => panic!(
            "{n} pending {} jobs with arguments {expected:?}, expected one",
            A::KIND
        ),
    }
}

/// Asserts that no pending job of `A`'s kind is visible on `db`; panics listing them
/// otherwise.
pub async fn assert_none_enqueued<A, C>(db: &C)
where
    A: JobArgs + Debug,
    C: ConnectionTrait,
{
    let all = enqueued::<A, C>(db)
        .await
        .unwrap_or_else(|e| panic!("reading the enqueued {} jobs: {e}", A::KIND));
    assert!(
        all.is_empty(),
        "expected no pending {} job; found {:?}",
        A::KIND,
        all.iter().map(|j| &j.args).collect::<Vec<_>>()
    );
}

/// One job [`work_one`] ran.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkedJob {
    /// Its id.
    pub id: Uuid,
    /// Its type.
    pub job_type: String,
    /// What its handler returned: the stored result, or the recorded error.
    pub result: Result<Value, String>,
}

/// Claims the next runnable job of `worker`'s queue and types (highest priority, then
/// oldest), runs its handler right here, and writes its outcome — the path a running
/// worker takes, without its tasks, so a test sees the handler's effects and the job's
/// final row before it goes on. `None` when nothing is runnable. Three round trips
/// (claim, the handler's own, outcome); a failure is recorded with the worker's
/// retry back-off.
pub async fn work_one(
    worker: &Worker,
    db: &impl crate::db::Pools,
) -> Result<Option<WorkedJob>, QueueError> {
    let types = worker.job_types();
    let config = worker.config();
    let Some(job) = queue::claim(db, worker.table(), "testing", &types, 1, config.lease)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let (id, job_type, lease, attempt) = (job.id, job.job_type.clone(), job.lease(), job.attempt);
    let result = worker.run_handler(job).await?.map_err(|e| e.to_string());
    let outcome = match &result {
        Ok(value) => Outcome::Completed(value.clone()),
        Err(error) => Outcome::Failed {
            error: error.clone(),
            retry_at: queue::backoff(attempt, config.retry_base, config.retry_max),
        },
    };
    queue::finish(db, worker.table(), &[(lease, outcome)]).await?;
    Ok(Some(WorkedJob {
        id,
        job_type,
        result,
    }))
}
