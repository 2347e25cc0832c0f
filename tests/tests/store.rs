//! The vector document store over real PostgreSQL with pgvector: ingest, search and
//! delete round trip; idempotent re-ingest (an unchanged document writes no row, a
//! changed one has exactly its changed chunks replaced); upserts by external key; every
//! bad input a typed error with nothing written; the migration's IVFFlat index, built
//! on an empty table, never starves a search; ingest joins the caller's transaction.

use sea_orm::TransactionTrait;
use serde_json::json;
use service::error::DbError;
use service::store::{
    self, DocumentKey, EmbeddingModel, NewChunk, NewDocument, SearchOptions, StoreError,
    VectorStore,
};
use tests::TestDb;
use uuid::Uuid;

const MODEL: &str = "test/model-384";

fn model() -> EmbeddingModel {
    EmbeddingModel::new(MODEL, 384).expect("model")
}

/// A deterministic unit vector for `seed`.
fn vector(seed: u64) -> Vec<f32> {
    tests::vectors::unit_vector(seed, 384)
}

fn document(key: Option<DocumentKey>, texts: &[(&str, u64)]) -> NewDocument {
    NewDocument {
        key,
        title: Some("Corvids".into()),
        content: texts.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(" "),
        source: Some("tests".into()),
        metadata: json!({"lang": "en"}),
        chunks: texts
            .iter()
            .map(|(t, seed)| NewChunk::new(*t, MODEL, vector(*seed)))
            .collect(),
    }
}

async fn counts(t: &TestDb) -> [String; 2] {
    let row = t
        .sql("SELECT (SELECT count(*) FROM documents)::text, (SELECT count(*) FROM document_chunks)::text")
        .await;
    [row[0][0].clone(), row[0][1].clone()]
}

/// Each chunk's (index, xmin) of a document: a rewritten row has a new xmin.
async fn versions(t: &TestDb, id: Uuid) -> Vec<Vec<String>> {
    t.sql(&format!(
        "SELECT chunk_index::text, xmin::text, id::text FROM document_chunks
         WHERE document_id = '{id}' ORDER BY chunk_index"
    ))
    .await
}

#[tokio::test]
async fn ingest_search_and_delete_round_trip() {
    let t = TestDb::new().await;
    let report = store::ingest(
        &t.db,
        &model(),
        &[
            document(
                None,
                &[("ravens remember faces", 1), ("crows use tools", 2)],
            ),
            document(
                None,
                &[("jays cache acorns", 3), ("magpies", 4), ("rooks", 5)],
            ),
        ],
    )
    .await
    .expect("ingest");
    assert_eq!(report.ids.len(), 2);
    assert_eq!(
        (
            report.documents_written,
            report.chunks_added,
            report.chunks_removed
        ),
        (2, 5, 0)
    );
    assert_eq!(counts(&t).await, ["2", "5"]);
    assert_eq!(
        t.scalar("SELECT name || ':' || dimension FROM embedding_model")
            .await,
        format!("{MODEL}:384")
    );

    let hits = VectorStore::new(model())
        .search(&t.db, &vector(3), 3, None)
        .await
        .expect("search");
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].content, "jays cache acorns");
    assert_eq!(hits[0].document_id, report.ids[1]);
    assert_eq!(hits[0].chunk_index, 0);
    assert!(hits[0].similarity > 0.999, "{}", hits[0].similarity);
    assert!(hits[0].distance < 0.001);
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    assert_eq!(hits[0].source.as_deref(), Some("tests"));
    assert_eq!(hits[0].document_metadata, json!({"lang": "en"}));

    let gone = store::delete_document(&t.db, report.ids[1])
        .await
        .expect("delete");
    assert_eq!(gone.chunks, 3);
    assert_eq!(counts(&t).await, ["1", "2"]);
    let hits = VectorStore::new(model())
        .search(&t.db, &vector(3), 5, None)
        .await
        .expect("search");
    assert_eq!(hits.len(), 2, "only the remaining document's chunks");
    assert!(hits.iter().all(|h| h.document_id == report.ids[0]));
    assert!(matches!(
        store::delete_document(&t.db, report.ids[1]).await,
        Err(StoreError::NotFound(id)) if id == report.ids[1]
    ));
}

