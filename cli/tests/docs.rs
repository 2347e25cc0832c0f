//! `strata docs` as a process against a per-test database: an ingest is all or
//! nothing (a malformed line or a bad vector is reported by line number and nothing is
//! written), re-ingesting changes nothing, and search by vector, by a stored chunk and
//! by text (with the local embedder) finds what it should.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json as j};
use tests::TestDb;
use tests::vectors::unit_vector;

mod support;

use support::{fails, json, strata, strata_with_input};

const DIMENSION: usize = 384;

/// A line of an ingest file: `chunks` texts, each with the vector of seed `seed + i`.
fn line(key: &str, texts: &[&str], seed: u64) -> String {
    let chunks: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            j!({"content": text, "metadata": {"part": i}, "embedding": unit_vector(seed + i as u64, DIMENSION)})
        })
        .collect();
    j!({"source": "test", "key": key, "title": key, "metadata": {"lang": "en"}, "chunks": chunks})
        .to_string()
}

fn write(dir: &tempfile::TempDir, name: &str, lines: &[String]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write file");
    path.display().to_string()
}

#[tokio::test]
async fn ingest_is_all_or_nothing_and_reports_the_bad_line() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = [
        line("a", &["alpha one", "alpha two"], 1),
        line("b", &["beta one"], 10),
    ];
    let malformed = write(
        &dir,
        "malformed.jsonl",
        &[
            good[0].clone(),
            good[1].clone(),
            "{\"source\": \"test\", \"chunks\": [".into(),
        ],
    );
    fails(
        &t,
        &["docs", "ingest", &malformed, "--model", "test-model"],
        "malformed.jsonl:3:",
    );
    assert_eq!(t.scalar("SELECT count(*)::text FROM documents").await, "0");

    // A vector of the wrong dimension on line 2: the store's typed error, by line.
    let short =
        j!({"source": "test", "key": "c", "chunks": [{"content": "x", "embedding": [0.5, 0.5]}]});
    let bad_vector = write(&dir, "short.jsonl", &[good[0].clone(), short.to_string()]);
    fails(
        &t,
        &["docs", "ingest", &bad_vector, "--model", "test-model"],
        "short.jsonl:2:",
    );
    // A chunk with no embedding and no embedder.
    let bare = j!({"source": "test", "key": "d", "chunks": ["no vector"]});
    let unembedded = write(&dir, "bare.jsonl", &[bare.to_string()]);
    fails(
        &t,
        &["docs", "ingest", &unembedded, "--model", "test-model"],
        "bare.jsonl:1: chunk 0 has no embedding",
    );
    assert_eq!(t.scalar("SELECT count(*)::text FROM documents").await, "0");
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM document_chunks").await,
        "0"
    );

    let file = write(&dir, "good.jsonl", &good);
    let first = json(&t, &["docs", "ingest", &file, "--model", "test-model"]);
    assert_eq!(
        (first["documents"].as_i64(), first["chunks_added"].as_i64()),
        (Some(2), Some(3))
    );
    // Again: the recorded model is used, and nothing is written.
    let again = json(&t, &["docs", "ingest", &file]);
    assert_eq!(
        (
            again["chunks_added"].as_i64(),
            again["chunks_unchanged"].as_i64()
        ),
        (Some(0), Some(3))
    );
    // From stdin, one document changed: exactly its changed chunk is replaced.
    let changed = line("a", &["alpha one", "alpha two, revised"], 1);
    let out = strata_with_input(&t, &["docs", "ingest", "-", "--json"], changed.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (
            report["chunks_added"].as_i64(),
            report["chunks_removed"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM document_chunks").await,
        "3"
    );
}

#[tokio::test]
async fn search_by_vector_by_stored_chunk_health_and_reindex() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    fails(
        &t,
        &["docs", "search", "--embedding", "[1, 0]"],
        "the store is empty",
    );
    let file = write(
        &dir,
        "docs.jsonl",
        &[
            line("a", &["alpha one", "alpha two"], 1),
            line("b", &["beta one"], 10),
        ],
    );
    json(&t, &["docs", "ingest", &file, "--model", "test-model"]);
    let query = serde_json::to_string(&unit_vector(10, DIMENSION)).expect("query");
    let hits = json(&t, &["docs", "search", "--embedding", &query, "-k", "2"]);
    assert_eq!(hits.as_array().map(Vec::len), Some(2));
    assert_eq!(hits[0]["content"], "beta one");
    assert!((hits[0]["similarity"].as_f64().expect("similarity") - 1.0).abs() < 1e-4);

    let doc = t
        .scalar("SELECT id::text FROM documents WHERE external_key = 'a'")
        .await;
    let like = json(
        &t,
        &["docs", "search", "--like", &format!("{doc}:0"), "-k", "5"],
    );
    let found: Vec<&str> = like
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["content"].as_str().expect("content"))
        .collect();
    assert_eq!(
        found.len(),
        2,
        "every other chunk, not the one searched with"
    );
    assert!(!found.contains(&"alpha one"));
    fails(
        &t,
        &["docs", "search", "--like", "nonsense"],
        "DOCUMENT_ID:CHUNK_INDEX",
    );

    let health = json(&t, &["docs", "health"]);
    assert_eq!(health["built_on_too_little_data"], true);
    // The default chooses HNSW (its graph of 3 rows fits any memory), and says why.
    let rebuilt = json(&t, &["docs", "reindex"]);
    assert_eq!(
        (rebuilt["method"].as_str(), rebuilt["rows"].as_i64()),
        (Some("hnsw"), Some(3))
    );
    assert!(
        rebuilt["parameters"]["chosen_because"]
            .as_str()
            .is_some_and(|why| why.starts_with("hnsw: its graph")),
        "{rebuilt}"
    );
    let health = json(&t, &["docs", "health"]);
    assert_eq!(health["recommendation"]["action"], "keep");
    let table = strata(&t, &["docs", "health"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("idx_chunks_embedding"));
}

