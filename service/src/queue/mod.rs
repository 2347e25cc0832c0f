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
//! Statements whose parameters are arrays of a batch run as unnamed statements
//! (`persistent(false)`), planned with the actual arrays every time: a cached generic
//! plan assumes a handful of elements and may pick a nested loop that rescans the
//! array for every row (measured: 750 ms instead of 30 ms for 1,000 outcomes). The
//! cache flushes do the same.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgConnection};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::error::DbError;
use serde_json::Value;
use uuid::Uuid;

pub mod ai;
mod batch_insert;
pub mod worker;

pub(crate) use batch_insert::BatchInsert;

/// A job table, as data: what differs between `jobs` and `ai_annotation_jobs`. Its
/// fields are SQL fragments pasted into the queue's statements, so they are private:
/// the only values are [`JOBS`] and [`AI_ANNOTATION_JOBS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTable {
    /// The table.
    table: &'static str,
    /// The expression that gives a job's type as text.
    type_expr: &'static str,
    /// The JSON payload column.
    payload_column: &'static str,
    /// The JSON result column.
    result_column: &'static str,
    /// The last-error column.
    error_column: &'static str,
    /// The status word of a running job.
    running: &'static str,
    /// The SQL type of `status`.
    status_type: &'static str,
    /// The NOTIFY channel its inserts signal.
    channel: &'static str,
}

/// Seed 003's `jobs`: job types are `job_type`.
pub const JOBS: QueueTable = QueueTable {
    table: "jobs",
    type_expr: "job_type",
    payload_column: "payload",
    result_column: "result",
    error_column: "last_error",
    running: "running",
    status_type: "text",
    channel: "strata_jobs",
};

/// Seed 004's `ai_annotation_jobs`: a job's type is its provider.
pub const AI_ANNOTATION_JOBS: QueueTable = QueueTable {
    table: "ai_annotation_jobs",
    type_expr: "provider::text",
    payload_column: "request_payload",
    result_column: "response_data",
    error_column: "error_message",
    running: "processing",
    status_type: "ai_job_status",
    channel: "strata_ai_annotation_jobs",
};

/// The longest back-off a rescue applies (and the cap on its settings): 30 days.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 24 * 3600);

/// The largest priority; priorities are 0 (default) to this, higher runs first.
pub const MAX_PRIORITY: i32 = 32_767;
/// The largest payload accepted by default, in bytes of JSON.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// What can go wrong in the queue. Each names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A job field outside its range; nothing was written.
    #[error("job {index}: {field} = {value}: {reason}")]
    InvalidJob {
        /// The job's position in the batch.
        index: usize,
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A worker was given or asked for a job type it has no handler for.
    #[error("no handler for job type {0:?}")]
    UnknownJobType(String),
    /// A worker setting outside its range.
    #[error("worker setting {field} = {value}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The claim named is no longer the job's: its lease expired and the job was
    /// rescued (and perhaps claimed again), or it was cancelled or finished.
    #[error("job {job}: lease {token} is no longer held")]
    LeaseLost {
        /// The job.
        job: Uuid,
        /// The claim token that lost it.
        token: Uuid,
    },
    /// The database failed; the variant says how (see [`DbError`]).
    #[error("database: {0}")]
    Database(#[from] DbError),
}

impl From<sea_orm::DbErr> for QueueError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}

/// A driver error as a [`QueueError::Database`], its class kept.
pub(crate) fn db_err(e: sqlx::Error) -> QueueError {
    QueueError::Database(e.into())
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

/// Enqueues `jobs` into `jobs` in one statement, whatever their number, and returns
/// their ids in order. A job whose dedup key is already pending or running (or
/// repeated earlier in the batch) gets that job's id and adds nothing. Every job is
/// checked first: one bad job refuses the batch and nothing is written. Payloads
/// over `max_payload_bytes` are refused. Runs on any connection: inside the caller's
/// transaction the jobs exist — and wake workers, by `NOTIFY` at commit — only if it
/// commits, so an application's row and the job that processes it are written
/// together or not at all. One round trip.
pub async fn enqueue<C: ConnectionTrait>(
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

/// One claim of one job: what an outcome, heartbeat or release names. The token is
/// a random UUID set by the claim (`claim_token`), so two claims of a job — even by
/// one worker, even with the same attempt number — never share a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The job.
    pub job: Uuid,
    /// The claim's token.
    pub token: Uuid,
}

/// A job a worker holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// Its id.
    pub id: Uuid,
    /// This claim's token (see [`Lease`]).
    pub token: Uuid,
    /// Its type.
    pub job_type: String,
    /// Its input.
    pub payload: Value,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Its maximum attempts.
    pub max_attempts: i32,
}

