//! The store on a real corpus: the whole PostgreSQL 15 manual (Debian's
//! `postgresql-doc-15`, turned into chunks by `scripts/fetch-pg-manual.sh`) embedded
//! with the local model, and a labelled query set written from its sections
//! (`examples/corpus/manual-queries.jsonl`: natural questions and keyword queries,
//! each with the pages that answer it).
//!
//! It prints, per query kind, hit@10 (a page that answers the query among the first
//! ten chunks' documents) of the vector ranking, the full-text ranking in each
//! [`TextMatch`] mode, and hybrid search in each mode; then, per index method and
//! knob, recall@10 against exact search and the median latency, with exact search's
//! own median as the baseline of the same run.
//!
//! `cargo bench -p service --bench store_corpus --features local-embedder`. The
//! corpus lives in database `strata_bench_corpus`, kept between runs: the first run
//! embeds its ~8,300 chunks (minutes), later ones re-ingest it unchanged, which
//! embeds nothing.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use serde::Deserialize;
use serde_json::Value;
use service::error::BoxError;
use service::store::{
    self, DocumentKey, Embedder, HybridHit, HybridOptions, IndexMethod, LocalEmbedder, NewChunk,
    NewDocument, SearchOptions, TextMatch, VectorStore,
};
use uuid::Uuid;

mod common;

const DATABASE: &str = "strata_bench_corpus";
const K: usize = 10;

#[derive(Deserialize)]
struct Line {
    source: String,
    key: String,
    title: Option<String>,
    metadata: Value,
    chunks: Vec<LineChunk>,
}

#[derive(Deserialize)]
struct LineChunk {
    content: String,
    metadata: Value,
}

#[derive(Deserialize)]
struct Query {
    kind: String,
    query: String,
    relevant: Vec<String>,
}

/// The corpus database: created and migrated when missing, kept otherwise.
async fn corpus_database() -> Result<DatabaseConnection, BoxError> {
    let mut opt = ConnectOptions::new(common::kept_database(DATABASE).await?);
    opt.max_connections(4).sqlx_logging(false);
    Ok(Database::connect(opt).await?)
}

/// The corpus's JSONL, made by the fetch script (idempotent).
fn corpus_path(root: &Path) -> Result<String, BoxError> {
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/fetch-pg-manual.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err("scripts/fetch-pg-manual.sh failed".into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn documents(path: &str) -> Result<Vec<NewDocument>, BoxError> {
    let mut docs = Vec::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let line: Line = serde_json::from_str(line)?;
        docs.push(NewDocument {
            key: Some(DocumentKey::External {
                source: line.source,
                key: line.key,
            }),
            content: line
                .chunks
                .iter()
                .map(|c| c.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n"),
            title: line.title,
            source: None,
            metadata: line.metadata,
            chunks: line
                .chunks
                .into_iter()
                .map(|c| NewChunk {
                    metadata: c.metadata,
                    ..NewChunk::new(c.content, "", Vec::new())
                })
                .collect(),
        });
    }
    Ok(docs)
}

/// The page keys (`documents.external_key`) of the documents `ids`, in order.
async fn pages(db: &DatabaseConnection, ids: &[Uuid]) -> Result<Vec<String>, BoxError> {
    let list: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT id, external_key FROM documents WHERE id IN ({})",
                list.join(",")
            ),
        ))
        .await?;
    let mut by_id = std::collections::HashMap::new();
    for row in rows {
        let id: Uuid = row.try_get_by_index(0)?;
        let key: Option<String> = row.try_get_by_index(1)?;
        by_id.insert(id, key.unwrap_or_default());
    }
    Ok(ids
        .iter()
        .map(|id| by_id.get(id).cloned().unwrap_or_default())
        .collect())
}

fn hit(found: &[String], relevant: &[String]) -> bool {
    found.iter().any(|p| relevant.contains(p))
}

fn median_ms(xs: Vec<Duration>) -> f64 {
    common::median(xs.iter().map(|d| d.as_secs_f64() * 1000.0).collect())
}

