//! The embedders: the OpenAI-compatible HTTP client against a local server this test
//! starts (its requests, its retries of 503, a wrong dimension, an error status), and
//! the store's `ingest_texts` / `search_text` conveniences through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use service::store::{
    self, DocumentKey, EmbedError, Embedder, HttpEmbedder, HttpEmbedderConfig, HybridOptions,
    NewChunk, NewDocument, StoreError, VectorStore,
};
use tests::TestDb;
use tests::vectors::unit_vector;

#[derive(Clone)]
struct Server {
    requests: Arc<AtomicUsize>,
    /// Answer 503 to this many requests first.
    fail_first: usize,
    dimension: usize,
    inputs: Arc<std::sync::Mutex<Vec<Vec<String>>>>,
}

/// An embedding that depends only on the text: the sum of its words' vectors.
fn embed_text(text: &str, dimension: usize) -> Vec<f32> {
    let mut v = vec![0f32; dimension];
    for word in text.split_whitespace() {
        let seed = word
            .to_lowercase()
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        for (x, w) in v.iter_mut().zip(unit_vector(seed, dimension)) {
            *x += w;
        }
    }
    v
}

async fn embeddings(
    State(server): State<Server>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let n = server.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer test-key") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad key"})));
    }
    if n < server.fail_first {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "busy"})),
        );
    }
    assert_eq!(body["model"], "test/http-embedder");
    let input: Vec<String> = serde_json::from_value(body["input"].clone()).expect("input");
    server.inputs.lock().expect("inputs").push(input.clone());
    // Answered out of order, as the API allows: the client sorts by index.
    let data: Vec<Value> = input
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embed_text(t, server.dimension)}))
        .collect();
    (
        StatusCode::OK,
        Json(json!({"object": "list", "data": data, "model": body["model"]})),
    )
}

/// Starts the server; returns its base URL and state.
async fn start(fail_first: usize, dimension: usize) -> (String, Server) {
    let server = Server {
        requests: Arc::new(AtomicUsize::new(0)),
        fail_first,
        dimension,
        inputs: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .with_state(server.clone());
    (tests::local_api::serve(app).await, server)
}

fn config(url: &str) -> HttpEmbedderConfig {
    HttpEmbedderConfig {
        api_key: Some("test-key".into()),
        batch_size: 2,
        ..HttpEmbedderConfig::new(url, "test/http-embedder", 384)
    }
}

#[tokio::test]
async fn the_http_embedder_batches_retries_and_checks_what_it_gets() {
    let (url, server) = start(2, 384).await;
    let embedder = HttpEmbedder::new(config(&url)).expect("embedder");
    let texts: Vec<String> = ["a raven", "a crow", "a jay"].map(String::from).to_vec();
    let vectors = store::embed_all(&embedder, &texts).await.expect("embed");
    assert_eq!(vectors.len(), 3);
    for (v, t) in vectors.iter().zip(&texts) {
        assert_eq!(v, &embed_text(t, 384), "in the texts' order");
    }
    // Two 503s retried, then two batches (2 + 1 texts).
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);
    assert_eq!(
        *server.inputs.lock().expect("inputs"),
        vec![
            vec!["a raven".to_owned(), "a crow".to_owned()],
            vec!["a jay".to_owned()]
        ]
    );

    // A wrong key: the status, typed.
    let bad = HttpEmbedder::new(HttpEmbedderConfig {
        api_key: Some("wrong".into()),
        ..config(&url)
    })
    .expect("embedder");
    assert!(matches!(
        bad.embed(&texts[..1]).await,
        Err(EmbedError::Status { status: 401, .. })
    ));
    // Vectors of another length than the configuration says.
    let (url, _) = start(0, 8).await;
    let short = HttpEmbedder::new(config(&url)).expect("embedder");
    assert!(matches!(
        store::embed_all(&short, &texts).await,
        Err(EmbedError::WrongDimension {
            text: 0,
            expected: 384,
            got: 8
        })
    ));
    // Nothing listening: a transport error after the attempts.
    let gone = HttpEmbedder::new(HttpEmbedderConfig {
        attempts: 2,
        ..config("http://127.0.0.1:9/v1")
    })
    .expect("embedder");
    assert!(matches!(
        gone.embed(&texts).await,
        Err(EmbedError::Transport { .. })
    ));
    assert!(matches!(
        HttpEmbedder::new(config("ftp://example.com")),
        Err(EmbedError::Config(_))
    ));
}

