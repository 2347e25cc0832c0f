//! Seed 004's review and AI-job statistics views, read as named rows.

use chrono::{DateTime, FixedOffset};
use entity::sea_orm_active_enums::{AiJobStatus, AiProvider};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use serde::Serialize;
use uuid::Uuid;

use super::ReviewError;

/// One reviewer's line of `reviewer_stats`.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
pub struct ReviewerStats {
    /// The reviewer.
    pub reviewer_id: Uuid,
    /// Their email.
    pub reviewer_email: String,
    /// Decisions made.
    pub total_reviews: i64,
    /// Of which approvals.
    pub approved_count: i64,
    /// Of which rejections.
    pub rejected_count: i64,
    /// Average seconds from an annotation's creation to its review.
    pub avg_review_time_seconds: Option<f64>,
    /// The first review.
    pub first_review_at: Option<DateTime<FixedOffset>>,
    /// The last review.
    pub last_review_at: Option<DateTime<FixedOffset>>,
}

/// Reads the view `reviewer_stats` (no entity), busiest reviewer first.
const REVIEWER_STATS_SQL: &str =
    "SELECT reviewer_id, reviewer_email, total_reviews, approved_count,
            rejected_count, avg_review_time_seconds::float8 AS avg_review_time_seconds,
            first_review_at, last_review_at
     FROM reviewer_stats ORDER BY total_reviews DESC, reviewer_email";

/// Each reviewer's decisions: totals, approvals, rejections, average time to review.
/// One round trip (an aggregate over the reviewed annotations).
pub async fn reviewer_stats<C: ConnectionTrait>(db: &C) -> Result<Vec<ReviewerStats>, ReviewError> {
    Ok(ReviewerStats::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        REVIEWER_STATS_SQL,
    ))
    .all(db)
    .await?)
}

/// One (provider, status) line of `ai_job_stats`.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
pub struct AiJobStats {
    /// The provider (in JSON: `openai`, …).
    #[serde(serialize_with = "crate::db_enum::serialize")]
    pub provider: AiProvider,
    /// The jobs' status (in JSON as the table spells it).
    #[serde(serialize_with = "crate::db_enum::serialize")]
    pub status: AiJobStatus,
    /// How many jobs.
    pub job_count: i64,
    /// Their average duration in seconds (finished jobs).
    pub avg_duration_seconds: Option<f64>,
    /// Annotations they created.
    pub annotations_created: Option<i64>,
    /// The first job.
    pub first_job_at: Option<DateTime<FixedOffset>>,
    /// The last job.
    pub last_job_at: Option<DateTime<FixedOffset>>,
}

/// Reads the view `ai_job_stats` (no entity), by provider and status.
const AI_JOB_STATS_SQL: &str =
    "SELECT provider::text AS provider, status::text AS status, job_count,
            avg_duration_seconds::float8 AS avg_duration_seconds,
            annotations_created::int8 AS annotations_created, first_job_at, last_job_at
     FROM ai_job_stats ORDER BY provider, status";

/// The AI annotation jobs by provider and status: counts, average duration,
/// annotations created. One round trip (an aggregate over `ai_annotation_jobs`).
pub async fn ai_job_stats<C: ConnectionTrait>(db: &C) -> Result<Vec<AiJobStats>, ReviewError> {
    Ok(AiJobStats::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        AI_JOB_STATS_SQL,
    ))
    .all(db)
    .await?)
}
