//! `strata worker`: the built-in handlers until Ctrl-C or SIGTERM — `maintenance`
//! jobs on `jobs`, the AI annotation pipeline on `ai_annotation_jobs` (when a vision
//! provider is configured), and the maintenance schedule — then a graceful stop:
//! running jobs finish (or are given back after `--shutdown-timeout`), nothing is
//! left running.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use sea_orm::DatabaseConnection;
use serde::Serialize;
use serde_json::{Value, json};
use service::cache::CacheConfig;
use service::cache::vision::VisionCache;
use service::error::BoxError;
use service::maintenance::{self, Task};
use service::queue::worker::{JobContext, Worker, WorkerConfig, WorkerReport};
use service::queue::{self, QueueError};
use service::vision::{AnnotationPipeline, OpenAiVision, OpenAiVisionConfig};
use tokio::sync::watch;

use super::Output;
use crate::cli::WorkerArgs;

/// The built-in job type that runs maintenance: payload `{"task": NAME}` runs that
/// task now, `{}` runs what is due.
pub const MAINTENANCE_JOB: &str = "maintenance";

/// How long vision answers stay cached.
const VISION_TTL_DAYS: i64 = 30;

/// What the worker did, per queue.
#[derive(Serialize)]
struct Report {
    jobs: WorkerReport,
    ai_annotation_jobs: Option<WorkerReport>,
    maintenance_runs: usize,
}

/// The `maintenance` handler: a run that failed fails the job (recorded, and retried
/// by the queue).
async fn maintenance_job(db: DatabaseConnection, ctx: JobContext) -> Result<Value, BoxError> {
    let runner = maintenance::runner_name();
    match ctx.payload.get("task").and_then(Value::as_str) {
        Some(name) => {
            let task: Task = name.parse()?;
            let record = maintenance::run(&db, task, &runner).await?;
            super::maintain::failed(std::slice::from_ref(&record))?;
            Ok(serde_json::to_value(record)?)
        }
        None => {
            let runs = maintenance::run_due(&db, &runner).await?;
            super::maintain::failed(&runs)?;
            Ok(json!({ "runs": runs }))
        }
    }
}

/// Runs the workers and the schedule until a shutdown signal.
pub async fn run(
    db: &DatabaseConnection,
    args: WorkerArgs,
    out: &mut Output<'_>,
) -> Result<(), String> {
    let config = WorkerConfig {
        concurrency: args.concurrency,
        shutdown_timeout: args.shutdown_timeout,
        ..WorkerConfig::default()
    };
    let text = |e: QueueError| e.to_string();
    let handler_db = db.clone();
    let jobs = Worker::new(db.clone(), queue::JOBS, config.clone())
        .and_then(|w| {
            w.handle(MAINTENANCE_JOB, move |ctx| {
                maintenance_job(handler_db.clone(), ctx)
            })
        })
        .map_err(text)?;
    let (ai, vision_cache) = match OpenAiVisionConfig::from_env() {
        Ok(vision) => {
            let provider = OpenAiVision::new(vision).map_err(|e| e.to_string())?;
            let cache = VisionCache::new(
                db.clone(),
                CacheConfig::default(),
                TimeDelta::days(VISION_TTL_DAYS),
            )
            .map_err(|e| e.to_string())?;
            let cache = Arc::new(cache);
            let pipeline = AnnotationPipeline::new(db.clone(), Arc::clone(&cache), provider);
            let worker =
                Worker::new(db.clone(), queue::AI_ANNOTATION_JOBS, config).map_err(text)?;
            (Some(pipeline.register(worker).map_err(text)?), Some(cache))
        }
        Err(e) => {
            eprintln!("strata worker: annotation jobs are not worked: {e}");
            (None, None)
        }
    };
    eprintln!(
        "strata worker: {} on jobs ({MAINTENANCE_JOB}){}; maintenance every {}; Ctrl-C stops",
        jobs.id(),
        if ai.is_some() {
            " and ai_annotation_jobs"
        } else {
            ""
        },
        humantime::format_duration(args.maintain_every)
    );

    // One stop for everything: the signal, or a worker that ends on its own (it
    // could not start, or lost the database), stops the others too; every task is
    // awaited before any error is returned, so each gives its jobs back.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let run_worker = |worker: Worker| {
        let stop = stopped(stop_rx.clone());
        let stop_tx = Arc::clone(&stop_tx);
        tokio::spawn(async move {
            let report = worker.run(stop).await;
            let _ = stop_tx.send(true);
            report
        })
    };
    let jobs_task = run_worker(jobs);
    let ai_task = ai.map(run_worker);
    let schedule = tokio::spawn(schedule(
        db.clone(),
        args.maintain_every,
        stopped(stop_rx.clone()),
    ));
    let signal = {
        let stop_tx = Arc::clone(&stop_tx);
        let mut rx = stop_rx;
        tokio::spawn(async move {
            tokio::select! {
                _ = super::shutdown_signal() => {
                    eprintln!("strata worker: stopping (running jobs finish first)");
                    let _ = stop_tx.send(true);
                }
                _ = rx.wait_for(|stop| *stop) => {}
            }
        })
    };

    let join = |e: tokio::task::JoinError| format!("worker task: {e}");
    let jobs = jobs_task.await.map_err(join);
    let ai_annotation_jobs = match ai_task {
        Some(task) => Some(task.await.map_err(join)),
        None => None,
    };
    let maintenance_runs = schedule.await.map_err(join);
    signal.abort();
    // The vision cache's buffered hits and recency, written before the process ends.
    if let Some(cache) = vision_cache {
        cache.shutdown().await.map_err(|e| e.to_string())?;
    }
    let jobs = jobs?.map_err(text)?;
    let ai_annotation_jobs = match ai_annotation_jobs {
        Some(report) => Some(report?.map_err(text)?),
        None => None,
    };
    let maintenance_runs = maintenance_runs??;
    let report = Report {
        jobs,
        ai_annotation_jobs,
        maintenance_runs,
    };
    let line = |name: &str, r: &WorkerReport| {
        vec![
            name.to_owned(),
            r.completed.to_string(),
            r.failed.to_string(),
            r.released.to_string(),
            r.rescued.to_string(),
            (r.stale + r.unwritten).to_string(),
        ]
    };
    let mut rows = vec![line("jobs", &report.jobs)];
    if let Some(ai) = &report.ai_annotation_jobs {
        rows.push(line("ai_annotation_jobs", ai));
    }
    out.show(
        &report,
        &[
            "queue",
            "completed",
            "failed",
            "given back",
            "rescued",
            "stale/unwritten",
        ],
        rows,
    )
}

/// Runs what is due every `every` until `stop`; how many runs. A run in progress
/// finishes first.
async fn schedule(
    db: DatabaseConnection,
    every: Duration,
    stop: impl Future<Output = ()>,
) -> Result<usize, String> {
    if every.is_zero() {
        stop.await;
        return Ok(0);
    }
    tokio::pin!(stop);
    let runner = maintenance::runner_name();
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    let mut total = 0;
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(total),
            _ = tick.tick() => {
                match maintenance::run_due(&db, &runner).await {
                    Ok(runs) => total += runs.len(),
                    Err(e) => eprintln!("strata worker: maintenance: {e}"),
                }
            }
        }
    }
}
