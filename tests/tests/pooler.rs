//! Through a real PgBouncer in transaction mode (`pool_mode = transaction`, Debian's
//! pgbouncer 1.18, which does not track prepared statements), on the pooled URL:
//! statements never bind another client's statement; a worker claims and completes
//! while its LISTEN is on the direct URL; cache single flight across tasks and
//! instances, with a direct URL (session locks) and without (transaction locks);
//! store ingest and search; a review decision; a maintenance `run_due`; and what
//! needs a session, without a direct URL, is a typed error naming it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use service::accounts::{NewUser, Role, create_user};
use service::cache::pdf::{PdfCache, PdfKey, PdfSettings};
use service::cache::{CacheConfig, Origin};
use service::db::{DatabaseUrls, SessionUse, Topology};
use service::error::{BoxError, DbError};
use service::maintenance::RunOutcome;
use service::queue::worker::Worker;
use service::queue::{self, JOBS, NewJob};
use service::store::{
    self, EmbeddingModel, HybridOptions, IndexMethod, NewChunk, NewDocument, StoreError,
    VectorStore,
};
use tests::TestDb;
use tests::pgbouncer::PgBouncer;
use tests::queue::{fast, spawn, wait_for};

/// The pooled URL of `t` through `bouncer`, with `t`'s own URL as `DIRECT_URL`.
fn urls(t: &TestDb, bouncer: &PgBouncer, direct: bool) -> DatabaseUrls {
    let urls = DatabaseUrls::new(bouncer.url(&t.name));
    if direct {
        urls.with_direct(t.owner_url())
    } else {
        urls
    }
}

async fn topology(t: &TestDb, bouncer: &PgBouncer, direct: bool) -> Topology {
    Topology::connect(&urls(t, bouncer, direct), 8)
        .await
        .expect("connect through pgbouncer")
}

#[tokio::test]
async fn statements_through_the_pooler_never_bind_another_clients_statement() {
    let t = TestDb::new().await;
    let bouncer = PgBouncer::start(4);
    // No DIRECT_URL: the probe alone must find the pooler.
    let db = topology(&t, &bouncer, false).await;
    assert!(db.is_multiplexed(), "two clients shared one backend");
    let tasks: Vec<_> = (0..16i32)
        .map(|task| {
            let db = db.clone();
            tokio::spawn(async move {
                let sql = format!("SELECT $1::int + {task} AS v");
                let mut wrong = Vec::new();
                for i in 0..200i32 {
                    let row = db
                        .query_one_raw(Statement::from_sql_and_values(
                            DbBackend::Postgres,
                            &sql,
                            [i.into()],
                        ))
                        .await
                        .expect("query")
                        .expect("a row");
                    let v: i32 = row.try_get("", "v").expect("v");
                    if v != i + task {
                        wrong.push((i, v));
                    }
                }
                wrong
            })
        })
        .collect();
    for (task, handle) in tasks.into_iter().enumerate() {
        let wrong = handle.await.expect("join");
        assert!(wrong.is_empty(), "task {task} got other answers: {wrong:?}");
    }
    db.close().await;
}

#[tokio::test]
async fn a_worker_claims_and_completes_through_the_pooler_and_listens_on_the_direct_url() {
    let t = TestDb::new().await;
    let bouncer = PgBouncer::start(4);
    let db = topology(&t, &bouncer, true).await;
    assert!(db.is_multiplexed());
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    // A poll interval longer than the wait below: only a NOTIFY, heard on the direct
    // URL's LISTEN, can wake the worker in time.
    let config = service::queue::worker::WorkerConfig {
        poll_interval: Duration::from_secs(120),
        ..fast()
    };
    let worker = Worker::new(db.clone(), JOBS, config)
        .expect("worker")
        .handle("count", move |_| {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(json!({"ok": true}))
            }
        })
        .expect("handler");
    let (stop, handle) = spawn(worker);
    // The worker's first claim finds nothing; then it waits on LISTEN.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..40 {
        queue::enqueue_one(&db, NewJob::new("count", json!({"i": i})))
            .await
            .expect("enqueue through the pooler");
    }
    wait_for(
        &t,
        "SELECT count(*) FROM jobs WHERE status = 'completed'",
        "40",
        Duration::from_secs(60),
    )
    .await;
    let _ = stop.send(());
    let report = handle.await.expect("join").expect("run");
    assert_eq!(report.completed, 40);
    assert_eq!(runs.load(Ordering::SeqCst), 40, "each job ran once");
    assert_eq!(
        t.scalar("SELECT count(*) FILTER (WHERE attempts <> 1) FROM jobs")
            .await,
        "0"
    );
    db.close().await;
}

