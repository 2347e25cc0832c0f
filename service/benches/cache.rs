//! `cargo bench -p service --bench cache`: the cache's hit and miss paths against a
//! raw-SQL baseline measured in the same run, on the same pool.
//!
//! Database: `DATABASE_URL`'s server, else the embedded default cluster; the bench
//! uses (and recreates) its own database `strata_bench`. It fills `pdf_cache` with
//! 100,000 entries of ~2 KB (zstd-compressed, as the service stores them), then for 1
//! and 8 concurrent tasks measures, in three (1 task) or five (8 tasks) interleaved
//! rounds (medians reported):
//! - hits: `PdfCache::get` with bookkeeping on and off, against the same
//!   primary-key `SELECT` (the service's statement) issued directly with sqlx. The
//!   three run back to back, their order rotating by round, each after a `VACUUM` of
//!   the table, so none pays for the dead row versions of another. Keys are
//!   uniformly random, the worst case for bookkeeping (nearly every entry hit in a
//!   flush interval is a row to rewrite). With bookkeeping on, the default
//!   configuration's cache runs one flush interval before the measured window, and
//!   the window is one flush interval long: it holds exactly one flush, of one
//!   interval's hits — the steady state. Raw and off are measured over windows as
//!   long;
//! - miss-and-store: `get_or_compute` on new keys, against a raw
//!   `INSERT … ON CONFLICT DO UPDATE`.
//!
//! Over TLS: run it with `STRATA_PG_TLS=1` (the embedded cluster) or a `DATABASE_URL`
//! with `sslmode=require`; raw and service share the pool, so both run over TLS, and
//! the first line says which mode was measured.
//!
//! Then hits (8 tasks, bookkeeping off, 3 s windows, five rounds alternating) through
//! a transaction-mode PgBouncer (Debian's, started in front of the same server)
//! against straight to the server, both plain TCP.
//!
//! `cargo bench -p service --bench cache -- topology` measures the pooler alone.
//!
//! It ends with `hit_ratio_vs_raw=<x>` (8 tasks, bookkeeping on over raw) and
//! `bookkeeping_overhead=<fraction>` (8 tasks, 1 − on/off), each the median of the
//! ratios taken round by round, so a drift of the machine between rounds cancels,
//! and `pooler_ratio_cache_hit=` (pooled over direct: what a pooler costs; no
//! target).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::sqlx;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use service::cache::pdf::{LOOKUP_SQL, PdfCache, PdfKey, PdfSettings};
use service::cache::{CacheConfig, Origin, RowId};
use service::db::{DatabaseUrls, Topology};
use service::error::BoxError;

const ENTRIES: usize = 100_000;
const VALUE_BYTES: usize = 2_048;
/// The measured window of misses.
const RUN: Duration = Duration::from_secs(3);
/// Rounds per measurement, by number of tasks; this machine's throughput drifts by
/// ±30 % between runs. The 8-task figures, which the closing lines report, take five.
fn rounds(tasks: usize) -> usize {
    if tasks == 8 { 5 } else { 3 }
}

/// What a hit window measures.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The primary-key `SELECT` issued directly.
    Raw,
    /// `PdfCache::get`, bookkeeping on.
    On,
    /// `PdfCache::get`, bookkeeping off.
    Off,
}

#[derive(Clone, Copy)]
struct Measure {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = common::bench_database("strata_bench").await?;
    let mut opt = ConnectOptions::new(url.clone());
    opt.max_connections(8)
        .min_connections(8)
        .sqlx_logging(false);
    let db = Database::connect(opt).await?;
    let tls = service::db::connection_encrypted(&db).await?;
    println!(
        "connections: {}",
        if tls { "TLS" } else { "plain TCP (no TLS)" }
    );
    let keys = fill(&db).await?;
    let value = sample_value();
    // `-- topology`: only the pooler line.
    if std::env::args().any(|a| a == "topology") {
        println!(
            "pooler_ratio_cache_hit={:.3}",
            hits_through_the_pooler(&keys).await?
        );
        return Ok(());
    }