/// The two ways in: `ingest` (INSERTs, on any connection) and `ingest_copy` (binary
/// COPY on a connection of its own).
#[derive(Debug, Clone, Copy)]
enum Path {
    Insert,
    Copy,
}

async fn ingest_by(
    path: Path,
    t: &TestDb,
    model: &EmbeddingModel,
    docs: &[NewDocument],
) -> Result<store::IngestReport, StoreError> {
    match path {
        Path::Insert => store::ingest(&t.db, model, docs).await,
        Path::Copy => store::ingest_copy(&t.db, model, docs).await,
    }
}

#[tokio::test]
async fn re_ingesting_writes_only_what_changed() {
    re_ingest_writes_only_what_changed(Path::Insert).await;
}

#[tokio::test]
async fn re_ingesting_by_copy_writes_only_what_changed() {
    re_ingest_writes_only_what_changed(Path::Copy).await;
}

async fn re_ingest_writes_only_what_changed(path: Path) {
    let t = TestDb::new().await;
    let id = Uuid::new_v4();
    let first = document(
        Some(DocumentKey::Id(id)),
        &[("ravens", 1), ("crows", 2), ("jays", 3)],
    );
    ingest_by(path, &t, &model(), std::slice::from_ref(&first))
        .await
        .expect("ingest");
    let before = versions(&t, id).await;
    let document_version = t
        .scalar(&format!(
            "SELECT xmin::text FROM documents WHERE id = '{id}'"
        ))
        .await;

    // Unchanged: no row written.
    let again = ingest_by(path, &t, &model(), std::slice::from_ref(&first))
        .await
        .expect("ingest");
    assert_eq!(again.ids, [id]);
    assert_eq!(
        (
            again.documents_written,
            again.chunks_added,
            again.chunks_removed,
            again.chunks_unchanged
        ),
        (0, 0, 0, 3)
    );
    assert_eq!(versions(&t, id).await, before);
    assert_eq!(
        t.scalar(&format!(
            "SELECT xmin::text FROM documents WHERE id = '{id}'"
        ))
        .await,
        document_version
    );

    // Chunk 1 changed, chunk 2 gone: exactly those replaced or removed.
    let changed = document(Some(DocumentKey::Id(id)), &[("ravens", 1), ("crows!", 2)]);
    let report = ingest_by(path, &t, &model(), &[changed])
        .await
        .expect("ingest");
    assert_eq!(
        (
            report.chunks_added,
            report.chunks_removed,
            report.chunks_unchanged
        ),
        (1, 2, 1)
    );
    let after = versions(&t, id).await;
    assert_eq!(after.len(), 2);
    assert_eq!(after[0], before[0], "chunk 0 untouched");
    assert_ne!(after[1][2], before[1][2], "chunk 1 replaced");
    assert_eq!(
        t.scalar(&format!(
            "SELECT content FROM document_chunks WHERE document_id = '{id}' AND chunk_index = 1"
        ))
        .await,
        "crows!"
    );
}

#[tokio::test]
async fn a_batch_of_new_and_keyed_documents_by_insert() {
    a_batch_of_new_and_keyed_documents(Path::Insert).await;
}

#[tokio::test]
async fn a_batch_of_new_and_keyed_documents_by_copy() {
    a_batch_of_new_and_keyed_documents(Path::Copy).await;
}

