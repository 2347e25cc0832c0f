//! The review queue: seed 004's `pending_ai_annotations`, lowest confidence first.

use chrono::{DateTime, FixedOffset};
use entity::sea_orm_active_enums::{AiJobStatus, AiProvider};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::ReviewError;
use crate::error::InvalidInput;
use crate::page::Page;
use crate::provider;

/// An AI annotation waiting for review, with its image and job.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
pub struct PendingAnnotation {
    /// The annotation.
    pub id: Uuid,
    /// Its image.
    pub image_id: Uuid,
    /// The image's URL.
    pub image_url: String,
    /// The image's species, when known.
    pub species: Option<String>,
    /// What the AI says it marks.
    pub label: String,
    /// The annotation's type.
    pub annotation_type: String,
    /// Its box (`{topLeft, bottomRight, width, height}`).
    pub bounding_box: Value,
    /// The provider's confidence, 0..1.
    pub confidence: f64,
    /// The provider (in JSON: `openai`, `google`, `anthropic`).
    #[serde(serialize_with = "crate::db_enum::serialize")]
    pub provider: AiProvider,
    /// The job that made it.
    pub ai_job_id: Option<Uuid>,
    /// That job's status (in JSON as the table spells it).
    #[serde(serialize_with = "crate::db_enum::serialize_option")]
    pub job_status: Option<AiJobStatus>,
    /// When it was made.
    pub created_at: DateTime<FixedOffset>,
}

/// Which pending annotations to list: every field set narrows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PendingFilter {
    /// From this provider.
    pub provider: Option<AiProvider>,
    /// With a confidence of at least this.
    pub min_confidence: Option<f64>,
    /// With a confidence of at most this.
    pub max_confidence: Option<f64>,
}

/// Reads the view `pending_ai_annotations` (no entity) with the optional filters as
/// nullable parameters (the bounds compared as `numeric`, the column's type, so the
/// partial review index serves them), in its order with the id as the tie-break, a
/// page at a time.
const PENDING_SQL: &str = "SELECT id, image_id, image_url, species, label, annotation_type,
            bounding_box, vision_confidence::float8 AS confidence,
            vision_provider::text AS provider, ai_job_id, job_status::text AS job_status,
            created_at
     FROM pending_ai_annotations
     WHERE ($1::text IS NULL OR vision_provider = $1::text::ai_provider)
       AND ($2::float8 IS NULL OR vision_confidence >= $2::float8::numeric)
       AND ($3::float8 IS NULL OR vision_confidence <= $3::float8::numeric)
     ORDER BY vision_confidence, created_at, id
     LIMIT $4 OFFSET $5";

/// A page of the annotations waiting for review, lowest confidence first (what most
/// needs a person's eye), filtered by provider and confidence range. A confidence
/// bound outside 0..1 is [`ReviewError::Invalid`]. One round trip.
pub async fn pending<C: ConnectionTrait>(
    db: &C,
    filter: &PendingFilter,
    page: Page,
) -> Result<Vec<PendingAnnotation>, ReviewError> {
    for (field, bound) in [
        ("min_confidence", filter.min_confidence),
        ("max_confidence", filter.max_confidence),
    ] {
        if let Some(b) = bound
            && !(0.0..=1.0).contains(&b)
        {
            return Err(InvalidInput::new(field, b, "confidence is 0 to 1").into());
        }
    }
    Ok(
        PendingAnnotation::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            PENDING_SQL,
            [
                filter
                    .provider
                    .as_ref()
                    .map(|p| provider::name(p).to_owned())
                    .into(),
                filter.min_confidence.into(),
                filter.max_confidence.into(),
                (page.limit() as i64).into(),
                (page.offset() as i64).into(),
            ],
        ))
        .all(db)
        .await?,
    )
}
