//! Seed 004, `003_create_ai_annotations.sql`: AI-generated annotations and their review.
//!
//! Enum types (SPEC.md decision 5): `ai_job_status` (`pending`, `processing`,
//! `completed`, `failed`, and `cancelled` for jobs cancelled before they ran),
//! `ai_provider` (`openai`, `google`, `anthropic`), `review_status` (`pending`,
//! `approved`, `rejected`).
//!
//! `ai_annotation_jobs`: one vision-API job for an image (`image_id` → images ON
//! DELETE CASCADE), `provider`, `status` (pending → processing → completed | failed),
//! `request_payload`, `response_data`, `error_message`, `annotations_created`,
//! `created_by`, and the columns the queue engine shares with `jobs` (`priority`,
//! `attempts`, `max_attempts`, `run_at`, `locked_by`, `locked_until`, `dedup_key`),
//! timestamps `created_at`, `updated_at`, `started_at`, `completed_at`. Trigger
//! `trigger_ai_jobs_timestamps` (`set_job_timestamps('processing')`, shared with
//! `jobs` and `batch_jobs`) keeps `updated_at`,
//! stamps `started_at` on → processing, sets `completed_at` only on a transition from
//! a non-terminal to a terminal state (completed, failed, cancelled) and clears it when
//! a job is returned to pending; `trigger_ai_jobs_notify` sends one
//! `NOTIFY strata_ai_annotation_jobs` per INSERT statement. Indexes: `idx_ai_jobs_image_id`, `idx_ai_jobs_status`,
//! `idx_ai_jobs_status_created (status, created_at)`, `idx_ai_jobs_provider`, and the
//! claim index `idx_ai_jobs_claim (priority DESC, run_at) WHERE status = 'pending'`,
//! the lease index `idx_ai_jobs_lease`, the dedup index `idx_ai_jobs_dedup_key`.
//!
//! `annotations` gains `vision_generated`, `vision_confidence numeric(4,3)`,
//! `vision_provider`, `review_status` (default `pending`), `reviewed_by` → users,
//! `reviewed_at`, `ai_job_id` → ai_annotation_jobs ON DELETE SET NULL; and the checks:
//! - `check_vision_confidence`: within 0..1, and present on AI annotations;
//! - `check_vision_provider`: AI annotations name their provider;
//! - `check_review_metadata`: an approved or rejected annotation has `reviewed_by`
//!   and `reviewed_at`;
//! - `check_bounding_box_structure`: `bounding_box` is an object with `topLeft` and
//!   `bottomRight` objects holding numeric `x` and `y`, and numeric `width`, `height`
//!   (a missing key is a violation, not an unknown that CHECK would let through);
//! - `check_bounding_box_coords`: coordinates are normalised to the image (0..1),
//!   `bottomRight` lies right of and below `topLeft`, and `width`/`height` equal the
//!   corners' differences (to 0.001). It only judges boxes of the right structure, so a
//!   malformed box is reported by the structure check, never as a cast error.
//!
//! Indexes on annotations: `idx_annotations_vision_generated (vision_generated,
//! created_at)`, `idx_annotations_review_status (review_status)`,
//! `idx_annotations_vision_review (review_status, vision_confidence) WHERE
//! vision_generated` (pending AI annotations, lowest confidence first),
//! `idx_annotations_review_status_created (review_status, created_at)` (the
//! reviewer queue, oldest first), `idx_annotations_reviewed_by (reviewed_by,
//! reviewed_at)`, `idx_annotations_ai_job_id`.
//!
//! Views: `pending_ai_annotations` (AI annotations awaiting review with their image
//! and job, lowest confidence first), `ai_job_stats` (per provider and status: count,
//! average duration in seconds, first and last job), `reviewer_stats` (per reviewer:
//! totals approved and rejected, average seconds from creation to review, first and
//! last review).

use sea_orm_migration::prelude::extension::postgres::Type;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{
    create_indexes, drop_tables, empty_object, exec, foreign_key, id, index, now_column,
    queue_indexes,
};