/// A batch mixing documents without a key (new each time, whose chunks skip the stale
/// check) with a keyed one that changed: ids in the batch's order, every chunk at its
/// document and index, only the keyed document's changed chunk replaced, and a new
/// document's chunk hashed as the keyed one's same chunk is.
async fn a_batch_of_new_and_keyed_documents(path: Path) {
    let t = TestDb::new().await;
    let keyed = Uuid::new_v4();
    let doc = |texts: &[(&str, u64)]| document(Some(DocumentKey::Id(keyed)), texts);
    ingest_by(
        path,
        &t,
        &model(),
        &[doc(&[("ravens", 1), ("crows", 2), ("jays", 3)])],
    )
    .await
    .expect("first ingest");
    let before = versions(&t, keyed).await;

    let batch = [
        document(None, &[("ravens", 1), ("rooks", 4)]),
        doc(&[("ravens", 1), ("crows!", 2), ("jays", 3)]),
        document(None, &[("magpies", 5)]),
    ];
    let report = ingest_by(path, &t, &model(), &batch)
        .await
        .expect("mixed ingest");
    assert_eq!(report.ids.len(), 3);
    assert_eq!(report.ids[1], keyed);
    assert!(!report.ids.contains(&Uuid::nil()));
    assert_eq!(
        (
            report.documents_written,
            report.chunks_added,
            report.chunks_removed,
            report.chunks_unchanged
        ),
        (3, 4, 1, 2)
    );
    let after = versions(&t, keyed).await;
    assert_eq!(
        (after[0].clone(), after[2].clone()),
        (before[0].clone(), before[2].clone())
    );
    assert_ne!(after[1][2], before[1][2], "the changed chunk is replaced");
    for (id, texts) in [(report.ids[0], "ravens,rooks"), (report.ids[2], "magpies")] {
        assert_eq!(
            t.scalar(&format!(
                "SELECT string_agg(content, ',' ORDER BY chunk_index) FROM document_chunks
                 WHERE document_id = '{id}'"
            ))
            .await,
            texts
        );
    }
    assert_eq!(
        t.scalar(&format!(
            "SELECT count(DISTINCT content_hash)::text FROM document_chunks
             WHERE content = 'ravens' AND document_id IN ('{keyed}', '{}')",
            report.ids[0]
        ))
        .await,
        "1",
        "the same chunk has the same hash, keyed or not"
    );
    assert_eq!(counts(&t).await, ["3", "6"]);
}

#[tokio::test]
async fn both_ways_in_agree_on_what_is_unchanged() {
    let t = TestDb::new().await;
    let id = Uuid::new_v4();
    let doc = |texts: &[(&str, u64)]| document(Some(DocumentKey::Id(id)), texts);
    let written = store::ingest(&t.db, &model(), &[doc(&[("ravens", 1), ("crows", 2)])])
        .await
        .expect("ingest");
    assert_eq!(written.chunks_added, 2);
    let before = versions(&t, id).await;
    let again = store::ingest_copy(&t.db, &model(), &[doc(&[("ravens", 1), ("crows", 2)])])
        .await
        .expect("ingest_copy");
    assert_eq!(
        (
            again.documents_written,
            again.chunks_added,
            again.chunks_unchanged
        ),
        (0, 0, 2)
    );
    assert_eq!(versions(&t, id).await, before);

    let grown = store::ingest_copy(
        &t.db,
        &model(),
        &[doc(&[("ravens", 1), ("rooks", 5), ("jays", 3)])],
    )
    .await
    .expect("ingest_copy");
    assert_eq!(
        (
            grown.chunks_added,
            grown.chunks_removed,
            grown.chunks_unchanged
        ),
        (2, 1, 1)
    );
    let back = store::ingest(
        &t.db,
        &model(),
        &[doc(&[("ravens", 1), ("rooks", 5), ("jays", 3)])],
    )
    .await
    .expect("ingest");
    assert_eq!((back.chunks_added, back.chunks_unchanged), (0, 3));
    assert_eq!(
        t.sql(&format!(
            "SELECT chunk_index::text, content, (search_vector IS NOT NULL)::text
             FROM document_chunks WHERE document_id = '{id}' ORDER BY chunk_index"
        ))
        .await,
        [
            ["0", "ravens", "true"],
            ["1", "rooks", "true"],
            ["2", "jays", "true"]
        ]
    );
}

