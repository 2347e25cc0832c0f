//! `cargo bench -p service --bench store [--features local-embedder]`: the vector
//! store against raw SQL, in one run.
//!
//! Database: `DATABASE_URL`'s server, else the embedded default cluster; the bench
//! uses (and recreates) its own database `strata_bench_store`. It generates 100,000
//! chunks (1,000 documents of 100) of 384-d embeddings around 100 cluster centres, with
//! a fixed seed, short synthetic texts and metadata `group` (1 % of the chunks each)
//! and `decile` (10 %), and measures:
//! - ingest (chunks/s, median of three rounds alternating with the baseline, a
//!   `CHECKPOINT` before each load):
//!   `store::ingest_copy` and `store::ingest` in batches of 10,000 chunks, against a
//!   binary `COPY` of the same rows into a bare table with `document_chunks`' columns
//!   and indexes;
//! - search: QPS of 8 concurrent clients and recall@10 against exact search, for
//!   IVFFlat probes 1/4/10/20 and HNSW ef_search 40/100, each next to the identical
//!   query issued as raw SQL (`SET LOCAL` of the same knobs in a transaction);
//! - filtered search at 1 % and 10 % selectivity: recall@10 and under-returns;
//! - hybrid and plain vector search latency (p50, one client);
//! - the search log's overhead (8 clients, with and without a log);
//! - with `--features local-embedder`, the local embedder's texts/s;
//! - routing to a read replica: on a primary and a real streaming replica of its own
//!   (`pg_basebackup -R`, started by the bench) holding the first 200 documents
//!   (20,000 chunks, HNSW) and 10,000 PDF cache entries, searches (8 clients) and
//!   cache hits (8 tasks,
//!   bookkeeping off) through `Topology::reader` — a choice per search or hit —
//!   against the same calls on a connection straight to the replica, rounds
//!   alternating.
//!
//! `cargo bench -p service --bench store -- topology` measures the routing alone.
//!
//! It ends with `ingest_ratio_vs_copy=` (`ingest_copy`; `insert_ingest_ratio_vs_copy=`
//! for `ingest`), `search_ratio_vs_raw=` (at the store's default
//! knobs), `recall_at_10=` (the same), `filtered_recall_at_10=` (the lower of 1 % and
//! 10 %), `under_returns=`, `hybrid_p50_over_vector_p50=`, `search_log_overhead=`,
//! `embed_texts_per_s=`, `replica_routing_ratio_search=`,
//! `replica_routing_ratio_cache_hit=` and `replica_routing_ratio=` (the lower of the
//! two; target at least 0.95).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use sea_orm::sqlx::postgres::PgPoolCopyExt;
use sea_orm::sqlx::{self, Row};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use serde_json::json;
use service::db::binary_copy::BinaryCopy;
use service::error::BoxError;
use service::store::{
    self, EmbeddingModel, Filter, HybridOptions, IndexMethod, NewChunk, NewDocument, SearchLog,
    SearchLogConfig, SearchOptions, VectorStore,
};
use uuid::Uuid;

const DIMENSION: usize = 384;
const DOCUMENTS: usize = 1000;
const CHUNKS_PER_DOCUMENT: usize = 100;
const CLUSTERS: u64 = 100;
const QUERIES: usize = 200;
const CLIENTS: usize = 8;
const K: usize = 10;
const ROUNDS: usize = 3;
const INGEST_BATCH_DOCUMENTS: usize = 100;
const MODEL: &str = "bench/synthetic-384";

/// A deterministic generator (no dependency): the same seed, the same corpus.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn unit(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32 - 0.5
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn centre(c: u64) -> Vec<f32> {
    let mut rng = Lcg(1_000_003 * (c + 1));
    normalised((0..DIMENSION).map(|_| rng.unit()).collect())
}

fn around(centre: &[f32], rng: &mut Lcg, spread: f32) -> Vec<f32> {
    normalised(centre.iter().map(|c| c + spread * rng.unit()).collect())
}

