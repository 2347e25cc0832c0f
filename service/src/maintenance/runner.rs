//! Running what is due, exactly once however many runners race: each due run is
//! claimed by one compare-and-set of the task's `next_run_at` together with the insert
//! of its `maintenance_runs` row (unique per task and scheduled time), then run in a
//! transaction that also records its outcome and audit row.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use entity::{maintenance_runs, maintenance_tasks};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, Set, Statement, TransactionSession, TransactionTrait, Unchanged,
};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::schedule::{self, Schedule};
use super::{MaintenanceError, Task, TaskReport};
use crate::audit::{self, AuditEvent, Outcome};

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    /// The task ran; its report.
    Success(TaskReport),
    /// The task failed; nothing it did was kept.
    Failure {
        /// What went wrong.
        error: String,
    },
}

/// One run of a task, as recorded in `maintenance_runs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// The run's row.
    pub id: Uuid,
    /// The task.
    pub task: Task,
    /// The time it was due (or started, for [`run`]).
    pub scheduled_for: DateTime<Utc>,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: RunOutcome,
}

/// A name for this process as a runner: host and process id.
pub fn runner_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}/{}", std::process::id())
}

/// Claims the run of task `$1` due at `$2` for runner `$4`, moving its next run to
/// `$3`: the UPDATE matches only while `next_run_at` is still `$2` (a runner that
/// waited for another's claim re-reads the row and matches nothing), and the run's
/// row is unique per (task, time). A data-modifying CTE with ON CONFLICT: SeaORM's
/// builder cannot say it.
const CLAIM_SQL: &str = "WITH claimed AS (
         UPDATE maintenance_tasks SET next_run_at = $3, last_run_at = now(), updated_at = now()
         WHERE task = $1 AND enabled AND next_run_at = $2
         RETURNING task
     )
     INSERT INTO maintenance_runs (task, scheduled_for, runner)
     SELECT task, $2, $4 FROM claimed
     ON CONFLICT (task, scheduled_for) DO NOTHING
     RETURNING id";

#[derive(FromQueryResult)]
struct Claimed {
    id: Uuid,
}

/// Runs every enabled task whose `next_run_at` has come, once: each is claimed (one
/// statement; a run another runner claimed is skipped), its next run set to the
/// schedule's first time after now — so runs missed while nothing ran happen once,
/// not once per missed tick — then run in its own transaction with its record and
/// audit row. A failing task is recorded as failed (its changes rolled back) and the
/// others still run. A claimed run is not repeated: if its runner dies before
/// recording it, a later `run_due` marks it failed after [`STALE_RUN`] and the task
/// runs at its next time (at most once per scheduled time, never twice). Returns the
/// runs this runner made, in due order. Round trips: the stale-run update, one read,
/// then per due task a claim, and begin, the task, two record writes, the audit row,
/// commit.
pub async fn run_due<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    runner: &str,
) -> Result<Vec<RunRecord>, MaintenanceError> {
    abandon_stale_runs(db).await?;
    let due = maintenance_tasks::Entity::find()
        .filter(maintenance_tasks::Column::Enabled.eq(true))
        .filter(Expr::col(maintenance_tasks::Column::NextRunAt).lte(Expr::current_timestamp()))
        .order_by_asc(maintenance_tasks::Column::NextRunAt)
        .all(db)
        .await?;
    let mut runs = Vec::with_capacity(due.len());
    for row in due {
        let scheduled_for = row.next_run_at.with_timezone(&Utc);
        let schedule = Schedule::parse(&row.schedule);
        // A schedule that cannot be read is retried daily, its runs failing.
        // After now and after the time it was due, so a clock behind the database's
        // cannot make the next run the same one.
        let after = std::cmp::max(Utc::now(), scheduled_for);
        let next = schedule
            .as_ref()
            .ok()
            .and_then(|s| s.next_after(after).ok())
            .unwrap_or_else(|| after + TimeDelta::days(1));
        let claimed = Claimed::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            CLAIM_SQL,
            [
                row.task.clone().into(),
                row.next_run_at.into(),
                sea_orm::prelude::DateTimeWithTimeZone::from(next).into(),
                runner.into(),
            ],
        ))
        .one(db)
        .await?;
        let Some(Claimed { id }) = claimed else {
            continue;
        };
        let task = row.task.parse::<Task>();
        let refused = match (&task, &schedule) {
            (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
            _ => None,
        };
        let outcome = match (&task, refused) {
            (Ok(task), None) => execute(db, id, *task, &row.parameters, runner).await,
            (_, error) => {
                let error = error.unwrap_or_default();
                record_failure(db, id, &row.task, &error, runner)
                    .await
                    .map(|()| RunOutcome::Failure { error })
            }
        };
        // A run whose record could not be written stays `running` until
        // `abandon_stale_runs` ends it; the other due tasks still run.
        let outcome = outcome.unwrap_or_else(|e| RunOutcome::Failure {
            error: format!("recording the run failed: {e}"),
        });
        if let Ok(task) = task {
            runs.push(RunRecord {
                id,
                task,
                scheduled_for,
                outcome,
            });
        }
    }
    Ok(runs)
}

/// How long a run may stay `running` before [`run_due`] counts its runner as gone.
pub const STALE_RUN: TimeDelta = TimeDelta::hours(6);

