//! Read replicas with a real streaming replica (`pg_basebackup -R`): a read with no
//! recent write is served by the replica; with replay paused, a session's read after
//! its own write is served by the primary and sees the write; the lag bound is
//! honoured; a cache hit is served by the replica and a miss computes on the primary
//! once; a stopped replica is skipped and reads are still answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::json;
use service::accounts::{NewUser, create_user, get_user_by_email};
use service::cache::pdf::{PdfCache, PdfKey, PdfSettings};
use service::cache::{CacheConfig, Origin};
use service::db::{DatabaseUrls, ReadYourWrites, Reader, ReplicaConfig, ServedBy, Topology};
use service::error::BoxError;
use service::store::{self, EmbeddingModel, NewChunk, NewDocument, VectorStore};
use tests::replica::ReplicaPair;

const MODEL: &str = "test/model-384";

async fn topology(pair: &ReplicaPair, config: ReplicaConfig) -> Topology {
    let urls = DatabaseUrls::new(pair.primary_url()).with_replica(pair.replica_url());
    Topology::connect_with(&urls, 4, config)
        .await
        .expect("connect")
}

/// `pg_is_in_recovery()` on the connection that serves `reader`'s reads.
async fn in_recovery(reader: &Reader) -> bool {
    let row = reader
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_is_in_recovery() AS r",
        ))
        .await
        .expect("query")
        .expect("row");
    row.try_get("", "r").expect("r")
}

async fn on_replica(pair: &ReplicaPair, sql: &str) {
    let db = tests::pool(&pair.replica_url(), 1).await;
    db.execute_unprepared(sql).await.expect(sql);
    let _ = db.close().await;
}

#[tokio::test]
async fn reads_follow_the_wal_position_and_the_lag_bound() {
    let pair = ReplicaPair::start().await;
    let config = ReplicaConfig {
        max_lag: Duration::from_secs(1),
        recheck: Duration::from_millis(50),
        ..ReplicaConfig::default()
    };
    let db = topology(&pair, config).await;
    let model = EmbeddingModel::new(MODEL, 384).expect("model");
    store::ingest(
        &db,
        &model,
        &[NewDocument {
            key: None,
            title: Some("Corvids".into()),
            content: "ravens remember faces".into(),
            source: None,
            metadata: json!({}),
            chunks: vec![NewChunk::new(
                "ravens remember faces",
                MODEL,
                tests::vectors::unit_vector(1, 384),
            )],
        }],
    )
    .await
    .expect("ingest on the primary");
    pair.wait_for_replay().await;

    // No recent write: the replica serves, and the search is answered there.
    let reader = db.reader().await;
    assert_eq!(reader.served_by(), ServedBy::Replica(0));
    assert!(in_recovery(&reader).await, "the replica served it");
    let hits = VectorStore::new(model.clone())
        .search(&reader, &tests::vectors::unit_vector(1, 384), 1, None)
        .await
        .expect("search on the replica");
    assert_eq!(hits[0].content, "ravens remember faces");

    // Replay paused: a session's read after its own write goes to the primary.
    on_replica(&pair, "SELECT pg_wal_replay_pause()").await;
    let session = ReadYourWrites::new(db.clone());
    create_user(
        session.topology(),
        NewUser::new("writer@example.org", "hash"),
    )
    .await
    .expect("write");
    let lsn = session.wrote().await.expect("WAL position");
    assert!(lsn > service::db::Lsn(0));
    let reader = session.reader().await;
    assert_eq!(reader.served_by(), ServedBy::Primary);
    assert!(!in_recovery(&reader).await);
    assert!(
        get_user_by_email(&reader, "writer@example.org")
            .await
            .expect("read")
            .is_some(),
        "the session sees its own write"
    );
    // The replica has not replayed it: read there, it is missing.
    let replica = tests::pool(&pair.replica_url(), 1).await;
    assert!(
        get_user_by_email(&replica, "writer@example.org")
            .await
            .expect("read on the replica")
            .is_none()
    );

    // The lag bound: still paused, past one second, no read goes to the replica.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(db.reader().await.served_by(), ServedBy::Primary);
    let status = db.check_replicas().await;
    assert!(status[0].lag > Duration::from_secs(1), "{status:?}");
    assert!(status[0].up && status[0].in_recovery);

    // Replay resumed and caught up: the replica serves the session's reads again.
    on_replica(&pair, "SELECT pg_wal_replay_resume()").await;
    pair.wait_for_replay().await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    let reader = session.reader().await;
    assert_eq!(reader.served_by(), ServedBy::Replica(0));
    assert!(
        get_user_by_email(&reader, "writer@example.org")
            .await
            .expect("read")
            .is_some()
    );
    let _ = replica.close().await;
    db.close().await;
}