/// A stand-in for an OpenAI-compatible `/v1/embeddings`: each text's vector is the
/// sum of its words' (so texts sharing words are near), and it counts the texts.
async fn embeddings_api(texts: Arc<AtomicUsize>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    use axum::{Json, Router, routing::post};
    let app = Router::new().route(
        "/v1/embeddings",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let texts = Arc::clone(&texts);
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer k") {
                    return (StatusCode::UNAUTHORIZED, Json(j!({"error": "bad key"})));
                }
                let input: Vec<String> =
                    serde_json::from_value(body["input"].clone()).expect("input");
                texts.fetch_add(input.len(), Ordering::SeqCst);
                let data: Vec<Value> = input
                    .iter()
                    .enumerate()
                    .map(|(i, text)| {
                        let mut v = vec![0f32; DIMENSION];
                        for word in text.split_whitespace() {
                            let seed = word
                                .bytes()
                                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                            for (x, w) in v.iter_mut().zip(unit_vector(seed, DIMENSION)) {
                                *x += w;
                            }
                        }
                        j!({"index": i, "embedding": v})
                    })
                    .collect();
                (
                    StatusCode::OK,
                    Json(j!({"data": data, "model": body["model"]})),
                )
            }
        }),
    );
    tests::local_api::serve(app).await
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_and_search_with_the_http_embedder() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let texts = Arc::new(AtomicUsize::new(0));
    let url = embeddings_api(Arc::clone(&texts)).await;
    let lines: Vec<String> = ["red apples", "green pears", "blue plums"]
        .iter()
        .map(|text| j!({"source": "fruit", "key": text, "chunks": [text]}).to_string())
        .collect();
    let file = write(&dir, "fruit.jsonl", &lines);
    // Runs strata with the embedder's settings; expects success and parses stdout.
    let run = |args: &[&str]| {
        let (db, url) = (t.url.clone(), url.clone());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(support::STRATA)
                    .args(["--database-url", &db, "--json"])
                    .args(&args)
                    .env("STRATA_EMBED_URL", &url)
                    .env("STRATA_EMBED_MODEL", "test/words")
                    .env("STRATA_EMBED_DIMENSION", DIMENSION.to_string())
                    .env("STRATA_EMBED_API_KEY", "k")
                    .output()
                    .expect("run strata")
            })
            .await
            .expect("join");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
        }
    };
    let report = run(&["docs", "ingest", &file, "--embed", "http"]).await;
    assert_eq!(
        (report["embedded"].as_i64(), report["model"].as_str()),
        (Some(3), Some("test/words"))
    );
    assert_eq!(texts.load(Ordering::SeqCst), 3);
    let hits = run(&[
        "docs", "search", "--text", "green", "-k", "1", "--embed", "http",
    ])
    .await;
    assert_eq!(hits[0]["content"], "green pears");
    assert_eq!(
        hits[0]["vector_rank"], 1,
        "the embedding ranks it first too"
    );
    assert_eq!(texts.load(Ordering::SeqCst), 4, "one more text: the query");
}

#[tokio::test]
async fn text_search_with_the_local_embedder_finds_the_keyword() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: Vec<String> = [
        (
            "locks",
            "Advisory locks let an application lock on keys of its own choosing.",
        ),
        ("vacuum", "VACUUM reclaims storage occupied by dead tuples."),
        (
            "json",
            "The jsonb_path_ops operator class supports the containment operator.",
        ),
    ]
    .iter()
    .map(|(key, text)| j!({"source": "pg", "key": key, "title": key, "chunks": [text]}).to_string())
    .collect();
    let file = write(&dir, "texts.jsonl", &lines);
    let ingested = json(&t, &["docs", "ingest", &file, "--embed", "local"]);
    assert_eq!(ingested["embedded"], 3);
    let hits = json(
        &t,
        &[
            "docs",
            "search",
            "--text",
            "reclaiming dead tuples",
            "-k",
            "1",
        ],
    );
    assert_eq!(hits[0]["title"], "vacuum");
    assert_eq!(hits[0]["text_rank"], 1);
    assert_eq!(
        hits[0]["vector_rank"], 1,
        "the embedding ranks it first too"
    );
}