impl ClaimedJob {
    /// This claim, as outcomes and heartbeats name it.
    pub fn lease(&self) -> Lease {
        Lease {
            job: self.id,
            token: self.token,
        }
    }
}

/// Claims up to `limit` runnable jobs of `types` for `worker` in one round trip: the
/// highest priority first, then the oldest `run_at`, skipping rows other workers have
/// locked; each becomes running with a lease of `lease`, its attempt counted and a
/// fresh claim token.
/// (`id = ANY(ARRAY(…))` keeps the update on the primary key even in the generic plan
/// of the prepared statement, where a join would hash the whole table.)
pub async fn claim(
    db: &DatabaseConnection,
    table: QueueTable,
    worker: &str,
    types: &[String],
    limit: usize,
    lease: Duration,
) -> Result<Vec<ClaimedJob>, QueueError> {
    let mut conn = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(db_err)?;
    claim_on(&mut conn, table, worker, types, limit, lease).await
}

/// [`claim`] on a given connection (the worker's own).
pub(crate) async fn claim_on(
    conn: &mut PgConnection,
    table: QueueTable,
    worker: &str,
    types: &[String],
    limit: usize,
    lease: Duration,
) -> Result<Vec<ClaimedJob>, QueueError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let sql = format!(
        "WITH picked AS (
             SELECT id FROM {t}
             WHERE status = 'pending' AND run_at <= now() AND {ty} = ANY($1)
             ORDER BY priority DESC, run_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         )
         UPDATE {t} j SET status = '{running}', attempts = j.attempts + 1,
                          locked_by = $3, locked_until = now() + make_interval(secs => $4),
                          claim_token = gen_random_uuid(),
                          started_at = now(), updated_at = now()
         WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
         RETURNING j.id, j.claim_token, j.{ty}, j.{payload}, j.attempts, j.max_attempts",
        t = table.table,
        ty = table.type_expr,
        running = table.running,
        payload = table.payload_column,
    );
    type Row = (Uuid, Uuid, String, Value, i32, i32);
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(types)
        .bind(limit as i64)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_all(conn)
        .await
        .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, token, job_type, payload, attempt, max_attempts)| ClaimedJob {
                id,
                token,
                job_type,
                payload,
                attempt,
                max_attempts,
            },
        )
        .collect())
}

/// How a job's attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It succeeded with this result.
    Completed(Value),
    /// It failed with this error; if attempts remain it runs again at `retry_at`.
    Failed {
        /// What went wrong.
        error: String,
        /// When to try again.
        retry_at: DateTime<Utc>,
    },
}

/// What a batch of outcomes changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Finished {
    /// Jobs completed.
    pub completed: u64,
    /// Failed attempts recorded (the job retries later or stays failed).
    pub failed: u64,
    /// Outcomes refused because their claim no longer held the job (its lease was
    /// lost: rescued, cancelled, or already finished): nothing was written for them.
    pub stale: u64,
}

/// Records many outcomes in one statement, each for the claim (`Lease`) it belongs
/// to: completions become `completed` with their result; failures go back to
/// `pending` at their `retry_at`, or become `failed` when their attempts are used up,
/// with the error kept. A job whose claim token is no longer the outcome's (rescued
/// and claimed again, cancelled, finished) is left alone and counted as stale.
/// Completions that share one result (no-op handlers' `null`) send only ids and
/// tokens; any other batch also sends results, errors and retry times. Takes a
/// pooled connection for the one round trip.
pub async fn finish(
    db: &DatabaseConnection,
    table: QueueTable,
    outcomes: &[(Lease, Outcome)],
) -> Result<Finished, QueueError> {
    let mut conn = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(db_err)?;
    finish_on(&mut conn, table, outcomes).await
}

