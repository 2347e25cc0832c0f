//! The vector store's searches over real PostgreSQL with pgvector: every filter
//! operator; a filter matching 1 % of 20,000 chunks still returns k rows (through the
//! iterative index scan, and through the exact fallback when the scan may not go far
//! enough); hybrid search puts a rare exact keyword first that vector search ranks
//! low; MMR picks diverse chunks; reindex while other tasks search; index health
//! before and after; the search log after a shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use service::store::{
    self, EmbeddingModel, Filter, HybridOptions, IndexMethod, MmrOptions, NewChunk, NewDocument,
    Recommendation, SearchLog, SearchLogConfig, SearchOptions, StoreError, TextMatch, VectorStore,
};
use tests::TestDb;
use tests::vectors::{near, unit_vector};

const MODEL: &str = "test/model-384";

fn model() -> EmbeddingModel {
    EmbeddingModel::new(MODEL, 384).expect("model")
}

fn chunk(text: &str, embedding: Vec<f32>, metadata: Value) -> NewChunk {
    NewChunk {
        metadata,
        ..NewChunk::new(text, MODEL, embedding)
    }
}

fn doc(source: &str, metadata: Value, chunks: Vec<NewChunk>) -> NewDocument {
    NewDocument {
        key: None,
        title: Some(source.to_owned()),
        content: chunks
            .iter()
            .map(|c| c.content.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        source: Some(source.to_owned()),
        metadata,
        chunks,
    }
}

/// The contents of the hits of an exact search with `filter`, sorted.
async fn matching(t: &TestDb, filter: Filter) -> Vec<String> {
    let hits = VectorStore::new(model())
        .search(&t.db, &unit_vector(0, 384), 100, Some(&filter))
        .await
        .unwrap_or_else(|e| panic!("search with {filter:?}: {e}"));
    let mut contents: Vec<String> = hits.into_iter().map(|h| h.content).collect();
    contents.sort();
    contents
}

#[tokio::test]
async fn every_filter_operator() {
    let t = TestDb::new().await;
    let rows = [
        ("a", json!({"n": 1, "lang": "en", "tags": ["x", "y"]})),
        ("b", json!({"n": 2, "lang": "de", "tags": ["y"]})),
        ("c", json!({"n": 3, "lang": "en", "obj": {"k": 1}})),
        ("d", json!({"n": "3", "lang": "fr"})),
        ("e", json!({})),
    ];
    let chunks = rows
        .iter()
        .enumerate()
        .map(|(i, (text, meta))| chunk(text, unit_vector(i as u64 + 1, 384), meta.clone()))
        .collect();
    let first = store::ingest(
        &t.db,
        &model(),
        &[doc("wiki", json!({"year": 2020}), chunks)],
    )
    .await
    .expect("ingest");
    store::ingest(
        &t.db,
        &model(),
        &[doc(
            "blog",
            json!({"year": 2024}),
            vec![chunk("f", unit_vector(9, 384), json!({"n": 10}))],
        )],
    )
    .await
    .expect("ingest");

    let c = Filter::chunk;
    assert_eq!(matching(&t, c("lang").eq("en")).await, ["a", "c"]);
    assert_eq!(matching(&t, c("n").eq(3)).await, ["c"], "3 is not \"3\"");
    assert_eq!(
        matching(&t, c("tags").eq(json!(["y"]))).await,
        ["b"],
        "whole arrays"
    );
    assert_eq!(matching(&t, c("lang").ne("en")).await, ["b", "d", "e", "f"]);
    assert_eq!(matching(&t, c("n").lt(3)).await, ["a", "b"]);
    assert_eq!(matching(&t, c("n").lte(3)).await, ["a", "b", "c"]);
    assert_eq!(matching(&t, c("n").gt(2)).await, ["c", "f"]);
    assert_eq!(matching(&t, c("n").gte(2)).await, ["b", "c", "f"]);
    assert_eq!(
        matching(&t, c("n").gte("3")).await,
        ["d"],
        "strings with strings"
    );
    assert_eq!(
        matching(&t, c("lang").is_in(["de", "fr"])).await,
        ["b", "d"]
    );
    assert_eq!(
        matching(&t, c("lang").not_in(["en", "de"])).await,
        ["d", "e", "f"]
    );
    assert_eq!(matching(&t, c("obj").exists()).await, ["c"]);
    assert_eq!(matching(&t, c("tags").contains("x")).await, ["a"]);
    assert_eq!(
        matching(&t, c("tags").contains(json!(["y"]))).await,
        ["a", "b"]
    );
    assert_eq!(
        matching(&t, c("obj").contains(json!({"k": 1}))).await,
        ["c"]
    );
    assert_eq!(matching(&t, Filter::source(["blog"])).await, ["f"]);
    assert_eq!(
        matching(&t, Filter::Documents(vec![first.ids[0]])).await,
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(
        matching(&t, Filter::document("year").gte(2021)).await,
        ["f"]
    );
    assert_eq!(
        matching(
            &t,
            Filter::Created {
                from: None,
                until: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
            }
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        matching(
            &t,
            Filter::or([
                Filter::and([c("lang").eq("en"), c("n").gt(1)]),
                c("lang").eq("fr").not().not(),
            ])
        )
        .await,
        ["c", "d"]
    );
    assert_eq!(matching(&t, Filter::and([])).await.len(), 6);
    assert!(matching(&t, Filter::or([])).await.is_empty());
    // A value that looks like SQL is a value.
    assert!(
        matching(&t, c("lang").eq("en' OR true --"))
            .await
            .is_empty()
    );
    // A promoted key gets its expression index (once), and its range filters stay
    // the same.
    let name = store::promote_key(&t.db, store::MetadataOf::Chunk, "n")
        .await
        .expect("promote");
    assert_eq!(
        store::promote_key(&t.db, store::MetadataOf::Chunk, "n")
            .await
            .expect("promote again"),
        name
    );
    assert_eq!(
        t.scalar(&format!(
            "SELECT indexdef FROM pg_indexes WHERE indexname = '{name}'"
        ))
        .await,
        format!(
            "CREATE INDEX {name} ON public.document_chunks USING btree (((metadata -> 'n'::text)))"
        )
    );
    assert_eq!(matching(&t, c("n").lt(3)).await, ["a", "b"]);
    assert!(matches!(
        store::promote_key(
            &t.db,
            store::MetadataOf::Document,
            "x'); DROP TABLE documents; --"
        )
        .await,
        Err(StoreError::Invalid {
            field: "metadata key",
            ..
        })
    ));
    // A bad key is refused before any SQL.
    assert!(matches!(
        VectorStore::new(model())
            .search(&t.db, &unit_vector(0, 384), 3, Some(&c("la'ng").eq("en")))
            .await,
        Err(StoreError::Invalid {
            field: "metadata key",
            ..
        })
    ));
}

/// Ingests `n` chunks around 20 cluster centres, chunk `i` in group `i % 100`, in
/// batches of 2,000.
async fn clustered_corpus(t: &TestDb, n: usize) {
    let centres: Vec<Vec<f32>> = (0..20).map(|c| unit_vector(10_000 + c, 384)).collect();
    for batch in 0..n.div_ceil(2000) {
        let chunks = (batch * 2000..((batch + 1) * 2000).min(n))
            .map(|i| {
                chunk(
                    &format!("chunk {i}"),
                    near(&centres[i % 20], i as u64, 0.6),
                    json!({"group": i % 100}),
                )
            })
            .collect();
        store::ingest(&t.db, &model(), &[doc("bulk", json!({}), chunks)])
            .await
            .expect("ingest");
    }
}

#[tokio::test]
async fn a_filter_matching_one_percent_of_20000_chunks_still_returns_k() {
    let t = TestDb::new().await;
    clustered_corpus(&t, 20_000).await;
    let report = store::reindex(&t.db, IndexMethod::Ivfflat { lists: None }, "256MB")
        .await
        .expect("reindex");
    assert_eq!(report.rows, 20_000);
    assert_eq!(report.parameters, json!({"lists": 20}));
    // A range on an unpromoted key: no index serves it, so the planner takes the
    // vector index and filters its rows (an equality would go to the GIN index).
    let filter = Filter::and([Filter::chunk("group").gte(7), Filter::chunk("group").lte(7)]);
    let query = unit_vector(10_003, 384);
    let search = |filter: Filter, options: SearchOptions| {
        let (db, query) = (t.db.clone(), query.clone());
        async move {
            store::search(&db, &model(), &query, 50, Some(&filter), &options)
                .await
                .expect("search")
        }
    };
    let (exact, _) = search(
        filter.clone(),
        SearchOptions {
            exact: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(exact.len(), 50);
    // The iterative scan goes on past the first list until it has k rows.
    let (hits, served) = search(
        filter.clone(),
        SearchOptions {
            probes: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert!(served.index && !served.exact_fallback, "{served:?}");
    assert_eq!(hits.len(), 50);
    assert!(hits.iter().all(|h| h.chunk_metadata["group"] == 7));
    let recall = hits
        .iter()
        .filter(|h| exact.iter().any(|e| e.chunk_id == h.chunk_id))
        .count();
    assert!(recall >= 48, "recall {recall} of 50");
    // Allowed a single list, the scan finds ~10 matching rows; the search repeats
    // exactly rather than return fewer than k.
    let (hits, served) = search(
        filter.clone(),
        SearchOptions {
            probes: Some(1),
            max_probes: 1,
            ..Default::default()
        },
    )
    .await;
    assert!(served.exact_fallback, "{served:?}");
    assert_eq!(
        hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
        exact.iter().map(|h| h.chunk_id).collect::<Vec<_>>()
    );
    // Through the GIN index, the same rows.
    let (hits, _) = search(Filter::chunk("group").eq(7), SearchOptions::default()).await;
    assert_eq!(hits.len(), 50);
    // Fewer than k match: all of them, and no more.
    let few = Filter::and([filter.clone(), Filter::chunk("group").ne(7)]);
    assert!(search(few, SearchOptions::default()).await.0.is_empty());
    // The knobs were local to each search's transaction.
    assert_eq!(t.scalar("SHOW ivfflat.probes").await, "1");
}

#[tokio::test]
async fn hybrid_search_puts_a_rare_exact_keyword_first() {
    let t = TestDb::new().await;
    let chunks: Vec<NewChunk> = (0..60)
        .map(|i| {
            if i == 37 {
                // Pointing away from the query: the vector ranking puts it last.
                let away: Vec<f32> = unit_vector(500, 384).iter().map(|x| -x).collect();
                chunk(
                    "the glockenspiel and the xylophone share a shelf",
                    near(&away, 37, 0.3),
                    json!({"i": i}),
                )
            } else {
                let text = format!("an ordinary sentence about birds, number {i}");
                chunk(&text, unit_vector(500 + i, 384), json!({"i": i}))
            }
        })
        .collect();
    store::ingest(&t.db, &model(), &[doc("music", json!({}), chunks)])
        .await
        .expect("ingest");
    let query = unit_vector(500, 384);
    let vs = VectorStore::new(model());
    let plain = vs.search(&t.db, &query, 60, None).await.expect("search");
    let keyword_rank = plain
        .iter()
        .position(|h| h.content.contains("xylophone"))
        .expect("in the vector ranking");
    assert_eq!(keyword_rank, 59, "vector search ranks it last");
    let options = HybridOptions {
        candidates: Some(60),
        ..Default::default()
    };
    let hits = vs
        .hybrid_search(&t.db, "xylophone", &query, 5, None, &options)
        .await
        .expect("hybrid");
    assert_eq!(hits.len(), 5);
    assert!(hits[0].hit.content.contains("xylophone"), "{:?}", hits[0]);
    assert_eq!(hits[0].text_rank, Some(1));
    assert_eq!(hits[0].vector_rank, Some(keyword_rank as i64 + 1));
    assert!(hits[1].text_rank.is_none() && hits[1].vector_rank == Some(1));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let expected = 1.0 / 61.0 + 1.0 / (60.0 + keyword_rank as f64 + 1.0);
    assert!((hits[0].score - expected).abs() < 1e-9, "{}", hits[0].score);
    // The filter applies to both rankings.
    let filtered = vs
        .hybrid_search(
            &t.db,
            "xylophone",
            &query,
            5,
            Some(&Filter::chunk("i").ne(37)),
            &options,
        )
        .await
        .expect("hybrid");
    assert!(
        filtered
            .iter()
            .all(|h| !h.hit.content.contains("xylophone"))
    );
    // Text weight 0: the vector order.
    let vector_only = vs
        .hybrid_search(
            &t.db,
            "xylophone",
            &query,
            5,
            None,
            &HybridOptions {
                text_weight: 0.0,
                ..options
            },
        )
        .await
        .expect("hybrid");
    assert_eq!(
        vector_only
            .iter()
            .map(|h| h.hit.chunk_id)
            .collect::<Vec<_>>(),
        plain[..5].iter().map(|h| h.chunk_id).collect::<Vec<_>>()
    );
    // A natural question: no chunk has all its words, so by default the text side
    // matches nothing and says so in every hit; matching any word finds the chunk.
    let question = "Where does the xylophone usually stand?";
    let all_words = vs
        .hybrid_search(&t.db, question, &query, 5, None, &options)
        .await
        .expect("hybrid");
    assert!(all_words.iter().all(|h| !h.text_matched()), "{all_words:?}");
    let any_word = vs
        .hybrid_search(
            &t.db,
            question,
            &query,
            5,
            None,
            &HybridOptions {
                text_match: TextMatch::AnyWord,
                ..options
            },
        )
        .await
        .expect("hybrid");
    assert!(
        any_word[0].hit.content.contains("xylophone"),
        "{any_word:?}"
    );
    assert_eq!(any_word[0].text_rank, Some(1));
    // Operators in the text are words there, never a query syntax: `-` negates
    // nothing, and a text of stop words only matches no chunk.
    let stop_words = vs
        .hybrid_search(
            &t.db,
            "the and of",
            &query,
            5,
            None,
            &HybridOptions {
                text_match: TextMatch::AnyWord,
                ..options
            },
        )
        .await
        .expect("hybrid");
    assert!(stop_words.iter().all(|h| !h.text_matched()));
}

#[tokio::test]
async fn mmr_prefers_a_diverse_chunk_to_a_near_duplicate() {
    let t = TestDb::new().await;
    let query = unit_vector(1, 384);
    let chunks = vec![
        chunk("closest", near(&query, 2, 0.1), json!({})),
        chunk(
            "near duplicate of closest",
            near(&query, 2, 0.11),
            json!({}),
        ),
        chunk("another direction", near(&query, 3, 0.5), json!({})),
    ];
    store::ingest(&t.db, &model(), &[doc("mmr", json!({}), chunks)])
        .await
        .expect("ingest");
    let vs = VectorStore::new(model());
    let plain = vs.search(&t.db, &query, 2, None).await.expect("search");
    assert_eq!(plain[1].content, "near duplicate of closest");
    let diverse = vs
        .mmr_search(&t.db, &query, 2, None, &MmrOptions::default())
        .await
        .expect("mmr");
    assert_eq!(
        diverse
            .iter()
            .map(|h| h.content.as_str())
            .collect::<Vec<_>>(),
        ["closest", "another direction"]
    );
    assert!(matches!(
        vs.mmr_search(
            &t.db,
            &query,
            2,
            None,
            &MmrOptions {
                lambda: 1.5,
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::Invalid {
            field: "lambda",
            ..
        })
    ));
}

#[tokio::test]
async fn reindex_while_others_search_and_index_health_before_and_after() {
    let t = TestDb::new().await;
    let health = store::index_health(&t.db).await.expect("health");
    assert!(health.built_on_too_little_data);
    assert!(matches!(health.recommendation, Recommendation::Wait(_)));
    clustered_corpus(&t, 4000).await;
    let health = store::index_health(&t.db).await.expect("health");
    assert_eq!(health.method.as_deref(), Some("ivfflat"));
    assert_eq!(health.parameters, json!({"lists": 100}));
    assert_eq!((health.rows_at_build, health.rows_now), (Some(0), 4000));
    assert!(
        matches!(&health.recommendation, Recommendation::Rebuild(why) if why.contains("lists = 4")),
        "{:?}",
        health.recommendation
    );

    let done = Arc::new(AtomicBool::new(false));
    let searches = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..4u64 {
        let (db, done, searches) = (t.db.clone(), done.clone(), searches.clone());
        tasks.push(tokio::spawn(async move {
            let vs = VectorStore::new(model());
            let mut i = 0;
            while !done.load(Ordering::Relaxed) || i < 3 {
                let hits = vs
                    .search(&db, &unit_vector(10_000 + (task + i) % 20, 384), 10, None)
                    .await
                    .expect("every search during the rebuild succeeds");
                assert_eq!(hits.len(), 10);
                searches.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for method in [
        IndexMethod::Hnsw {
            m: 8,
            ef_construction: 32,
        },
        IndexMethod::Ivfflat { lists: None },
    ] {
        store::reindex(&t.db, method, "128MB")
            .await
            .expect("reindex");
    }
    done.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("search task");
    }
    assert!(searches.load(Ordering::Relaxed) >= 12);

    let health = store::index_health(&t.db).await.expect("health");
    assert!(health.exists && health.valid);
    assert_eq!(health.method.as_deref(), Some("ivfflat"));
    assert_eq!(health.parameters, json!({"lists": 4}));
    assert_eq!((health.rows_at_build, health.rows_now), (Some(4000), 4000));
    assert!(!health.built_on_too_little_data);
    assert_eq!(health.recommendation, Recommendation::Keep);
    assert_eq!(
        t.scalar(
            "SELECT count(*)::text FROM pg_indexes WHERE indexname LIKE 'idx_chunks_embedding%'"
        )
        .await,
        "1"
    );
    // Searches go through the new index now.
    let (_, served) = store::search(
        &t.db,
        &model(),
        &unit_vector(10_001, 384),
        10,
        None,
        &SearchOptions::default(),
    )
    .await
    .expect("search");
    assert!(served.index && !served.exact_fallback);
    // Doubling the rows asks for a rebuild.
    clustered_corpus(&t, 4000).await;
    let health = store::index_health(&t.db).await.expect("health");
    assert!(
        matches!(health.recommendation, Recommendation::Rebuild(ref why) if why.contains("doubled"))
    );
}

#[tokio::test]
async fn every_search_is_in_the_log_after_shutdown() {
    let t = TestDb::new().await;
    store::ingest(
        &t.db,
        &model(),
        &[doc(
            "log",
            json!({}),
            (0..5)
                .map(|i| {
                    chunk(
                        &format!("logged chunk {i}"),
                        unit_vector(i, 384),
                        json!({"i": i}),
                    )
                })
                .collect(),
        )],
    )
    .await
    .expect("ingest");
    let log = SearchLog::start(
        t.db.clone(),
        SearchLogConfig {
            flush_every: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let vs = VectorStore::new(model()).with_log(log.clone());
    let query = unit_vector(2, 384);
    let filter = Filter::chunk("i").lt(4);
    let plain = vs
        .search(&t.db, &query, 3, Some(&filter))
        .await
        .expect("search");
    vs.hybrid_search(&t.db, "logged", &query, 2, None, &HybridOptions::default())
        .await
        .expect("hybrid");
    vs.mmr_search(&t.db, &query, 2, None, &MmrOptions::default())
        .await
        .expect("mmr");
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM search_logs").await,
        "0",
        "buffered"
    );
    assert_eq!(log.shutdown().await.expect("shutdown"), 3);
    assert_eq!(log.written(), 3);
    let rows = t
        .sql(
            "SELECT kind, query, top_k::text, results_count::text, filters::text,
                    cardinality(result_ids)::text, result_ids[1]::text,
                    round(best_similarity::numeric, 3)::text,
                    (knobs->>'probes'), (knobs->>'index'), (latency_ms > 0)::text
             FROM search_logs ORDER BY created_at",
        )
        .await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][0], "vector");
    assert_eq!(rows[0][2..4], ["3".to_owned(), "3".to_owned()]);
    assert_eq!(
        serde_json::from_str::<Filter>(&rows[0][4]).expect("filter json"),
        filter
    );
    assert_eq!(rows[0][5], "3");
    assert_eq!(rows[0][6], plain[0].chunk_id.to_string());
    assert_eq!(rows[0][7], "1.000");
    assert_eq!(
        rows[0][8], "20",
        "probes fitted to the seed index's 100 lists: ceil(2 sqrt(100))"
    );
    assert_eq!(rows[0][9], "false", "the empty-built index is not used");
    assert_eq!(rows[0][10], "true");
    assert_eq!(
        (rows[1][0].as_str(), rows[1][1].as_str()),
        ("hybrid", "logged")
    );
    assert_eq!(rows[2][0], "mmr");
    // After shutdown a search is counted as dropped, not lost silently.
    vs.search(&t.db, &query, 1, None).await.expect("search");
    assert_eq!(log.dropped(), 1);
}

#[tokio::test]
async fn the_default_index_is_hnsw_when_its_graph_fits_the_build_memory_and_says_why() {
    let t = TestDb::new().await;
    clustered_corpus(&t, 10_000).await;
    let report = store::reindex(&t.db, IndexMethod::default(), "64MB")
        .await
        .expect("reindex");
    assert_eq!(report.method, "hnsw");
    let health = store::index_health(&t.db).await.expect("health");
    assert_eq!(health.method.as_deref(), Some("hnsw"));
    let why = health.chosen_because.expect("a reason");
    assert!(
        why.starts_with("hnsw: its graph") && why.contains("10000 rows"),
        "{why}"
    );
    assert_eq!(health.recommendation, Recommendation::Keep);
    // The graph of 10,000 vectors of 384 dimensions (about 18 MB) does not fit 16 MB:
    // IVFFlat, with the reason.
    let report = store::reindex(&t.db, IndexMethod::Auto, "16MB")
        .await
        .expect("reindex");
    assert_eq!(report.method, "ivfflat");
    let why = store::index_health(&t.db)
        .await
        .expect("health")
        .chosen_because
        .expect("a reason");
    assert!(
        why.contains("would not fit maintenance_work_mem (16 MB)"),
        "{why}"
    );
    // An explicit method records no reason.
    store::reindex(
        &t.db,
        IndexMethod::Hnsw {
            m: 16,
            ef_construction: 64,
        },
        "64MB",
    )
    .await
    .expect("reindex");
    assert_eq!(
        store::index_health(&t.db)
            .await
            .expect("health")
            .chosen_because,
        None
    );
    // Searches go through it.
    let vs = VectorStore::new(model());
    let hits = vs
        .search(&t.db, &unit_vector(10_000, 384), 5, None)
        .await
        .expect("search");
    assert_eq!(hits.len(), 5);
}
