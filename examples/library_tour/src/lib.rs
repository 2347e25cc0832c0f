//! Strata used from an application, as the README's "Use as a library" section tells
//! a newcomer to: migrate from code, create a course and a lecture through the
//! entities, cache an AI answer (and use the three other caches), insert a document
//! and enqueue the job that processes it in one transaction, run a worker that
//! completes it, and say what happened. The README's code blocks are excerpts of this
//! file (the test `readme_snippets` checks that each one appears here), so they
//! compile and cannot drift.

use std::io::Write;
use std::time::Duration;

use chrono::TimeDelta;
use entity::{courses, documents, lectures, users};
use sea_orm::{
    ActiveModelTrait, ConnectOptions, Database, DatabaseConnection, DbErr, Set, TransactionTrait,
};
use serde_json::json;
use service::cache::CacheConfig;
use service::cache::ai_response::{AiRequest, AiResponse, AiResponseCache};
use service::cache::exercise::{ExerciseCache, ExerciseKey};
use service::cache::pdf::{PdfCache, PdfKey, PdfSettings};
use service::cache::vision::{VisionCache, VisionKey, VisionResponse};
use service::error::BoxError;
use service::queue::worker::{Worker, WorkerConfig, WorkerReport};
use service::queue::{self, DEFAULT_MAX_PAYLOAD_BYTES, JOBS, NewJob};
use uuid::Uuid;

/// What the model behind the caches would be asked; here, a stand-in that answers
/// at once. A real one calls an AI API and fails with its client's error type.
async fn summarise(text: &str) -> Result<AiResponse, std::io::Error> {
    Ok(AiResponse {
        data: json!({ "summary": format!("{} words", text.split_whitespace().count()) }),
        tokens_used: 42,
    })
}

/// The worker of this application: one handler, `embed`, which here records the
/// document's length as the job's result.
pub fn embed_worker(db: DatabaseConnection) -> Result<Worker, BoxError> {
    let worker =
        Worker::new(db, JOBS, WorkerConfig::default())?.handle("embed", |ctx| async move {
            let id = ctx.payload["document"].clone();
            Ok::<_, BoxError>(json!({ "embedded": id }))
        })?;
    Ok(worker)
}

/// A pool the application builds itself, with `TCP_NODELAY` on every connection
/// (see the README: sqlx 0.9.0 no longer sets it). `service::db::connect` does the
/// same for you.
pub async fn own_pool(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut opt = ConnectOptions::new(url);
    opt.max_connections(10)
        .map_sqlx_postgres_pool_opts(service::db::tcp_nodelay::on_every_connection);
    Database::connect(opt).await
}

/// Runs the worker until Ctrl-C, then stops gracefully: running jobs finish (up to
/// `shutdown_timeout`), the rest go back to pending.
pub async fn serve(db: DatabaseConnection) -> Result<(), BoxError> {
    let worker = embed_worker(db)?;
    let report = worker
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("worker stopped: {report:?}");
    Ok(())
}

