//! Strata used from an application, as the README's "Use as a library" section tells
//! a newcomer to: migrate from code, create a course and a lecture through the
//! entities, cache an AI answer (and use the three other caches), insert a document
//! and enqueue the job that processes it in one transaction, run a worker that
//! completes it, and say what happened; then the vector store with the local
//! embedder (`store_tour`), accounts with a review decision (`review_tour`), and a
//! session reading its own writes through the topology (`topology_tour`). The
//! README's code blocks are excerpts of these files (the test `readme_snippets`
//! checks that each one appears here), so they compile and cannot drift.

mod review_tour;
mod store_tour;
mod topology_tour;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use entity::sea_orm_active_enums::AiProvider;
use entity::{courses, documents, lectures, users};
use sea_orm::{
    ActiveModelTrait, ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr,
    Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use service::cache::CacheConfig;
use service::cache::ai_response::{AiRequest, AiResponse, AiResponseCache};
use service::cache::exercise::{ExerciseCache, ExerciseKey};
use service::cache::pdf::{PdfCache, PdfKey, PdfSettings};
use service::cache::vision::{VisionCache, VisionKey, VisionResponse};
use service::error::BoxError;
use service::queue::worker::{Worker, WorkerConfig, WorkerReport};
use service::queue::{self, InsertOptions, JOBS, JobArgs};
use service::runtime::{Runtime, RuntimeConfig};
use uuid::Uuid;

/// What the model behind the caches would be asked; here, a stand-in that answers
/// at once. A real one calls an AI API and fails with its client's error type.
async fn summarise(text: &str) -> Result<AiResponse, std::io::Error> {
    Ok(AiResponse {
        data: json!({ "summary": format!("{} words", text.split_whitespace().count()) }),
        tokens_used: 42,
    })
}

/// The job that embeds a document: its arguments, typed. One live job per document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedDocument {
    /// The document to embed.
    pub document: Uuid,
}

impl JobArgs for EmbedDocument {
    const KIND: &'static str = "embed";

    fn insert_options(&self) -> InsertOptions {
        InsertOptions::default().dedup_key(self.document.to_string())
    }
}

/// The worker of this application: one handler, for [`EmbedDocument`], which here
/// records the document's id as the job's result.
pub fn embed_worker(db: DatabaseConnection) -> Result<Worker, BoxError> {
    let worker = Worker::new(db, JOBS, WorkerConfig::default())?.work(
        |args: EmbedDocument, _ctx| async move {
            Ok::<_, BoxError>(json!({ "embedded": args.document }))
        },
    )?;
    Ok(worker)
}

/// A document and the job that embeds it, in the caller's transaction: both or
/// neither. The document's id and the job's.
pub async fn add_document(
    txn: &DatabaseTransaction,
    content: &str,
) -> Result<(Uuid, Uuid), BoxError> {
    let document = documents::ActiveModel {
        id: Set(Uuid::new_v4()),
        content: Set(content.to_owned()),
        metadata: Set(json!({ "source": "tour" })),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    let job = queue::insert(
        txn,
        &EmbedDocument {
            document: document.id,
        },
    )
    .await?;
    Ok((document.id, job))
}

/// A pool the application builds itself: Strata needs nothing special of it.
pub async fn own_pool(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut opt = ConnectOptions::new(url);
    opt.max_connections(10);
    Database::connect(opt).await
}

/// Runs the worker (with the lease rescuer) in a runtime until Ctrl-C, then stops
/// gracefully: running jobs finish (for up to 30 s), the rest go back to pending.
pub async fn serve(db: DatabaseConnection) -> Result<(), BoxError> {
    let runtime = Runtime::new(db.clone(), RuntimeConfig::default())
        .worker(embed_worker(db)?)
        .start();
    let _ = tokio::signal::ctrl_c().await;
    let report = runtime.stop(Duration::from_secs(30)).await;
    println!("stopped: {:?}", report.queues);
    Ok(())
}

/// The tour, on the database at `url` (migrated first), writing what happens to
/// `out`.
pub async fn tour(url: &str, out: &mut impl Write) -> Result<WorkerReport, BoxError> {
    // Migrate from code: `migration::up` takes the migration lock, so instances that
    // start together apply each migration once.
    migration::up(url).await?;
    let db = service::db::connect(url, 10).await?;
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
    let answers = Arc::new(AiResponseCache::new(db.clone(), CacheConfig::default())?);
    let request = AiRequest {
        operation_type: "summary".to_owned(),
        lecture_ids: vec![lecture.id],
        params: json!({ "language": "en" }),
    };
    let key = answers.key(&db, &request).await?;
    for _ in 0..2 {
        let answer = answers
            .get_or_compute(&key, || summarise(&lecture.content))
            .await?;
        writeln!(
            out,
            "ai answer: {} ({})",
            answer.value.data["summary"], answer.origin
        )?;
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
    let answer = answers
        .get_or_compute(&new_key, || summarise(revised))
        .await?;
    writeln!(
        out,
        "ai answer: {} ({})",
        answer.value.data["summary"], answer.origin
    )?;

    // The PDF cache: keyed by the SHA-256 of the file, zstd-compressed.
    let pdfs = Arc::new(PdfCache::new(
        db.clone(),
        CacheConfig::default(),
        PdfSettings::default(),
    )?);
    let pdf = b"%PDF-1.7 a lecture handout".to_vec();
    let pdf_key = PdfKey::from_reader(std::io::Cursor::new(pdf.clone())).await?;
    let parsed = pdfs
        .get_or_compute(&pdf_key, || async {
            Ok::<_, std::io::Error>(format!("{} bytes of text", pdf.len()).into_bytes())
        })
        .await?;
    writeln!(
        out,
        "pdf: {} ({})",
        String::from_utf8_lossy(&parsed.value),
        parsed.origin
    )?;

    // The vision cache: per normalised image URL and provider, with a time to live.
    let vision = Arc::new(VisionCache::new(
        db.clone(),
        CacheConfig::default(),
        TimeDelta::days(30),
    )?);
    let image = VisionKey::new(
        "https://example.org/birds/raven.jpg?w=800",
        AiProvider::Openai,
    )?;
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
    let exercises = Arc::new(ExerciseCache::new(
        db.clone(),
        CacheConfig::default(),
        TimeDelta::hours(24),
    )?);
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
    let (document, job) = add_document(&txn, "Ravens remember faces.").await?;
    txn.commit().await?; // the job exists, and wakes workers, only now
    writeln!(out, "document {document} and job {job} committed")?;

    // The runtime runs the worker, the lease rescuer and the caches' flushers; this
    // tour stops it once the job is done.
    let runtime = Runtime::new(db.clone(), RuntimeConfig::default())
        .worker(embed_worker(db.clone())?)
        .flush(answers.clone())
        .flush(pdfs.clone())
        .flush(vision.clone())
        .flush(exercises.clone())
        .start();
    let done = loop {
        match queue::job(&db, job).await? {
            Some(job) if job.status == "completed" => break job,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    // Running jobs finish, and the caches' buffered hit bookkeeping is written.
    let stopped = runtime.stop(Duration::from_secs(30)).await;
    let report = stopped.queues[0].report;
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

    // The vector store with the local embedder, then accounts and a review decision.
    store_tour::store_tour(&db, out).await?;
    review_tour::review_tour(&db, out).await?;
    topology_tour::topology_tour(&service::db::DatabaseUrls::new(url), out).await?;
    Ok(report)
}
