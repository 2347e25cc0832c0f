//! The seeds' maintenance tasks, one function each, on any connection (so a runner
//! runs each inside the transaction that records it).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{Duration as TimeDelta, Utc};
use entity::{ai_cache_stats, maintenance_runs};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, Statement,
};
use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use super::MaintenanceError;
use crate::cache::{self, CACHES, CacheAction, CacheKind, CacheTask, pdf};
use crate::error::InvalidInput;
use crate::queue::{self, AI_ANNOTATION_JOBS, JOBS};
use crate::{audit, store};

/// A maintenance task of the seeds' schedules. The caches' tasks come from the cache
/// registry ([`crate::cache::CACHES`]): each cache lists its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// Seed 000, hourly: refresh `layer0_stats` (concurrently).
    RefreshPdfStats,
    /// Seed 004, monthly: refresh `cache_performance_metrics` (concurrently).
    RefreshCacheMetrics,
    /// A cache's task: expiry, LRU eviction or retention (see [`CacheAction`]).
    Cache(&'static CacheTask),
    /// Seed 001, monthly: delete `ai_cache_stats` days older than `days` (90).
    AiCacheStatsRetention,
    /// Daily: delete both queues' jobs finished more than `days` (7) ago.
    JobRetention,
    /// Seed 003, daily: delete audit events older than `days` (90).
    AuditLogRetention,
    /// Daily: delete finished runs of these tasks older than `days` (90).
    MaintenanceRunRetention,
    /// Seeds 001, 003, 004, weekly: `ANALYZE` of the seeds' tables.
    AnalyzeTables,
    /// Seed 003, daily: the vector index's health (no change; the report says what to
    /// do).
    VectorIndexHealth,
}

/// The tasks that are not a cache's, in the order [`Task::all`] lists them.
const OWN_TASKS: [Task; 8] = [
    Task::RefreshPdfStats,
    Task::RefreshCacheMetrics,
    Task::AiCacheStatsRetention,
    Task::JobRetention,
    Task::AuditLogRetention,
    Task::MaintenanceRunRetention,
    Task::AnalyzeTables,
    Task::VectorIndexHealth,
];

impl Task {
    /// Every task: this module's, then each cache's.
    pub fn all() -> Vec<Task> {
        let caches = CACHES
            .iter()
            .flat_map(|kind| kind.describe().tasks.iter().map(Task::Cache));
        OWN_TASKS.into_iter().chain(caches).collect()
    }