/// The tour, on the database at `url` (migrated first), writing what happens to
/// `out`.
pub async fn tour(url: &str, out: &mut impl Write) -> Result<WorkerReport, BoxError> {
    // Migrate from code: `migration::up` takes the migration lock, so instances that
    // start together apply each migration once.
    migration::up(url).await?;
    let db = service::db::connect(Some(url), 10).await?;
    writeln!(out, "migrated: {} migrations", migration::names().len())?;

    // A course and a lecture, through the entities. The database hashes the lecture's
    // content (a trigger), which the AI-response cache's keys include.
    let course = courses::ActiveModel {
        id: Set(Uuid::new_v4()),
        title: Set("Birds of Europe".to_owned()),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    let lecture = lectures::ActiveModel {
        id: Set(Uuid::new_v4()),
        course_id: Set(course.id),
        title: Set("Corvids".to_owned()),
        content: Set("Crows, ravens and jays solve puzzles.".to_owned()),
        position: Set(1),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    writeln!(out, "course {}: lecture {}", course.title, lecture.title)?;

    // The AI-response cache: the first call computes, the second is a hit. The
    // compute closure may fail with any error type that converts into `BoxError`.
    let answers = AiResponseCache::new(db.clone(), CacheConfig::default())?;
    let request = AiRequest {
        operation_type: "summary".to_owned(),
        lecture_ids: vec![lecture.id],
        params: json!({ "language": "en" }),
    };
    let key = answers.key(&db, &request).await?;
    for _ in 0..2 {
        let (answer, hit) = answers
            .get_or_compute(&key, || summarise(&lecture.content))
            .await?;
        writeln!(out, "ai answer: {} (hit: {hit})", answer.data["summary"])?;
    }

    // New content and its new summary, in one transaction: the content change
    // invalidates the old answer (the database's trigger), and the new answer is
    // stored only if the change commits.
    let revised = "Crows, ravens and jays solve puzzles and use tools.";
    let txn = db.begin().await?;
    let invalidated = service::lectures::set_content(&txn, lecture.id, revised).await?;
    let new_key = answers.key(&txn, &request).await?;
    answers
        .put(&txn, &new_key, &summarise(revised).await?)
        .await?;
    txn.commit().await?;
    writeln!(out, "revised: {invalidated} answer(s) invalidated")?;
    let (answer, hit) = answers
        .get_or_compute(&new_key, || summarise(revised))
        .await?;
    writeln!(out, "ai answer: {} (hit: {hit})", answer.data["summary"])?;

    // The PDF cache: keyed by the SHA-256 of the file, zstd-compressed.
    let pdfs = PdfCache::new(db.clone(), CacheConfig::default(), PdfSettings::default())?;
    let pdf = b"%PDF-1.7 a lecture handout".to_vec();
    let pdf_key = PdfKey::from_reader(std::io::Cursor::new(pdf.clone())).await?;
    let (parsed, hit) = pdfs
        .get_or_compute(&pdf_key, || async {
            Ok::<_, std::io::Error>(format!("{} bytes of text", pdf.len()).into_bytes())
        })
        .await?;
    writeln!(
        out,
        "pdf: {} (hit: {hit})",
        String::from_utf8_lossy(&parsed)
    )?;

    // The vision cache: per normalised image URL and provider, with a time to live.
    let vision = VisionCache::new(db.clone(), CacheConfig::default(), TimeDelta::days(30))?;
    let image = VisionKey::new("https://example.org/birds/raven.jpg?w=800", "openai")?;
    let labels = VisionResponse {
        data: json!({ "labels": ["raven"] }),
        response_time_ms: Some(850),
    };
    vision.put(&db, &image, &labels).await?;
    if let Some(hit) = vision.get(&image).await? {
        writeln!(out, "vision: {}", hit.data)?;
    }

    // The exercise cache: per learner, exercise type, difficulty and topic.
    let learner = users::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(format!("learner-{}@example.org", Uuid::new_v4())),
        password_hash: Set("not-a-real-hash".to_owned()),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    let exercises = ExerciseCache::new(db.clone(), CacheConfig::default(), TimeDelta::hours(24))?;
    let exercise = ExerciseKey::new(learner.id, "quiz", 2, "corvids")?;
    exercises
        .put(
            &db,
            &exercise,
            &json!({ "question": "Which corvid is largest?" }),
        )
        .await?;
    if let Some(hit) = exercises.get(&exercise).await? {
        writeln!(out, "exercise: {hit}")?;
    }

    // A document and the job that embeds it, in one transaction: both or neither.
    let txn = db.begin().await?;
    let document = documents::ActiveModel {
        id: Set(Uuid::new_v4()),
        content: Set("Ravens remember faces.".to_owned()),
        metadata: Set(json!({ "source": "tour" })),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let job =
        NewJob::new("embed", json!({ "document": document.id })).dedup_key(document.id.to_string());
    let ids = queue::enqueue(&txn, &[job], DEFAULT_MAX_PAYLOAD_BYTES).await?;
    txn.commit().await?; // the job exists, and wakes workers, only now
    writeln!(out, "document {} and job {} committed", document.id, ids[0])?;

    // A worker runs the job; this tour stops it once the job is done.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(embed_worker(db.clone())?.run(async {
        let _ = stopped.await;
    }));
    let done = loop {
        match queue::job(&db, ids[0]).await? {
            Some(job) if job.status == "completed" => break job,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let _ = stop.send(());
    let report = running.await??;
    writeln!(
        out,
        "job {}: {} after {} attempt(s), result {}",
        done.id,
        done.status,
        done.attempts,
        done.result.unwrap_or_default()
    )?;
    writeln!(
        out,
        "worker: {} completed, {} failed",
        report.completed, report.failed
    )?;

    // Write the caches' buffered hit bookkeeping before leaving.
    answers.shutdown().await?;
    pdfs.shutdown().await?;
    vision.shutdown().await?;
    exercises.shutdown().await?;
    Ok(report)
}
