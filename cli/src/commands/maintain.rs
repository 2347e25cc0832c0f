//! `strata maintain`: run what is due (once, or every interval until Ctrl-C), run one
//! task now, list the schedule.

use std::time::Duration;

use std::sync::Arc;

use service::db::Topology;
use service::maintenance::{self, RunOutcome, RunRecord, Task};
use service::runtime::{Runtime, RuntimeConfig, ScheduleConfig};

use super::Output;
use super::output::or_dash;
use crate::cli::{MaintainArgs, MaintainCommand};

/// Runs `strata maintain …`.
pub async fn run(db: &Topology, args: MaintainArgs, out: &mut Output<'_>) -> anyhow::Result<()> {
    let runner = maintenance::runner_name();
    match args.command {
        Some(MaintainCommand::Run { task }) => {
            let task: Task = task.parse()?;
            let record = maintenance::run(db, task, &runner).await?;
            show_runs(out, std::slice::from_ref(&record))?;
            failed(&[record])
        }
        Some(MaintainCommand::List) => list(db, out).await,
        None => match args.every {
            None => {
                let runs = maintenance::run_due(db, &runner).await?;
                show_runs(out, &runs)?;
                failed(&runs)
            }
            Some(every) => every_until_interrupted(db, &runner, every, out).await,
        },
    }
}

/// Runs what is due every `every` until Ctrl-C (SIGINT) or SIGTERM, then returns: a
/// [`Runtime`] with the schedule alone, whose runs are shown as they happen. A run in
/// progress finishes first.
async fn every_until_interrupted(
    db: &Topology,
    runner: &str,
    every: Duration,
    out: &mut Output<'_>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<RunRecord>>();
    let schedule = ScheduleConfig {
        every,
        runner: runner.to_owned(),
        on_runs: Some(Arc::new(move |runs: &[RunRecord]| {
            let _ = tx.send(runs.to_vec());
        })),
    };
    let config = RuntimeConfig {
        rescuer: None,
        schedule: Some(schedule),
    };
    let runtime = Runtime::new(db.clone(), config).start();
    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(runs) = rx.recv() => show_runs(out, &runs)?,
        }
    }
    let report = runtime.stop(Duration::from_secs(60)).await;
    while let Ok(runs) = rx.try_recv() {
        show_runs(out, &runs)?;
    }
    if let Some(error) = report.health.iter().find_map(|h| h.last_error.as_ref()) {
        eprintln!("strata maintain: the last error: {error}");
    }
    Ok(())
}

/// An error when any run failed, so the exit status says so.
pub(super) fn failed(runs: &[RunRecord]) -> anyhow::Result<()> {
    let failures: Vec<String> = runs
        .iter()
        .filter_map(|r| match &r.outcome {
            RunOutcome::Failure { error } => Some(format!("{}: {error}", r.task)),
            RunOutcome::Success(_) => None,
        })
        .collect();
    if !failures.is_empty() {
        anyhow::bail!("{} task(s) failed: {}", failures.len(), failures.join("; "));
    }
    Ok(())
}

fn show_runs(out: &mut Output<'_>, runs: &[RunRecord]) -> anyhow::Result<()> {
    let rows = runs
        .iter()
        .map(|r| match &r.outcome {
            RunOutcome::Success(report) => vec![
                r.task.to_string(),
                "success".into(),
                report.rows_affected.to_string(),
                format!("{:.1}", report.duration.as_secs_f64() * 1000.0),
                String::new(),
            ],
            RunOutcome::Failure { error } => vec![
                r.task.to_string(),
                "failure".into(),
                "-".into(),
                "-".into(),
                error.clone(),
            ],
        })
        .collect();
    out.show(&runs, &["task", "status", "rows", "ms", "error"], rows)
}

async fn list(db: &Topology, out: &mut Output<'_>) -> anyhow::Result<()> {
    let tasks = maintenance::list(db).await?;
    let rows = tasks
        .iter()
        .map(|t| {
            vec![
                t.task.clone(),
                t.schedule.clone(),
                if t.enabled { "yes" } else { "no" }.into(),
                or_dash(t.last_run_at.map(|d| d.format("%F %T").to_string())),
                or_dash(t.last_status.clone()),
                t.next_run_at.format("%F %T").to_string(),
            ]
        })
        .collect();
    out.show(
        &tasks,
        &[
            "task",
            "schedule",
            "enabled",
            "last run",
            "last status",
            "next run",
        ],
        rows,
    )
}
