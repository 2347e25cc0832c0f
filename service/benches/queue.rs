//! `cargo bench -p service --bench queue`: the job queue against raw SQL, in one run.
//!
//! Database: `DATABASE_URL`'s server, else the embedded default cluster; the bench
//! uses (and recreates) its own database `strata_bench_queue`. With 20,000 no-op jobs
//! and concurrency 8 it measures, each throughput as the median of three rounds that
//! alternate the raw baseline and the service:
//! - bulk enqueue (jobs/s): `queue::enqueue` of all jobs at once, against a raw
//!   `INSERT … SELECT FROM unnest` of the same rows (ids chosen by the client,
//!   payloads sent as JSON text, as the service does);
//! - processing (jobs/s, first claim to last completion, from the jobs' own
//!   `started_at`/`completed_at`): a `Worker` with a no-op handler and a prefetch of
//!   1,000, started on the full table, against raw SQL that claims and completes in
//!   batches of 1,000 from 8 tasks (both commit claims and outcomes asynchronously,
//!   as the worker does by default); and the same `Worker` with
//!   `synchronous_commit: true`, the price of outcomes that survive a server crash;
//! - enqueue-to-start latency (p50/p90, `started_at − created_at`) of single jobs
//!   enqueued one by one with an idle worker waiting.
//!
//! Over TLS: run it with `STRATA_PG_TLS=1` (the embedded cluster) or a `DATABASE_URL`
//! with `sslmode=require`; raw SQL and the service then both run over TLS, and the
//! first line says which mode was measured. The pool is the one an application builds
//! itself (`Database::connect`, no Strata helper), and every connection is as sqlx
//! makes it (sqlx 0.9.1 sets `TCP_NODELAY`; see `docs/tls.md`).
//!
//! Through a transaction-mode PgBouncer (Debian's, started by the bench in front of
//! the same server; `DIRECT_URL` straight to it) against straight to the server,
//! both without TLS, rounds alternating: one-job enqueues from 8 tasks, and a
//! `Worker`'s claim + complete of 20,000 jobs.
//!
//! `cargo bench -p service --bench queue -- topology` measures the pooler alone.
//!
//! It ends with `enqueue_jobs_per_s=`, `process_jobs_per_s=`, `process_ratio_vs_raw=`
//! (over TLS also `tls_worker_ratio_vs_raw=`, the same ratio), `latency_ms_p50=`,
//! `pooler_ratio_enqueue=` and `pooler_ratio_claim_complete=` (through the pooler
//! against direct: what a pooler costs; no target).

mod common;

use std::time::{Duration, Instant};

use sea_orm::sqlx;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use serde_json::json;
use service::db::{DatabaseUrls, Topology};
use service::error::BoxError;
use service::queue::worker::{Worker, WorkerConfig, WorkerReport};
use service::queue::{self, JOBS, NewJob, QueueError};