    // Every hit window is one flush interval of the default configuration (30 s): as
    // long as the bookkeeping-on window, because this machine's throughput swings by
    // ±15 % between windows of a few seconds.
    let hit_window = CacheConfig::default().flush_interval;
    let mut hit_ratio = 0.0;
    let mut overhead = 0.0;
    for tasks in [1usize, 8] {
        let (mut raw, mut on, mut off) = (vec![], vec![], vec![]);
        let rounds = rounds(tasks);
        for round in 0..rounds {
            // Raw, on and off run back to back, in an order rotating by round, so each
            // round's three share the machine's state of the moment and none always
            // follows the same one.
            let mut modes = [Mode::Raw, Mode::On, Mode::Off];
            modes.rotate_left(round % 3);
            for mode in modes {
                // Each window starts from the same clean table: the dead row versions
                // an earlier bookkeeping-on window left (its last flush is at its
                // end) are vacuumed here, outside every window, not by the readers
                // and the autovacuum of whichever window comes next.
                db.execute_unprepared("VACUUM pdf_cache").await?;
                if mode == Mode::Raw {
                    raw.push(
                        run(
                            tasks,
                            &keys,
                            round,
                            Duration::ZERO,
                            hit_window,
                            raw_hit(db.clone()),
                        )
                        .await,
                    );
                    continue;
                }
                let bookkeeping = mode == Mode::On;
                let config = config(bookkeeping);
                let warmup = if bookkeeping {
                    config.flush_interval
                } else {
                    Duration::ZERO
                };
                let cache = Arc::new(PdfCache::new(db.clone(), config, PdfSettings::default())?);
                let m = run(
                    tasks,
                    &keys,
                    round,
                    warmup,
                    hit_window,
                    service_hit(Arc::clone(&cache)),
                )
                .await;
                cache.shutdown().await?;
                if bookkeeping { on.push(m) } else { off.push(m) }
            }
        }
        let on_vs_raw = median_of(
            on.iter()
                .zip(&raw)
                .map(|(a, b)| a.per_second / b.per_second),
        );
        let on_vs_off = median_of(
            on.iter()
                .zip(&off)
                .map(|(a, b)| a.per_second / b.per_second),
        );
        let (raw, on, off) = (median(raw), median(on), median(off));
        println!(
            "hits, {tasks} task(s), {ENTRIES} entries of ~{VALUE_BYTES} B (medians of {rounds} rounds):"
        );
        print_row("raw SELECT by primary key", raw, None);
        print_row("service get (bookkeeping on)", on, Some(raw));
        print_row("service get (bookkeeping off)", off, Some(raw));
        println!("  paired per round (median): on/raw {on_vs_raw:.3}, on/off {on_vs_off:.3}");
        if tasks == 8 {
            hit_ratio = on_vs_raw;
            overhead = 1.0 - on_vs_off;
        }

        let (mut raw_miss, mut svc_miss) = (vec![], vec![]);
        for round in 0..rounds {
            raw_miss.push(
                run(
                    tasks,
                    &keys,
                    round,
                    Duration::ZERO,
                    RUN,
                    raw_insert(db.clone(), value.clone()),
                )
                .await,
            );
            let cache = Arc::new(PdfCache::new(
                db.clone(),
                config(true),
                PdfSettings::default(),
            )?);
            svc_miss.push(
                run(
                    tasks,
                    &keys,
                    round,
                    Duration::ZERO,
                    RUN,
                    service_miss(Arc::clone(&cache), value.clone()),
                )
                .await,
            );
            cache.shutdown().await?;
        }
        let (raw_miss, svc_miss) = (median(raw_miss), median(svc_miss));
        println!("miss and store, {tasks} task(s):");
        print_row("raw INSERT ... ON CONFLICT", raw_miss, None);
        print_row("service get_or_compute (miss)", svc_miss, Some(raw_miss));
    }
    println!("hit_ratio_vs_raw={hit_ratio:.3}");
    println!("bookkeeping_overhead={overhead:.3}");
    println!(
        "pooler_ratio_cache_hit={:.3}",
        hits_through_the_pooler(&keys).await?
    );
    Ok(())
}

