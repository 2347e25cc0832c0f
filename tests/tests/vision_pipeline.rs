//! The AI annotation pipeline end to end against a local OpenAI-compatible server this
//! test starts: request → worker → provider through the vision cache → annotations
//! pending review; a second request for the same image is a cache hit with no HTTP
//! call; a malformed box fails the job for good with nothing written; a batch records
//! its progress and per-item errors, however its jobs end (a lease rescued after the
//! last attempt, a cancellation); cost by provider and day.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{Duration, TimeDelta, Utc};
use entity::sea_orm_active_enums::{AiJobStatus, AiProvider};
use serde_json::{Value, json};
use service::cache::CacheConfig;
use service::cache::vision::VisionCache;
use service::page::Page;
use service::queue::AI_ANNOTATION_JOBS;
use service::queue::worker::Worker;
use service::review::{self, PendingFilter};
use service::vision::{
    self, AnnotationPipeline, OpenAiVision, OpenAiVisionConfig, VisionError, VisionProvider,
};
use tests::TestDb;
use tests::queue::{fast, run_until};
use uuid::Uuid;

#[derive(Clone, Default)]
struct Server {
    /// Calls per image URL.
    calls: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

/// Answers like a chat-completions API: the annotations as JSON text in the message.
/// An image whose URL contains `bad-box` gets a box with its corners swapped.
async fn completions(
    State(server): State<Server>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    server.total.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer vision-key") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad key"})));
    }
    assert_eq!(body["model"], "test-vision");
    assert_eq!(body["response_format"]["type"], "json_object");
    let url = body["messages"][1]["content"][1]["image_url"]["url"]
        .as_str()
        .expect("an image URL")
        .to_owned();
    *server
        .calls
        .lock()
        .expect("calls")
        .entry(url.clone())
        .or_default() += 1;
    let annotations = if url.contains("bad-box") {
        json!([{"label": "Corvus corax", "confidence": 0.9,
                "box": {"x1": 0.8, "y1": 0.1, "x2": 0.2, "y2": 0.6}}])
    } else {
        json!([
            {"label": "Corvus corax", "confidence": 0.93,
             "box": {"x1": 0.1, "y1": 0.2, "x2": 0.6, "y2": 0.9}},
            {"label": "beak", "confidence": 0.41,
             "box": {"x1": 0.3, "y1": 0.25, "x2": 0.4, "y2": 0.35}}
        ])
    };
    let content = json!({"annotations": annotations}).to_string();
    (
        StatusCode::OK,
        Json(json!({
            "id": "chatcmpl-test", "object": "chat.completion", "model": "test-vision",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}]
        })),
    )
}

async fn start() -> (String, Server) {
    let server = Server::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(server.clone());
    (tests::local_api::serve(app).await, server)
}

fn provider(url: &str) -> OpenAiVision {
    OpenAiVision::new(OpenAiVisionConfig {
        api_key: Some("vision-key".into()),
        cost_per_call: 0.02,
        ..OpenAiVisionConfig::new(url, "test-vision")
    })
    .expect("provider")
}

async fn image(t: &TestDb, url: &str) -> Uuid {
    t.scalar(&format!(
        "INSERT INTO images (url, species) VALUES ('{url}', 'Corvus corax') RETURNING id::text"
    ))
    .await
    .parse()
    .expect("uuid")
}

/// A worker of `ai_annotation_jobs` with the pipeline registered, over `provider`.
fn worker_with(t: &TestDb, provider: OpenAiVision) -> Worker {
    let cache =
        VisionCache::new(t.db.clone(), CacheConfig::default(), TimeDelta::days(30)).expect("cache");
    let pipeline = AnnotationPipeline::new(t.db.clone(), Arc::new(cache), provider);
    let worker = Worker::new(t.db.clone(), AI_ANNOTATION_JOBS, fast()).expect("worker");
    pipeline.register(worker).expect("register")
}

/// [`worker_with`] the test provider of the server at `url`.
fn worker(t: &TestDb, url: &str) -> Worker {
    worker_with(t, provider(url))
}

/// Asks for the openai annotations of `image`; the job's id.
async fn request(t: &TestDb, image: Uuid) -> Uuid {
    vision::request_annotations(&t.db, image, AiProvider::Openai, None)
        .await
        .expect("request")
}