/// A pseudo-word from a vocabulary of 2,000.
fn word(n: u64) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "ta", "vo", "xi", "be", "do", "fu", "gi", "ha", "ju", "pe",
        "so",
    ];
    let n = n % 2000;
    format!(
        "{}{}{}",
        SYLLABLES[(n % 16) as usize],
        SYLLABLES[((n / 16) % 16) as usize],
        SYLLABLES[((n / 256) % 16) as usize]
    )
}

struct Corpus {
    docs: Vec<NewDocument>,
    centres: Vec<Vec<f32>>,
}

fn corpus() -> Corpus {
    let centres: Vec<Vec<f32>> = (0..CLUSTERS).map(centre).collect();
    let mut rng = Lcg(42);
    let docs = (0..DOCUMENTS)
        .map(|d| {
            let chunks = (0..CHUNKS_PER_DOCUMENT)
                .map(|c| {
                    let i = (d * CHUNKS_PER_DOCUMENT + c) as u64;
                    let cluster = rng.next() % CLUSTERS;
                    let text = (0..12)
                        .map(|_| word(cluster * 20 + rng.next() % 40))
                        .collect::<Vec<_>>()
                        .join(" ");
                    NewChunk {
                        metadata: json!({"group": i % 100, "decile": i % 10}),
                        ..NewChunk::new(
                            text,
                            MODEL,
                            around(&centres[cluster as usize], &mut rng, 0.25),
                        )
                    }
                })
                .collect::<Vec<_>>();
            NewDocument {
                key: None,
                title: Some(format!("document {d}")),
                content: format!("synthetic document {d}"),
                source: Some("bench".into()),
                metadata: json!({"d": d}),
                chunks,
            }
        })
        .collect();
    Corpus { docs, centres }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // `-- topology`: only the replica routing lines.
    if std::env::args().any(|a| a == "topology") {
        let (search, hit) = replica_routing(&corpus()).await?;
        println!("replica_routing_ratio_search={search:.3}");
        println!("replica_routing_ratio_cache_hit={hit:.3}");
        println!("replica_routing_ratio={:.3}", search.min(hit));
        return Ok(());
    }
    let url = common::bench_database("strata_bench_store").await?;
    let mut opt = ConnectOptions::new(url);
    opt.max_connections(16).sqlx_logging(false);
    let db = Database::connect(opt).await?;
    let model = EmbeddingModel::new(MODEL, DIMENSION)?;
    let corpus = corpus();
    let total = DOCUMENTS * CHUNKS_PER_DOCUMENT;
    println!("corpus: {total} chunks of {DIMENSION} dimensions around {CLUSTERS} centres");

    // Ingest, alternating the raw COPY and the service.
    db.execute_unprepared(RAW_TABLE_SQL).await?;
    db.execute_unprepared(RAW_FK_TABLE_SQL).await?;
    let (mut raw, mut raw_fk, mut copied, mut inserted) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        db.execute_unprepared("TRUNCATE raw_chunks, raw_chunks_fk, documents CASCADE")
            .await?;
        checkpoint(&db).await;
        let started = Instant::now();
        copy_raw(&db, &corpus.docs, "raw_chunks").await?;
        raw.push(total as f64 / started.elapsed().as_secs_f64());
        checkpoint(&db).await;
        let started = Instant::now();
        copy_raw(&db, &corpus.docs, "raw_chunks_fk").await?;
        raw_fk.push(total as f64 / started.elapsed().as_secs_f64());
        db.execute_unprepared("TRUNCATE raw_chunks_fk, documents CASCADE")
            .await?;
        checkpoint(&db).await;
        let started = Instant::now();
        for batch in corpus.docs.chunks(INGEST_BATCH_DOCUMENTS) {
            store::ingest_copy(&db, &model, batch).await?;
        }
        copied.push(total as f64 / started.elapsed().as_secs_f64());
        db.execute_unprepared("TRUNCATE documents CASCADE").await?;
        checkpoint(&db).await;
        let started = Instant::now();
        for batch in corpus.docs.chunks(INGEST_BATCH_DOCUMENTS) {
            store::ingest(&db, &model, batch).await?;
        }
        inserted.push(total as f64 / started.elapsed().as_secs_f64());
        println!(
            "  round {round}: raw COPY {:.0} chunks/s (with the foreign key {:.0}), store::ingest_copy {:.0}, store::ingest {:.0}",
            raw[round], raw_fk[round], copied[round], inserted[round]
        );
    }
    let ratio_to = |ours: &[f64], base: &[f64]| {
        common::median(ours.iter().zip(base).map(|(o, r)| o / r).collect())
    };
    let ratio = |ours: &[f64]| ratio_to(ours, &raw);
    let (ingest_ratio, insert_ratio) = (ratio(&copied), ratio(&inserted));
    let fk_ratio = ratio_to(&copied, &raw_fk);
    println!(
        "raw COPY with the foreign key: {:.0} chunks/s ({:.3} of raw COPY); store::ingest_copy at {fk_ratio:.3} of it",
        common::median(raw_fk.clone()),
        ratio_to(&raw_fk, &raw)
    );
    println!(
        "ingest (median of {ROUNDS}): raw COPY {:.0} chunks/s, store::ingest_copy {:.0} (ratio {ingest_ratio:.3}), store::ingest {:.0} (ratio {insert_ratio:.3})",
        common::median(raw.clone()),
        common::median(copied.clone()),
        common::median(inserted.clone())
    );
    db.execute_unprepared("DROP TABLE raw_chunks_fk, raw_chunks")
        .await?;
    db.execute_unprepared("VACUUM ANALYZE document_chunks, documents")
        .await?;

    // Queries near the centres, and their exact answers.
    let mut rng = Lcg(7);
    let queries: Arc<Vec<Vec<f32>>> = Arc::new(
        (0..QUERIES)
            .map(|q| around(&corpus.centres[q % CLUSTERS as usize], &mut rng, 0.35))
            .collect(),
    );
    let vs = VectorStore::new(model.clone());
    let exact = SearchOptions {
        exact: true,
        ..Default::default()
    };
    let mut truth = Vec::new();
    for q in queries.iter() {
        truth.push(ids(&vs.search_with(&db, q, K, None, &exact).await?));
    }

    store::reindex(&db, IndexMethod::Ivfflat { lists: None }, "1GB").await?;
    println!(
        "IVFFlat lists = {}:",
        store::index_health(&db).await?.parameters["lists"]
    );
    let mut default_ratio = 0.0;
    let mut default_recall = 0.0;
    for probes in [1, 4, 10, 20] {
        let options = SearchOptions {
            probes: Some(probes),
            ..Default::default()
        };
        let (ratio, recall) =
            compare(&db, &vs, &queries, &truth, options, Knob::Probes(probes)).await?;
        if options == SearchOptions::default() {
            (default_ratio, default_recall) = (ratio, recall);
        }
    }

    // Filtered search at 1 % and 10 %, through the IVFFlat index with default knobs.
    let mut filtered_recall: f64 = 1.0;
    let mut under_returns = 0;
    for (name, key, modulus) in [("1 %", "group", 100u64), ("10 %", "decile", 10)] {
        let (mut found, mut wanted) = (0usize, 0usize);
        for (n, q) in queries.iter().enumerate().take(100) {
            let filter = Filter::chunk(key).eq(n as u64 % modulus);
            let truth = ids(&vs.search_with(&db, q, K, Some(&filter), &exact).await?);
            let hits = ids(&vs.search(&db, q, K, Some(&filter)).await?);
            if hits.len() < truth.len() {
                under_returns += 1;
            }
            found += hits.intersection(&truth).count();
            wanted += truth.len();
        }
        let recall = found as f64 / wanted as f64;
        filtered_recall = filtered_recall.min(recall);
        println!("filtered at {name}: recall@10 {recall:.3}");
    }

    // Hybrid against plain vector latency, one client.
    let (mut vector_ms, mut hybrid_ms) = (Vec::new(), Vec::new());
    for (n, q) in queries.iter().enumerate() {
        let text = format!(
            "{} {}",
            word((n as u64 % CLUSTERS) * 20 + 3),
            word((n as u64 % CLUSTERS) * 20 + 11)
        );
        let started = Instant::now();
        vs.search(&db, q, K, None).await?;
        vector_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        vs.hybrid_search(&db, &text, q, K, None, &HybridOptions::default())
            .await?;
        hybrid_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let (vector_p50, hybrid_p50) = (common::median(vector_ms), common::median(hybrid_ms));
    println!("latency p50: vector {vector_p50:.2} ms, hybrid {hybrid_p50:.2} ms");

    // The search log's overhead, 8 clients, alternating.
    let log = SearchLog::start(db.clone(), SearchLogConfig::default());
    let logged = vs.clone().with_log(log.clone());
    let mut overheads = Vec::new();
    for _ in 0..ROUNDS {
        let without = qps(&db, &vs, &queries, SearchOptions::default()).await?;
        let with = qps(&db, &logged, &queries, SearchOptions::default()).await?;
        overheads.push(1.0 - with / without);
    }
    log.shutdown().await?;
    let log_overhead = common::median(overheads);
    println!(
        "search log: overhead {log_overhead:.3}, {} entries written",
        log.written()
    );

    // HNSW.
    let started = Instant::now();
    store::reindex(
        &db,
        IndexMethod::Hnsw {
            m: 16,
            ef_construction: 64,
        },
        "1GB",
    )
    .await?;
    println!(
        "HNSW m = 16, ef_construction = 64 (built in {:.0} s):",
        started.elapsed().as_secs_f64()
    );
    for ef_search in [40, 100] {
        let options = SearchOptions {
            ef_search,
            ..Default::default()
        };
        compare(
            &db,
            &vs,
            &queries,
            &truth,
            options,
            Knob::EfSearch(ef_search),
        )
        .await?;
    }

    let embed_per_s = embed_texts_per_s(&corpus).await?;
    let (routed_search, routed_hit) = replica_routing(&corpus).await?;

    println!("ingest_ratio_vs_copy={ingest_ratio:.3}");
    println!("insert_ingest_ratio_vs_copy={insert_ratio:.3}");
    println!("ingest_ratio_vs_copy_with_fk={fk_ratio:.3}");
    println!("search_ratio_vs_raw={default_ratio:.3}");
    println!("recall_at_10={default_recall:.3}");
    println!("filtered_recall_at_10={filtered_recall:.3}");
    println!("under_returns={under_returns}");
    println!("hybrid_p50_over_vector_p50={:.3}", hybrid_p50 / vector_p50);
    println!("search_log_overhead={log_overhead:.3}");
    println!("embed_texts_per_s={embed_per_s}");
    println!("replica_routing_ratio_search={routed_search:.3}");
    println!("replica_routing_ratio_cache_hit={routed_hit:.3}");
    println!("replica_routing_ratio={:.3}", routed_search.min(routed_hit));
    Ok(())
}