    /// The task's name in `maintenance_tasks`.
    pub fn name(self) -> &'static str {
        match self {
            Task::RefreshPdfStats => "refresh_layer0_stats",
            Task::RefreshCacheMetrics => "refresh_cache_metrics",
            Task::Cache(task) => task.name,
            Task::AiCacheStatsRetention => "ai_cache_stats_retention",
            Task::JobRetention => "job_retention",
            Task::AuditLogRetention => "audit_log_retention",
            Task::MaintenanceRunRetention => "maintenance_run_retention",
            Task::AnalyzeTables => "analyze_tables",
            Task::VectorIndexHealth => "vector_index_health",
        }
    }

    /// Whether the task commits as it goes when run on a connection (job retention's
    /// batches of 1,000 deletes; `ANALYZE`, table by table), so the runner runs it
    /// outside the transaction that records it: no long transaction holds its locks.
    pub fn commits_as_it_goes(self) -> bool {
        matches!(self, Task::JobRetention | Task::AnalyzeTables)
    }

    /// Runs the task on `db` with its `parameters` (a JSON object; absent keys take
    /// the defaults above), timing it. A parameter of the wrong type or range is
    /// [`MaintenanceError::Invalid`].
    pub async fn run<C: ConnectionTrait>(
        self,
        db: &C,
        parameters: &Value,
    ) -> Result<TaskReport, MaintenanceError> {
        let started = Instant::now();
        let (rows_affected, details) = match self {
            Task::RefreshPdfStats => {
                pdf::refresh_pdf_stats(db).await?;
                (0, json!({}))
            }
            Task::RefreshCacheMetrics => {
                db.execute_unprepared(REFRESH_CACHE_METRICS_SQL).await?;
                (0, json!({}))
            }
            Task::Cache(task) => cache_task(db, task, parameters).await?,
            Task::AiCacheStatsRetention => {
                let days = days(parameters, 90)?;
                let done = ai_cache_stats::Entity::delete_many()
                    .filter(
                        ai_cache_stats::Column::Date
                            .lt(Utc::now().date_naive() - TimeDelta::days(days)),
                    )
                    .exec(db)
                    .await?;
                (done.rows_affected, json!({"days": days}))
            }
            Task::JobRetention => job_retention(db, parameters).await?,
            Task::AuditLogRetention => {
                let days = days(parameters, 90)?;
                let gone = audit::cleanup_old_logs(db, days as u32).await?;
                (gone, json!({"days": days}))
            }
            Task::MaintenanceRunRetention => {
                let days = days(parameters, 90)?;
                let done = maintenance_runs::Entity::delete_many()
                    .filter(maintenance_runs::Column::Status.ne("running"))
                    .filter(
                        maintenance_runs::Column::StartedAt.lt(Utc::now() - TimeDelta::days(days)),
                    )
                    .exec(db)
                    .await?;
                (done.rows_affected, json!({"days": days}))
            }
            Task::AnalyzeTables => {
                let not_owned = NotOwned::find_by_statement(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    NOT_OWNED_SQL,
                    [ANALYZED_TABLES.map(str::to_owned).to_vec().into()],
                ))
                .one(db)
                .await?;
                if let Some(n) = not_owned.filter(|n| !n.tables.is_empty()) {
                    return Err(MaintenanceError::NotOwner {
                        task: self.name(),
                        role: n.role,
                        tables: n.tables,
                    });
                }
                db.execute_unprepared(ANALYZE_SQL).await?;
                (0, json!({"tables": ANALYZED_TABLES}))
            }
            Task::VectorIndexHealth => {
                let health = store::index_health(db).await?;
                let details = serde_json::to_value(&health)
                    .unwrap_or_else(|e| json!({"error": e.to_string()}));
                (0, details)
            }
        };
        Ok(TaskReport {
            task: self,
            rows_affected,
            duration: started.elapsed(),
            details,
        })
    }
}

/// A cache's task, as its [`CacheAction`] says: rows gone, and the parameters used.
async fn cache_task<C: ConnectionTrait>(
    db: &C,
    task: &CacheTask,
    parameters: &Value,
) -> Result<(u64, Value), MaintenanceError> {
    let kind: CacheKind = task.kind()?;
    Ok(match task.action {
        CacheAction::DeleteExpired => (cache::delete_expired(db, kind).await?, json!({})),
        CacheAction::KeepRecent { default_max } => {
            let max = parameter(parameters, "max_entries", default_max)?;
            let max = i32::try_from(max)
                .map_err(|_| InvalidInput::new("max_entries", max, "at most 2147483647"))?;
            (
                cache::keep_recent(db, kind, max).await?,
                json!({"max_entries": max}),
            )
        }
        CacheAction::Retention {
            column,
            default_days,
        } => {
            let days = days(parameters, default_days)?;
            (
                cache::delete_older_than(db, kind, column, days).await?,
                json!({"days": days}),
            )
        }
    })
}

/// Both queues' jobs finished more than `days` ago, deleted in batches that commit as
/// they go.
async fn job_retention<C: ConnectionTrait>(
    db: &C,
    parameters: &Value,
) -> Result<(u64, Value), MaintenanceError> {
    let days = days(parameters, 7)?;
    let retention = Duration::from_secs(days as u64 * 86_400);
    let jobs = queue::delete_finished(db, JOBS, retention, RETENTION_BATCH).await?;
    let ai = queue::delete_finished(db, AI_ANNOTATION_JOBS, retention, RETENTION_BATCH).await?;
    Ok((
        jobs + ai,
        json!({"days": days, "jobs": jobs, "ai_annotation_jobs": ai}),
    ))
}

impl Serialize for Task {
    /// As its name.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = MaintenanceError;

    /// The task of this name; [`MaintenanceError::UnknownTask`] otherwise.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Task::all()
            .into_iter()
            .find(|t| t.name() == s.trim())
            .ok_or_else(|| MaintenanceError::UnknownTask(s.to_owned()))
    }
}

