//! The AI annotation pipeline (seed 004 `003`, `004`, `006`): requests enqueue
//! `ai_annotation_jobs`; the built-in handler asks the provider through the vision
//! cache (a cached image costs no call; concurrent misses call once) outside any
//! transaction, then completes the job with its annotations — pending review — and
//! the batch's progress in one transaction.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use entity::sea_orm_active_enums::AiProvider;
use entity::{batch_job_errors, batch_jobs, images};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    Statement, TransactionSession, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::VisionError;
use super::provider::{VisionAnswer, VisionProvider};
use crate::cache::CacheError;
use crate::cache::vision::{VisionCache, VisionKey, VisionResponse};
use crate::error::{BoxError, InvalidInput};
use crate::http::HttpError;
use crate::provider;
use crate::queue::QueueError;
use crate::queue::ai::{
    NewAiJob, complete_ai_job, create_batch, enqueue_ai_job, enqueue_ai_jobs, fail_ai_job,
};
use crate::queue::worker::{JobContext, Worker};

/// The batch jobs' type.
pub const BATCH_JOB_TYPE: &str = "vision_annotation";

/// A vision job's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobPayload {
    image_id: Uuid,
    image_url: String,
    batch_id: Option<Uuid>,
    item_index: Option<i32>,
}

/// The image's row; [`VisionError::UnknownImage`] when there is none.
async fn image<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<images::Model, VisionError> {
    images::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(VisionError::UnknownImage(id))
}

/// Asks for `provider`'s annotations of image `image_id`: enqueues its
/// `ai_annotation_jobs` job — or returns the job already pending or processing for
/// this image and provider (one live job each). On any connection (in the caller's
/// transaction, with what prompted it). Two round trips (the image, the enqueue).
pub async fn request_annotations<C: ConnectionTrait>(
    db: &C,
    image_id: Uuid,
    provider: AiProvider,
    requested_by: Option<Uuid>,
) -> Result<Uuid, VisionError> {
    let image = image(db, image_id).await?;
    let name = provider::name(&provider);
    let payload = JobPayload {
        image_id,
        image_url: image.url,
        batch_id: None,
        item_index: None,
    };
    let mut job = NewAiJob::new(image_id, provider.clone(), serde_json::to_value(&payload)?);
    job.dedup_key = Some(format!("annotate:{image_id}:{name}"));
    job.created_by = requested_by;
    Ok(enqueue_ai_job(db, job).await?)
}

/// A batch request: its `batch_jobs` row and one job per image, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchRequest {
    /// The batch.
    pub batch_id: Uuid,
    /// The images' jobs, in the request's order.
    pub jobs: Vec<Uuid>,
}

