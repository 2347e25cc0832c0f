//! `strata-test-worker URL MODE CONCURRENCY LEASE_MS [PREFETCH]`: a process running a
//! queue worker in a `Runtime` (so with the lease rescuer) for the tests.
//! - `drain`: handles `record` jobs by inserting the job id into `job_runs` (whose
//!   primary key catches a second run), and stops once no job is pending or running.
//! - `hang`: handles `slow` jobs by printing `started <id>` and never finishing (the
//!   test kills the process).

use std::process::ExitCode;
use std::time::Duration;

use sea_orm::sqlx;
use service::queue::worker::{Worker, WorkerConfig};
use service::runtime::{RescuerConfig, Runtime, RuntimeConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (url, mode, concurrency, lease_ms, prefetch) = match args.as_slice() {
        [_, url, mode, c, l] => (url, mode, c, l, "0"),
        [_, url, mode, c, l, p] => (url, mode, c, l, p.as_str()),
        _ => {
            eprintln!("usage: strata-test-worker URL drain|hang CONCURRENCY LEASE_MS [PREFETCH]");
            return ExitCode::FAILURE;
        }
    };
    let Ok(prefetch) = prefetch.parse::<usize>() else {
        eprintln!("PREFETCH is a number");
        return ExitCode::FAILURE;
    };
    let (Ok(concurrency), Ok(lease_ms)) = (concurrency.parse::<usize>(), lease_ms.parse::<u64>())
    else {
        eprintln!("CONCURRENCY and LEASE_MS are numbers");
        return ExitCode::FAILURE;
    };
    match run(url, mode, concurrency, lease_ms, prefetch).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    url: &str,
    mode: &str,
    concurrency: usize,
    lease_ms: u64,
    prefetch: usize,
) -> Result<(), service::error::BoxError> {
    let db = service::db::connect(url, concurrency as u32 + 4).await?;
    let lease = Duration::from_millis(lease_ms);
    let config = WorkerConfig {
        concurrency,
        lease,
        heartbeat_interval: lease / 3,
        poll_interval: Duration::from_millis(200),
        prefetch,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(db.clone(), service::queue::JOBS, config)?;
    let runtime = |worker| {
        let config = RuntimeConfig {
            rescuer: Some(RescuerConfig {
                interval: lease / 2,
                ..RescuerConfig::default()
            }),
            schedule: None,
        };
        Runtime::new(db.clone(), config).worker(worker).start()
    };
    let handle = match mode {
        "drain" => {
            let pool = db.get_postgres_connection_pool().clone();
            let worker = worker.handle("record", move |ctx| {
                let pool = pool.clone();
                async move {
                    sqlx::query("INSERT INTO job_runs (job_id, worker_pid) VALUES ($1, $2)")
                        .bind(ctx.id)
                        .bind(std::process::id() as i32)
                        .execute(&pool)
                        .await?;
                    Ok(serde_json::json!({"ran": true}))
                }
            })?;
            let handle = runtime(worker);
            let pool = db.get_postgres_connection_pool();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let left: Result<i64, _> = sqlx::query_scalar(
                    "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')",
                )
                .fetch_one(pool)
                .await;
                if matches!(left, Ok(0)) {
                    break handle;
                }
            }
        }
        "hang" => {
            let worker = worker.handle("slow", |ctx| async move {
                println!("started {}", ctx.id);
                std::future::pending::<()>().await;
                Ok(serde_json::Value::Null)
            })?;
            // Runs until the test kills the process.
            let _handle = runtime(worker);
            std::future::pending::<()>().await;
            return Ok(());
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    };
    let report = handle.stop(WorkerConfig::default().shutdown_timeout).await;
    let queue = report
        .queues
        .first()
        .ok_or("the worker did not report")?
        .report;
    println!(
        "report {} {} {} {} {}",
        queue.completed, queue.failed, queue.released, queue.stale, queue.unwritten
    );
    Ok(())
}