/// What a task did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskReport {
    /// The task.
    pub task: Task,
    /// Rows it deleted or changed (0 for refreshes, `ANALYZE` and checks).
    pub rows_affected: u64,
    /// How long it took.
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// What else it says (its parameters, per-queue counts, the index's health).
    pub details: Value,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Rows per statement of the job retention's deletes.
const RETENTION_BATCH: i64 = 1000;

/// Seed 004's `refresh_cache_metrics()`: `REFRESH MATERIALIZED VIEW CONCURRENTLY
/// cache_performance_metrics`.
const REFRESH_CACHE_METRICS_SQL: &str = "SELECT refresh_cache_metrics()";

/// The seeds' tables that `ANALYZE` refreshes.
const ANALYZED_TABLES: [&str; 18] = [
    "pdf_cache",
    "layer0_cost_tracking",
    "ai_response_cache",
    "lecture_content_hashes",
    "ai_cache_stats",
    "documents",
    "document_chunks",
    "jobs",
    "audit_logs",
    "search_logs",
    "users",
    "images",
    "annotations",
    "ai_annotation_jobs",
    "vision_api_cache",
    "batch_jobs",
    "batch_job_errors",
    "exercise_cache",
];

/// The session's role and which of $1 it cannot `ANALYZE` (it is not their owner or
/// a member of the owner's role): the server would skip those with only a warning.
const NOT_OWNED_SQL: &str = "SELECT current_user::text AS role,
        COALESCE(array_agg(c.relname::text ORDER BY c.relname)
                 FILTER (WHERE NOT pg_has_role(c.relowner, 'USAGE')), '{}') AS tables
     FROM pg_class c WHERE c.oid = ANY(SELECT to_regclass(t) FROM unnest($1::text[]) t)";

/// [`NOT_OWNED_SQL`]'s row.
#[derive(FromQueryResult)]
struct NotOwned {
    role: String,
    tables: Vec<String>,
}

/// `ANALYZE` of [`ANALYZED_TABLES`] in one statement: a utility command SeaORM cannot
/// say.
const ANALYZE_SQL: &str = "ANALYZE pdf_cache, layer0_cost_tracking, ai_response_cache,
    lecture_content_hashes, ai_cache_stats, documents, document_chunks, jobs, audit_logs,
    search_logs, users, images, annotations, ai_annotation_jobs, vision_api_cache, batch_jobs,
    batch_job_errors, exercise_cache";

/// A non-negative integer parameter, or `default` when absent.
fn parameter(parameters: &Value, key: &'static str, default: u64) -> Result<u64, MaintenanceError> {
    match parameters.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| InvalidInput::new(key, v, "a whole number, 0 or more").into()),
    }
}

/// The `days` parameter: 1 to 36,500, or `default`.
fn days(parameters: &Value, default: u64) -> Result<i64, MaintenanceError> {
    let days = parameter(parameters, "days", default)?;
    if !(1..=36_500).contains(&days) {
        return Err(InvalidInput::new("days", days, "1 to 36500 days").into());
    }
    Ok(days as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_round_trip_and_the_analyze_list_matches_its_statement() {
        for task in Task::all() {
            assert_eq!(task.name().parse::<Task>().expect("known"), task);
        }
        assert!(matches!(
            "vacuum".parse::<Task>(),
            Err(MaintenanceError::UnknownTask(_))
        ));
        let listed: Vec<&str> = ANALYZE_SQL
            .trim_start_matches("ANALYZE")
            .split(',')
            .map(str::trim)
            .collect();
        assert_eq!(listed, ANALYZED_TABLES);
    }

    #[test]
    fn parameters_take_defaults_and_refuse_bad_values() {
        assert_eq!(days(&json!({}), 90).expect("default"), 90);
        assert_eq!(days(&json!({"days": 3}), 90).expect("given"), 3);
        assert!(days(&json!({"days": 0}), 90).is_err());
        assert!(days(&json!({"days": "ten"}), 90).is_err());
        assert!(parameter(&json!({"max_entries": -1}), "max_entries", 1).is_err());
    }
}
