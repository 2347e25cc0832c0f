//! A queue at a glance, for dashboards and the console: counts that stop at
//! [`COUNT_CAP`] and read partial indexes only, in one round trip — so a page that
//! refreshes every few seconds costs the same on a million jobs as on a hundred.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use serde::Serialize;

use super::{QueueError, QueueTable};

/// Where the overview's counts stop: a count of `COUNT_CAP + 1` means "more than
/// `COUNT_CAP`" (shown as "10,000+").
pub const COUNT_CAP: i64 = 10_000;

/// One queue's state now.
#[derive(Debug, Clone, PartialEq, Serialize, FromQueryResult)]
pub struct QueueOverview {
    /// Pending jobs whose `run_at` has come (at most `COUNT_CAP + 1`).
    pub runnable: i64,
    /// How long the oldest runnable job has waited past its `run_at`, in seconds.
    pub oldest_runnable_seconds: Option<f64>,
    /// Running jobs (at most `COUNT_CAP + 1`).
    pub running: i64,
    /// Jobs that failed for good in the last hour (at most `COUNT_CAP + 1`).
    pub failed_last_hour: i64,
    /// Running jobs whose lease has expired (at most `COUNT_CAP + 1`): the rescuer's
    /// next work.
    pub expired_leases: i64,
}

/// `n` as a dashboard shows a capped count: `10,000+` past [`COUNT_CAP`].
pub fn capped(n: i64) -> String {
    let digits = n.min(COUNT_CAP).to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if n > COUNT_CAP {
        grouped.push('+');
    }
    grouped
}

/// The statement [`overview`] sends for `table` (for `EXPLAIN`). Each count is a
/// `LIMIT`ed subquery over one partial index: runnable and the oldest of them over
/// pending jobs' `run_at`, running and expired leases over running jobs' lease
/// expiry, failures over failed jobs' completion time. The table's name and status
/// words are this crate's constants.
pub fn overview_statement(table: QueueTable) -> String {
    let (t, st, running, limit) = (table.table, table.status_type, table.running, COUNT_CAP + 1);
    format!(
        "SELECT
  (SELECT count(*) FROM (SELECT 1 FROM {t} WHERE status = 'pending'::{st} AND run_at <= now()
                         LIMIT {limit}) s) AS runnable,
  (SELECT extract(epoch FROM now() - run_at)::float8 FROM {t}
   WHERE status = 'pending'::{st} AND run_at <= now() ORDER BY run_at LIMIT 1)
     AS oldest_runnable_seconds,
  (SELECT count(*) FROM (SELECT 1 FROM {t} WHERE status = '{running}'::{st}
                         LIMIT {limit}) s) AS running,
  (SELECT count(*) FROM (SELECT 1 FROM {t} WHERE status = 'failed'::{st}
                           AND completed_at > now() - interval '1 hour'
                         LIMIT {limit}) s) AS failed_last_hour,
  (SELECT count(*) FROM (SELECT 1 FROM {t} WHERE status = '{running}'::{st}
                           AND locked_until < now()
                         LIMIT {limit}) s) AS expired_leases"
    )
}

/// `table` at a glance ([`QueueOverview`]). One round trip; on a replica (a
/// [`crate::db::Reader`]) as well as on the primary.
pub async fn overview<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
) -> Result<QueueOverview, QueueError> {
    QueueOverview::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        overview_statement(table),
    ))
    .one(db)
    .await?
    .ok_or_else(|| QueueError::Database(crate::error::DbError::no_row("queue overview")))
}

/// One minute's completions, as [`throughput`] reads them.
#[derive(Debug, FromQueryResult)]
struct MinuteCount {
    minutes_ago: i32,
    completed: i64,
}

/// Completions per minute over the last hour, oldest minute first (60 counts; the
/// last is the current minute so far). One round trip through the partial index on
/// completed jobs' `completed_at` (migration `m20261208_000003_completed_at`).
pub async fn throughput<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
) -> Result<Vec<i64>, QueueError> {
    let rows = MinuteCount::find_by_statement(throughput_statement(table))
        .all(db)
        .await?;
    let mut minutes = vec![0; 60];
    for row in rows {
        if let Ok(ago) = usize::try_from(row.minutes_ago)
            && ago < 60
        {
            minutes[59 - ago] += row.completed;
        }
    }
    Ok(minutes)
}

/// The statement [`throughput`] sends for `table` (for `EXPLAIN`).
pub fn throughput_statement(table: QueueTable) -> Statement {
    Statement::from_string(DbBackend::Postgres, table.sql().throughput.as_str())
}

#[cfg(test)]
mod tests {
    #[test]
    fn capped_counts_read_as_a_dashboard_shows_them() {
        assert_eq!(super::capped(0), "0");
        assert_eq!(super::capped(999), "999");
        assert_eq!(super::capped(1_234), "1,234");
        assert_eq!(super::capped(10_000), "10,000");
        assert_eq!(super::capped(10_001), "10,000+");
    }
}
