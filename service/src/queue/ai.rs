//! Seed 004's AI work: enqueueing vision jobs for images, completing a job together
//! with the annotations it produced, and batch-job progress with per-item errors.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::Value;
use uuid::Uuid;

use super::{AI_ANNOTATION_JOBS, BatchInsert, Lease, QueueError, check_job};
use crate::provider;
use entity::sea_orm_active_enums::AiProvider;

/// A vision job to enqueue in `ai_annotation_jobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAiJob {
    /// The image to annotate.
    pub image_id: Uuid,
    /// The provider: the job's type for the workers (`openai`, …).
    pub provider: AiProvider,
    /// The request to send.
    pub request_payload: Value,
    /// 0 to 32767; higher runs first.
    pub priority: i32,
    /// At least 1.
    pub max_attempts: i32,
    /// Dedup key (see [`super::NewJob::dedup_key`]).
    pub dedup_key: Option<String>,
    /// Who asked for it.
    pub created_by: Option<Uuid>,
}

impl NewAiJob {
    /// A job for `image_id` on `provider` with the defaults (priority 0, 3 attempts).
    pub fn new(image_id: Uuid, provider: AiProvider, request_payload: Value) -> Self {
        Self {
            image_id,
            provider,
            request_payload,
            priority: 0,
            max_attempts: 3,
            dedup_key: None,
            created_by: None,
        }
    }
}

/// Enqueues one vision job and returns its id (an existing job's when its dedup key
/// is live): [`enqueue_ai_jobs`] of one. One round trip.
pub async fn enqueue_ai_job<C: sea_orm::ConnectionTrait>(
    db: &C,
    job: NewAiJob,
) -> Result<Uuid, QueueError> {
    super::first_id(enqueue_ai_jobs(db, std::slice::from_ref(&job)).await?)
}

/// Enqueues vision jobs in one statement (see [`super::enqueue`]: same checks, with
/// the default [`super::EnqueueConfig`], and the same dedup rule).
pub async fn enqueue_ai_jobs<C: sea_orm::ConnectionTrait>(
    db: &C,
    jobs: &[NewAiJob],
) -> Result<Vec<Uuid>, QueueError> {
    let max_payload_bytes = super::EnqueueConfig::default().max_payload_bytes;
    let mut providers = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        payloads.push(check_job(
            i,
            job.priority,
            job.max_attempts,
            &job.request_payload,
            max_payload_bytes,
        )?);
        providers.push(provider::name(&job.provider).to_owned());
    }
    let mut batch = BatchInsert::default();
    batch.shared_or_per_row(
        "image_id",
        "uuid",
        jobs.iter().map(|j| j.image_id).collect(),
    );
    batch.shared_or_per_row("provider", "ai_provider", providers);
    batch.json_per_row("request_payload", payloads);
    batch.optional(
        "created_by",
        "uuid",
        "NULL",
        jobs.iter().map(|j| j.created_by).collect(),
        Uuid::nil(),
    );
    let queue_fields = jobs
        .iter()
        .map(|j| (j.priority, j.max_attempts, j.dedup_key.clone()))
        .collect();
    batch
        .insert_jobs(db, AI_ANNOTATION_JOBS, queue_fields)
        .await
}

/// One annotation a vision call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionAnnotation {
    /// What it marks.
    pub label: String,
    /// `{topLeft: {x, y}, bottomRight: {x, y}, width, height}`, normalised to 0..1.
    pub bounding_box: Value,
    /// The provider's confidence, 0..1.
    pub confidence: f64,
}