const UNFINISHED: &str = "SELECT count(*)::text FROM ai_annotation_jobs
                          WHERE status NOT IN ('completed', 'failed')";

#[tokio::test]
async fn a_request_becomes_annotations_pending_review_and_a_repeat_is_a_cache_hit() {
    let t = TestDb::new().await;
    let (url, server) = start().await;
    let raven = image(&t, "https://img.example/raven.jpg").await;

    let job = request(&t, raven).await;
    // One live job per image and provider.
    let again = request(&t, raven).await;
    assert_eq!(job, again);
    run_until(worker(&t, &url), &t, UNFINISHED, "0").await;
    assert_eq!(server.total.load(Ordering::SeqCst), 1);

    let pending = review::pending(&t.db, &PendingFilter::default(), Page::default())
        .await
        .expect("pending");
    let labels: Vec<(String, f64, AiProvider)> = pending
        .iter()
        .map(|p| (p.label.clone(), p.confidence, p.provider.clone()))
        .collect();
    assert_eq!(
        labels,
        [
            ("beak".to_owned(), 0.41, AiProvider::Openai),
            ("Corvus corax".to_owned(), 0.93, AiProvider::Openai)
        ]
    );
    assert_eq!(pending[0].job_status, Some(AiJobStatus::Completed));
    // In JSON, as the database spells them.
    let json = serde_json::to_value(&pending[0]).expect("json");
    assert_eq!(
        (&json["provider"], &json["job_status"]),
        (&json!("openai"), &json!("completed"))
    );
    assert!(pending.iter().all(|p| p.ai_job_id == Some(job)));
    assert_eq!(
        t.sql(&format!(
            "SELECT status::text, annotations_created::text, (response_data->>'cache_hit')
             FROM ai_annotation_jobs WHERE id = '{job}'"
        ))
        .await,
        [["completed", "2", "false"]]
    );

    // The same image again: a new job, answered by the cache, no HTTP call.
    let second = request(&t, raven).await;
    assert_ne!(second, job);
    run_until(worker(&t, &url), &t, UNFINISHED, "0").await;
    assert_eq!(server.total.load(Ordering::SeqCst), 1, "no second call");
    assert_eq!(
        t.scalar(&format!(
            "SELECT (response_data->>'cache_hit') FROM ai_annotation_jobs WHERE id = '{second}'"
        ))
        .await,
        "true"
    );

    let costs = vision::cost_by_provider(
        &t.db,
        Utc::now() - Duration::days(1),
        Utc::now() + Duration::days(1),
    )
    .await
    .expect("costs");
    assert_eq!(costs.len(), 1);
    let c = &costs[0];
    assert_eq!(
        (&c.provider, c.calls, c.cache_hits),
        (&AiProvider::Openai, 1, 1)
    );
    assert!((c.cost_usd - 0.02).abs() < 1e-9 && (c.cost_saved_usd - 0.02).abs() < 1e-9);
}

#[tokio::test]
async fn a_malformed_box_fails_the_job_for_good_and_writes_no_annotation() {
    let t = TestDb::new().await;
    let (url, server) = start().await;
    let bad = image(&t, "https://img.example/bad-box.jpg").await;
    let job = request(&t, bad).await;
    run_until(worker(&t, &url), &t, UNFINISHED, "0").await;
    assert_eq!(
        t.sql(&format!(
            "SELECT status::text, attempts::text, (error_message LIKE '%bottomRight%')::text
             FROM ai_annotation_jobs WHERE id = '{job}'"
        ))
        .await,
        [["failed", "1", "true"]],
        "no retry for an answer that will not change"
    );
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM annotations").await,
        "0"
    );
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM vision_api_cache")
            .await,
        "0",
        "not cached"
    );
    assert_eq!(server.total.load(Ordering::SeqCst), 1);

    // The provider's answer, checked directly, names the annotation.
    let answer = provider(&url)
        .analyze("https://img.example/bad-box.jpg")
        .await
        .expect("answer");
    assert!(matches!(
        answer.checked(),
        Err(VisionError::InvalidAnnotation { index: 0, .. })
    ));
}