/// Hits through a transaction-mode PgBouncer against straight to the server (plain
/// TCP both), 8 tasks, bookkeeping off, five rounds alternating; the median of the
/// round-by-round ratios, pooled over direct.
async fn hits_through_the_pooler(keys: &Arc<Vec<PdfKey>>) -> Result<f64, BoxError> {
    const TASKS: usize = 8;
    const ROUNDS: usize = 5;
    let name = "strata_bench";
    let bouncer = tests::pgbouncer::PgBouncer::start(TASKS as u32 + 4);
    let direct_url = common::plain_tcp_url(name)?;
    let direct = Topology::connect(&DatabaseUrls::new(direct_url.clone()), TASKS as u32).await?;
    let pooled = Topology::connect(
        &DatabaseUrls::new(bouncer.url(name)).with_direct(direct_url),
        TASKS as u32,
    )
    .await?;
    let mut ratios = Vec::new();
    let (mut direct_runs, mut pooled_runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut measured = [None, None];
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let topology = if side == 0 { &direct } else { &pooled };
            let cache = Arc::new(PdfCache::new(
                topology.clone(),
                config(false),
                PdfSettings::default(),
            )?);
            measured[side] =
                Some(run(TASKS, keys, round, Duration::ZERO, RUN, service_hit(cache)).await);
        }
        let [Some(d), Some(p)] = measured else {
            return Err("a side of the round did not run".into());
        };
        ratios.push(p.per_second / d.per_second);
        direct_runs.push(d);
        pooled_runs.push(p);
    }
    let (d, p) = (median(direct_runs), median(pooled_runs));
    println!("hits through PgBouncer (transaction mode) against direct, {TASKS} tasks, plain TCP:");
    print_row("direct", d, None);
    print_row("through the pooler", p, Some(d));
    pooled.close().await;
    direct.close().await;
    Ok(median_of(ratios.into_iter()))
}

fn config(bookkeeping: bool) -> CacheConfig {
    CacheConfig {
        bookkeeping,
        ..CacheConfig::default()
    }
}

fn print_row(name: &str, m: Measure, baseline: Option<Measure>) {
    let ratio = baseline.map_or(String::new(), |b| {
        format!("  ratio {:.3}", m.per_second / b.per_second)
    });
    println!(
        "  {name:<32} {:>9.0}/s  p50 {:>7.1} µs  p99 {:>8.1} µs{ratio}",
        m.per_second, m.p50_us, m.p99_us
    );
}

/// The median of ratios taken round by round.
fn median_of(ratios: impl Iterator<Item = f64>) -> f64 {
    common::median(ratios.collect())
}

fn median(mut runs: Vec<Measure>) -> Measure {
    runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    runs[runs.len() / 2]
}

