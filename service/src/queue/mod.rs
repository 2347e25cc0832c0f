//! Durable job queues on PostgreSQL: one engine for seed 003's `jobs`
//! (pending → running → completed | failed) and seed 004's `ai_annotation_jobs`
//! (pending → processing → completed | failed). The two tables differ only in data —
//! their names, columns and status words, a [`QueueTable`] — never in logic.
//!
//! - **Enqueue** one or many jobs in one statement; a dedup key that is already
//!   pending or running returns the existing job. The insert wakes idle workers with
//!   `NOTIFY` (the migration's statement trigger).
//! - **Claim** up to N runnable jobs in one round trip (`FOR UPDATE SKIP LOCKED`,
//!   highest priority first, then oldest `run_at`), taking a lease.
//! - **Finish** many jobs in one statement: completions, and failures that retry with
//!   exponential backoff and jitter until `max_attempts`, then stay `failed`.
//! - **Leases**: running jobs heartbeat; [`rescue_expired`] returns the jobs of a
//!   crashed or frozen worker to pending (their attempt counted); a first attempt
//!   keeps its old place in line.
//! - **Fencing**: every claim gives the job a fresh `claim_token`; outcomes,
//!   heartbeats and releases carry the [`Lease`] they belong to and touch the row only
//!   while that claim still holds it. The outcome of a run whose lease was lost (its
//!   worker stalled, the job was rescued and claimed again) changes nothing and is
//!   counted as stale. A handler's own side effects are at least once; it fences its
//!   writes with [`fence`] in the transaction that makes them.
//! - [`worker::Worker`]: handlers by job type, concurrency, LISTEN wake-ups with a
//!   polling fallback, per-type timeouts, panics as failures, cancellation, graceful
//!   shutdown.
//!
//!
//! The module's files: [`table`](QueueTable) (the two tables as data), `sql` (every
//! raw statement, named, with its reason), `enqueue`, `batch_insert`, `claim`,
//! `finish`, `lease` (heartbeats, rescue, release, fence), `admin` (cancel, retry,
//! delete), `inspect` (counts, failures, one job), `browse` (an operator's listing and
//! bulk changes by filter), [`ai`] and [`worker`].

mod admin;
pub mod ai;
mod batch_insert;
mod browse;
mod claim;
mod enqueue;
mod error;
mod finish;
mod inspect;
mod job_args;
mod lease;
mod overview;
mod sql;
mod status;
mod table;
pub mod worker;

pub use admin::{cancel, delete_finished, delete_job, retry_failed};
pub(crate) use batch_insert::BatchInsert;
pub use browse::{
    BULK_BATCH, BulkChange, JobDetail, JobFilter, JobSummary, Matching, Sweep, cancel_matching,
    change_matching, count_matching, count_statement, list_jobs, list_statement, newest_id,
    retry_matching, show_job,
};
pub(crate) use claim::claim_on;
pub use claim::{ClaimedJob, Lease, claim};
pub(crate) use enqueue::check_job;
pub(crate) use enqueue::first_id;
pub use enqueue::{
    DEFAULT_MAX_PAYLOAD_BYTES, EnqueueConfig, Enqueuer, MAX_PRIORITY, NewJob, enqueue, enqueue_one,
    insert,
};
pub use error::QueueError;
pub(crate) use error::db_err;
pub(crate) use finish::finish_on;
pub use finish::{Finished, Outcome, backoff, finish};
pub use inspect::{
    FailedJob, QueueHealth, StatusCount, counts, failed_jobs, health, job, oldest_pending_age,
};
pub use job_args::{InsertOptions, JobArgs};
pub use lease::{MAX_BACKOFF, fence, heartbeat, release, rescue_expired};
pub use overview::{
    COUNT_CAP, QueueOverview, capped, overview, overview_statement, throughput,
    throughput_statement,
};
pub use status::{JobStatus, UnknownStatus};
pub use table::{AI_ANNOTATION_JOBS, JOBS, QueueTable};