const JOB_STATUSES: [&str; 5] = ["pending", "processing", "completed", "failed", "cancelled"];
const PROVIDERS: [&str; 3] = ["openai", "google", "anthropic"];
const REVIEW_STATUSES: [&str; 3] = ["pending", "approved", "rejected"];

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, values) in [
            ("ai_job_status", &JOB_STATUSES[..]),
            ("ai_provider", &PROVIDERS[..]),
            ("review_status", &REVIEW_STATUSES[..]),
        ] {
            manager
                .create_type(
                    Type::create()
                        .as_enum(name)
                        .values(values.iter().copied())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("ai_annotation_jobs")
                    .col(id())
                    .col(uuid("image_id"))
                    .col(enumeration("provider", "ai_provider", PROVIDERS))
                    .col(
                        enumeration("status", "ai_job_status", JOB_STATUSES)
                            .default(Expr::cust("'pending'::ai_job_status")),
                    )
                    .col(json_binary("request_payload").default(empty_object()))
                    .col(json_binary_null("response_data"))
                    .col(text_null("error_message"))
                    .col(integer("annotations_created").default(0))
                    .col(uuid_null("created_by"))
                    .col(integer("priority").default(0))
                    .col(integer("attempts").default(0))
                    .col(integer("max_attempts").default(3))
                    .col(now_column("run_at"))
                    .col(text_null("locked_by"))
                    .col(timestamp_with_time_zone_null("locked_until"))
                    .col(text_null("dedup_key"))
                    .col(now_column("created_at"))
                    .col(now_column("updated_at"))
                    .col(timestamp_with_time_zone_null("started_at"))
                    .col(timestamp_with_time_zone_null("completed_at"))
                    .foreign_key(&mut foreign_key(
                        "ai_annotation_jobs_image_id_fkey",
                        "ai_annotation_jobs",
                        "image_id",
                        "images",
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        "ai_annotation_jobs_created_by_fkey",
                        "ai_annotation_jobs",
                        "created_by",
                        "users",
                        ForeignKeyAction::SetNull,
                    ))
                    .check((
                        "check_ai_jobs_attempts",
                        Expr::cust(
                            "max_attempts >= 1 AND attempts >= 0 AND annotations_created >= 0",
                        ),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("annotations")
                    .add_column(boolean("vision_generated").default(false))
                    .add_column(decimal_len_null("vision_confidence", 4, 3))
                    .add_column(enumeration_null(
                        "vision_provider",
                        "ai_provider",
                        PROVIDERS,
                    ))
                    .add_column(
                        enumeration("review_status", "review_status", REVIEW_STATUSES)
                            .default(Expr::cust("'pending'::review_status")),
                    )
                    .add_column(uuid_null("reviewed_by"))
                    .add_column(timestamp_with_time_zone_null("reviewed_at"))
                    .add_column(uuid_null("ai_job_id"))
                    .add_foreign_key(
                        TableForeignKey::new()
                            .name("annotations_reviewed_by_fkey")
                            .from_tbl("annotations")
                            .from_col("reviewed_by")
                            .to_tbl("users")
                            .to_col("id"),
                    )
                    .add_foreign_key(
                        TableForeignKey::new()
                            .name("annotations_ai_job_id_fkey")
                            .from_tbl("annotations")
                            .from_col("ai_job_id")
                            .to_tbl("ai_annotation_jobs")
                            .to_col("id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        exec(
            manager,
            r#"
ALTER TABLE annotations
  ADD CONSTRAINT check_vision_confidence CHECK (
    (vision_confidence IS NULL OR vision_confidence BETWEEN 0 AND 1)
    AND (NOT vision_generated OR vision_confidence IS NOT NULL)),
  ADD CONSTRAINT check_vision_provider CHECK (
    NOT vision_generated OR vision_provider IS NOT NULL),
  ADD CONSTRAINT check_review_metadata CHECK (
    review_status = 'pending' OR (reviewed_by IS NOT NULL AND reviewed_at IS NOT NULL)),
  ADD CONSTRAINT check_bounding_box_structure CHECK (coalesce(
    jsonb_typeof(bounding_box) = 'object'
    AND jsonb_typeof(bounding_box -> 'topLeft') = 'object'
    AND jsonb_typeof(bounding_box -> 'bottomRight') = 'object'
    AND jsonb_typeof(bounding_box -> 'topLeft' -> 'x') = 'number'
    AND jsonb_typeof(bounding_box -> 'topLeft' -> 'y') = 'number'
    AND jsonb_typeof(bounding_box -> 'bottomRight' -> 'x') = 'number'
    AND jsonb_typeof(bounding_box -> 'bottomRight' -> 'y') = 'number'
    AND jsonb_typeof(bounding_box -> 'width') = 'number'
    AND jsonb_typeof(bounding_box -> 'height') = 'number', false)),
  ADD CONSTRAINT check_bounding_box_coords CHECK (
    CASE WHEN jsonb_typeof(bounding_box -> 'topLeft' -> 'x') = 'number'
          AND jsonb_typeof(bounding_box -> 'topLeft' -> 'y') = 'number'
          AND jsonb_typeof(bounding_box -> 'bottomRight' -> 'x') = 'number'
          AND jsonb_typeof(bounding_box -> 'bottomRight' -> 'y') = 'number'
          AND jsonb_typeof(bounding_box -> 'width') = 'number'
          AND jsonb_typeof(bounding_box -> 'height') = 'number'
    THEN (bounding_box -> 'topLeft' ->> 'x')::numeric BETWEEN 0 AND 1
     AND (bounding_box -> 'topLeft' ->> 'y')::numeric BETWEEN 0 AND 1
     AND (bounding_box -> 'bottomRight' ->> 'x')::numeric BETWEEN 0 AND 1
     AND (bounding_box -> 'bottomRight' ->> 'y')::numeric BETWEEN 0 AND 1
     AND (bounding_box -> 'bottomRight' ->> 'x')::numeric > (bounding_box -> 'topLeft' ->> 'x')::numeric
     AND (bounding_box -> 'bottomRight' ->> 'y')::numeric > (bounding_box -> 'topLeft' ->> 'y')::numeric
     AND abs((bounding_box ->> 'width')::numeric
             - ((bounding_box -> 'bottomRight' ->> 'x')::numeric - (bounding_box -> 'topLeft' ->> 'x')::numeric)) <= 0.001
     AND abs((bounding_box ->> 'height')::numeric
             - ((bounding_box -> 'bottomRight' ->> 'y')::numeric - (bounding_box -> 'topLeft' ->> 'y')::numeric)) <= 0.001
    ELSE true END);
"#,
        )
        .await?;
        create_indexes(
            manager,
            queue_indexes(
                "ai_annotation_jobs",
                [
                    "idx_ai_jobs_claim",
                    "idx_ai_jobs_lease",
                    "idx_ai_jobs_dedup_key",
                ],
                "processing",
            ),
        )
        .await?;
        create_indexes(
            manager,
            vec![
                index("idx_ai_jobs_image_id", "ai_annotation_jobs")
                    .col("image_id")
                    .take(),
                index("idx_ai_jobs_status", "ai_annotation_jobs")
                    .col("status")
                    .take(),
                index("idx_ai_jobs_status_created", "ai_annotation_jobs")
                    .col("status")
                    .col("created_at")
                    .take(),
                index("idx_ai_jobs_provider", "ai_annotation_jobs")
                    .col("provider")
                    .take(),
                index("idx_annotations_vision_generated", "annotations")
                    .col("vision_generated")
                    .col("created_at")
                    .take(),
                index("idx_annotations_review_status", "annotations")
                    .col("review_status")
                    .take(),
                index("idx_annotations_vision_review", "annotations")
                    .col("review_status")
                    .col("vision_confidence")
                    .and_where(Expr::cust("vision_generated"))
                    .take(),
                index("idx_annotations_review_status_created", "annotations")
                    .col("review_status")
                    .col("created_at")
                    .take(),
                index("idx_annotations_reviewed_by", "annotations")
                    .col("reviewed_by")
                    .col("reviewed_at")
                    .take(),
                index("idx_annotations_ai_job_id", "annotations")
                    .col("ai_job_id")
                    .take(),
            ],
        )
        .await?;
        exec(
            manager,
            r#"
CREATE TRIGGER trigger_ai_jobs_timestamps BEFORE UPDATE ON ai_annotation_jobs
    FOR EACH ROW EXECUTE FUNCTION set_job_timestamps('processing');
CREATE TRIGGER trigger_ai_jobs_notify AFTER INSERT ON ai_annotation_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION notify_job_enqueued('strata_ai_annotation_jobs');

ALTER TABLE ai_annotation_jobs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    fillfactor = 90
);

CREATE VIEW pending_ai_annotations AS
SELECT a.id,
       a.image_id,
       i.url AS image_url,
       i.species,
       a.label,
       a.annotation_type,
       a.bounding_box,
       a.vision_confidence,
       a.vision_provider,
       a.ai_job_id,
       j.status AS job_status,
       a.created_at
FROM annotations a
JOIN images i ON i.id = a.image_id
LEFT JOIN ai_annotation_jobs j ON j.id = a.ai_job_id
WHERE a.vision_generated AND a.review_status = 'pending'
ORDER BY a.vision_confidence ASC, a.created_at ASC;

CREATE VIEW ai_job_stats AS
SELECT provider,
       status,
       count(*) AS job_count,
       round(avg(extract(epoch FROM completed_at - coalesce(started_at, created_at)))::numeric, 3)
           AS avg_duration_seconds,
       sum(annotations_created) AS annotations_created,
       min(created_at) AS first_job_at,
       max(created_at) AS last_job_at
FROM ai_annotation_jobs
GROUP BY provider, status;

CREATE VIEW reviewer_stats AS
SELECT a.reviewed_by AS reviewer_id,
       u.email AS reviewer_email,
       count(*) AS total_reviews,
       count(*) FILTER (WHERE a.review_status = 'approved') AS approved_count,
       count(*) FILTER (WHERE a.review_status = 'rejected') AS rejected_count,
       round(avg(extract(epoch FROM a.reviewed_at - a.created_at))::numeric, 3)
           AS avg_review_time_seconds,
       min(a.reviewed_at) AS first_review_at,
       max(a.reviewed_at) AS last_review_at
FROM annotations a
JOIN users u ON u.id = a.reviewed_by
WHERE a.reviewed_by IS NOT NULL AND a.review_status <> 'pending'
GROUP BY a.reviewed_by, u.email;
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            "DROP VIEW reviewer_stats; DROP VIEW ai_job_stats; DROP VIEW pending_ai_annotations;",
        )
        .await?;
        let mut alter = Table::alter().table("annotations").to_owned();
        for constraint in [
            "check_vision_confidence",
            "check_vision_provider",
            "check_review_metadata",
            "check_bounding_box_structure",
            "check_bounding_box_coords",
        ] {
            exec(
                manager,
                &format!("ALTER TABLE annotations DROP CONSTRAINT {constraint};"),
            )
            .await?;
        }
        for column in [
            "ai_job_id",
            "reviewed_at",
            "reviewed_by",
            "review_status",
            "vision_provider",
            "vision_confidence",
            "vision_generated",
        ] {
            alter.drop_column(column);
        }
        manager.alter_table(alter).await?;
        drop_tables(manager, &["ai_annotation_jobs"]).await?;
        exec(
            manager,
            "DROP TYPE review_status; DROP TYPE ai_provider; DROP TYPE ai_job_status;",
        )
        .await
    }
}