/// 20 tasks on two caches (two topologies, as two processes) ask for one key whose
/// compute takes 300 ms: it runs once.
async fn single_flight(direct: bool) {
    let t = TestDb::new().await;
    let bouncer = PgBouncer::start(8);
    let config = CacheConfig {
        flush_interval: Duration::from_millis(200),
        ..CacheConfig::default()
    };
    let a = Arc::new(
        PdfCache::new(
            topology(&t, &bouncer, direct).await,
            config.clone(),
            PdfSettings::default(),
        )
        .expect("a"),
    );
    let b = Arc::new(
        PdfCache::new(
            topology(&t, &bouncer, direct).await,
            config,
            PdfSettings::default(),
        )
        .expect("b"),
    );
    let key = PdfKey::from_bytes(b"%PDF through the pooler");
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let cache = Arc::clone(if i % 2 == 0 { &a } else { &b });
            let (key, runs) = (key.clone(), Arc::clone(&runs));
            tokio::spawn(async move {
                cache
                    .get_or_compute(&key, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, BoxError>(vec![9u8; 2000])
                    })
                    .await
            })
        })
        .collect();
    let mut computed = 0;
    for task in tasks {
        let fetched = task.await.expect("join").expect("get_or_compute");
        assert_eq!(fetched.value, vec![9u8; 2000]);
        computed += usize::from(fetched.origin == Origin::Computed);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the compute ran once");
    assert_eq!(computed, 1);
    a.shutdown().await.expect("flush a");
    b.shutdown().await.expect("flush b");
    assert_eq!(t.scalar("SELECT count(*) FROM pdf_cache").await, "1");
    assert_eq!(
        t.scalar("SELECT sum(access_count) FROM pdf_cache").await,
        "19",
        "every waiter's hit, written by both flushers through the pooler"
    );
}

#[tokio::test]
async fn cache_single_flight_through_the_pooler_with_session_locks_on_the_direct_url() {
    single_flight(true).await;
}

#[tokio::test]
async fn cache_single_flight_through_the_pooler_alone_with_transaction_locks() {
    single_flight(false).await;
}

const MODEL: &str = "test/model-384";

fn document(title: &str, texts: &[(&str, u64)]) -> NewDocument {
    NewDocument {
        key: None,
        title: Some(title.into()),
        content: texts.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(" "),
        source: Some("pooler".into()),
        metadata: json!({"lang": "en"}),
        chunks: texts
            .iter()
            .map(|(t, seed)| NewChunk::new(*t, MODEL, tests::vectors::unit_vector(*seed, 384)))
            .collect(),
    }
}

#[tokio::test]
async fn store_ingest_copy_reindex_and_search_through_the_pooler() {
    let t = TestDb::new().await;
    let bouncer = PgBouncer::start(4);
    let db = topology(&t, &bouncer, true).await;
    let model = EmbeddingModel::new(MODEL, 384).expect("model");
    let inserted = store::ingest(
        &db,
        &model,
        &[document(
            "Corvids",
            &[("ravens remember faces", 1), ("crows use tools", 2)],
        )],
    )
    .await
    .expect("ingest through the pooler");
    let copied = store::ingest_copy(
        &db,
        &model,
        &[document(
            "Jays",
            &[("jays cache acorns", 3), ("magpies", 4)],
        )],
    )
    .await
    .expect("ingest_copy on the direct URL");
    assert_eq!((inserted.chunks_added, copied.chunks_added), (2, 2));
    store::reindex(&db, IndexMethod::Auto, "64MB")
        .await
        .expect("reindex on the direct URL");
    let store = VectorStore::new(model.clone());
    let hits = store
        .search(&db, &tests::vectors::unit_vector(3, 384), 2, None)
        .await
        .expect("search through the pooler");
    assert_eq!(hits[0].content, "jays cache acorns");
    let hybrid = store
        .hybrid_search(
            &db,
            "ravens",
            &tests::vectors::unit_vector(1, 384),
            2,
            None,
            &HybridOptions::default(),
        )
        .await
        .expect("hybrid search through the pooler");
    assert_eq!(hybrid[0].hit.content, "ravens remember faces");
    assert_eq!(t.scalar("SELECT count(*) FROM document_chunks").await, "4");
    db.close().await;
}

#[tokio::test]
async fn without_a_direct_url_session_work_is_a_typed_error_naming_it() {
    let t = TestDb::new().await;
    let bouncer = PgBouncer::start(4);
    let db = topology(&t, &bouncer, false).await;
    let model = EmbeddingModel::new(MODEL, 384).expect("model");
    let copy = store::ingest_copy(&db, &model, &[document("Jays", &[("jays", 3)])]).await;
    assert!(
        matches!(
            copy,
            Err(StoreError::Database(DbError::NeedsSession {
                purpose: SessionUse::Copy
            }))
        ),
        "{copy:?}"
    );
    let reindex = store::reindex(&db, IndexMethod::Auto, "64MB").await;
    assert!(
        matches!(
            reindex,
            Err(StoreError::Database(DbError::NeedsSession {
                purpose: SessionUse::ConcurrentIndex
            }))
        ),
        "{reindex:?}"
    );
    assert_eq!(t.scalar("SELECT count(*) FROM documents").await, "0");
    db.close().await;
}