/// [`finish`] on a given connection (the worker's own).
pub(crate) async fn finish_on(
    conn: &mut PgConnection,
    table: QueueTable,
    outcomes: &[(Lease, Outcome)],
) -> Result<Finished, QueueError> {
    if outcomes.is_empty() {
        return Ok(Finished::default());
    }
    let (t, running, result) = (table.table, table.running, table.result_column);
    let ids: Vec<Uuid> = outcomes.iter().map(|(lease, _)| lease.job).collect();
    let tokens: Vec<Uuid> = outcomes.iter().map(|(lease, _)| lease.token).collect();
    // Results as JSON text, parsed by the server (see `BatchInsert::json_per_row`);
    // None for a failure.
    let results: Vec<Option<String>> = outcomes
        .iter()
        .map(|(_, o)| match o {
            Outcome::Completed(value) => Some(value.to_string()),
            Outcome::Failed { .. } => None,
        })
        .collect();
    let done_columns = "completed_at = now(), updated_at = now(), locked_by = NULL, \
                        locked_until = NULL, claim_token = NULL";
    let shared_result =
        results.iter().all(Option::is_some) && results.windows(2).all(|w| w[0] == w[1]);
    let finished = if shared_result {
        // Completions that share one result (no-op handlers' `null`, the common batch):
        // no per-row join. Tokens are unique per claim, so `claim_token = ANY(tokens)`
        // matches a row only when its current claim's outcome is in the batch.
        let sql = format!(
            "UPDATE {t} j SET status = 'completed', {result} = $3::jsonb, {done_columns}
             WHERE j.id = ANY($1) AND j.claim_token = ANY($2) AND j.status = '{running}'"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .bind(tokens)
            .bind(results.into_iter().next().flatten())
            .persistent(false)
            .execute(conn)
            .await
            .map_err(db_err)?;
        Finished {
            completed: done.rows_affected(),
            failed: 0,
            stale: 0,
        }
    } else {
        let sql = format!(
            "WITH done AS (
                 UPDATE {t} j SET
                     status = (CASE WHEN o.result IS NOT NULL THEN 'completed'
                                    WHEN j.attempts >= j.max_attempts THEN 'failed'
                                    ELSE 'pending' END)::{st},
                     {result} = coalesce(o.result::jsonb, j.{result}),
                     {error} = CASE WHEN o.result IS NOT NULL THEN j.{error} ELSE o.err END,
                     run_at = CASE WHEN o.result IS NULL AND j.attempts < j.max_attempts
                                   THEN o.retry_at ELSE j.run_at END,
                     completed_at = CASE WHEN o.result IS NOT NULL OR j.attempts >= j.max_attempts
                                         THEN now() END,
                     updated_at = now(), locked_by = NULL, locked_until = NULL, claim_token = NULL
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
                      AS o(id, token, result, err, retry_at)
                 WHERE j.id = ANY($1) AND j.id = o.id AND j.claim_token = o.token
                   AND j.status = '{running}'
                 RETURNING o.result IS NOT NULL AS ok
             )
             SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok) FROM done",
            st = table.status_type,
            error = table.error_column,
        );
        let (errors, retries): (Vec<Option<String>>, Vec<Option<DateTime<Utc>>>) = outcomes
            .iter()
            .map(|(_, o)| match o {
                Outcome::Completed(_) => (None, None),
                // PostgreSQL text cannot hold NUL characters.
                Outcome::Failed { error, retry_at } => {
                    (Some(error.replace('\0', "\u{FFFD}")), Some(*retry_at))
                }
            })
            .unzip();
        let (completed, failed): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .bind(tokens)
            .bind(results)
            .bind(errors)
            .bind(retries)
            .persistent(false)
            .fetch_one(conn)
            .await
            .map_err(db_err)?;
        Finished {
            completed: completed as u64,
            failed: failed as u64,
            stale: 0,
        }
    };
    Ok(Finished {
        stale: (outcomes.len() as u64).saturating_sub(finished.completed + finished.failed),
        ..finished
    })
}

/// The retry time of a failed attempt: `base × 2^(attempt − 1)`, capped at `max`, plus
/// up to 25 % random jitter so failed jobs do not all come back at once.
pub fn backoff(attempt: i32, base: Duration, max: Duration) -> DateTime<Utc> {
    let exp = base.saturating_mul(1u32 << attempt.clamp(1, 20).saturating_sub(1) as u32);
    let delay = exp.min(max);
    let jitter = delay.mul_f64(0.25 * (Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0);
    Utc::now() + chrono::Duration::from_std(delay + jitter).unwrap_or(chrono::Duration::MAX)
}

/// Extends the leases `leases` by `lease`, in one statement on a pooled connection;
/// returns the leases still held. A lease missing from the answer lost its job
/// (cancelled, or rescued — and perhaps claimed again under another token), and its
/// handler should stop; another claim of the same job is not affected.
pub async fn heartbeat(
    db: &DatabaseConnection,
    table: QueueTable,
    leases: &[Lease],
    lease: Duration,
) -> Result<Vec<Lease>, QueueError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    // Tokens are unique per claim, so `claim_token = ANY(tokens)` pairs each row with
    // its own lease without a join.
    let sql = format!(
        "UPDATE {t} SET locked_until = now() + make_interval(secs => $3)
         WHERE id = ANY($1) AND claim_token = ANY($2) AND status = '{running}'
         RETURNING id, claim_token",
        t = table.table,
        running = table.running,
    );
    let held: Vec<(Uuid, Uuid)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(leases.iter().map(|l| l.job).collect::<Vec<_>>())
        .bind(leases.iter().map(|l| l.token).collect::<Vec<_>>())
        .bind(lease.as_secs_f64())
        .fetch_all(db.get_postgres_connection_pool())
        .await
        .map_err(db_err)?;
    Ok(held
        .into_iter()
        .map(|(job, token)| Lease { job, token })
        .collect())
}

