//! Recording how attempts ended: many outcomes in one statement, each fenced by its
//! claim token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgConnection, Row};
use serde_json::Value;
use uuid::Uuid;

use super::{Lease, QueueError, QueueTable, db_err};
use crate::db::{Pools, on_primary};

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
/// connection of `db`'s primary pool for the one round trip (a transaction of its own
/// through a pooler).
pub async fn finish(
    db: &impl Pools,
    table: QueueTable,
    outcomes: &[(Lease, Outcome)],
) -> Result<Finished, QueueError> {
    on_primary(db.primary_pool()?, db_err, async |conn| {
        finish_on(conn, table, outcomes).await
    })
    .await
}

/// [`finish`] on a given connection (the worker's own). Unnamed statements: see
/// [`super::sql`] on generic plans of array parameters.
pub(crate) async fn finish_on(
    conn: &mut PgConnection,
    table: QueueTable,
    outcomes: &[(Lease, Outcome)],
) -> Result<Finished, QueueError> {
    if outcomes.is_empty() {
        return Ok(Finished::default());
    }
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
    let shared_result =
        results.iter().all(Option::is_some) && results.windows(2).all(|w| w[0] == w[1]);
    let finished = if shared_result {
        let done = sqlx::query(sqlx::AssertSqlSafe(table.sql().complete_shared.as_str()))
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
        let row = sqlx::query(sqlx::AssertSqlSafe(table.sql().finish_each.as_str()))
            .bind(ids)
            .bind(tokens)
            .bind(results)
            .bind(errors)
            .bind(retries)
            .persistent(false)
            .fetch_one(conn)
            .await
            .map_err(db_err)?;
        let count = |column: &str| row.try_get::<i64, _>(column).map(|n| n.max(0) as u64);
        Finished {
            completed: count("completed").map_err(db_err)?,
            failed: count("failed").map_err(db_err)?,
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