#[tokio::test]
async fn a_copy_the_server_refuses_rolls_the_whole_batch_back() {
    let t = TestDb::new().await;
    t.sql("ALTER TABLE document_chunks ADD CONSTRAINT no_poison CHECK (content <> 'poison')")
        .await;
    let result = store::ingest_copy(
        &t.db,
        &model(),
        &[
            document(None, &[("ravens", 1), ("crows", 2)]),
            document(None, &[("jays", 3), ("poison", 4)]),
        ],
    )
    .await;
    assert!(
        matches!(
            result,
            Err(StoreError::Database(DbError::CheckViolation { ref constraint, .. }))
                if constraint.as_deref() == Some("no_poison")
        ),
        "{result:?}"
    );
    assert_eq!(counts(&t).await, ["0", "0"]);
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM embedding_model").await,
        "0"
    );
}

#[tokio::test]
async fn documents_are_upserted_by_their_external_key() {
    let t = TestDb::new().await;
    let key = || {
        Some(DocumentKey::External {
            source: "wiki".into(),
            key: "Corvidae".into(),
        })
    };
    let first = store::ingest(&t.db, &model(), &[document(key(), &[("ravens", 1)])])
        .await
        .expect("ingest");
    let mut retitled = document(key(), &[("ravens", 1)]);
    retitled.title = Some("Crows and ravens".into());
    let second = store::ingest(&t.db, &model(), &[retitled.clone()])
        .await
        .expect("ingest");
    assert_eq!(second.ids, first.ids, "the same document");
    assert_eq!(
        (second.documents_written, second.chunks_added),
        (1, 0),
        "the title changed, not the chunk"
    );
    let third = store::ingest(&t.db, &model(), &[retitled])
        .await
        .expect("ingest");
    assert_eq!((third.ids.clone(), third.documents_written), (first.ids, 0));
    assert_eq!(
        t.sql("SELECT source, external_key, title FROM documents")
            .await,
        [["wiki", "Corvidae", "Crows and ravens"]]
    );
    // Another source, the same key: another document.
    let other = store::ingest(
        &t.db,
        &model(),
        &[document(
            Some(DocumentKey::External {
                source: "blog".into(),
                key: "Corvidae".into(),
            }),
            &[("ravens", 1)],
        )],
    )
    .await
    .expect("ingest");
    assert_ne!(other.ids, third.ids);
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_writes_nothing() {
    bad_input_writes_nothing(Path::Insert).await;
}

#[tokio::test]
async fn bad_input_to_ingest_copy_is_a_typed_error_and_writes_nothing() {
    bad_input_writes_nothing(Path::Copy).await;
}

async fn bad_input_writes_nothing(path: Path) {
    let t = TestDb::new().await;
    let good = || document(None, &[("ravens", 1), ("crows", 2), ("jays", 3)]);
    let mut other_model = good();
    other_model.chunks[2].model = "another/model".into();
    let mut short = good();
    short.chunks[1].embedding.pop();
    let mut nan = good();
    nan.chunks[0].embedding[7] = f32::NAN;
    let mut infinite = good();
    infinite.chunks[2].embedding[0] = f32::INFINITY;
    let mut empty = good();
    empty.chunks[1].content = "  ".into();
    let mut no_chunks = good();
    no_chunks.chunks.clear();

    let batch = |bad: NewDocument| vec![good(), bad];
    let m = model();
    assert!(matches!(
        ingest_by(path, &t, &m, &batch(other_model)).await,
        Err(StoreError::ModelMismatch { document: 1, chunk: 2, ref got, .. }) if got == "another/model"
    ));
    assert!(matches!(
        ingest_by(path, &t, &m, &batch(short)).await,
        Err(StoreError::WrongDimension {
            document: 1,
            chunk: 1,
            expected: 384,
            got: 383
        })
    ));
    assert!(matches!(
        ingest_by(path, &t, &m, &batch(nan)).await,
        Err(StoreError::NonFinite {
            document: 1,
            chunk: 0,
            component: 7,
            ..
        })
    ));
    assert!(matches!(
        ingest_by(path, &t, &m, &batch(infinite)).await,
        Err(StoreError::NonFinite {
            document: 1,
            chunk: 2,
            component: 0,
            ..
        })
    ));
    assert!(matches!(
        ingest_by(path, &t, &m, &batch(empty)).await,
        Err(StoreError::EmptyChunk {
            document: 1,
            chunk: 1
        })
    ));
    assert!(matches!(
        ingest_by(path, &t, &m, &batch(no_chunks)).await,
        Err(StoreError::NoChunks { document: 1 })
    ));
    let twice = document(Some(DocumentKey::Id(Uuid::from_u128(9))), &[("a", 1)]);
    assert!(matches!(
        ingest_by(path, &t, &m, &[twice.clone(), twice]).await,
        Err(StoreError::DuplicateDocument {
            first: 0,
            second: 1,
            ..
        })
    ));
    assert_eq!(counts(&t).await, ["0", "0"]);
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM embedding_model").await,
        "0"
    );

    // The store's model is the first ingest's; another is refused, whole.
    ingest_by(path, &t, &m, &[good()]).await.expect("ingest");
    let other = EmbeddingModel::new("another/model", 384).expect("model");
    let mut theirs = good();
    theirs
        .chunks
        .iter_mut()
        .for_each(|c| c.model = "another/model".into());
    assert!(matches!(
        ingest_by(path, &t, &other, &[theirs]).await,
        Err(StoreError::WrongModel { ref expected, .. }) if expected == MODEL
    ));
    // Searching with another model, or another dimension, is refused too.
    assert!(matches!(
        VectorStore::new(other.clone()).search(&t.db, &vector(1), 3, None).await,
        Err(StoreError::WrongModel { ref got, .. }) if got == "another/model"
    ));
    let wide = EmbeddingModel::new(MODEL, 768).expect("model");
    assert!(matches!(
        VectorStore::new(wide.clone())
            .search(&t.db, &[0.1; 768], 3, None)
            .await,
        Err(StoreError::WrongModel { .. })
    ));
    assert!(matches!(
        VectorStore::new(m.clone())
            .search(&t.db, &vector(1)[..383], 3, None)
            .await,
        Err(StoreError::WrongDimension {
            expected: 384,
            got: 383,
            ..
        })
    ));
    assert_eq!(counts(&t).await, ["1", "3"]);
}

