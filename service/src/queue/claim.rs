//! Claiming runnable jobs: one round trip takes up to N of them with a lease and a
//! fresh claim token.

use std::time::Duration;

use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::{self, PgConnection, Row};
use serde_json::Value;
use uuid::Uuid;

use super::{QueueError, QueueTable, db_err};
use crate::db::{Pools, on_primary};

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
/// fresh claim token. Takes a connection of `db`'s primary pool for the round trip
/// (a claim commits on its own: it must never wait inside a caller's transaction;
/// through a pooler it is a transaction of its own, two more round trips).
pub async fn claim(
    db: &impl Pools,
    table: QueueTable,
    worker: &str,
    types: &[String],
    limit: usize,
    lease: Duration,
) -> Result<Vec<ClaimedJob>, QueueError> {
    on_primary(db.primary_pool()?, db_err, async |conn| {
        claim_on(conn, table, worker, types, limit, lease).await
    })
    .await
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
    sqlx::query_as(sqlx::AssertSqlSafe(table.sql().claim.as_str()))
        .bind(types)
        .bind(limit as i64)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_all(conn)
        .await
        .map_err(db_err)
}

impl sqlx::FromRow<'_, PgRow> for ClaimedJob {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            token: row.try_get("token")?,
            job_type: row.try_get("job_type")?,
            payload: row.try_get("payload")?,
            attempt: row.try_get("attempt")?,
            max_attempts: row.try_get("max_attempts")?,
        })
    }
}