#[tokio::test]
async fn a_review_decision_and_maintenance_run_due_through_the_pooler() {
    let t = TestDb::new().await;
    let bouncer = PgBouncer::start(4);
    let db = topology(&t, &bouncer, true).await;
    let moderator = create_user(
        &db,
        NewUser::new("mod@example.org", "hash").with_role(Role::Moderator),
    )
    .await
    .expect("user through the pooler")
    .id;
    let annotation = t
        .scalar(
            "WITH image AS (INSERT INTO images (url, species)
                            VALUES ('https://img.example/1.jpg', 'Corvus corax') RETURNING id)
             INSERT INTO annotations (image_id, label, bounding_box, vision_generated,
                                      vision_confidence, vision_provider)
             SELECT id, 'raven', '{\"topLeft\": {\"x\": 0.1, \"y\": 0.1}, \"bottomRight\": {\"x\": 0.4, \"y\": 0.5}, \"width\": 0.3, \"height\": 0.4}', true, 0.4, 'openai'
             FROM image RETURNING id::text",
        )
        .await
        .parse()
        .expect("uuid");
    let approved = service::review::approve(&db, annotation, moderator)
        .await
        .expect("approve through the pooler");
    assert_eq!(approved.reviewed_by, Some(moderator));
    assert_eq!(
        t.scalar(
            "SELECT count(*) FROM audit_logs WHERE event_type = 'annotation.reviewed' AND outcome = 'success'"
        )
        .await,
        "1"
    );
    let runs = service::maintenance::run_due(&db, "pooler-test")
        .await
        .expect("run_due through the pooler");
    assert!(!runs.is_empty(), "a fresh database has every task due");
    let failed: Vec<_> = runs
        .iter()
        .filter(|r| matches!(r.outcome, RunOutcome::Failure { .. }))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        t.scalar("SELECT count(*) FROM maintenance_runs WHERE finished_at IS NOT NULL")
            .await,
        runs.len().to_string()
    );
    db.close().await;
}

#[tokio::test]
async fn a_caller_cancelled_while_waiting_for_the_lock_leaves_no_transaction_behind() {
    let t = TestDb::new().await;
    let bouncer = PgBouncer::start(4);
    // No DIRECT_URL: key locks are transaction-scoped, on pooled connections. Two
    // caches, as two processes: the second waits on the database lock itself.
    let cache = || async {
        PdfCache::new(
            topology(&t, &bouncer, false).await,
            CacheConfig::default(),
            PdfSettings::default(),
        )
        .expect("cache")
    };
    let (a, b) = (Arc::new(cache().await), cache().await);
    let key = PdfKey::from_bytes(b"%PDF waited for");
    let (a2, k2) = (Arc::clone(&a), key.clone());
    let slow = tokio::spawn(async move {
        a2.get_or_compute(&k2, || async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok::<_, BoxError>(b"slow".to_vec())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        b.get_or_compute(&key, || async { Ok::<_, BoxError>(b"never".to_vec()) }),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the second caller gave up while polling the lock"
    );
    let fetched = slow.await.expect("join").expect("slow compute");
    assert_eq!(fetched.origin, Origin::Computed);
    // This database's sessions only (other tests hold transaction locks of their
    // own); the pooler may take a moment to end the closed client's server session.
    let idle_in_transaction = "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'";
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while t.scalar(idle_in_transaction).await != "0" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        t.scalar(idle_in_transaction).await,
        "0",
        "the abandoned wait's transaction was not handed back to the pool"
    );
    for cache in [&*a, &b] {
        let hit = cache.get(&key).await.expect("get");
        assert_eq!(hit.as_deref(), Some(b"slow".as_slice()));
    }
    a.shutdown().await.expect("shutdown a");
    b.shutdown().await.expect("shutdown b");
}

#[tokio::test]
async fn a_replica_url_through_the_pooler_is_refused() {
    let t = TestDb::new().await;
    let bouncer = PgBouncer::start(2);
    let urls = DatabaseUrls::new(t.owner_url()).with_replica(bouncer.url(&t.name));
    let refused = Topology::connect(&urls, 2).await;
    assert!(
        matches!(
            refused,
            Err(service::db::ConnectError::PooledReplica { .. })
        ),
        "{refused:?}"
    );
}
