//! The cache engine over real PostgreSQL — single flight (tasks and
//! processes-like separate pools), exact buffered bookkeeping, TTL, LRU, size budget,
//! corruption, bad input, invalidation, cost tracking.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use entity::sea_orm_active_enums::AiProvider;
use serde_json::json;
use service::cache::ai_response::{AiRequest, AiResponse, AiResponseCache};
use service::cache::exercise::{ExerciseCache, ExerciseKey};
use service::cache::pdf::{PdfCache, PdfKey, PdfSettings};
use service::cache::vision::{VisionCache, VisionKey, VisionResponse};
use service::cache::{CacheConfig, CacheError, Origin};
use service::error::BoxError;
use service::lectures;
use tests::TestDb;
use uuid::Uuid;

fn config() -> CacheConfig {
    CacheConfig {
        flush_interval: Duration::from_millis(200),
        ..CacheConfig::default()
    }
}

fn pdf_cache(t: &TestDb, config: CacheConfig) -> PdfCache {
    PdfCache::new(t.db.clone(), config, PdfSettings::default()).expect("pdf cache")
}

/// Incompressible bytes of a given length (xorshift), so stored sizes are predictable.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn fifty_concurrent_misses_compute_once() {
    let t = TestDb::new().await;
    let cache = Arc::new(pdf_cache(&t, config()));
    let key = PdfKey::from_bytes(b"%PDF-1.7 fifty");
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, key, runs) = (Arc::clone(&cache), key.clone(), Arc::clone(&runs));
            tokio::spawn(async move {
                cache
                    .get_or_compute(&key, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, BoxError>(b"processed".to_vec())
                    })
                    .await
            })
        })
        .collect();
    let mut origins = std::collections::HashMap::new();
    for task in tasks {
        let fetched = task.await.expect("join").expect("get_or_compute");
        assert_eq!(fetched.value, b"processed");
        *origins.entry(fetched.origin).or_insert(0) += 1;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the compute ran once");
    assert_eq!(origins.get(&Origin::Computed), Some(&1), "{origins:?}");
    assert_eq!(
        origins.get(&Origin::Waited).unwrap_or(&0) + origins.get(&Origin::Hit).unwrap_or(&0),
        49,
        "everyone else received its result: {origins:?}"
    );
    assert!(
        origins.get(&Origin::Waited).unwrap_or(&0) >= &1,
        "the 200 ms compute kept some waiting: {origins:?}"
    );
    let stats = cache.stats();
    assert_eq!((stats.computes, stats.misses, stats.hits), (1, 1, 49));
    assert!(stats.waits >= 1);
    cache.shutdown().await.expect("shutdown");
    assert_eq!(t.scalar("SELECT count(*) FROM pdf_cache").await, "1");
}

#[tokio::test]
async fn two_instances_on_separate_pools_compute_once() {
    let t = TestDb::new().await;
    // Two services as two processes would have them: their own pools and state.
    let a = Arc::new(pdf_cache(&t, config()));
    let b_pool = tests::pool(&t.url, 10).await;
    let b = Arc::new(PdfCache::new(b_pool, config(), PdfSettings::default()).expect("b"));
    let key = PdfKey::from_bytes(b"%PDF shared by two services");
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let cache = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        let (key, runs) = (key.clone(), Arc::clone(&runs));
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_compute(&key, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, BoxError>(vec![7u8; 1000])
                })
                .await
        }));
    }
    for task in tasks {
        let fetched = task.await.expect("join").expect("get_or_compute");
        assert_eq!(fetched.value, vec![7u8; 1000]);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(a.stats().computes + b.stats().computes, 1);
}

