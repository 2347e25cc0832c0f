//! Checks of this schema's own machinery: the materialized views, the vector index,
//! both job queues, the caches and the maintenance schedule.

use sea_orm::{DatabaseTransaction, FromQueryResult};

use super::{Check, CheckResult, Expectations, first, human_bytes, sql};
use crate::cache::cache_stats;
use crate::queue::{self, QueueTable};
use crate::store::{Recommendation, index_health};

/// The materialized views: populated or not, and the state of the maintenance task
/// that refreshes each (PostgreSQL keeps no refresh time itself): its last run, its
/// last status, and how far past its next run it is.
const MATVIEWS_SQL: &str = "SELECT m.matviewname::text AS name, m.ispopulated AS populated,
            t.last_run_at IS NOT NULL AS refreshed,
            extract(epoch FROM now() - t.next_run_at)::float8 AS overdue_seconds,
            t.last_status AS status
     FROM pg_matviews m
     LEFT JOIN maintenance_tasks t ON t.task = CASE m.matviewname
                                              WHEN 'layer0_stats' THEN 'refresh_layer0_stats'
                                              WHEN 'cache_performance_metrics' THEN 'refresh_cache_metrics' END
     WHERE m.schemaname = 'public'
     ORDER BY 1";

#[derive(FromQueryResult)]
struct Matview {
    name: String,
    populated: bool,
    refreshed: bool,
    overdue_seconds: Option<f64>,
    status: Option<String>,
}

/// An hour, in the seconds the checks' queries return.
const HOUR_SECONDS: f64 = 3600.0;

/// A maintenance task this late means no runner is running it.
const MAINTENANCE_OVERDUE_SECONDS: f64 = HOUR_SECONDS;

/// A refresh this far past its scheduled time means no maintenance runs.
const REFRESH_OVERDUE_SECONDS: f64 = HOUR_SECONDS;

/// Materialized views: `fail` when one is not populated (reads error, a concurrent
/// refresh is refused), `warn` when its refresh task last failed, never ran, or is
/// over an hour past its scheduled run (each view by its own schedule: hourly for
/// `layer0_stats`, monthly for `cache_performance_metrics`).
pub(super) async fn materialized_views(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let views = Matview::find_by_statement(sql(MATVIEWS_SQL))
        .all(db)
        .await?;
    let name = "materialized views";
    let unpopulated: Vec<String> = views
        .iter()
        .filter(|v| !v.populated)
        .map(|v| v.name.clone())
        .collect();
    if !unpopulated.is_empty() {
        return Ok(vec![
            Check::fail(name, format!("not populated: {}", first(&unpopulated, 3)))
                .with_details(unpopulated),
        ]);
    }
    let stale: Vec<String> = views
        .iter()
        .filter_map(
            |v| match (v.refreshed, v.status.as_deref(), v.overdue_seconds) {
                (_, Some("failure"), _) => Some(format!("{} (last refresh failed)", v.name)),
                (false, _, _) => Some(format!("{} (never refreshed by maintenance)", v.name)),
                (_, _, Some(late)) if late > REFRESH_OVERDUE_SECONDS => Some(format!(
                    "{} (refresh {:.1} h overdue)",
                    v.name,
                    late / HOUR_SECONDS
                )),
                _ => None,
            },
        )
        .collect();
    Ok(vec![if stale.is_empty() {
        Check::ok(
            name,
            format!("{} populated, refreshed on schedule", views.len()),
        )
    } else {
        Check::warn(name, first(&stale, 3)).with_details(stale)
    }])
}

/// The vector index ([`index_health`]): `fail` when missing or invalid, `warn` when
/// built on too little data or due for a rebuild, `ok` otherwise (or when there is
/// nothing to index yet).
pub(super) async fn vector_index(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let h = index_health(db).await?;
    let name = "vector index";
    let method = h.method.clone().unwrap_or_else(|| "?".into());
    let built = h
        .rows_at_build
        .map_or("build not recorded".to_owned(), |r| {
            format!("built on {r} rows")
        });
    let state = format!(
        "{} {method}, {built}, {} rows now, {}",
        h.index_name,
        h.rows_now,
        human_bytes(h.size_bytes)
    );
    Ok(vec![if !h.exists {
        Check::fail(
            name,
            format!("{} is missing: strata docs reindex", h.index_name),
        )
    } else if !h.valid {
        Check::fail(
            name,
            format!("{} is invalid: strata docs reindex", h.index_name),
        )
    } else {
        match &h.recommendation {
            Recommendation::Rebuild(why) => Check::warn(name, format!("{state}; rebuild: {why}")),
            Recommendation::Wait(why) => Check::ok(name, format!("{state}; {why}")),
            Recommendation::Keep => Check::ok(name, state),
        }
    }])
}

