//! Seed 004, `009_optimize_cache_indexes.sql`: the seven optimisation indexes, each
//! covering a query no earlier index serves, then `ANALYZE` of the tables they touch.
//!
//! 1. `idx_exercise_cache_lookup (user_id, exercise_type, difficulty_level, topic,
//!    expires_at)`: the cache lookup with its validity test, from the index alone.
//! 2. `idx_exercise_cache_expires_at (expires_at)`: the expiry cleanup.
//! 3. `idx_annotations_image_confidence (image_id, vision_confidence DESC) WHERE
//!    vision_generated`: an image's AI annotations, most confident first.
//! 4. `idx_annotations_ai_review_queue (created_at) WHERE vision_generated AND
//!    review_status = 'pending'`: the AI review queue in arrival order, however many
//!    reviewed rows there are.
//! 5. `idx_batch_jobs_status (status)`: admin monitoring by status.
//! 6. `idx_batch_jobs_type_status_created (job_type, status, created_at)`.
//! 7. `idx_batch_job_errors_job_created (job_id, created_at)`: a job's errors in order
//!    (also the index of the foreign key).

use sea_orm_migration::prelude::*;

use crate::helpers::{create_indexes, exec, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: [(&str, &str); 7] = [
    ("idx_exercise_cache_lookup", "exercise_cache"),
    ("idx_exercise_cache_expires_at", "exercise_cache"),
    ("idx_annotations_image_confidence", "annotations"),
    ("idx_annotations_ai_review_queue", "annotations"),
    ("idx_batch_jobs_status", "batch_jobs"),
    ("idx_batch_jobs_type_status_created", "batch_jobs"),
    ("idx_batch_job_errors_job_created", "batch_job_errors"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_indexes(
            manager,
            vec![
                index(INDEXES[0].0, INDEXES[0].1)
                    .col("user_id")
                    .col("exercise_type")
                    .col("difficulty_level")
                    .col("topic")
                    .col("expires_at")
                    .take(),
                index(INDEXES[1].0, INDEXES[1].1).col("expires_at").take(),
                index(INDEXES[2].0, INDEXES[2].1)
                    .col("image_id")
                    .col(("vision_confidence", IndexOrder::Desc))
                    .and_where(Expr::cust("vision_generated"))
                    .take(),
                index(INDEXES[3].0, INDEXES[3].1)
                    .col("created_at")
                    .and_where(Expr::cust("vision_generated AND review_status = 'pending'"))
                    .take(),
                index(INDEXES[4].0, INDEXES[4].1).col("status").take(),
                index(INDEXES[5].0, INDEXES[5].1)
                    .col("job_type")
                    .col("status")
                    .col("created_at")
                    .take(),
                index(INDEXES[6].0, INDEXES[6].1)
                    .col("job_id")
                    .col("created_at")
                    .take(),
            ],
        )
        .await?;
        exec(
            manager,
            "ANALYZE exercise_cache; ANALYZE annotations; ANALYZE batch_jobs; ANALYZE batch_job_errors;",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in INDEXES.iter().rev() {
            manager
                .drop_index(Index::drop().name(*name).table(*table).to_owned())
                .await?;
        }
        Ok(())
    }
}