const JOBS_N: usize = 50_000;
const CONCURRENCY: usize = 8;
const LATENCY_SAMPLES: usize = 200;
/// Throughputs are the median of this many rounds (this machine's runs vary by ±30 %).
const ROUNDS: usize = 5;
/// Jobs claimed ahead of free slots: batched claiming, as the fastest peers do.
const PREFETCH: usize = 1000;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = common::bench_database("strata_bench_queue").await?;
    let mut opt = ConnectOptions::new(url);
    opt.max_connections(16).sqlx_logging(false);
    let db = Database::connect(opt).await?;
    let tls = service::db::connection_encrypted(&db).await?;
    println!(
        "connections: {}",
        if tls { "TLS" } else { "plain TCP (no TLS)" }
    );

    // `-- topology`: only the pooler lines.
    if std::env::args().any(|a| a == "topology") {
        let (enqueue_ratio, process_ratio) = through_the_pooler(&db).await?;
        println!("pooler_ratio_enqueue={enqueue_ratio:.3}");
        println!("pooler_ratio_claim_complete={process_ratio:.3}");
        return Ok(());
    }

    // Bulk enqueue, ROUNDS times alternating the raw baseline and the service.
    let jobs: Vec<NewJob> = (0..JOBS_N)
        .map(|i| NewJob::new("noop", json!({"n": i})))
        .collect();
    let (mut raw_enqueue, mut enqueue) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        reset(&db).await?;
        raw_enqueue.push(time_raw_enqueue(&db).await?);
        reset(&db).await?;
        let started = Instant::now();
        queue::enqueue(&db, &jobs).await?;
        enqueue.push(JOBS_N as f64 / started.elapsed().as_secs_f64());
    }
    let (raw_enqueue, enqueue_per_s) = (common::median(raw_enqueue), common::median(enqueue));
    println!("bulk enqueue of {JOBS_N} jobs (median of {ROUNDS} rounds):");
    println!("  raw INSERT ... FROM unnest        {raw_enqueue:>9.0} jobs/s");
    println!(
        "  queue::enqueue                    {enqueue_per_s:>9.0} jobs/s  ratio {:.3}",
        enqueue_per_s / raw_enqueue
    );

    // Processing, ROUNDS times alternating the raw baseline and the worker runtime
    // (started on a full table, stopped when it is drained).
    let (mut raw_process, mut process, mut process_sync) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        reset(&db).await?;
        let raw_rows: Vec<String> = (0..JOBS_N).map(|i| format!("{{\"n\":{i}}}")).collect();
        insert_raw(&db, &raw_rows, "noop").await?;
        raw_process.push(raw_processing(&db).await?);
        for (synchronous_commit, out) in [(false, &mut process), (true, &mut process_sync)] {
            reset(&db).await?;
            queue::enqueue(&db, &jobs).await?;
            let (stop, worker) = start_worker(db.clone(), synchronous_commit)?;
            wait_until_done(&db).await?;
            let _ = stop.send(());
            worker.await??;
            out.push(JOBS_N as f64 / span_seconds(&db).await?);
        }
    }
    let (raw_process, process_per_s) = (common::median(raw_process), common::median(process));
    let process_sync = common::median(process_sync);
    println!(
        "processing {JOBS_N} no-op jobs, concurrency {CONCURRENCY} (median of {ROUNDS} rounds):"
    );
    println!("  raw batched claim + complete      {raw_process:>9.0} jobs/s");
    println!(
        "  Worker (claim, run, complete)     {process_per_s:>9.0} jobs/s  ratio {:.3}",
        process_per_s / raw_process
    );
    println!(
        "  Worker, synchronous_commit on     {process_sync:>9.0} jobs/s  ratio {:.3} (vs the default {:.3})",
        process_sync / raw_process,
        process_sync / process_per_s
    );

    // Latency: one job at a time with an idle worker waiting.
    reset(&db).await?;
    let (stop, handle) = start_worker(db.clone(), false)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..LATENCY_SAMPLES {
        queue::enqueue(&db, &[NewJob::new("noop", json!({"sample": i}))]).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_until_done(&db).await?;
    let latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 FROM jobs ORDER BY 1",
    )
    .fetch_all(db.get_postgres_connection_pool())
    .await?;
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let (p50, p90) = (pct(0.5), pct(0.9));
    println!(
        "enqueue-to-start latency, idle worker, {LATENCY_SAMPLES} jobs: p50 {p50:.2} ms  p90 {p90:.2} ms"
    );
    let _ = stop.send(());
    handle.await??;

    println!("enqueue_jobs_per_s={enqueue_per_s:.0}");
    println!("process_jobs_per_s={process_per_s:.0}");
    println!("process_ratio_vs_raw={:.3}", process_per_s / raw_process);
    if tls {
        println!("tls_worker_ratio_vs_raw={:.3}", process_per_s / raw_process);
    }
    println!("latency_ms_p50={p50:.2}");

    let (enqueue_ratio, process_ratio) = through_the_pooler(&db).await?;
    println!("pooler_ratio_enqueue={enqueue_ratio:.3}");
    println!("pooler_ratio_claim_complete={process_ratio:.3}");
    Ok(())
}

