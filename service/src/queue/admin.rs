//! Operators' and applications' changes to jobs: cancel, retry the failed, delete the
//! finished. Each runs on any SeaORM connection, so inside a transaction too.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use super::{QueueError, QueueTable};

/// Cancels a job: a pending one never runs; a running one becomes `cancelled` and its
/// worker tells the handler at its next heartbeat. Returns whether the job was
/// pending or running. One statement, on any connection (a transaction joins it).
pub async fn cancel<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    id: Uuid,
) -> Result<bool, QueueError> {
    changes_one(db, &table.sql().cancel, id).await
}

/// Runs `sql` on job `$1`; whether it changed the job.
async fn changes_one<C: ConnectionTrait>(db: &C, sql: &str, id: Uuid) -> Result<bool, QueueError> {
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [id.into()],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Sends failed jobs `ids` back to pending with fresh attempts (the last error is
/// kept until they run). One statement, on any connection (a transaction joins
/// it); returns how many.
pub async fn retry_failed<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    ids: &[Uuid],
) -> Result<u64, QueueError> {
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            table.sql().retry_failed.as_str(),
            [sea_orm::Value::from(ids.to_vec())],
        ))
        .await?;
    Ok(done.rows_affected())
}

/// Deletes job `id` if it is finished (completed, failed or cancelled); whether it
/// was. A pending or running job is left: cancel it first. One statement, on any
/// connection.
pub async fn delete_job<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    id: Uuid,
) -> Result<bool, QueueError> {
    changes_one(db, &table.sql().delete_finished_job, id).await
}

/// Deletes finished jobs (completed, failed, cancelled) that finished more than
/// `retention` ago, `batch` rows per statement until none is left, so no statement
/// holds many row locks (on a `DatabaseConnection` each batch commits on its own;
/// inside a transaction they all commit with it). Returns how many went. (A job
/// finished before the cut-off was also created before it; saying so lets `jobs`'
/// BRIN index on `created_at` skip the recent part of the table.) One round trip per
/// batch.
pub async fn delete_finished<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    retention: Duration,
    batch: i64,
) -> Result<u64, QueueError> {
    let batch = batch.max(1);
    let mut total = 0;
    loop {
        let done = db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                table.sql().delete_finished.as_str(),
                [retention.as_secs_f64().into(), batch.into()],
            ))
            .await?;
        total += done.rows_affected();
        if done.rows_affected() < batch as u64 {
            return Ok(total);
        }
    }
}