#[tokio::test]
async fn a_refusal_that_will_not_change_is_not_retried() {
    let t = TestDb::new().await;
    let (url, server) = start().await;
    let raven = image(&t, "https://img.example/raven.jpg").await;
    let job = request(&t, raven).await;
    // A wrong key: the server answers 401.
    let wrong_key = OpenAiVision::new(OpenAiVisionConfig {
        api_key: Some("wrong".into()),
        ..OpenAiVisionConfig::new(&url, "test-vision")
    })
    .expect("provider");
    let worker = worker_with(&t, wrong_key);
    run_until(worker, &t, UNFINISHED, "0").await;
    assert_eq!(
        t.sql(&format!(
            "SELECT status::text, attempts::text, (error_message LIKE '%401%')::text
             FROM ai_annotation_jobs WHERE id = '{job}'"
        ))
        .await,
        [["failed", "1", "true"]]
    );
    assert_eq!(server.total.load(Ordering::SeqCst), 1, "asked once");
}

#[tokio::test]
async fn a_batch_records_progress_and_each_failed_item() {
    let t = TestDb::new().await;
    let (url, server) = start().await;
    let images = [
        image(&t, "https://img.example/a.jpg").await,
        image(&t, "https://img.example/bad-box-b.jpg").await,
        image(&t, "https://img.example/c.jpg").await,
    ];
    // A repeated or unknown image refuses the batch whole.
    assert!(matches!(
        vision::request_batch(&t.db, &[images[0], images[0]], AiProvider::Openai, None).await,
        Err(VisionError::Invalid(_))
    ));
    let ghost = Uuid::new_v4();
    assert!(matches!(
        vision::request_batch(&t.db, &[images[0], ghost], AiProvider::Openai, None).await,
        Err(VisionError::UnknownImage(id)) if id == ghost
    ));
    assert_eq!(t.scalar("SELECT count(*)::text FROM batch_jobs").await, "0");

    let batch = vision::request_batch(&t.db, &images, AiProvider::Openai, None)
        .await
        .expect("batch");
    assert_eq!(batch.jobs.len(), 3);
    run_until(worker(&t, &url), &t, UNFINISHED, "0").await;
    let (row, errors) = vision::batch_progress(&t.db, batch.batch_id)
        .await
        .expect("progress")
        .expect("batch");
    assert_eq!(
        (
            row.processed_items,
            row.failed_items,
            row.total_items,
            row.status.as_str()
        ),
        (2, 1, 3, "completed")
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].item_index, Some(1));
    assert_eq!(
        errors[0].item_ref.as_deref(),
        Some(images[1].to_string().as_str())
    );
    assert!(errors[0].error_message.contains("bottomRight"));
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM annotations").await,
        "4"
    );
    assert_eq!(server.total.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_batch_item_whose_last_lease_expires_is_counted_as_failed() {
    let t = TestDb::new().await;
    let images = [
        image(&t, "https://img.example/a.jpg").await,
        image(&t, "https://img.example/b.jpg").await,
    ];
    let batch = vision::request_batch(&t.db, &images, AiProvider::Openai, None)
        .await
        .expect("batch");
    // The first item's worker took it on its last attempt and vanished; the second
    // was cancelled.
    t.sql(&format!(
        "UPDATE ai_annotation_jobs SET status = 'processing', attempts = max_attempts,
                locked_by = 'gone', locked_until = now() - interval '1 minute',
                claim_token = gen_random_uuid()
         WHERE id = '{}';
         UPDATE ai_annotation_jobs SET status = 'cancelled' WHERE id = '{}'",
        batch.jobs[0], batch.jobs[1]
    ))
    .await;
    let rescued = service::queue::rescue_expired(
        &t.db,
        AI_ANNOTATION_JOBS,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(3600),
    )
    .await
    .expect("rescue");
    assert_eq!(rescued, 1);
    let (row, errors) = vision::batch_progress(&t.db, batch.batch_id)
        .await
        .expect("progress")
        .expect("batch");
    assert_eq!(
        (row.processed_items, row.failed_items, row.status.as_str()),
        (0, 2, "completed")
    );
    let reasons: Vec<(Option<i32>, bool)> = errors
        .iter()
        .map(|e| (e.item_index, e.error_message.contains("lease expired")))
        .collect();
    assert_eq!(reasons, [(Some(0), true), (Some(1), false)]);
    assert_eq!(errors[1].error_message, "cancelled");
}