#[tokio::test]
async fn a_cache_hit_is_served_by_the_replica_and_a_miss_computes_once_on_the_primary() {
    let pair = ReplicaPair::start().await;
    let db = topology(&pair, ReplicaConfig::default()).await;
    let cache =
        PdfCache::new(db.clone(), CacheConfig::default(), PdfSettings::default()).expect("cache");
    let key = PdfKey::from_bytes(b"%PDF on the replica");
    let fetched = cache
        .get_or_compute(&key, || async { Ok::<_, BoxError>(b"first".to_vec()) })
        .await
        .expect("compute");
    assert_eq!(fetched.origin, Origin::Computed);
    cache.flush().await.expect("flush");
    pair.wait_for_replay().await;

    // Replay paused, the entry deleted on the primary: a hit can only come from the
    // replica, which has not replayed the delete.
    on_replica(&pair, "SELECT pg_wal_replay_pause()").await;
    let primary = tests::pool(&pair.primary_url(), 1).await;
    primary
        .execute_unprepared("DELETE FROM pdf_cache")
        .await
        .expect("delete");
    assert_eq!(
        cache.get(&key).await.expect("get"),
        Some(b"first".to_vec()),
        "served by the replica"
    );

    // A key the replica has not seen: computed on the primary once; the cache then
    // reads the primary, not the replica, until the replica has replayed that store,
    // so the next caller finds it as a plain hit.
    let other = PdfKey::from_bytes(b"%PDF new");
    let runs = Arc::new(AtomicUsize::new(0));
    for expected in [Origin::Computed, Origin::Hit] {
        let counted = Arc::clone(&runs);
        let fetched = cache
            .get_or_compute(&other, || async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok::<_, BoxError>(b"second".to_vec())
            })
            .await
            .expect("get_or_compute");
        assert_eq!(
            (fetched.value.as_slice(), fetched.origin),
            (b"second".as_slice(), expected)
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    on_replica(&pair, "SELECT pg_wal_replay_resume()").await;
    cache.shutdown().await.expect("shutdown");
    let _ = primary.close().await;
    db.close().await;
}

#[tokio::test]
async fn a_stopped_replica_is_skipped_and_reads_are_still_answered() {
    let pair = ReplicaPair::start().await;
    let config = ReplicaConfig {
        recheck: Duration::from_millis(50),
        down_for: Duration::from_millis(300),
        ..ReplicaConfig::default()
    };
    let db = topology(&pair, config).await;
    let chosen = db.reader().await;
    assert_eq!(chosen.served_by(), ServedBy::Replica(0));
    assert!(in_recovery(&chosen).await);

    pair.stop_replica();
    // A reader chosen before the stop: its statement fails over to the primary.
    assert!(!in_recovery(&chosen).await, "answered by the primary");
    // A new reader skips the replica while it is down.
    let reader = db.reader().await;
    assert_eq!(reader.served_by(), ServedBy::Primary);
    assert!(!in_recovery(&reader).await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reader = db.reader().await;
    assert_eq!(
        reader.served_by(),
        ServedBy::Primary,
        "asked again, still down"
    );
    assert!(!db.replica_status()[0].up);

    pair.start_replica();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reader = db.reader().await;
    assert_eq!(
        reader.served_by(),
        ServedBy::Replica(0),
        "back after down_for"
    );
    assert!(in_recovery(&reader).await);
    db.close().await;
}