/// Hybrid hits' documents; `text_only`: only the hits the text side matched, in its
/// order (with the vector weight 0 the fused order is the text ranking's).
fn hybrid_documents(hits: &[HybridHit], text_only: bool) -> Vec<Uuid> {
    hits.iter()
        .filter(|h| !text_only || h.text_matched())
        .map(|h| h.hit.document_id)
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let db = corpus_database().await?;
    let docs = documents(&corpus_path(&root)?)?;
    let chunks: usize = docs.iter().map(|d| d.chunks.len()).sum();
    println!("corpus: {} documents, {chunks} chunks", docs.len());
    let embedder = LocalEmbedder::load_default()?;
    let started = Instant::now();
    let mut added = 0;
    for batch in docs.chunks(40) {
        let report = store::ingest_texts(&db, &embedder, batch.to_vec()).await?;
        added += report.chunks_added;
    }
    println!(
        "ingest: {added} chunks embedded and added in {:.1}s (0 when unchanged since the last run)",
        started.elapsed().as_secs_f64()
    );

    let queries: Vec<Query> =
        std::fs::read_to_string(root.join("examples/corpus/manual-queries.jsonl"))?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
    let texts: Vec<String> = queries.iter().map(|q| q.query.clone()).collect();
    let vectors = store::embed_all(&embedder, &texts).await?;
    let vs = VectorStore::new(embedder.model().clone());
    let exact = SearchOptions {
        exact: true,
        ..SearchOptions::default()
    };

    // Exact nearest chunks: the vector ranking's quality and the recall baseline.
    let mut truth: Vec<HashSet<Uuid>> = Vec::new();
    let mut exact_times = Vec::new();
    let mut vector_docs = Vec::new();
    for v in &vectors {
        let t = Instant::now();
        let hits = vs.search_with(&db, v, K, None, &exact).await?;
        exact_times.push(t.elapsed());
        truth.push(hits.iter().map(|h| h.chunk_id).collect());
        vector_docs.push(hits.iter().map(|h| h.document_id).collect::<Vec<_>>());
    }
    let exact_p50 = median_ms(exact_times);

    // hit@10 per query kind and ranking.
    let rankings: [(&str, TextMatch, f64, bool); 4] = [
        ("text_all", TextMatch::AllWords, 0.0, true),
        ("text_any", TextMatch::AnyWord, 0.0, true),
        ("hybrid_all", TextMatch::AllWords, 1.0, false),
        ("hybrid_any", TextMatch::AnyWord, 1.0, false),
    ];
    let mut found: Vec<Vec<Vec<Uuid>>> = vec![vector_docs];
    let mut text_matched_any = vec![0usize; rankings.len()];
    for (r, (_, mode, vector_weight, text_only)) in rankings.iter().enumerate() {
        let options = HybridOptions {
            text_match: *mode,
            vector_weight: *vector_weight,
            search: exact,
            ..HybridOptions::default()
        };
        let mut per_query = Vec::new();
        for (q, v) in queries.iter().zip(&vectors) {
            let hits = vs
                .hybrid_search(&db, &q.query, v, K, None, &options)
                .await?;
            if hits.iter().any(|h| h.text_matched()) {
                text_matched_any[r] += 1;
            }
            per_query.push(hybrid_documents(&hits, *text_only));
        }
        found.push(per_query);
    }
    let names = ["vector", "text_all", "text_any", "hybrid_all", "hybrid_any"];
    for kind in ["question", "keyword"] {
        let idx: Vec<usize> = (0..queries.len())
            .filter(|&i| queries[i].kind == kind)
            .collect();
        let mut line = format!("hit@10 {kind} ({} queries):", idx.len());
        for (name, per_query) in names.iter().zip(&found) {
            let mut hits = 0;
            for &i in &idx {
                if hit(&pages(&db, &per_query[i]).await?, &queries[i].relevant) {
                    hits += 1;
                }
            }
            line.push_str(&format!(" {name}={:.3}", hits as f64 / idx.len() as f64));
        }
        println!("{line}");
    }
    println!(
        "queries whose text matched any chunk (of {}): all_words={} any_word={}",
        queries.len(),
        text_matched_any[0],
        text_matched_any[1]
    );

    // Index methods and knobs: recall@10 against exact search, median latency.
    println!("exact search: p50 {exact_p50:.2} ms (the baseline)");
    // Each list of probes ends with the default: fitted to the lists.
    let probes = |ps: &[u32]| -> Vec<SearchOptions> {
        ps.iter()
            .map(|&p| SearchOptions {
                probes: Some(p),
                ..SearchOptions::default()
            })
            .chain([SearchOptions::default()])
            .collect()
    };
    // IVFFlat with its fitted lists (rows / 1000), and with more lists (what a larger
    // table's fitting gives), to see how many probes reach a recall.
    let methods: Vec<(IndexMethod, Vec<SearchOptions>)> = vec![
        (IndexMethod::Ivfflat { lists: None }, probes(&[1, 2, 4, 8])),
        (
            IndexMethod::Ivfflat { lists: Some(32) },
            probes(&[1, 2, 4, 6, 8, 16]),
        ),
        (
            IndexMethod::Ivfflat { lists: Some(91) },
            probes(&[3, 6, 10, 15, 20, 30]),
        ),
        (
            IndexMethod::Hnsw {
                m: 16,
                ef_construction: 64,
            },
            [20u32, 40, 100]
                .iter()
                .map(|&ef| SearchOptions {
                    ef_search: ef,
                    ..SearchOptions::default()
                })
                .collect(),
        ),
    ];
    for (method, knobs) in methods {
        let report = store::reindex(&db, method, "256MB").await?;
        for options in knobs {
            let mut times = Vec::new();
            let mut recall = 0.0;
            for (v, want) in vectors.iter().zip(&truth) {
                let t = Instant::now();
                let hits = vs.search_with(&db, v, K, None, &options).await?;
                times.push(t.elapsed());
                let got: HashSet<Uuid> = hits.iter().map(|h| h.chunk_id).collect();
                recall += got.intersection(want).count() as f64 / want.len().max(1) as f64;
            }
            let p50 = median_ms(times);
            println!(
                "index {} {} probes={} ef_search={} built_in={:.1}s recall@10={:.3} p50_ms={p50:.2} ratio_vs_exact={:.2}",
                report.method,
                report.parameters,
                options
                    .probes
                    .map_or_else(|| "fitted".to_owned(), |p| p.to_string()),
                options.ef_search,
                report.duration.as_secs_f64(),
                recall / vectors.len() as f64,
                exact_p50 / p50
            );
        }
    }
    Ok(())
}
