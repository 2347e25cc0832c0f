//! `strata worker`: the built-in handlers until Ctrl-C or SIGTERM — `maintenance`
//! jobs on `jobs`, the AI annotation pipeline on `ai_annotation_jobs` (when a vision
//! provider is configured), and the maintenance schedule — then a graceful stop:
//! running jobs finish (or are given back after `--shutdown-timeout`), nothing is
//! left running.

use std::sync::Arc;

use chrono::TimeDelta;
use serde_json::{Value, json};
use service::cache::CacheConfig;
use service::cache::vision::VisionCache;
use service::db::Topology;
use service::error::BoxError;
use service::maintenance::{self, Task};
use service::queue;
use service::queue::worker::{JobContext, Worker, WorkerConfig};
use service::runtime::{Runtime, RuntimeConfig, ScheduleConfig};
use service::vision::{AnnotationPipeline, OpenAiVision, OpenAiVisionConfig};

use super::Output;
use crate::cli::WorkerArgs;

/// The built-in job type that runs maintenance: payload `{"task": NAME}` runs that
/// task now, `{}` runs what is due.
pub const MAINTENANCE_JOB: &str = "maintenance";

/// How long vision answers stay cached.
const VISION_TTL_DAYS: i64 = 30;

/// The `maintenance` handler: a run that failed fails the job (recorded, and retried
/// by the queue).
async fn maintenance_job(db: Topology, ctx: JobContext) -> Result<Value, BoxError> {
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

/// Runs the workers, the rescuer, the schedule and the vision cache's flusher in one
/// [`Runtime`] until a shutdown signal, then stops it and shows its report.
pub async fn run(db: &Topology, args: WorkerArgs, out: &mut Output<'_>) -> anyhow::Result<()> {
    let config = WorkerConfig {
        concurrency: args.concurrency,
        shutdown_timeout: args.shutdown_timeout,
        ..WorkerConfig::default()
    };
    let handler_db = db.clone();
    let jobs = Worker::new(db.clone(), queue::JOBS, config.clone()).and_then(|w| {
        w.handle(MAINTENANCE_JOB, move |ctx| {
            maintenance_job(handler_db.clone(), ctx)
        })
    })?;
    // The annotation pipeline, when a vision provider is configured: its worker, and
    // the vision cache whose bookkeeping the runtime flushes.
    let annotations = match OpenAiVisionConfig::from_env() {
        Ok(vision) => {
            let provider = OpenAiVision::new(vision)?;
            let cache = Arc::new(VisionCache::new(
                db.clone(),
                CacheConfig::default(),
                TimeDelta::days(VISION_TTL_DAYS),
            )?);
            let pipeline = AnnotationPipeline::new(db.clone(), Arc::clone(&cache), provider);
            let worker = Worker::new(db.clone(), queue::AI_ANNOTATION_JOBS, config)?;
            Some((pipeline.register(worker)?, cache))
        }
        Err(e) => {
            eprintln!("strata worker: annotation jobs are not worked: {e}");
            None
        }
    };
    eprintln!(
        "strata worker: {} on jobs ({MAINTENANCE_JOB}){}; maintenance every {}; Ctrl-C stops",
        jobs.id(),
        if annotations.is_some() {
            " and ai_annotation_jobs"
        } else {
            ""
        },
        humantime::format_duration(args.maintain_every)
    );
    let mut runtime = Runtime::new(db.clone(), RuntimeConfig::default()).worker(jobs);
    if let Some((worker, cache)) = annotations {
        runtime = runtime.worker(worker).flush(cache);
    }
    if !args.maintain_every.is_zero() {
        runtime = runtime.schedule(ScheduleConfig {
            every: args.maintain_every,
            ..ScheduleConfig::default()
        });
    }
    let handle = runtime.start();
    super::shutdown_signal().await;
    eprintln!("strata worker: stopping (running jobs finish first)");
    let report = handle.stop(args.shutdown_timeout).await;
    for service in report.health.iter().filter(|h| h.errors > 0) {
        eprintln!(
            "strata worker: {}: {} error{}, the last: {}",
            service.name,
            service.errors,
            if service.errors == 1 { "" } else { "s" },
            service.last_error.as_deref().unwrap_or("-")
        );
    }
    let rows = report
        .queues
        .iter()
        .map(|q| {
            let r = &q.report;
            vec![
                q.queue.to_owned(),
                r.completed.to_string(),
                r.failed.to_string(),
                r.released.to_string(),
                (r.stale + r.unwritten).to_string(),
            ]
        })
        .collect();
    out.show(
        &report,
        &[
            "queue",
            "completed",
            "failed",
            "given back",
            "stale/unwritten",
        ],
        rows,
    )?;
    if let Some(error) = report.flushes.iter().find_map(|f| f.error.as_ref()) {
        anyhow::bail!("the last flush failed: {error}");
    }
    Ok(())
}