/// Returns running jobs whose lease expired (their worker crashed, froze or lost the
/// database) to pending, or to failed when that was their last attempt, recording
/// why. A rescued job keeps its priority and its `run_at`, so it runs before jobs
/// enqueued after it (after an outage its re-run does not wait behind the backlog);
/// only a job that had run before this attempt (attempt 2 or later: the job may be
/// what kills its workers) waits a back-off, `retry_base × 2^(attempt − 2)` capped at
/// `retry_max` (both at most [`MAX_BACKOFF`]). One statement on a pooled connection,
/// through the partial lease index. Returns how many.
pub async fn rescue_expired(
    db: &DatabaseConnection,
    table: QueueTable,
    retry_base: Duration,
    retry_max: Duration,
) -> Result<u64, QueueError> {
    let sql = format!(
        "UPDATE {t} SET
             status = (CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END)::{st},
             {error} = 'lease expired: worker ' || coalesce(locked_by, '?') || ' stopped heartbeating',
             locked_by = NULL,
             locked_until = NULL,
             claim_token = NULL,
             run_at = CASE WHEN attempts > 1
                           THEN greatest(run_at, now() + make_interval(secs => least(
                                    $1 * power(2, least(attempts - 2, 30)), $2)))
                           ELSE run_at END
         WHERE status = '{running}' AND locked_until < now()",
        t = table.table,
        st = table.status_type,
        error = table.error_column,
        running = table.running,
    );
    // Capped in floating point before any interval is made: an interval overflows
    // past ~292,000 years, and one overflowing row would fail the whole statement.
    let (base, max) = (retry_base.min(MAX_BACKOFF), retry_max.min(MAX_BACKOFF));
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(base.as_secs_f64())
        .bind(max.as_secs_f64())
        .execute(db.get_postgres_connection_pool())
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected())
}

/// Puts the jobs of `leases` back to pending without counting the attempt (a
/// graceful shutdown that could not wait for them); a lease no longer held is
/// skipped. One statement on a pooled connection; returns how many went back.
pub async fn release(
    db: &DatabaseConnection,
    table: QueueTable,
    leases: &[Lease],
) -> Result<u64, QueueError> {
    if leases.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "UPDATE {t} SET status = 'pending', attempts = greatest(attempts - 1, 0),
                        locked_by = NULL, locked_until = NULL, claim_token = NULL
         WHERE id = ANY($1) AND claim_token = ANY($2) AND status = '{running}'",
        t = table.table,
        running = table.running,
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(leases.iter().map(|l| l.job).collect::<Vec<_>>())
        .bind(leases.iter().map(|l| l.token).collect::<Vec<_>>())
        .execute(db.get_postgres_connection_pool())
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected())
}

/// Fences a handler's own writes: run it first in the transaction that makes them
/// (any SeaORM connection: a `DatabaseTransaction` from `begin()`). It succeeds only
/// while `lease` still holds its job, and then share-locks the job's row until that
/// transaction ends, so the lease cannot be lost (rescued, cancelled) before the
/// writes commit. Otherwise [`QueueError::LeaseLost`], and the caller rolls back.
/// One round trip. Keep the transaction short: the worker's heartbeat of this job —
/// and a rescue or cancel of it — waits for the lock.
pub async fn fence<C: ConnectionTrait>(
    conn: &C,
    table: QueueTable,
    lease: Lease,
) -> Result<(), QueueError> {
    let sql = format!(
        "SELECT 1 FROM {t} WHERE id = $1 AND claim_token = $2 AND status = '{running}' FOR SHARE",
        t = table.table,
        running = table.running,
    );
    let held = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [lease.job.into(), lease.token.into()],
        ))
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(QueueError::LeaseLost {
            job: lease.job,
            token: lease.token,
        }),
    }
}