/// Runs `op` from `tasks` tasks for `warmup` and then `window`, each on its own
/// pseudo-random key sequence, and measures throughput and latency in the window.
async fn run<F, Fut>(
    tasks: usize,
    keys: &Arc<Vec<PdfKey>>,
    round: usize,
    warmup: Duration,
    window: Duration,
    op: F,
) -> Measure
where
    F: Fn(PdfKey) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let measured_from = start + warmup;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (op, keys) = (op.clone(), Arc::clone(keys));
            tokio::spawn(async move {
                let mut x = (t as u64 + 1) * 0x9E37_79B9 + round as u64 * 7919;
                let mut latencies = Vec::with_capacity(100_000);
                while start.elapsed() < warmup + window {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = keys[(x % keys.len() as u64) as usize].clone();
                    let began = Instant::now();
                    op(key).await;
                    if began >= measured_from {
                        latencies.push(began.elapsed().as_nanos() as u64);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("bench task"));
    }
    let elapsed = measured_from.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Measure {
        per_second: all.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

fn raw_hit(
    db: DatabaseConnection,
) -> impl Fn(PdfKey) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Clone {
    move |key: PdfKey| {
        let db = db.clone();
        Box::pin(async move {
            // The service's own statement, without the service around it.
            let row: Option<(Vec<u8>, String, i64, RowId)> = sqlx::query_as(LOOKUP_SQL)
                .bind(key.hash())
                .fetch_optional(db.get_postgres_connection_pool())
                .await
                .expect("raw select");
            assert!(row.is_some());
        })
    }
}

fn service_hit(
    cache: Arc<PdfCache>,
) -> impl Fn(PdfKey) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Clone {
    move |key: PdfKey| {
        let cache = Arc::clone(&cache);
        Box::pin(async move {
            let value = cache.get(&key).await.expect("service get");
            assert!(value.is_some());
        })
    }
}

fn raw_insert(
    db: DatabaseConnection,
    value: Vec<u8>,
) -> impl Fn(PdfKey) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Clone {
    let compressed = Arc::new(zstd::bulk::compress(&value, 3).expect("compress"));
    move |_key: PdfKey| {
        let (db, compressed) = (db.clone(), Arc::clone(&compressed));
        Box::pin(async move {
            let key = PdfKey::from_bytes(uuid::Uuid::new_v4().as_bytes());
            sqlx::query(
                "INSERT INTO pdf_cache (pdf_hash, result_data, compression_algorithm, original_size_bytes,
                                        storage_size_bytes, compression_ratio)
                 VALUES ($1, $2, 'zstd', $3, $4, $5)
                 ON CONFLICT (pdf_hash) DO UPDATE SET result_data = EXCLUDED.result_data",
            )
            .bind(key.hash())
            .bind(compressed.as_slice())
            .bind(VALUE_BYTES as i64)
            .bind(compressed.len() as i64)
            .bind(VALUE_BYTES as f64 / compressed.len() as f64)
            .execute(db.get_postgres_connection_pool())
            .await
            .expect("raw insert");
        })
    }
}

fn service_miss(
    cache: Arc<PdfCache>,
    value: Vec<u8>,
) -> impl Fn(PdfKey) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Clone {
    let value = Arc::new(value);
    move |_key: PdfKey| {
        let (cache, value) = (Arc::clone(&cache), Arc::clone(&value));
        Box::pin(async move {
            let key = PdfKey::from_bytes(uuid::Uuid::new_v4().as_bytes());
            let fetched = cache
                .get_or_compute(
                    &key,
                    || async move { Ok::<_, BoxError>(value.as_ref().clone()) },
                )
                .await
                .expect("service miss");
            assert_eq!(fetched.origin, Origin::Computed);
        })
    }
}

/// ~2 KB of JSON-like text that compresses about as a real processing result does.
fn sample_value() -> Vec<u8> {
    let mut text = String::from("{\"pages\":[");
    let mut i = 0u64;
    while text.len() < VALUE_BYTES - 40 {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.push_str(&format!(
            "{{\"n\":{},\"w\":{}}},",
            i % 997,
            (i >> 20) % 100_003
        ));
    }
    text.push_str("{}]}");
    let mut bytes = text.into_bytes();
    bytes.resize(VALUE_BYTES, b' ');
    bytes
}

/// Fills `pdf_cache` with [`ENTRIES`] entries in batches; their keys.
async fn fill(db: &DatabaseConnection) -> Result<Arc<Vec<PdfKey>>, BoxError> {
    let value = sample_value();
    let compressed = zstd::bulk::compress(&value, 3)?;
    let keys: Vec<PdfKey> = (0..ENTRIES)
        .map(|i| PdfKey::from_bytes(format!("bench pdf {i}").as_bytes()))
        .collect();
    for chunk in keys.chunks(10_000) {
        let hashes: Vec<String> = chunk.iter().map(|k| k.hash().to_owned()).collect();
        sqlx::query(
            "INSERT INTO pdf_cache (pdf_hash, result_data, compression_algorithm, original_size_bytes,
                                    storage_size_bytes, compression_ratio)
             SELECT h, $2, 'zstd', $3, $4, $5 FROM unnest($1::text[]) AS h",
        )
        .bind(hashes)
        .bind(&compressed)
        .bind(value.len() as i64)
        .bind(compressed.len() as i64)
        .bind(value.len() as f64 / compressed.len() as f64)
        .execute(db.get_postgres_connection_pool())
        .await?;
    }
    db.execute_unprepared("VACUUM ANALYZE pdf_cache").await?;
    println!(
        "filled pdf_cache: {ENTRIES} entries, {VALUE_BYTES} B values stored as {} B (zstd 3)",
        compressed.len()
    );
    Ok(Arc::new(keys))
}