/// Completes the AI job of `lease` with the provider's `response` and writes its
/// annotations (`vision_generated`, the confidence, the job's provider,
/// `review_status = pending`, `ai_job_id`) in the same statement, hence the same
/// transaction: either the job is completed with all its annotations or nothing is
/// written. Returns the annotation ids; `Ok(None)` if the lease no longer holds the
/// job (it was rescued — perhaps claimed again — cancelled or already finished). A
/// confidence outside 0..1 is refused up front; a bounding box the schema's checks
/// refuse fails the whole statement. One round trip, on any connection: inside the
/// handler's transaction, with its other writes.
pub async fn complete_ai_job<C: ConnectionTrait>(
    db: &C,
    lease: Lease,
    response: &Value,
    annotations: &[VisionAnnotation],
) -> Result<Option<Vec<Uuid>>, QueueError> {
    for (i, a) in annotations.iter().enumerate() {
        if !(0.0..=1.0).contains(&a.confidence) {
            return Err(QueueError::InvalidJob {
                index: i,
                field: "confidence",
                value: a.confidence.to_string(),
                reason: "confidence is 0 to 1",
            });
        }
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            COMPLETE_AI_JOB_SQL,
            [
                lease.job.into(),
                lease.token.into(),
                response.clone().into(),
                (annotations.len() as i32).into(),
                annotations
                    .iter()
                    .map(|a| a.label.clone())
                    .collect::<Vec<_>>()
                    .into(),
                annotations
                    .iter()
                    .map(|a| a.bounding_box.to_string())
                    .collect::<Vec<_>>()
                    .into(),
                annotations
                    .iter()
                    .map(|a| a.confidence)
                    .collect::<Vec<_>>()
                    .into(),
            ],
        ))
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut ids = Vec::with_capacity(annotations.len());
    for row in rows {
        if let Some(id) = row.try_get::<Option<Uuid>>("", "id")? {
            ids.push(id);
        }
    }
    Ok(Some(ids))
}

/// Fails the AI job of `lease` for good with `error` — no retry, whatever attempts
/// remain: for an answer that asking again will not change. `false` if the lease no
/// longer holds the job. One round trip (an UPDATE through the entity), on any
/// connection: inside the handler's transaction, with its other writes.
pub async fn fail_ai_job<C: ConnectionTrait>(
    db: &C,
    lease: Lease,
    error: &str,
) -> Result<bool, QueueError> {
    use entity::ai_annotation_jobs::{Column, Entity};
    use entity::sea_orm_active_enums::AiJobStatus;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ActiveEnum, ColumnTrait, EntityTrait, QueryFilter};
    let done = Entity::update_many()
        .col_expr(Column::Status, AiJobStatus::Failed.as_enum())
        .col_expr(Column::ErrorMessage, Expr::value(error))
        .col_expr(Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LockedUntil,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(Column::ClaimToken, Expr::value(Option::<Uuid>::None))
        .filter(Column::Id.eq(lease.job))
        .filter(Column::Status.eq(AiJobStatus::Processing))
        .filter(Column::ClaimToken.eq(lease.token))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Completes an AI job and inserts its annotations in one statement (a
/// data-modifying CTE, which SeaORM's builder cannot say): the first row is the job
/// (a NULL id; no row when the claim no longer holds it), the others the new
/// annotations' ids. Bounding boxes travel as JSON text.
const COMPLETE_AI_JOB_SQL: &str = "WITH job AS (
         UPDATE ai_annotation_jobs SET status = 'completed', response_data = $3,
                annotations_created = $4, locked_by = NULL, locked_until = NULL,
                claim_token = NULL
         WHERE id = $1 AND status = 'processing' AND claim_token = $2
         RETURNING id, image_id, provider
     ),
     created AS (
         INSERT INTO annotations (image_id, label, bounding_box, vision_generated, vision_confidence,
                                  vision_provider, review_status, ai_job_id)
         SELECT job.image_id, a.label, a.bbox::jsonb, true, a.confidence::numeric(4, 3), job.provider,
                'pending', job.id
         FROM job, unnest($5::text[], $6::text[], $7::float8[]) AS a(label, bbox, confidence)
         RETURNING id
     )
     SELECT NULL::uuid AS id FROM job
     UNION ALL
     SELECT id FROM created";

/// Creates a batch job over `total_items` items, through its entity, on any
/// connection (a transaction joins it); its id. One round trip.
pub async fn create_batch<C: sea_orm::ConnectionTrait>(
    db: &C,
    job_type: &str,
    total_items: i32,
    payload: &Value,
    created_by: Option<Uuid>,
) -> Result<Uuid, QueueError> {
    if total_items < 0 {
        return Err(QueueError::InvalidJob {
            index: 0,
            field: "total_items",
            value: total_items.to_string(),
            reason: "cannot be negative",
        });
    }
    use sea_orm::{ActiveModelTrait, Set};
    let batch = entity::batch_jobs::ActiveModel {
        job_type: Set(job_type.to_owned()),
        total_items: Set(total_items),
        payload: Set(payload.clone()),
        created_by: Set(created_by),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(batch.id)
}

/// One item of a batch that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemError {
    /// Its position in the batch.
    pub item_index: i32,
    /// Its own reference (an image id, a URL…).
    pub item_ref: Option<String>,
    /// What went wrong.
    pub error: String,
}

/// A batch's counts after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchProgress {
    /// Items done.
    pub processed_items: i32,
    /// Items failed.
    pub failed_items: i32,
    /// Items in all.
    pub total_items: i32,
    /// `processing` until every item is done or failed, then `completed`.
    pub status: String,
}