/// Asks for `provider`'s annotations of every image in `images` as one batch
/// (`batch_jobs`, type `vision_annotation`): when an item's job ends — however it
/// ends: completed, failed by its handler or its last attempt, rescued after its
/// last attempt's lease expired, cancelled — the database counts it in the batch, or
/// records its error in `batch_job_errors` (a trigger, in the same transaction). A
/// repeated or unknown image refuses the whole request, with nothing written. In one
/// transaction (a savepoint inside the caller's): begin, the images, the batch, the
/// jobs, commit.
pub async fn request_batch<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    image_ids: &[Uuid],
    provider: AiProvider,
    requested_by: Option<Uuid>,
) -> Result<BatchRequest, VisionError> {
    if image_ids.is_empty() {
        return Err(InvalidInput::new("images", "[]", "a batch has at least one image").into());
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = image_ids.iter().find(|id| !seen.insert(**id)) {
        return Err(
            InvalidInput::new("images", twice, "an image appears twice in the batch").into(),
        );
    }
    let name = provider::name(&provider);
    let txn = db.begin().await?;
    let rows = images::Entity::find()
        .filter(images::Column::Id.is_in(image_ids.to_vec()))
        .all(&txn)
        .await?;
    let urls: std::collections::HashMap<Uuid, String> =
        rows.into_iter().map(|i| (i.id, i.url)).collect();
    if let Some(missing) = image_ids.iter().find(|id| !urls.contains_key(id)) {
        return Err(VisionError::UnknownImage(*missing));
    }
    let batch_id = create_batch(
        &txn,
        BATCH_JOB_TYPE,
        image_ids.len() as i32,
        &json!({"provider": name, "images": image_ids}),
        requested_by,
    )
    .await?;
    let mut jobs = Vec::with_capacity(image_ids.len());
    for (i, id) in image_ids.iter().enumerate() {
        let payload = JobPayload {
            image_id: *id,
            image_url: urls[id].clone(),
            batch_id: Some(batch_id),
            item_index: Some(i as i32),
        };
        let mut job = NewAiJob::new(*id, provider.clone(), serde_json::to_value(&payload)?);
        job.dedup_key = Some(format!("annotate:{id}:{name}:{batch_id}"));
        job.created_by = requested_by;
        jobs.push(job);
    }
    let jobs = enqueue_ai_jobs(&txn, &jobs).await?;
    txn.commit().await?;
    Ok(BatchRequest { batch_id, jobs })
}

/// A batch's row (counts and status) and its failed items, in item order. Two round
/// trips through the entities.
pub async fn batch_progress<C: ConnectionTrait>(
    db: &C,
    batch_id: Uuid,
) -> Result<Option<(batch_jobs::Model, Vec<batch_job_errors::Model>)>, VisionError> {
    let Some(batch) = batch_jobs::Entity::find_by_id(batch_id).one(db).await? else {
        return Ok(None);
    };
    let errors = batch_job_errors::Entity::find()
        .filter(batch_job_errors::Column::JobId.eq(batch_id))
        .order_by_asc(batch_job_errors::Column::ItemIndex)
        .all(db)
        .await?;
    Ok(Some((batch, errors)))
}

/// The built-in handler of one provider's annotation jobs. Register it on a worker of
/// `ai_annotation_jobs` with [`AnnotationPipeline::register`].
pub struct AnnotationPipeline<P: VisionProvider> {
    db: crate::db::Topology,
    cache: Arc<VisionCache>,
    provider: Arc<P>,
}

impl<P: VisionProvider> AnnotationPipeline<P> {
    /// A pipeline writing on `db`, calling `provider` through `cache`.
    pub fn new(
        db: impl Into<crate::db::Topology>,
        cache: Arc<VisionCache>,
        provider: P,
    ) -> Arc<Self> {
        Arc::new(Self {
            db: db.into(),
            cache,
            provider: Arc::new(provider),
        })
    }

    /// `worker` with this pipeline handling its provider's jobs (the job type is the
    /// provider's name).
    pub fn register(self: &Arc<Self>, worker: Worker) -> Result<Worker, QueueError> {
        let pipeline = Arc::clone(self);
        worker.handle(provider::name(&self.provider.provider()), move |ctx| {
            let pipeline = Arc::clone(&pipeline);
            async move { pipeline.handle(ctx).await.map_err(BoxError::from) }
        })
    }

    /// Handles one job: the provider's answer through the cache (no transaction is
    /// open during the call), checked whole, then in one transaction the job
    /// completed with its annotations (`vision_generated`, pending review) and the
    /// batch's progress (the trigger's). An answer with a bad annotation, or any failure on the last
    /// attempt, fails the job for good and records the batch item's error, in one
    /// transaction; other failures return for the worker to retry. A run that lost
    /// its lease writes nothing.
    pub async fn handle(&self, ctx: JobContext) -> Result<Value, VisionError> {
        let job = match serde_json::from_value::<JobPayload>(ctx.payload.clone()) {
            Ok(job) => job,
            Err(e) => {
                let error = VisionError::BadJob(e.to_string());
                self.give_up(&ctx, &error).await;
                return Err(error);
            }
        };
        match self.annotate(&ctx, &job).await {
            Ok(done) => Ok(done),
            Err(error) if error.is_permanent() || ctx.attempt >= ctx.max_attempts => {
                self.give_up(&ctx, &error).await;
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    async fn annotate(&self, ctx: &JobContext, job: &JobPayload) -> Result<Value, VisionError> {
        let key = VisionKey::new(&job.image_url, self.provider.provider())?;
        let provider = Arc::clone(&self.provider);
        let url = job.image_url.clone();
        let fetched = self
            .cache
            .get_or_compute(&key, || async move {
                let started = Instant::now();
                let answer = provider.analyze(&url).await?;
                // An answer that cannot be used is never cached.
                answer.checked()?;
                Ok::<_, VisionError>(VisionResponse {
                    data: serde_json::to_value(&answer)?,
                    response_time_ms: Some(
                        started.elapsed().as_millis().min(i32::MAX as u128) as i32
                    ),
                })
            })
            .await
            .map_err(VisionError::from_cache)?;
        // Only a compute of this caller paid the provider.
        let hit = !fetched.computed();
        let response = fetched.value;
        let answer: VisionAnswer = serde_json::from_value(response.data.clone())
            .map_err(|e| VisionError::BadAnswer(format!("cached answer: {e}")))?;
        let annotations = answer.checked()?;
        let per_call = self.provider.cost_per_call();
        let result = json!({
            "answer": response.data,
            "cache_hit": hit,
            "cost_usd": if hit { 0.0 } else { per_call },
            "cost_per_call_usd": per_call,
            "response_time_ms": response.response_time_ms,
        });
        let txn = self.db.begin().await?;
        let Some(ids) = complete_ai_job(&txn, ctx.lease(), &result, &annotations).await? else {
            // The lease was lost: another run owns the job now.
            return Ok(json!({"stale": true}));
        };
        // The batch counts the item (a trigger on the job's status).
        txn.commit().await?;
        Ok(json!({"annotations": ids.len(), "cache_hit": hit}))
    }

    /// Fails the job for good with `error` (nothing when the lease was lost); its batch,
    /// if any, records the item's error in the same statement's transaction. If that
    /// cannot be written, it is logged, and the worker records the attempt's failure
    /// as for any error.
    async fn give_up(&self, ctx: &JobContext, error: &VisionError) {
        if let Err(e) = self.fail_for_good(ctx, &error.to_string()).await {
            tracing::warn!(job = %ctx.id, error = %e, "could not fail the vision job for good");
        }
    }

    async fn fail_for_good(&self, ctx: &JobContext, message: &str) -> Result<(), VisionError> {
        // The batch records the failed item with its error (a trigger on the job's
        // status); a lost lease changes nothing.
        fail_ai_job(&self.db, ctx.lease(), message).await?;
        Ok(())
    }
}

/// One provider's AI spending on one day.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
pub struct ProviderCost {
    /// The day (UTC) the jobs completed.
    pub day: NaiveDate,
    /// The provider (in JSON: `openai`, …).
    #[serde(serialize_with = "crate::db_enum::serialize")]
    pub provider: AiProvider,
    /// Jobs that called the provider.
    pub calls: i64,
    /// Jobs answered from the vision cache.
    pub cache_hits: i64,
    /// What the calls cost, in US dollars.
    pub cost_usd: f64,
    /// What the cache hits would have cost.
    pub cost_saved_usd: f64,
}

/// Completed annotation jobs per provider and day, from what the pipeline recorded
/// with each (`cache_hit`, `cost_usd`, `cost_per_call_usd` in `response_data`): an
/// aggregate over a JSON column, which SeaORM's builder cannot say.
const COST_SQL: &str = "SELECT (completed_at AT TIME ZONE 'UTC')::date AS day,
            provider::text AS provider,
            count(*) FILTER (WHERE NOT (response_data->>'cache_hit')::boolean) AS calls,
            count(*) FILTER (WHERE (response_data->>'cache_hit')::boolean) AS cache_hits,
            coalesce(sum((response_data->>'cost_usd')::float8), 0) AS cost_usd,
            coalesce(sum((response_data->>'cost_per_call_usd')::float8)
                     FILTER (WHERE (response_data->>'cache_hit')::boolean), 0) AS cost_saved_usd
     FROM ai_annotation_jobs
     WHERE status = 'completed' AND response_data ? 'cache_hit'
       AND completed_at >= $1 AND completed_at < $2
     GROUP BY 1, 2 ORDER BY 1, 2";

/// Calls, cache hits, cost and cost saved per provider and day, for the jobs that
/// completed in `[from, until)` — seed 004's cost tracking and provider comparison.
/// One round trip (an aggregate over `ai_annotation_jobs`).
pub async fn cost_by_provider<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<ProviderCost>, VisionError> {
    Ok(
        ProviderCost::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            COST_SQL,
            [from.into(), until.into()],
        ))
        .all(db)
        .await?,
    )
}

impl VisionError {
    /// Whether asking again cannot help: a bad annotation in the answer, a job, key,
    /// image or configuration that cannot be used, a 4xx refusal other than 408 and
    /// 429.
    pub fn is_permanent(&self) -> bool {
        match self {
            VisionError::InvalidAnnotation { .. }
            | VisionError::BadJob(_)
            | VisionError::Config(_)
            | VisionError::UnknownImage(_)
            | VisionError::Cache(CacheError::InvalidKey { .. }) => true,
            // A refusal other than a timeout or a rate limit will be refused again.
            VisionError::Http(HttpError::Status { status, .. }) => {
                (400..500).contains(status) && !matches!(status, 408 | 429)
            }
            _ => false,
        }
    }

    /// A cache error, with the provider's own error taken back out of a failed compute.
    fn from_cache(e: CacheError) -> Self {
        match e {
            CacheError::Compute { source, .. } => match source.downcast::<VisionError>() {
                Ok(own) => *own,
                Err(other) => VisionError::BadAnswer(other.to_string()),
            },
            other => VisionError::Cache(other),
        }
    }
}