#[tokio::test]
async fn a_small_corpus_behind_the_migrations_empty_built_index_still_returns_k() {
    let t = TestDb::new().await;
    // The migration built idx_chunks_embedding (IVFFlat, 100 lists) on an empty table.
    assert_eq!(
        t.scalar("SELECT rows_at_build::text FROM vector_index_builds WHERE index_name = 'idx_chunks_embedding'")
            .await,
        "0"
    );
    let texts: Vec<(String, u64)> = (0..5).map(|i| (format!("chunk {i}"), 100 + i)).collect();
    let refs: Vec<(&str, u64)> = texts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    store::ingest(&t.db, &model(), &[document(None, &refs)])
        .await
        .expect("ingest");
    for exact in [false, true] {
        let hits = VectorStore::new(model())
            .search_with(
                &t.db,
                &vector(102),
                5,
                None,
                &SearchOptions {
                    exact,
                    probes: Some(1),
                    ..Default::default()
                },
            )
            .await
            .expect("search");
        assert_eq!(hits.len(), 5, "exact = {exact}");
        assert_eq!(hits[0].content, "chunk 2");
    }
}

#[tokio::test]
async fn ingest_joins_the_callers_transaction() {
    let t = TestDb::new().await;
    let txn = t.db.begin().await.expect("begin");
    let report = store::ingest(&txn, &model(), &[document(None, &[("ravens", 1)])])
        .await
        .expect("ingest");
    assert_eq!(report.chunks_added, 1);
    txn.rollback().await.expect("rollback");
    assert_eq!(counts(&t).await, ["0", "0"]);
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM embedding_model").await,
        "0"
    );
}