/// One-job enqueues per second from `CONCURRENCY` tasks on `topology`.
async fn single_enqueues(topology: &Topology, n: usize) -> Result<f64, BoxError> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let topology = topology.clone();
            tokio::spawn(async move {
                for i in 0..n / CONCURRENCY {
                    queue::enqueue_one(&topology, NewJob::new("noop", json!({"t": t, "i": i})))
                        .await?;
                }
                Ok::<_, QueueError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Through a transaction-mode PgBouncer against straight to the server (both plain
/// TCP), `ROUNDS` rounds alternating: single enqueues, then a worker draining
/// `JOBS_N` jobs. The medians' ratios, pooled over direct.
async fn through_the_pooler(db: &DatabaseConnection) -> Result<(f64, f64), BoxError> {
    const SINGLE: usize = 4_000;
    let name = "strata_bench_queue";
    let bouncer = tests::pgbouncer::PgBouncer::start(CONCURRENCY as u32 + 8);
    let direct_url = common::plain_tcp_url(name)?;
    let direct = Topology::connect(&DatabaseUrls::new(direct_url.clone()), 16).await?;
    let pooled = Topology::connect(
        &DatabaseUrls::new(bouncer.url(name)).with_direct(direct_url),
        16,
    )
    .await?;
    let jobs: Vec<NewJob> = (0..JOBS_N)
        .map(|i| NewJob::new("noop", json!({"n": i})))
        .collect();
    let (mut enqueue, mut process) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let topology = if side == 0 { &direct } else { &pooled };
            reset(db).await?;
            enqueue[side].push(single_enqueues(topology, SINGLE).await?);
            reset(db).await?;
            queue::enqueue(db, &jobs).await?;
            let (stop, worker) = start_worker(topology.clone(), false)?;
            wait_until_done(db).await?;
            let _ = stop.send(());
            worker.await??;
            process[side].push(JOBS_N as f64 / span_seconds(db).await?);
        }
    }
    let [enqueue_direct, enqueue_pooled] = enqueue.map(common::median);
    let [process_direct, process_pooled] = process.map(common::median);
    println!(
        "through PgBouncer (transaction mode) against direct, plain TCP (median of {ROUNDS}):"
    );
    println!(
        "  one-job enqueues, {CONCURRENCY} tasks   direct {enqueue_direct:>9.0}/s  pooled {enqueue_pooled:>9.0}/s"
    );
    println!(
        "  Worker claim + complete        direct {process_direct:>9.0}/s  pooled {process_pooled:>9.0}/s"
    );
    pooled.close().await;
    direct.close().await;
    Ok((
        enqueue_pooled / enqueue_direct,
        process_pooled / process_direct,
    ))
}

/// A worker with a no-op handler for "noop", running until the sender fires.
#[allow(clippy::type_complexity)]
fn start_worker(
    db: impl Into<Topology>,
    synchronous_commit: bool,
) -> Result<
    (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<WorkerReport, QueueError>>,
    ),
    BoxError,
> {
    let worker = Worker::new(
        db,
        JOBS,
        WorkerConfig {
            concurrency: CONCURRENCY,
            prefetch: PREFETCH,
            synchronous_commit,
            ..WorkerConfig::default()
        },
    )?
    .handle("noop", |_| async {
        Ok::<_, BoxError>(serde_json::Value::Null)
    })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    Ok((stop, handle))
}

async fn reset(db: &DatabaseConnection) -> Result<(), BoxError> {
    db.execute_unprepared("TRUNCATE jobs").await?;
    Ok(())
}

async fn insert_raw(
    db: &DatabaseConnection,
    payloads: &[String],
    job_type: &str,
) -> Result<(), BoxError> {
    // Time-ordered ids chosen by the client, as `queue::enqueue` does.
    let ids: Vec<uuid::Uuid> = payloads.iter().map(|_| uuid::Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO jobs (id, job_type, payload)
         SELECT i, $2, p::jsonb FROM unnest($1::uuid[], $3::text[]) AS u(i, p)",
    )
    .bind(ids)
    .bind(job_type)
    .bind(payloads)
    .execute(db.get_postgres_connection_pool())
    .await?;
    Ok(())
}

async fn time_raw_enqueue(db: &DatabaseConnection) -> Result<f64, BoxError> {
    let payloads: Vec<String> = (0..JOBS_N).map(|i| format!("{{\"n\":{i}}}")).collect();
    let started = Instant::now();
    insert_raw(db, &payloads, "noop").await?;
    Ok(JOBS_N as f64 / started.elapsed().as_secs_f64())
}

async fn wait_until_done(db: &DatabaseConnection) -> Result<(), BoxError> {
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status <> 'completed'")
            .fetch_one(db.get_postgres_connection_pool())
            .await?;
        if left == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// First claim to last completion, from the rows themselves.
async fn span_seconds(db: &DatabaseConnection) -> Result<f64, BoxError> {
    let span: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(completed_at) - min(started_at))::float8 FROM jobs",
    )
    .fetch_one(db.get_postgres_connection_pool())
    .await?;
    Ok(span.max(1e-6))
}

/// 8 tasks claim 1,000 jobs and complete them, each in one statement, until none is
/// left: the ceiling of two batched row writes per job.
async fn raw_processing(db: &DatabaseConnection) -> Result<f64, BoxError> {
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let options = db.get_postgres_connection_pool().connect_options();
            tokio::spawn(async move {
                use sqlx::Connection;
                // Like the worker's own connections: asynchronous commit.
                let mut conn = sqlx::PgConnection::connect_with(&options).await?;
                sqlx::query("SET synchronous_commit = off")
                    .execute(&mut conn)
                    .await?;
                loop {
                    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
                        "WITH picked AS (
                             SELECT id FROM jobs WHERE status = 'pending' AND run_at <= now()
                             ORDER BY priority DESC, run_at LIMIT 1000 FOR UPDATE SKIP LOCKED)
                         UPDATE jobs j SET status = 'running', attempts = j.attempts + 1,
                                locked_by = 'raw', locked_until = now() + interval '30 seconds',
                                started_at = now(), updated_at = now()
                         FROM picked WHERE j.id = picked.id RETURNING j.id",
                    )
                    .fetch_all(&mut conn)
                    .await?;
                    if ids.is_empty() {
                        return Ok::<_, sqlx::Error>(());
                    }
                    sqlx::query(
                        "UPDATE jobs SET status = 'completed', locked_by = NULL, locked_until = NULL,
                                completed_at = now(), updated_at = now()
                         WHERE id = ANY($1)",
                    )
                    .bind(&ids)
                    .execute(&mut conn)
                    .await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    span_seconds(db).await.map(|s| JOBS_N as f64 / s)
}
