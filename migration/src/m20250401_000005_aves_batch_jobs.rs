//! Seed 004, `006_batch_jobs.sql` (named, not shown, by the seed): batch jobs over many
//! items and their per-item errors.
//!
//! - `batch_jobs (id, job_type, status, total_items, processed_items, failed_items,
//!   payload, created_by → users ON DELETE SET NULL, created_at, updated_at,
//!   started_at, completed_at)`: `status` is `pending`, `processing`, `completed`,
//!   `failed` or `cancelled`; `processed_items + failed_items <= total_items`.
//!   Trigger `trigger_batch_jobs_timestamps` runs `set_job_timestamps('processing')`,
//!   the timestamp function every job table shares (see the Sheratan migration).
//! - `batch_job_errors (id, job_id → batch_jobs ON DELETE CASCADE, item_index,
//!   item_ref, error_message, details, created_at)`.
//!
//! Their indexes are migration 009's (status; job_type, status, created_at; job_id,
//! created_at), as the seed lists them there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{drop_tables, empty_object, exec, foreign_key, id, now_column};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("batch_jobs")
                    .col(id())
                    .col(text("job_type"))
                    .col(text("status").default("pending"))
                    .col(integer("total_items"))
                    .col(integer("processed_items").default(0))
                    .col(integer("failed_items").default(0))
                    .col(json_binary("payload").default(empty_object()))
                    .col(uuid_null("created_by"))
                    .col(now_column("created_at"))
                    .col(now_column("updated_at"))
                    .col(timestamp_with_time_zone_null("started_at"))
                    .col(timestamp_with_time_zone_null("completed_at"))
                    .foreign_key(&mut foreign_key(
                        "batch_jobs_created_by_fkey",
                        "batch_jobs",
                        "created_by",
                        "users",
                        ForeignKeyAction::SetNull,
                    ))
                    .check((
                        "check_batch_jobs_status",
                        Expr::cust(
                            "status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')",
                        ),
                    ))
                    .check((
                        "check_batch_jobs_items",
                        Expr::cust(
                            "total_items >= 0 AND processed_items >= 0 AND failed_items >= 0 \
                             AND processed_items + failed_items <= total_items",
                        ),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("batch_job_errors")
                    .col(id())
                    .col(uuid("job_id"))
                    .col(integer_null("item_index"))
                    .col(text_null("item_ref"))
                    .col(text("error_message"))
                    .col(json_binary("details").default(empty_object()))
                    .col(now_column("created_at"))
                    .foreign_key(&mut foreign_key(
                        "batch_job_errors_job_id_fkey",
                        "batch_job_errors",
                        "job_id",
                        "batch_jobs",
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        exec(
            manager,
            r#"
CREATE TRIGGER trigger_batch_jobs_timestamps BEFORE UPDATE ON batch_jobs
    FOR EACH ROW EXECUTE FUNCTION set_job_timestamps('processing');
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["batch_job_errors", "batch_jobs"]).await
    }
}