/// Ends as failed the runs still `running` after [`STALE_RUN`]: their runner crashed
/// or lost the database before recording them (the schedule already moved on, so
/// the task runs at its next time). One UPDATE through the entity.
async fn abandon_stale_runs<C: ConnectionTrait>(db: &C) -> Result<u64, MaintenanceError> {
    let done = maintenance_runs::Entity::update_many()
        .col_expr(maintenance_runs::Column::Status, Expr::value("failure"))
        .col_expr(
            maintenance_runs::Column::FinishedAt,
            Expr::current_timestamp(),
        )
        .col_expr(
            maintenance_runs::Column::Error,
            Expr::value("abandoned: its runner stopped before recording it"),
        )
        .filter(maintenance_runs::Column::Status.eq("running"))
        .filter(maintenance_runs::Column::StartedAt.lt(Utc::now() - STALE_RUN))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}

/// Runs `task` now, whatever its schedule (which it leaves alone), recorded and
/// audited as a run due now. Round trips: a read of its parameters, the run's row,
/// then as for each run of [`run_due`].
pub async fn run<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    task: Task,
    runner: &str,
) -> Result<RunRecord, MaintenanceError> {
    let row = schedule::find(db, task).await?;
    let now = Utc::now();
    let run = maintenance_runs::ActiveModel {
        id: Set(Uuid::now_v7()),
        task: Set(task.name().to_owned()),
        scheduled_for: Set(now.into()),
        runner: Set(runner.to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let outcome = execute(db, run.id, task, &row.parameters, runner).await?;
    Ok(RunRecord {
        id: run.id,
        task,
        scheduled_for: now,
        outcome,
    })
}

/// Runs `task` in a transaction that also records the run and its audit row; on
/// failure rolls it back and records the failure in another. A task that commits as
/// it goes ([`Task::commits_as_it_goes`]) runs outside it, and its record follows.
async fn execute<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    run: Uuid,
    task: Task,
    parameters: &Value,
    runner: &str,
) -> Result<RunOutcome, MaintenanceError> {
    let ran = if task.commits_as_it_goes() {
        task.run(db, parameters).await.map(|report| (report, None))
    } else {
        let txn = db.begin().await?;
        match task.run(&txn, parameters).await {
            Ok(report) => Ok((report, Some(txn))),
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    };
    match ran {
        Ok((report, txn)) => {
            let txn = match txn {
                Some(txn) => txn,
                None => db.begin().await?,
            };
            record_success(&txn, run, task, &report, runner).await?;
            txn.commit().await?;
            Ok(RunOutcome::Success(report))
        }
        Err(e) => {
            let error = e.to_string();
            record_failure(db, run, task.name(), &error, runner).await?;
            Ok(RunOutcome::Failure { error })
        }
    }
}

/// Records run `run` of `task` as a success with `report`, and its audit row, on
/// `txn`.
async fn record_success<C: ConnectionTrait>(
    txn: &C,
    run: Uuid,
    task: Task,
    report: &TaskReport,
    runner: &str,
) -> Result<(), MaintenanceError> {
    let result = serde_json::to_value(report).unwrap_or(Value::Null);
    maintenance_runs::ActiveModel {
        id: Unchanged(run),
        status: Set("success".to_owned()),
        finished_at: Set(Some(Utc::now().into())),
        rows_affected: Set(Some(report.rows_affected as i64)),
        duration_ms: Set(Some(report.duration.as_millis() as i64)),
        details: Set(report.details.clone()),
        ..Default::default()
    }
    .update(txn)
    .await?;
    set_last(txn, task.name(), "success", &result).await?;
    audit::record(
        txn,
        &event(
            task.name(),
            runner,
            json!({
                "rows_affected": report.rows_affected,
                "duration_ms": report.duration.as_millis() as u64,
            }),
        ),
    )
    .await?;
    Ok(())
}

/// Records run `run` of `task` as failed with `error`, with its audit row, in one
/// transaction.
async fn record_failure<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    run: Uuid,
    task: &str,
    error: &str,
    runner: &str,
) -> Result<(), MaintenanceError> {
    let txn = db.begin().await?;
    maintenance_runs::ActiveModel {
        id: Unchanged(run),
        status: Set("failure".to_owned()),
        finished_at: Set(Some(Utc::now().into())),
        error: Set(Some(error.to_owned())),
        ..Default::default()
    }
    .update(&txn)
    .await?;
    set_last(&txn, task, "failure", &json!({"error": error})).await?;
    audit::record(
        &txn,
        &event(task, runner, json!({"error": error})).outcome(Outcome::Failure),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Sets `task`'s last status and result. One round trip through the entity.
async fn set_last<C: ConnectionTrait>(
    db: &C,
    task: &str,
    status: &str,
    result: &Value,
) -> Result<(), MaintenanceError> {
    maintenance_tasks::Entity::update_many()
        .col_expr(maintenance_tasks::Column::LastStatus, Expr::value(status))
        .col_expr(
            maintenance_tasks::Column::LastResult,
            Expr::value(result.clone()),
        )
        .col_expr(
            maintenance_tasks::Column::UpdatedAt,
            Expr::current_timestamp(),
        )
        .filter(maintenance_tasks::Column::Task.eq(task))
        .exec(db)
        .await?;
    Ok(())
}

/// The audit event of a maintenance run: `details` with the runner's name added.
fn event(task: &str, runner: &str, mut details: Value) -> AuditEvent {
    details["runner"] = json!(runner);
    AuditEvent::new("maintenance.run")
        .resource("maintenance_tasks", task)
        .action("run")
        .details(details)
}