#[tokio::test]
async fn texts_are_ingested_and_searched_through_an_embedder() {
    let t = TestDb::new().await;
    let (url, server) = start(0, 384).await;
    let embedder = HttpEmbedder::new(config(&url)).expect("embedder");
    let chunk = |text: &str| NewChunk::new(text, "", Vec::new());
    let doc = NewDocument {
        key: None,
        title: Some("Birds".into()),
        content: "…".into(),
        source: Some("http".into()),
        metadata: json!({}),
        chunks: vec![
            chunk("ravens remember human faces"),
            chunk("crows drop nuts on roads"),
            chunk("jays bury acorns for winter"),
        ],
    };
    let report = store::ingest_texts(&t.db, &embedder, vec![doc.clone()])
        .await
        .expect("ingest");
    assert_eq!(report.chunks_added, 3);
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        2,
        "3 texts in batches of 2"
    );
    let vs = VectorStore::new(embedder.model().clone());
    let hits = vs
        .search_text(
            &t.db,
            &embedder,
            "acorns winter",
            2,
            None,
            &HybridOptions::default(),
        )
        .await
        .expect("search");
    assert_eq!(hits[0].hit.content, "jays bury acorns for winter");
    assert_eq!(hits[0].text_rank, Some(1));
    // An embedder of another model than the store's is refused before any call.
    let other = HttpEmbedder::new(HttpEmbedderConfig {
        model: "other".into(),
        ..config(&url)
    })
    .expect("embedder");
    let before = server.requests.load(Ordering::SeqCst);
    assert!(matches!(
        vs.search_text(&t.db, &other, "acorns", 2, None, &HybridOptions::default())
            .await,
        Err(StoreError::WrongModel { .. })
    ));
    assert_eq!(server.requests.load(Ordering::SeqCst), before);
    // An ingest through it too, before it embeds anything, and nothing is written.
    assert!(matches!(
        store::ingest_texts(&t.db, &other, vec![doc]).await,
        Err(StoreError::WrongModel { .. })
    ));
    assert_eq!(server.requests.load(Ordering::SeqCst), before);
    let documents = entity::documents::Entity::find()
        .count(&t.db)
        .await
        .expect("count");
    assert_eq!(documents, 1);
}

/// An embedder in this process that counts the texts it is asked to embed.
struct Counting {
    model: service::store::EmbeddingModel,
    texts: AtomicUsize,
}

impl Embedder for Counting {
    fn model(&self) -> &service::store::EmbeddingModel {
        &self.model
    }

    fn batch_size(&self) -> usize {
        16
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        Ok(texts.iter().map(|t| embed_text(t, 384)).collect())
    }
}

#[tokio::test]
async fn re_ingesting_unchanged_texts_makes_no_embedding_call() {
    let t = TestDb::new().await;
    let embedder = Counting {
        model: service::store::EmbeddingModel::new("counting/model-384", 384).expect("model"),
        texts: AtomicUsize::new(0),
    };
    let chunk = |text: &str| NewChunk::new(text, "", Vec::new());
    let doc = |key: &str, texts: &[&str]| NewDocument {
        key: Some(DocumentKey::External {
            source: "field-notes".into(),
            key: key.into(),
        }),
        title: Some(key.into()),
        content: texts.join(" "),
        source: None,
        metadata: json!({}),
        chunks: texts.iter().map(|t| chunk(t)).collect(),
    };
    let batch = vec![
        doc(
            "ravens",
            &[
                "ravens remember faces",
                "ravens play in snow",
                "ravens mate for life",
            ],
        ),
        doc("jays", &["jays bury acorns", "jays mimic hawks"]),
    ];
    let first = store::ingest_texts(&t.db, &embedder, batch.clone())
        .await
        .expect("first");
    assert_eq!(embedder.texts.load(Ordering::SeqCst), 5);
    assert_eq!(first.chunks_added, 5);

    // The same documents again: every vector is the stored one, nothing is written.
    let again = store::ingest_texts(&t.db, &embedder, batch.clone())
        .await
        .expect("again");
    assert_eq!(
        embedder.texts.load(Ordering::SeqCst),
        5,
        "no embedding call"
    );
    assert_eq!(
        (
            again.chunks_added,
            again.chunks_unchanged,
            again.documents_written
        ),
        (0, 5, 0)
    );

    // One text changed, one chunk's metadata changed: those two are embedded again.
    let mut changed = batch.clone();
    changed[0].chunks[1] = chunk("ravens slide down snowy roofs");
    changed[0].content = "ravens, revised".into();
    changed[1].chunks[0].metadata = json!({"season": "autumn"});
    let report = store::ingest_texts(&t.db, &embedder, changed)
        .await
        .expect("changed");
    assert_eq!(embedder.texts.load(Ordering::SeqCst), 7);
    assert_eq!((report.chunks_added, report.chunks_unchanged), (2, 3));

    // Found by id as well as by external key.
    let mut by_id = batch.clone();
    by_id[1].key = Some(DocumentKey::Id(first.ids[1]));
    by_id[1].source = Some("field-notes".into());
    by_id[1].chunks[0].metadata = json!({"season": "autumn"});
    store::ingest_texts(&t.db, &embedder, vec![by_id[1].clone()])
        .await
        .expect("by id");
    assert_eq!(embedder.texts.load(Ordering::SeqCst), 7, "stored as it is");

    // A document without a key cannot be found again: its texts are embedded.
    let mut keyless = batch[1].clone();
    keyless.key = None;
    store::ingest_texts(&t.db, &embedder, vec![keyless])
        .await
        .expect("keyless");
    assert_eq!(embedder.texts.load(Ordering::SeqCst), 9);
    // The stored vectors are the embedder's for those texts.
    let stored = store::chunk_embedding(&t.db, first.ids[1], 1)
        .await
        .expect("read")
        .expect("vector");
    assert_eq!(stored, embed_text("jays mimic hawks", 384));
}
