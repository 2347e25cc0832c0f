//! The vector store from an application: documents ingested with the local embedder,
//! searched by vector, hybrid (vector and full text fused) and with a metadata
//! filter, then ingested again unchanged, which embeds nothing.

use std::io::Write;

use sea_orm::DatabaseConnection;
use serde_json::json;
use service::error::BoxError;
use service::store::{
    self, DocumentKey, Embedder, Filter, HybridOptions, LocalEmbedder, NewChunk, NewDocument,
    VectorStore,
};

/// A field guide's page as a document: found again by its key, one chunk per
/// sentence, no vectors yet (the embedder makes them).
fn page(key: &str, family: &str, sentences: &[&str]) -> NewDocument {
    NewDocument {
        key: Some(DocumentKey::External {
            source: "field-guide".to_owned(),
            key: key.to_owned(),
        }),
        title: Some(key.to_owned()),
        content: sentences.join(" "),
        source: None,
        metadata: json!({ "family": family }),
        chunks: sentences
            .iter()
            .map(|s| NewChunk::new(*s, "", Vec::new()))
            .collect(),
    }
}

/// Ingests three pages, searches them three ways, and ingests them again.
pub async fn store_tour(db: &DatabaseConnection, out: &mut impl Write) -> Result<(), BoxError> {
    let embedder = LocalEmbedder::load_default()?;
    let pages = vec![
        page(
            "ravens",
            "corvids",
            &[
                "Ravens remember the faces of people who threatened them.",
                "Young ravens play by sliding down snowy roofs.",
            ],
        ),
        page(
            "jays",
            "corvids",
            &["Jays bury thousands of acorns in autumn and find most of them again."],
        ),
        page(
            "swifts",
            "apodidae",
            &["Swifts sleep on the wing and land only to nest."],
        ),
    ];
    let report = store::ingest_texts(db, &embedder, pages.clone()).await?;
    writeln!(out, "store: {} chunks added", report.chunks_added)?;

    let store = VectorStore::new(embedder.model().clone());
    let question = "Which bird recognises people?";
    let vector = store::embed_all(&embedder, &[question.to_owned()])
        .await?
        .remove(0);
    let hits = store.search(db, &vector, 1, None).await?;
    writeln!(out, "vector: {}", hits[0].content)?;

    let hybrid = store
        .search_text(db, &embedder, "acorns", 1, None, &HybridOptions::default())
        .await?;
    writeln!(
        out,
        "hybrid: {} (matched by text: {})",
        hybrid[0].hit.content,
        hybrid[0].text_matched()
    )?;

    let not_corvids = Filter::document("family").ne("corvids");
    let filtered = store.search(db, &vector, 1, Some(&not_corvids)).await?;
    writeln!(out, "filtered: {}", filtered[0].content)?;

    // The same pages again: each chunk keeps its stored vector, nothing is embedded
    // or written.
    let again = store::ingest_texts(db, &embedder, pages).await?;
    writeln!(
        out,
        "store again: {} unchanged, {} added",
        again.chunks_unchanged, again.chunks_added
    )?;
    Ok(())
}