/// Searches and cache hits through `Topology::reader` (routed to the replica) against
/// the same calls straight to the replica, on a pair of its own; the medians of the
/// round-by-round ratios (routed over straight) for searches and for hits.
async fn replica_routing(corpus: &Corpus) -> Result<(f64, f64), BoxError> {
    use service::cache::pdf::{PdfCache, PdfKey, PdfSettings};
    use service::cache::{CacheConfig, Origin};
    use service::db::{DatabaseUrls, ReplicaConfig, ServedBy, Topology};
    const DOCS: usize = 200;
    const ENTRIES: usize = 10_000;
    const HITS_PER_TASK: usize = 10_000;

    let pair = tests::replica::ReplicaPair::start().await;
    let urls = DatabaseUrls::new(pair.primary_url()).with_replica(pair.replica_url());
    let topology = Topology::connect_with(&urls, CLIENTS as u32, ReplicaConfig::default()).await?;
    let model = EmbeddingModel::new(MODEL, DIMENSION)?;
    store::ingest_copy(&topology, &model, &corpus.docs[..DOCS]).await?;
    // HNSW, as a store this size would have: searches fast enough that routing's own
    // cost would show.
    store::reindex(
        &topology,
        IndexMethod::Hnsw {
            m: 16,
            ef_construction: 64,
        },
        "256MB",
    )
    .await?;
    let unbuffered = CacheConfig {
        bookkeeping: false,
        ..CacheConfig::default()
    };
    let filler = PdfCache::new(topology.clone(), unbuffered.clone(), PdfSettings::default())?;
    let keys: Arc<Vec<PdfKey>> = Arc::new(
        (0..ENTRIES)
            .map(|i| PdfKey::from_bytes(format!("%PDF replica {i}").as_bytes()))
            .collect(),
    );
    for key in keys.iter() {
        let fetched = filler
            .get_or_compute(key, || async { Ok::<_, BoxError>(vec![7u8; 2048]) })
            .await?;
        assert_eq!(fetched.origin, Origin::Computed);
    }
    pair.wait_for_replay().await;
    let straight = sea_orm::Database::connect(
        ConnectOptions::new(pair.replica_url())
            .max_connections(CLIENTS as u32)
            .sqlx_logging(false)
            .to_owned(),
    )
    .await?;
    if topology.reader().await.served_by() != ServedBy::Replica(0) {
        return Err("the replica does not serve reads".into());
    }
    let vs = VectorStore::new(model);
    let queries: Arc<Vec<Vec<f32>>> = Arc::new(
        (0..QUERIES)
            .map(|i| {
                around(
                    &corpus.centres[i % corpus.centres.len()],
                    &mut Lcg(i as u64),
                    0.2,
                )
            })
            .collect(),
    );
    let routed_cache = Arc::new(PdfCache::new(
        topology.clone(),
        unbuffered.clone(),
        PdfSettings::default(),
    )?);
    let straight_cache = Arc::new(PdfCache::new(
        straight.clone(),
        unbuffered,
        PdfSettings::default(),
    )?);
    let (mut search_ratios, mut hit_ratios) = (Vec::new(), Vec::new());
    for round in 0..5 {
        let mut search = [0.0; 2];
        let mut hits = [0.0; 2];
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let started = Instant::now();
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (topology, straight, vs, queries) = (
                        topology.clone(),
                        straight.clone(),
                        vs.clone(),
                        queries.clone(),
                    );
                    tokio::spawn(async move {
                        for n in 0..queries.len() {
                            let q = &queries[(n + c * 17) % queries.len()];
                            if side == 0 {
                                vs.search(&straight, q, K, None).await?;
                            } else {
                                vs.search(&topology.reader().await, q, K, None).await?;
                            }
                        }
                        Ok::<_, BoxError>(())
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            search[side] = (CLIENTS * QUERIES) as f64 / started.elapsed().as_secs_f64();

            let cache = if side == 0 {
                &straight_cache
            } else {
                &routed_cache
            };
            let started = Instant::now();
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (cache, keys) = (Arc::clone(cache), Arc::clone(&keys));
                    tokio::spawn(async move {
                        for n in 0..HITS_PER_TASK {
                            let key = &keys[(n * 7919 + c * 104_729) % keys.len()];
                            if cache.get(key).await?.is_none() {
                                return Err::<(), BoxError>("a hit missed".into());
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            hits[side] = (CLIENTS * HITS_PER_TASK) as f64 / started.elapsed().as_secs_f64();
        }
        search_ratios.push(search[1] / search[0]);
        hit_ratios.push(hits[1] / hits[0]);
        println!(
            "replica round {round}: search straight {:.0}/s routed {:.0}/s; hits straight {:.0}/s routed {:.0}/s",
            search[0], search[1], hits[0], hits[1]
        );
    }
    let _ = straight.close().await;
    topology.close().await;
    Ok((common::median(search_ratios), common::median(hit_ratios)))
}

#[derive(Clone, Copy)]
enum Knob {
    Probes(u32),
    EfSearch(u32),
}

/// QPS of the store and of raw SQL with the same knobs, and the store's recall@10;
/// prints a line. Returns (QPS ratio, recall).
async fn compare(
    db: &DatabaseConnection,
    vs: &VectorStore,
    queries: &Arc<Vec<Vec<f32>>>,
    truth: &[HashSet<Uuid>],
    options: SearchOptions,
    knob: Knob,
) -> Result<(f64, f64), BoxError> {
    let mut found = 0;
    for (q, t) in queries.iter().zip(truth) {
        found += ids(&vs.search_with(db, q, K, None, &options).await?)
            .intersection(t)
            .count();
    }
    let recall = found as f64 / (K * queries.len()) as f64;
    let (mut ratios, mut ours, mut raws) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let raw = raw_qps(db, queries, knob).await?;
        let store = qps(db, vs, queries, options).await?;
        ratios.push(store / raw);
        ours.push(store);
        raws.push(raw);
    }
    let ratio = common::median(ratios);
    let label = match knob {
        Knob::Probes(p) => format!("probes {p:>2}"),
        Knob::EfSearch(e) => format!("ef_search {e:>3}"),
    };
    println!(
        "  {label}: recall@10 {recall:.3}, store {:.0} QPS, raw SQL {:.0} QPS, ratio {ratio:.3}",
        common::median(ours),
        common::median(raws)
    );
    Ok((ratio, recall))
}

/// Queries per second of `vs.search_with` from [`CLIENTS`] tasks, each running every
/// query once.
async fn qps(
    db: &DatabaseConnection,
    vs: &VectorStore,
    queries: &Arc<Vec<Vec<f32>>>,
    options: SearchOptions,
) -> Result<f64, BoxError> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (db, vs, queries) = (db.clone(), vs.clone(), queries.clone());
            tokio::spawn(async move {
                for n in 0..queries.len() {
                    let q = &queries[(n + c * 17) % queries.len()];
                    vs.search_with(&db, q, K, None, &options).await?;
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((CLIENTS * queries.len()) as f64 / started.elapsed().as_secs_f64())
}

/// The raw baseline's query: the store's select list and join, by the index's
/// operator, with the knob set locally in a transaction; every column is decoded.
const RAW_SEARCH_SQL: &str = "SELECT c.id, c.chunk_index, c.content, c.metadata, c.document_id,
            d.source, d.title, d.metadata AS document_metadata,
            c.embedding <=> $1 AS distance
     FROM document_chunks c JOIN documents d ON d.id = c.document_id
     ORDER BY c.embedding <=> $1
     LIMIT $2";

async fn raw_qps(
    db: &DatabaseConnection,
    queries: &Arc<Vec<Vec<f32>>>,
    knob: Knob,
) -> Result<f64, BoxError> {
    let pool = service::db::postgres_pool(db)?.clone();
    let set = match knob {
        Knob::Probes(p) => format!("SET LOCAL ivfflat.probes = {p}"),
        Knob::EfSearch(e) => format!("SET LOCAL hnsw.ef_search = {e}"),
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (pool, queries, set) = (pool.clone(), queries.clone(), set.clone());
            tokio::spawn(async move {
                for n in 0..queries.len() {
                    let q = sea_orm::prelude::PgVector::from(
                        queries[(n + c * 17) % queries.len()].clone(),
                    );
                    let mut txn = pool.begin().await?;
                    sqlx::query(sqlx::AssertSqlSafe(set.as_str()))
                        .execute(&mut *txn)
                        .await?;
                    let rows = sqlx::query(RAW_SEARCH_SQL)
                        .bind(q)
                        .bind(K as i64)
                        .fetch_all(&mut *txn)
                        .await?;
                    txn.commit().await?;
                    assert_eq!(rows.len(), K);
                    // Every column decoded, as the store decodes its hits.
                    for row in &rows {
                        let _: (Uuid, i32, String, serde_json::Value, Uuid) = (
                            row.try_get(0)?,
                            row.try_get(1)?,
                            row.try_get(2)?,
                            row.try_get(3)?,
                            row.try_get(4)?,
                        );
                        let _: (Option<String>, Option<String>, serde_json::Value, f64) = (
                            row.try_get(5)?,
                            row.try_get(6)?,
                            row.try_get(7)?,
                            row.try_get(8)?,
                        );
                    }
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((CLIENTS * queries.len()) as f64 / started.elapsed().as_secs_f64())
}

fn ids(hits: &[store::SearchHit]) -> HashSet<Uuid> {
    hits.iter().map(|h| h.chunk_id).collect()
}

/// The raw baseline's table: `document_chunks`' columns (the generated `tsvector`
/// included) and indexes, without the foreign key.
const RAW_TABLE_SQL: &str = "
CREATE TABLE raw_chunks (LIKE document_chunks INCLUDING DEFAULTS INCLUDING GENERATED);
CREATE UNIQUE INDEX ON raw_chunks (document_id, chunk_index);
CREATE INDEX ON raw_chunks USING ivfflat (embedding vector_cosine_ops) WITH (lists = 100);
CREATE INDEX ON raw_chunks USING gin (search_vector);
CREATE INDEX ON raw_chunks USING gin (metadata jsonb_path_ops);
ALTER TABLE raw_chunks ADD PRIMARY KEY (id);";

/// Writes out the dirty pages the last load left (`CHECKPOINT`), so that no load is
/// timed through a checkpoint its predecessor's WAL set off. Best effort: a role
/// without the right to checkpoint measures without it.
async fn checkpoint(db: &DatabaseConnection) {
    if let Err(e) = db.execute_unprepared("CHECKPOINT").await {
        eprintln!("no CHECKPOINT between loads ({e}): ingest rounds may be noisier");
    }
}

/// `raw_chunks` with `document_chunks`' foreign key to `documents` as well: the
/// baseline that pays the per-row referential-integrity check the store pays.
const RAW_FK_TABLE_SQL: &str = "
CREATE TABLE raw_chunks_fk (LIKE raw_chunks INCLUDING ALL);
ALTER TABLE raw_chunks_fk ADD FOREIGN KEY (document_id) REFERENCES documents (id) ON DELETE CASCADE;";

/// Binary `COPY` of every chunk into `table` (`raw_chunks`, or `raw_chunks_fk` after
/// one INSERT of the documents it references): one stream, rows encoded here.
async fn copy_raw(
    db: &DatabaseConnection,
    docs: &[NewDocument],
    table: &str,
) -> Result<(), BoxError> {
    let pool = service::db::postgres_pool(db)?;
    let documents: Vec<Uuid> = docs.iter().map(|_| Uuid::now_v7()).collect();
    if table == "raw_chunks_fk" {
        sqlx::query(
            "INSERT INTO documents (id, content) SELECT id, 'bench' FROM unnest($1::uuid[]) AS id",
        )
        .bind(&documents)
        .execute(pool)
        .await?;
    }
    let mut rows = BinaryCopy::with_capacity(256 << 20);
    for (doc, &document) in docs.iter().zip(&documents) {
        for (index, chunk) in doc.chunks.iter().enumerate() {
            rows.row(7);
            rows.uuid(&Uuid::now_v7());
            rows.uuid(&document);
            rows.int4(index as i32);
            rows.text(&chunk.content);
            rows.vector(&chunk.embedding);
            rows.jsonb(&chunk.metadata.to_string());
            rows.text(&format!("{index:064x}"));
        }
    }
    let mut copy = pool
        .copy_in_raw(&format!(
            "COPY {table} (id, document_id, chunk_index, content, embedding, metadata, content_hash)
             FROM STDIN WITH (FORMAT binary)"
        ))
        .await?;
    copy.send(rows.finish()).await?;
    copy.finish().await?;
    Ok(())
}

#[cfg(feature = "local-embedder")]
async fn embed_texts_per_s(corpus: &Corpus) -> Result<String, BoxError> {
    use service::store::{Embedder, LocalEmbedder};
    let embedder = LocalEmbedder::load_default()?;
    let texts: Vec<String> = corpus.docs[0]
        .chunks
        .iter()
        .map(|c| c.content.clone())
        .collect();
    store::embed_all(&embedder, &texts[..8]).await?;
    let started = Instant::now();
    store::embed_all(&embedder, &texts).await?;
    let per_s = texts.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "local embedder ({}): {per_s:.0} texts/s (12-word texts, batches of {})",
        embedder.model().name,
        embedder.batch_size()
    );
    Ok(format!("{per_s:.0}"))
}

#[cfg(not(feature = "local-embedder"))]
async fn embed_texts_per_s(_: &Corpus) -> Result<String, BoxError> {
    Ok("n/a (run with --features local-embedder)".into())
}
