//! The local all-MiniLM-L6-v2 embedder (feature `local-embedder`, weights from
//! `scripts/setup-model.sh`): sentence similarity as the model is known for,
//! deterministic unit vectors, and ingest and hybrid search through it.

use serde_json::json;
use service::store::{
    self, Embedder, HybridOptions, LOCAL_MODEL_NAME, LocalEmbedder, NewChunk, NewDocument,
    VectorStore,
};
use tests::TestDb;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn embedder() -> LocalEmbedder {
    LocalEmbedder::load_default().expect("the model (scripts/setup-model.sh; `make test` runs it)")
}

#[tokio::test]
async fn similar_sentences_are_closer_and_embeddings_are_deterministic() {
    let e = embedder();
    assert_eq!(
        (e.model().name.as_str(), e.model().dimension),
        (LOCAL_MODEL_NAME, 384)
    );
    let texts: Vec<String> = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
    ]
    .map(String::from)
    .to_vec();
    let v = store::embed_all(&e, &texts).await.expect("embed");
    for x in &v {
        let norm = cosine(x, x).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    let bread = cosine(&v[0], &v[1]);
    let baby = cosine(&v[0], &v[2]);
    assert!(bread > baby + 0.3, "bread {bread}, baby {baby}");
    // sentence-transformers gives 0.7553 for this pair.
    assert!((bread - 0.755).abs() < 0.01, "{bread}");
    // Alone or in a batch (with padding), the same vector.
    let again = store::embed_all(&e, &texts[..1]).await.expect("embed");
    assert!(
        again[0]
            .iter()
            .zip(&v[0])
            .all(|(a, b)| (a - b).abs() < 1e-5)
    );
    let twice = store::embed_all(&e, &texts).await.expect("embed");
    assert_eq!(twice, v, "deterministic");
}

#[tokio::test]
async fn texts_ingested_with_the_local_model_are_found_by_meaning() {
    let t = TestDb::new().await;
    let e = embedder();
    let chunk = |text: &str| NewChunk::new(text, "", Vec::new());
    let doc = NewDocument {
        key: None,
        title: Some("PostgreSQL".into()),
        content: "…".into(),
        source: Some("docs".into()),
        metadata: json!({}),
        chunks: vec![
            chunk("VACUUM reclaims storage occupied by dead tuples."),
            chunk("A B-tree index speeds up equality and range queries."),
            chunk("The weather in Lisbon is mild in winter."),
        ],
    };
    store::ingest_texts(&t.db, &e, vec![doc])
        .await
        .expect("ingest");
    let vs = VectorStore::new(e.model().clone());
    let hits = vs
        .search_text(
            &t.db,
            &e,
            "how do I free space from deleted rows",
            1,
            None,
            &HybridOptions::default(),
        )
        .await
        .expect("search");
    assert_eq!(
        hits[0].hit.content,
        "VACUUM reclaims storage occupied by dead tuples."
    );
}