/// A runnable job waiting longer than this means no worker is taking jobs.
const QUEUE_WAIT_WARNING_SECONDS: f64 = HOUR_SECONDS;

/// One queue: `warn` for running jobs whose lease expired (their worker died; the
/// rescuer of any running `service::runtime::Runtime` requeues them) or a runnable job
/// waiting over an hour.
async fn queue(db: &DatabaseTransaction, table: QueueTable, name: &'static str) -> CheckResult {
    let q = queue::health(db, table).await?;
    let counts = format!(
        "{} running, {} runnable, {} failed",
        q.running, q.runnable, q.failed
    );
    let wait = q.oldest_wait_seconds.unwrap_or(0.0);
    Ok(vec![if q.expired_leases > 0 {
        Check::warn(
            name,
            format!(
                "{} running with an expired lease (worker gone?); {counts}",
                q.expired_leases
            ),
        )
    } else if wait > QUEUE_WAIT_WARNING_SECONDS {
        Check::warn(
            name,
            format!(
                "oldest runnable job waited {:.1} h: is a worker running? {counts}",
                wait / HOUR_SECONDS
            ),
        )
    } else {
        Check::ok(name, counts)
    }])
}

/// Seed 003's `jobs`.
pub(super) async fn queue_jobs(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    queue(db, queue::JOBS, "queue jobs").await
}

/// Seed 004's `ai_annotation_jobs`.
pub(super) async fn queue_ai_jobs(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    queue(db, queue::AI_ANNOTATION_JOBS, "queue ai_annotation_jobs").await
}

/// Expired entries beyond this share of a cache mean its clean-up is not running.
const EXPIRED_WARNING_SHARE: f64 = 0.10;

/// Each cache's entries, size and hit rate; `warn` when over a tenth of a cache's
/// entries (and over 100) have expired and are still there.
pub(super) async fn caches(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let stats = cache_stats(db).await?;
    Ok(stats
        .into_iter()
        .map(|s| {
            let name = s.kind.describe().check;
            let rate = s.hit_rate.map_or("no lookups".to_owned(), |r| {
                format!("hit rate {:.1}%", r * 100.0)
            });
            let entries = if s.entries == 1 { "entry" } else { "entries" };
            let hits = if s.hits == 1 { "hit" } else { "hits" };
            let text = format!(
                "{} {entries}, {}, {} {hits}, {rate}",
                s.entries,
                human_bytes(s.total_bytes),
                s.hits
            );
            match s.expired {
                Some(expired)
                    if expired > 100
                        && expired as f64 > EXPIRED_WARNING_SHARE * s.entries as f64 =>
                {
                    Check::warn(
                        name,
                        format!("{expired} expired entries not cleaned up; {text}"),
                    )
                }
                _ => Check::ok(name, text),
            }
        })
        .collect())
}

/// Enabled maintenance tasks whose last run failed, or whose next run is over an
/// hour overdue (no runner is running).
const MAINTENANCE_SQL: &str = "SELECT task, last_status AS status,
            extract(epoch FROM now() - next_run_at)::float8 AS overdue_seconds,
            coalesce(last_result ->> 'error', '') AS error
     FROM maintenance_tasks
     WHERE enabled
     ORDER BY task";

#[derive(FromQueryResult)]
struct TaskState {
    task: String,
    status: Option<String>,
    overdue_seconds: f64,
    error: String,
}

/// Maintenance: `fail` when a task's last run failed (with its error), `warn` when
/// a task is over an hour overdue (`strata maintain --every 1m` runs them).
pub(super) async fn maintenance(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let tasks = TaskState::find_by_statement(sql(MAINTENANCE_SQL))
        .all(db)
        .await?;
    let name = "maintenance";
    let failing: Vec<String> = tasks
        .iter()
        .filter(|t| t.status.as_deref() == Some("failure"))
        .map(|t| format!("{}: {}", t.task, t.error))
        .collect();
    let overdue: Vec<String> = tasks
        .iter()
        .filter(|t| t.overdue_seconds > MAINTENANCE_OVERDUE_SECONDS)
        .map(|t| {
            format!(
                "{} ({:.1} h overdue)",
                t.task,
                t.overdue_seconds / HOUR_SECONDS
            )
        })
        .collect();
    Ok(vec![if !failing.is_empty() {
        Check::fail(
            name,
            format!("{} failing: {}", failing.len(), first(&failing, 2)),
        )
        .with_details(failing)
    } else if !overdue.is_empty() {
        Check::warn(
            name,
            format!(
                "{} overdue (is `strata maintain --every 1m` running?): {}",
                overdue.len(),
                first(&overdue, 3)
            ),
        )
        .with_details(overdue)
    } else {
        Check::ok(
            name,
            format!("{} enabled tasks, none failing or overdue", tasks.len()),
        )
    }])
}