#[tokio::test]
async fn ten_thousand_concurrent_hits_are_counted_exactly_after_shutdown() {
    let t = TestDb::new().await;
    let cache = Arc::new(pdf_cache(&t, config()));
    let key = PdfKey::from_bytes(b"%PDF popular");
    cache
        .put(&t.db, &key, &b"result".to_vec())
        .await
        .expect("put");
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (cache, key) = (Arc::clone(&cache), key.clone());
            tokio::spawn(async move {
                for _ in 0..250 {
                    let v = cache.get(&key).await.expect("get").expect("a hit");
                    assert_eq!(v, b"result");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    cache.shutdown().await.expect("shutdown");
    assert_eq!(cache.stats().hits, 10_000);
    assert_eq!(cache.stats().pending_events, 0);
    assert_eq!(
        t.scalar("SELECT access_count FROM pdf_cache").await,
        "10000"
    );
    assert_eq!(
        t.scalar("SELECT sum(lookups) FROM layer0_cost_tracking WHERE cache_hit")
            .await,
        "10000"
    );
}

/// A flush finds a hit entry at the row address its read saw, and by key when the
/// row has moved since (updated, or deleted and its address reused by another
/// entry): counts stay exact, and no other entry is counted.
#[tokio::test]
async fn hits_are_counted_exactly_when_rows_move_vanish_or_are_replaced_before_the_flush() {
    let t = TestDb::new().await;
    let cache = pdf_cache(
        &t,
        CacheConfig {
            flush_interval: Duration::from_secs(3600),
            ..CacheConfig::default()
        },
    );
    let keys: Vec<PdfKey> = (0..30)
        .map(|i| PdfKey::from_bytes(format!("%PDF moving {i}").as_bytes()))
        .collect();
    for key in &keys {
        cache.put(&t.db, key, &b"v".to_vec()).await.expect("put");
    }
    for key in &keys {
        assert!(cache.get(key).await.expect("get").is_some());
    }
    let list = |range: std::ops::Range<usize>| {
        keys[range]
            .iter()
            .map(|k| format!("'{}'", k.hash()))
            .collect::<Vec<_>>()
            .join(",")
    };
    // 0..10 move (a new row version elsewhere); 10..15 go; 15 goes and its address
    // is likely reused by a new entry that is hit once too.
    t.sql(&format!(
        "UPDATE pdf_cache SET metadata = '{{\"moved\": true}}' WHERE pdf_hash IN ({})",
        list(0..10)
    ))
    .await;
    t.sql(&format!(
        "DELETE FROM pdf_cache WHERE pdf_hash IN ({})",
        list(10..16)
    ))
    .await;
    t.sql("VACUUM pdf_cache").await;
    let newcomer = PdfKey::from_bytes(b"%PDF newcomer");
    cache
        .put(&t.db, &newcomer, &b"n".to_vec())
        .await
        .expect("put");
    assert!(cache.get(&newcomer).await.expect("get").is_some());
    cache.shutdown().await.expect("shutdown");

    for key in keys[..10].iter().chain(&keys[16..]).chain([&newcomer]) {
        let count = t
            .scalar(&format!(
                "SELECT access_count FROM pdf_cache WHERE pdf_hash = '{}'",
                key.hash()
            ))
            .await;
        assert_eq!(count, "1", "{key:?}");
    }
    assert_eq!(t.scalar("SELECT count(*) FROM pdf_cache").await, "25");
    assert_eq!(
        t.scalar("SELECT sum(access_count) FROM pdf_cache").await,
        "25"
    );
    assert_eq!(
        t.scalar("SELECT sum(lookups) FROM layer0_cost_tracking WHERE cache_hit")
            .await,
        "31"
    );
}

/// A buffer of `max_batch_events` events is flushed at once, long before the flush
/// interval ends; the counts stay exact through the later shutdown.
#[tokio::test]
async fn a_full_buffer_is_flushed_before_the_interval_ends() {
    let t = TestDb::new().await;
    let cache = pdf_cache(
        &t,
        CacheConfig {
            flush_interval: Duration::from_secs(3600),
            max_batch_events: 100,
            ..CacheConfig::default()
        },
    );
    let key = PdfKey::from_bytes(b"%PDF busy");
    cache.put(&t.db, &key, &b"v".to_vec()).await.expect("put");
    for _ in 0..150 {
        assert!(cache.get(&key).await.expect("get").is_some());
    }
    let mut written = String::new();
    for _ in 0..300 {
        written = t.scalar("SELECT access_count FROM pdf_cache").await;
        if written != "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The 100th hit woke the flusher; what it took is at least those 100.
    let written: u64 = written.parse().expect("a count");
    assert!((100..=150).contains(&written), "{written}");
    assert!(cache.stats().flushes >= 1);
    cache.shutdown().await.expect("shutdown");
    assert_eq!(t.scalar("SELECT access_count FROM pdf_cache").await, "150");
}

#[tokio::test]
async fn ai_hits_and_misses_reach_hit_count_and_daily_stats() {
    let t = TestDb::new().await;
    let cache = Arc::new(AiResponseCache::new(t.db.clone(), config()).expect("cache"));
    let request = AiRequest {
        operation_type: "quiz".into(),
        lecture_ids: vec![],
        params: json!({"questionsCount": 5}),
    };
    let key = cache.key(&t.db, &request).await.expect("key");
    let fetched = cache
        .get_or_compute(&key, || async {
            Ok::<_, BoxError>(AiResponse {
                data: json!({"questions": ["Q?"]}),
                tokens_used: 150,
            })
        })
        .await
        .expect("miss");
    assert_eq!(fetched.origin, Origin::Computed);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (cache, key) = (Arc::clone(&cache), key.clone());
            tokio::spawn(async move {
                for _ in 0..100 {
                    assert!(cache.get(&key).await.expect("get").is_some());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    cache.shutdown().await.expect("shutdown");
    assert_eq!(
        t.scalar("SELECT hit_count FROM ai_response_cache").await,
        "1000"
    );
    let today: chrono::NaiveDate = t
        .scalar("SELECT CURRENT_DATE::text")
        .await
        .parse()
        .expect("date");
    let stats = cache.stored_stats(today, today).await.expect("stats");
    assert_eq!(
        (stats.total_requests, stats.cache_hits, stats.cache_misses),
        (1001, 1000, 1)
    );
    assert_eq!(stats.tokens_saved, 150_000);
}

#[tokio::test]
async fn a_failed_compute_reaches_its_caller_and_the_next_waiter_computes() {
    let t = TestDb::new().await;
    let cache = Arc::new(pdf_cache(&t, config()));
    let key = PdfKey::from_bytes(b"%PDF flaky");
    let first = {
        let (cache, key) = (Arc::clone(&cache), key.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute(&key, || async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Err::<Vec<u8>, BoxError>("provider returned 503".into())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = cache
        .get_or_compute(&key, || async { Ok::<_, BoxError>(b"second try".to_vec()) })
        .await
        .expect("the waiter computes");
    let err = first
        .await
        .expect("join")
        .expect_err("the first compute failed");
    assert!(
        matches!(&err, CacheError::Compute { source, .. } if source.to_string() == "provider returned 503"),
        "{err}"
    );
    assert_eq!(
        (second.value, second.origin),
        (b"second try".to_vec(), Origin::Computed)
    );
    assert_eq!(cache.stats().computes, 2);
}

#[tokio::test]
async fn waiting_too_long_is_a_typed_timeout() {
    let t = TestDb::new().await;
    let slow = Arc::new(pdf_cache(&t, config()));
    let impatient = pdf_cache(
        &t,
        CacheConfig {
            wait_timeout: Duration::from_millis(100),
            ..config()
        },
    );
    let key = PdfKey::from_bytes(b"%PDF slow");
    let leader = {
        let (slow, key) = (Arc::clone(&slow), key.clone());
        tokio::spawn(async move {
            slow.get_or_compute(&key, || async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                Ok::<_, BoxError>(b"late".to_vec())
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = impatient
        .get_or_compute(&key, || async { Ok::<_, BoxError>(b"never".to_vec()) })
        .await
        .expect_err("times out");
    assert!(matches!(err, CacheError::WaitTimeout { .. }), "{err}");
    assert_eq!(leader.await.expect("join").expect("leader").value, b"late");
}

#[tokio::test]
async fn expired_entries_are_misses_before_cleanup() {
    let t = TestDb::new().await;
    let vision = VisionCache::new(t.db.clone(), config(), TimeDelta::hours(1)).expect("vision");
    let key = VisionKey::new("https://example.com/pica.jpg", AiProvider::Google).expect("key");
    let response = VisionResponse {
        data: json!({"label": "Pica pica"}),
        response_time_ms: Some(420),
    };
    vision.put(&t.db, &key, &response).await.expect("put");
    assert_eq!(vision.get(&key).await.expect("get"), Some(response.clone()));
    t.sql("UPDATE vision_api_cache SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'")
        .await;
    assert_eq!(
        vision.get(&key).await.expect("get"),
        None,
        "expired is a miss"
    );
    assert_eq!(
        t.scalar("SELECT count(*) FROM vision_api_cache").await,
        "1",
        "not yet cleaned"
    );
    let fetched = vision
        .get_or_compute(&key, || async { Ok::<_, BoxError>(response.clone()) })
        .await
        .expect("recompute");
    assert_eq!(fetched.origin, Origin::Computed);
    assert_eq!(
        t.scalar("SELECT (expires_at > now())::text FROM vision_api_cache")
            .await,
        "true"
    );

    let exercises = ExerciseCache::new(t.db.clone(), config(), TimeDelta::zero()).expect("ttl 0");
    let user = Uuid::from_u128(42);
    t.sql(&format!(
        "INSERT INTO users (id, email, password_hash) VALUES ('{user}', 'u@example.com', 'x')"
    ))
    .await;
    let ekey = ExerciseKey::new(user, "quiz", 2, "corvids").expect("key");
    exercises
        .put(&t.db, &ekey, &json!({"q": 1}))
        .await
        .expect("put");
    assert_eq!(
        exercises.get(&ekey).await.expect("get"),
        None,
        "a zero TTL expires at once"
    );
    assert_eq!(exercises.delete_expired().await.expect("cleanup"), 1);
}

#[tokio::test]
async fn lru_eviction_keeps_the_most_recently_used() {
    let t = TestDb::new().await;
    let vision = VisionCache::new(t.db.clone(), config(), TimeDelta::days(1)).expect("vision");
    let keys: Vec<VisionKey> = (0..10)
        .map(|i| {
            VisionKey::new(&format!("https://example.com/{i}.jpg"), AiProvider::Openai)
                .expect("key")
        })
        .collect();
    for key in &keys {
        vision
            .put(
                &t.db,
                key,
                &VisionResponse {
                    data: json!({}),
                    response_time_ms: None,
                },
            )
            .await
            .expect("put");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in [2, 5, 7] {
        assert!(vision.get(&keys[i]).await.expect("get").is_some());
    }
    assert_eq!(vision.keep_recent(3).await.expect("evict"), 7);
    let left = t
        .column("SELECT image_url FROM vision_api_cache ORDER BY image_url")
        .await;
    assert_eq!(
        left,
        [
            "https://example.com/2.jpg",
            "https://example.com/5.jpg",
            "https://example.com/7.jpg"
        ]
    );
    assert!(matches!(
        vision.keep_recent(-1).await,
        Err(CacheError::InvalidField { .. })
    ));
}

#[tokio::test]
async fn the_pdf_size_budget_evicts_least_recently_and_least_used_first() {
    let t = TestDb::new().await;
    let cache = pdf_cache(&t, config());
    let keys: Vec<PdfKey> = (0..5)
        .map(|i| PdfKey::from_bytes(format!("%PDF {i}").as_bytes()))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        cache
            .put(&t.db, key, &noise(10_000, i as u64 + 1))
            .await
            .expect("put");
    }
    let stored: i64 = t
        .scalar("SELECT sum(storage_size_bytes) FROM pdf_cache")
        .await
        .parse()
        .expect("sum");
    assert!(stored > 50_000, "random data does not compress: {stored}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    for key in [&keys[1], &keys[3]] {
        cache.get(key).await.expect("get").expect("hit");
    }
    // Room for two entries: the two just used stay.
    assert_eq!(cache.enforce_size_budget(25_000).await.expect("budget"), 3);
    let left = t
        .column("SELECT pdf_hash FROM pdf_cache ORDER BY pdf_hash")
        .await;
    let mut expected = vec![keys[1].hash().to_owned(), keys[3].hash().to_owned()];
    expected.sort();
    assert_eq!(left, expected);
    assert!(matches!(
        cache.enforce_size_budget(-1).await,
        Err(CacheError::InvalidField { .. })
    ));
}

#[tokio::test]
async fn a_corrupt_blob_is_a_miss_and_is_replaced() {
    let t = TestDb::new().await;
    let cache = pdf_cache(&t, config());
    let key = PdfKey::from_bytes(b"%PDF corrupt");
    cache
        .put(&t.db, &key, &b"good".to_vec())
        .await
        .expect("put");
    t.sql("UPDATE pdf_cache SET result_data = '\\xdeadbeef'")
        .await;
    assert_eq!(cache.get(&key).await.expect("no panic, no error"), None);
    assert_eq!(cache.stats().errors, 1);
    let fetched = cache
        .get_or_compute(&key, || async { Ok::<_, BoxError>(b"recomputed".to_vec()) })
        .await
        .expect("recompute");
    assert_eq!(
        (fetched.value.as_slice(), fetched.origin),
        (&b"recomputed"[..], Origin::Computed)
    );
    assert_eq!(
        cache.get(&key).await.expect("get"),
        Some(b"recomputed".to_vec())
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let t = TestDb::new().await;
    let small = CacheConfig {
        max_value_bytes: 1_000,
        ..config()
    };
    let cache = pdf_cache(&t, small.clone());
    let key = PdfKey::from_bytes(b"%PDF big");
    let err = cache
        .put(&t.db, &key, &vec![0u8; 2_000])
        .await
        .expect_err("oversize");
    assert!(
        matches!(
            err,
            CacheError::Oversize {
                size: 2_000,
                limit: 1_000,
                ..
            }
        ),
        "{err}"
    );
    let err = cache
        .get_or_compute(&key, || async { Ok::<_, BoxError>(vec![0u8; 5_000]) })
        .await
        .expect_err("oversize compute");
    assert!(matches!(err, CacheError::Oversize { .. }));
    assert_eq!(t.scalar("SELECT count(*) FROM pdf_cache").await, "0");

    assert!(matches!(
        PdfKey::parse(""),
        Err(CacheError::InvalidKey { .. })
    ));
    assert!(matches!(
        PdfKey::parse("XYZ"),
        Err(CacheError::InvalidKey { .. })
    ));
    // A provider is an `AiProvider`: a name from outside is parsed first.
    assert!(service::provider::parse("midjourney").is_err());
    assert!(matches!(
        VisionCache::new(t.db.clone(), small.clone(), TimeDelta::seconds(-5)),
        Err(CacheError::NegativeTtl { seconds: -5, .. })
    ));
    assert!(matches!(
        PdfCache::new(
            t.db.clone(),
            small,
            PdfSettings {
                compression_level: 40,
                ..PdfSettings::default()
            }
        ),
        Err(CacheError::InvalidField {
            field: "compression_level",
            ..
        })
    ));
    let ai = AiResponseCache::new(t.db.clone(), config()).expect("cache");
    let bad = AiRequest {
        operation_type: "".into(),
        lecture_ids: vec![],
        params: json!({}),
    };
    assert!(matches!(
        ai.key(&t.db, &bad).await,
        Err(CacheError::InvalidKey { .. })
    ));
    assert_eq!(
        t.scalar("SELECT count(*) FROM ai_response_cache").await,
        "0"
    );
}

#[tokio::test]
async fn changing_a_lecture_invalidates_only_its_responses() {
    let t = TestDb::new().await;
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    t.sql(&format!(
        "INSERT INTO courses (id, title) VALUES ('{c}', 'Birds');
         INSERT INTO lectures (id, course_id, title) VALUES ('{a}', '{c}', 'A'), ('{b}', '{c}', 'B');",
        c = Uuid::from_u128(0xc)
    ))
    .await;
    let cache = AiResponseCache::new(t.db.clone(), config()).expect("cache");
    assert_eq!(
        lectures::set_content(&t.db, a, "corvids v1")
            .await
            .expect("set"),
        0,
        "first hash"
    );
    assert_eq!(
        lectures::set_content(&t.db, b, "raptors v1")
            .await
            .expect("set"),
        0
    );
    let request = |ids: Vec<Uuid>, op: &str| AiRequest {
        operation_type: op.into(),
        lecture_ids: ids,
        params: json!({"n": 3}),
    };
    let reqs = [
        request(vec![a], "quiz"),
        request(vec![b], "quiz"),
        request(vec![a, b], "summary"),
    ];
    for r in &reqs {
        let key = cache.key(&t.db, r).await.expect("key");
        cache
            .put(
                &t.db,
                &key,
                &AiResponse {
                    data: json!({"for": r.operation_type}),
                    tokens_used: 10,
                },
            )
            .await
            .expect("put");
    }
    assert_eq!(
        lectures::set_content(&t.db, a, "corvids v1")
            .await
            .expect("same"),
        0,
        "unchanged content"
    );
    assert_eq!(
        lectures::set_content(&t.db, a, "corvids v2")
            .await
            .expect("edit"),
        2
    );
    let left = t
        .sql("SELECT lecture_ids::text FROM ai_response_cache")
        .await;
    assert_eq!(left, [[format!("{{{b}}}")]]);
    // The old key of an A request is gone, and its new key is a miss.
    let new_key = cache.key(&t.db, &reqs[0]).await.expect("key");
    assert_eq!(cache.get(&new_key).await.expect("get"), None);
    let unknown = lectures::set_content(&t.db, Uuid::from_u128(0xdead), "x").await;
    assert!(matches!(
        unknown,
        Err(lectures::LectureError::NotFound(id)) if id == Uuid::from_u128(0xdead)
    ));
    assert_eq!(
        cache
            .invalidate_lecture(&t.db, b)
            .await
            .expect("invalidate"),
        1
    );
}

/// The database keeps a lecture's content hash in step with its content on every
/// write path: a lecture inserted through its entity has a hash, and its content
/// changed through the entity (no call of the service) invalidates exactly the cached
/// responses over it.
#[tokio::test]
async fn a_lecture_changed_through_its_entity_invalidates_its_cached_responses() {
    use sea_orm::{ActiveModelTrait, Set};
    let t = TestDb::new().await;
    let course = entity::courses::ActiveModel {
        id: Set(Uuid::from_u128(0xc)),
        title: Set("Birds".into()),
        ..Default::default()
    }
    .insert(&t.db)
    .await
    .expect("course");
    let lecture = |id: u128, content: &str| entity::lectures::ActiveModel {
        id: Set(Uuid::from_u128(id)),
        course_id: Set(course.id),
        title: Set(format!("L{id}")),
        content: Set(content.into()),
        ..Default::default()
    };
    let a = lecture(0xa, "corvids v1").insert(&t.db).await.expect("a");
    let b = lecture(0xb, "raptors v1").insert(&t.db).await.expect("b");
    assert_eq!(
        t.scalar(&format!(
            "SELECT content_hash FROM lecture_content_hashes WHERE lecture_id = '{}'",
            a.id
        ))
        .await,
        t.scalar("SELECT encode(sha256('corvids v1'::bytea), 'hex')")
            .await,
        "the insert made the hash"
    );
    let cache = AiResponseCache::new(t.db.clone(), config()).expect("cache");
    let request = |id: Uuid| AiRequest {
        operation_type: "quiz".into(),
        lecture_ids: vec![id],
        params: json!({}),
    };
    let answer = AiResponse {
        data: json!("cached"),
        tokens_used: 5,
    };
    let (key_a, key_b) = (
        cache.key(&t.db, &request(a.id)).await.expect("key"),
        cache.key(&t.db, &request(b.id)).await.expect("key"),
    );
    cache.put(&t.db, &key_a, &answer).await.expect("put");
    cache.put(&t.db, &key_b, &answer).await.expect("put");

    // Saving the same content changes nothing.
    let mut same: entity::lectures::ActiveModel = a.clone().into();
    same.content = Set("corvids v1".into());
    same.title = Set("renamed".into());
    same.update(&t.db).await.expect("update");
    assert_eq!(cache.get(&key_a).await.expect("get"), Some(answer.clone()));

    let mut edited: entity::lectures::ActiveModel = a.into();
    edited.content = Set("corvids v2".into());
    edited.update(&t.db).await.expect("update");
    assert_eq!(
        cache.get(&key_a).await.expect("get"),
        None,
        "A's answer is gone"
    );
    let new_key_a = cache
        .key(&t.db, &request(Uuid::from_u128(0xa)))
        .await
        .expect("key");
    assert_ne!(new_key_a.hash(), key_a.hash());
    assert_eq!(cache.get(&new_key_a).await.expect("get"), None, "a miss");
    assert_eq!(
        cache.get(&key_b).await.expect("get"),
        Some(answer.clone()),
        "B's answer stays"
    );

    // lectures::set_content joins the caller's transaction: rolled back, it
    // invalidated nothing.
    use sea_orm::TransactionTrait;
    let txn = t.db.begin().await.expect("begin");
    assert_eq!(
        lectures::set_content(&txn, b.id, "raptors v2")
            .await
            .expect("set"),
        1
    );
    txn.rollback().await.expect("rollback");
    assert_eq!(cache.get(&key_b).await.expect("get"), Some(answer));
    assert_eq!(
        t.scalar(&format!(
            "SELECT content FROM lectures WHERE id = '{}'",
            b.id
        ))
        .await,
        "raptors v1"
    );
}

#[tokio::test]
async fn logically_equal_ai_requests_share_an_entry() {
    let t = TestDb::new().await;
    let cache = AiResponseCache::new(t.db.clone(), config()).expect("cache");
    let (x, y) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let one = AiRequest {
        operation_type: "quiz".into(),
        lecture_ids: vec![x, y],
        params: json!({"n": 5, "lang": "es"}),
    };
    let two = AiRequest {
        operation_type: "quiz".into(),
        lecture_ids: vec![y, x],
        params: json!({"lang": "es", "n": 5}),
    };
    let k1 = cache.key(&t.db, &one).await.expect("key");
    cache
        .put(
            &t.db,
            &k1,
            &AiResponse {
                data: json!("cached"),
                tokens_used: 1,
            },
        )
        .await
        .expect("put");
    let k2 = cache.key(&t.db, &two).await.expect("key");
    assert_eq!(k1.hash(), k2.hash());
    assert_eq!(
        cache.get(&k2).await.expect("get").map(|r| r.data),
        Some(json!("cached"))
    );
}

#[tokio::test]
async fn pdf_costs_reach_layer0_stats() {
    let t = TestDb::new().await;
    let cache = pdf_cache(&t, config());
    let pdf = vec![b'x'; 2 * 1_048_576];
    let key = PdfKey::from_reader(std::io::Cursor::new(pdf.clone()))
        .await
        .expect("hash");
    assert_eq!(key, PdfKey::from_bytes(&pdf));
    assert_eq!(key.pdf_bytes(), Some(2 * 1_048_576));
    cache
        .get_or_compute(&key, || async {
            Ok::<_, BoxError>(b"{\"pages\": 12}".to_vec())
        })
        .await
        .expect("miss");
    for _ in 0..3 {
        cache.get(&key).await.expect("get").expect("hit");
    }
    let stats = cache.stored_stats().await.expect("stats");
    assert_eq!(
        (
            stats.total_cache_entries,
            stats.cache_hits,
            stats.cache_misses
        ),
        (1, 3, 1)
    );
    // Default model: $0.01 + $0.005/MiB × 2 MiB = $0.02 per processing.
    assert!((stats.total_cost_usd - 0.02).abs() < 1e-9, "{stats:?}");
    assert!((stats.total_saved_usd - 0.06).abs() < 1e-9, "{stats:?}");
    assert_eq!(stats.hit_rate, 75.0);
}

#[tokio::test]
async fn a_cancelled_compute_does_not_leave_its_lock_behind() {
    let t = TestDb::new().await;
    let cache = Arc::new(pdf_cache(
        &t,
        CacheConfig {
            wait_timeout: Duration::from_secs(3),
            ..config()
        },
    ));
    let key = PdfKey::from_bytes(b"%PDF abandoned");
    let abandoned = {
        let (cache, key) = (Arc::clone(&cache), key.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute(&key, || async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok::<_, BoxError>(b"never".to_vec())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    abandoned.abort();
    let _ = abandoned.await;
    // The lock's connection was closed, not pooled: another service (another pool)
    // gets the lock; a leaked lock would make it wait out its 3 s and time out.
    let other = PdfCache::new(
        tests::pool(&t.url, 2).await,
        CacheConfig {
            wait_timeout: Duration::from_secs(3),
            ..config()
        },
        PdfSettings::default(),
    )
    .expect("other");
    let fetched = other
        .get_or_compute(&key, || async { Ok::<_, BoxError>(b"fresh".to_vec()) })
        .await
        .expect("not blocked by the abandoned lock");
    assert_eq!(
        (fetched.value.as_slice(), fetched.origin),
        (&b"fresh"[..], Origin::Computed)
    );
}

#[tokio::test]
async fn a_failed_flush_keeps_its_events_for_the_next_one() {
    let t = TestDb::new().await;
    let vision = VisionCache::new(
        t.db.clone(),
        CacheConfig {
            flush_interval: Duration::from_secs(3600),
            ..config()
        },
        TimeDelta::days(1),
    )
    .expect("vision");
    let key = VisionKey::new("https://example.com/corvus.jpg", AiProvider::Anthropic).expect("key");
    vision
        .put(
            &t.db,
            &key,
            &VisionResponse {
                data: json!({"label": "Corvus"}),
                response_time_ms: None,
            },
        )
        .await
        .expect("put");
    for _ in 0..7 {
        vision.get(&key).await.expect("get").expect("hit");
    }
    // The database refuses the flush (the table is away for a moment).
    t.sql("ALTER TABLE vision_api_cache RENAME TO vision_api_cache_away")
        .await;
    assert!(matches!(vision.flush().await, Err(CacheError::Database(_))));
    assert_eq!(vision.stats().pending_events, 7);
    vision.get(&key).await.expect_err("no table, no lookup");
    t.sql("ALTER TABLE vision_api_cache_away RENAME TO vision_api_cache")
        .await;
    vision.get(&key).await.expect("get").expect("hit");
    let stats = vision.stored_stats().await.expect("flush and stats");
    assert_eq!(
        (stats.total_entries, stats.active_entries, stats.total_hits),
        (1, 1, 8)
    );
    assert_eq!(
        t.scalar("SELECT access_count FROM vision_api_cache").await,
        "8"
    );
    vision.shutdown().await.expect("shutdown");
}

/// The caches' key-format checks (a byte scan since `m20250501_000003`, not a
/// regular expression) accept exactly 64 lower-case hex characters, and refuse
/// anything else as a check violation, never another error.
#[tokio::test]
async fn the_hex_key_checks_accept_exactly_64_lower_case_hex_digits() {
    let t = TestDb::new().await;
    let good = "0123456789abcdef".repeat(4);
    let bad = [
        "0123456789ABCDEF".repeat(4),    // upper case
        good[..63].to_string(),          // too short
        format!("{}g", &good[..63]),     // not hex
        format!("{} ", &good[..63]),     // a space
        format!("{}é", &good[..62]),     // 64 bytes, 63 characters
        format!("{}\\", &good[..63]),    // a lone backslash: `::bytea` would fail on it
        format!("{}\\061", &good[..60]), // `::bytea` would read this escape as '1'
        String::new(),
    ];
    for key in std::iter::once(&good).chain(bad.iter()) {
        let pdf = t
            .try_sql(&format!(
                "INSERT INTO pdf_cache (pdf_hash, result_data, original_size_bytes, storage_size_bytes, compression_ratio)
                 VALUES ('{key}', '\\x00', 1, 1, 1)"
            ))
            .await;
        let vision = t
            .try_sql(&format!(
                "INSERT INTO vision_api_cache (image_url, url_hash, provider, response_data, response_size_bytes, expires_at)
                 VALUES ('u', '{key}', 'openai', '{{}}', 1, now() + interval '1 day')"
            ))
            .await;
        for result in [pdf, vision] {
            match result {
                Ok(_) => assert_eq!(key, &good, "{key:?} was accepted"),
                Err(e) => {
                    assert_ne!(key, &good, "the good key was refused: {e}");
                    assert_eq!(tests::sqlstate(&e), "23514", "{key:?}: {e}");
                }
            }
        }
    }
    assert_eq!(t.scalar("SELECT count(*) FROM pdf_cache").await, "1");
    assert_eq!(t.scalar("SELECT count(*) FROM vision_api_cache").await, "1");
}

/// [`service::cache::RowId`] reads a `tid` in both wire formats (binary from
/// prepared statements, text from simple queries) as the same address, and binds
/// back as a `tid` that finds its row.
#[tokio::test]
async fn row_ids_round_trip_through_both_wire_formats() {
    use sea_orm::sqlx::{self, Row};
    use service::cache::RowId;
    let t = TestDb::new().await;
    let cache = pdf_cache(&t, config());
    let key = PdfKey::from_bytes(b"%PDF addressed");
    cache.put(&t.db, &key, &b"v".to_vec()).await.expect("put");
    let pool = t.db.get_postgres_connection_pool();
    let binary: RowId = sqlx::query_scalar("SELECT ctid FROM pdf_cache")
        .fetch_one(pool)
        .await
        .expect("binary");
    let rows = sqlx::raw_sql("SELECT ctid FROM pdf_cache")
        .fetch_all(pool)
        .await
        .expect("text");
    let text: RowId = rows[0].try_get(0).expect("decode text");
    assert_eq!(binary, text);
    let hash: String = sqlx::query_scalar("SELECT pdf_hash FROM pdf_cache WHERE ctid = ANY($1)")
        .bind(vec![binary])
        .fetch_one(pool)
        .await
        .expect("by address");
    assert_eq!(hash, key.hash());
    cache.shutdown().await.expect("shutdown");
}