/// Records that `processed` more items of batch `batch_id` succeeded and that
/// `errors` failed (each kept in `batch_job_errors`), in one statement; the batch is
/// `completed` once every item is accounted for. `Ok(None)` if the batch is unknown
/// or already finished; more items than the batch has are refused by its check. On
/// any connection (a transaction joins it): the item's own writes and its progress
/// commit together.
pub async fn record_batch_progress<C: sea_orm::ConnectionTrait>(
    db: &C,
    batch_id: Uuid,
    processed: i32,
    errors: &[ItemError],
) -> Result<Option<BatchProgress>, QueueError> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            RECORD_PROGRESS_SQL,
            [
                batch_id.into(),
                processed.max(0).into(),
                (errors.len() as i32).into(),
                sea_orm::Value::from(errors.iter().map(|e| e.item_index).collect::<Vec<_>>()),
                // SeaORM binds arrays without NULL elements: an absent reference
                // travels as '' with a mask.
                sea_orm::Value::from(
                    errors
                        .iter()
                        .map(|e| e.item_ref.clone().unwrap_or_default())
                        .collect::<Vec<_>>(),
                ),
                sea_orm::Value::from(
                    errors
                        .iter()
                        .map(|e| e.item_ref.is_none())
                        .collect::<Vec<_>>(),
                ),
                sea_orm::Value::from(errors.iter().map(|e| e.error.clone()).collect::<Vec<_>>()),
            ],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(BatchProgress {
        processed_items: row.try_get("", "processed_items")?,
        failed_items: row.try_get("", "failed_items")?,
        total_items: row.try_get("", "total_items")?,
        status: row.try_get("", "status")?,
    }))
}

/// Counts a batch's progress and logs its failed items in one statement: a
/// data-modifying CTE, which SeaORM's builder cannot say.
const RECORD_PROGRESS_SQL: &str = "WITH batch AS (
         UPDATE batch_jobs SET
             processed_items = processed_items + $2,
             failed_items = failed_items + $3,
             status = CASE WHEN processed_items + $2 + failed_items + $3 >= total_items
                           THEN 'completed' ELSE 'processing' END
         WHERE id = $1 AND status IN ('pending', 'processing')
         RETURNING id, processed_items, failed_items, total_items, status
     ),
     logged AS (
         INSERT INTO batch_job_errors (job_id, item_index, item_ref, error_message)
         SELECT batch.id, e.i, CASE WHEN e.missing THEN NULL ELSE e.r END, e.msg
         FROM batch, unnest($4::int4[], $5::text[], $6::bool[], $7::text[]) AS e(i, r, missing, msg)
     )
     SELECT processed_items, failed_items, total_items, status FROM batch";
