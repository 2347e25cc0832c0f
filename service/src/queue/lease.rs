//! Leases: heartbeats that extend them, the rescue of expired ones, releases at
//! shutdown, and the fence a handler puts around its own writes.

use std::time::Duration;

use sea_orm::sqlx::{self, Row};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::{Lease, QueueError, QueueTable, db_err};
use crate::db::{Pools, on_primary};

/// The longest back-off a rescue applies (and the cap on its settings): 30 days.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 24 * 3600);

/// Extends the leases `leases` by `lease`, in one statement on a connection of `db`'s
/// pool (unnamed: its parameters are arrays of a batch); returns the leases still
/// held. A lease missing from the answer lost its job (cancelled, or rescued — and
/// perhaps claimed again under another token), and its handler should stop; another
/// claim of the same job is not affected.
pub async fn heartbeat(
    db: &impl Pools,
    table: QueueTable,
    leases: &[Lease],
    lease: Duration,
) -> Result<Vec<Lease>, QueueError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let rows = on_primary(db.primary_pool()?, db_err, async |conn| {
        sqlx::query(sqlx::AssertSqlSafe(table.sql().heartbeat.as_str()))
            .persistent(false)
            .bind(leases.iter().map(|l| l.job).collect::<Vec<_>>())
            .bind(leases.iter().map(|l| l.token).collect::<Vec<_>>())
            .bind(lease.as_secs_f64())
            .fetch_all(conn)
            .await
            .map_err(db_err)
    })
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Lease {
                job: row.try_get("id")?,
                token: row.try_get("claim_token")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(db_err)
}

/// Returns running jobs whose lease expired (their worker crashed, froze or lost the
/// database) to pending, or to failed when that was their last attempt, recording
/// why. A rescued job keeps its priority and its `run_at`, so it runs before jobs
/// enqueued after it (after an outage its re-run does not wait behind the backlog);
/// only a job that had run before this attempt (attempt 2 or later: the job may be
/// what kills its workers) waits a back-off, `retry_base × 2^(attempt − 2)` capped at
/// `retry_max` (both at most [`MAX_BACKOFF`]). One statement on any connection,
/// through the partial lease index. Returns how many.
pub async fn rescue_expired<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    retry_base: Duration,
    retry_max: Duration,
) -> Result<u64, QueueError> {
    // Capped in floating point before any interval is made: an interval overflows
    // past ~292,000 years, and one overflowing row would fail the whole statement.
    let (base, max) = (retry_base.min(MAX_BACKOFF), retry_max.min(MAX_BACKOFF));
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            table.sql().rescue_expired.as_str(),
            [base.as_secs_f64().into(), max.as_secs_f64().into()],
        ))
        .await?;
    Ok(done.rows_affected())
}

/// Puts the jobs of `leases` back to pending without counting the attempt (a
/// graceful shutdown that could not wait for them); a lease no longer held is
/// skipped. One statement on a connection of `db`'s pool (unnamed: array
/// parameters); returns how many went back.
pub async fn release(
    db: &impl Pools,
    table: QueueTable,
    leases: &[Lease],
) -> Result<u64, QueueError> {
    if leases.is_empty() {
        return Ok(0);
    }
    let done = on_primary(db.primary_pool()?, db_err, async |conn| {
        sqlx::query(sqlx::AssertSqlSafe(table.sql().release.as_str()))
            .persistent(false)
            .bind(leases.iter().map(|l| l.job).collect::<Vec<_>>())
            .bind(leases.iter().map(|l| l.token).collect::<Vec<_>>())
            .execute(conn)
            .await
            .map_err(db_err)
    })
    .await?;
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
    let held = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            table.sql().fence.as_str(),
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