/// Cancels a job: a pending one never runs; a running one becomes `cancelled` and its
/// worker tells the handler at its next heartbeat. Returns whether the job was
/// pending or running. One statement, on any connection (a transaction joins it).
pub async fn cancel<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    id: Uuid,
) -> Result<bool, QueueError> {
    let sql = format!(
        "UPDATE {t} SET status = 'cancelled', locked_by = NULL, locked_until = NULL,
                        claim_token = NULL
         WHERE id = $1 AND status IN ('pending', '{running}')",
        t = table.table,
        running = table.running,
    );
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [id.into()],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes finished jobs (completed, failed, cancelled) that finished more than
/// `retention` ago, `batch` rows per statement until none is left, so no statement
/// holds many row locks or bloats one transaction. Returns how many went. (A job
/// finished before the cut-off was also created before it; saying so lets `jobs`'
/// BRIN index on `created_at` skip the recent part of the table.)
pub async fn delete_finished(
    db: &DatabaseConnection,
    table: QueueTable,
    retention: Duration,
    batch: i64,
) -> Result<u64, QueueError> {
    let sql = format!(
        "DELETE FROM {t} WHERE id IN (
             SELECT id FROM {t}
             WHERE status IN ('completed', 'failed', 'cancelled')
               AND completed_at < now() - make_interval(secs => $1)
               AND created_at < now() - make_interval(secs => $1)
             LIMIT $2)",
        t = table.table,
    );
    let mut total = 0;
    loop {
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(retention.as_secs_f64())
            .bind(batch.max(1))
            .execute(db.get_postgres_connection_pool())
            .await
            .map_err(db_err)?;
        total += done.rows_affected();
        if done.rows_affected() < batch.max(1) as u64 {
            return Ok(total);
        }
    }
}

/// Jobs per (status, type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    /// The status.
    pub status: String,
    /// The job type.
    pub job_type: String,
    /// How many.
    pub count: i64,
}

/// Counts jobs by status and type. One round trip.
pub async fn counts(
    db: &DatabaseConnection,
    table: QueueTable,
) -> Result<Vec<StatusCount>, QueueError> {
    let sql = format!(
        "SELECT status::text, {ty}, count(*) FROM {t} GROUP BY 1, 2 ORDER BY 1, 2",
        t = table.table,
        ty = table.type_expr,
    );
    let rows: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.get_postgres_connection_pool())
        .await
        .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(|(status, job_type, count)| StatusCount {
            status,
            job_type,
            count,
        })
        .collect())
}

/// How long the oldest runnable pending job has waited, if any. One round trip.
pub async fn oldest_pending_age(
    db: &DatabaseConnection,
    table: QueueTable,
) -> Result<Option<Duration>, QueueError> {
    let sql = format!(
        "SELECT extract(epoch FROM now() - min(run_at))::float8 FROM {t}
         WHERE status = 'pending' AND run_at <= now()",
        t = table.table,
    );
    let age: Option<f64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(db.get_postgres_connection_pool())
        .await
        .map_err(db_err)?;
    Ok(age.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// A job that ended `failed`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedJob {
    /// Its id.
    pub id: Uuid,
    /// Its type.
    pub job_type: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last error.
    pub error: Option<String>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

/// The most recently failed jobs, at most `limit`. One round trip.
pub async fn failed_jobs(
    db: &DatabaseConnection,
    table: QueueTable,
    limit: i64,
) -> Result<Vec<FailedJob>, QueueError> {
    let sql = format!(
        "SELECT id, {ty}, attempts, {error}, completed_at FROM {t}
         WHERE status = 'failed' ORDER BY completed_at DESC NULLS LAST LIMIT $1",
        t = table.table,
        ty = table.type_expr,
        error = table.error_column,
    );
    type Row = (Uuid, String, i32, Option<String>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(limit.max(0))
        .fetch_all(db.get_postgres_connection_pool())
        .await
        .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(|(id, job_type, attempts, error, completed_at)| FailedJob {
            id,
            job_type,
            attempts,
            error,
            completed_at,
        })
        .collect())
}

/// Sends failed jobs `ids` back to pending with fresh attempts (the last error is
/// kept until they run). One statement, on any connection (a transaction joins
/// it); returns how many.
pub async fn retry_failed<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    ids: &[Uuid],
) -> Result<u64, QueueError> {
    let sql = format!(
        "UPDATE {t} SET status = 'pending', attempts = 0, run_at = now()
         WHERE id = ANY($1) AND status = 'failed'",
        t = table.table,
    );
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [sea_orm::Value::from(ids.to_vec())],
        ))
        .await?;
    Ok(done.rows_affected())
}
