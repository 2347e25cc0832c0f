//! The oldest runnable job of a queue in one index probe: `run_at` of pending jobs,
//! for dashboards (`service::queue::overview`), whose "oldest runnable" otherwise
//! reads every pending entry of the claim index (ordered by priority first).

use sea_orm_migration::prelude::*;

use crate::helpers::sql_migration;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
CREATE INDEX idx_jobs_pending_run_at ON jobs (run_at) WHERE status = 'pending';
CREATE INDEX idx_ai_jobs_pending_run_at ON ai_annotation_jobs (run_at)
    WHERE status = 'pending'::ai_job_status;
";

const DOWN: &str = "
DROP INDEX IF EXISTS idx_ai_jobs_pending_run_at;
DROP INDEX IF EXISTS idx_jobs_pending_run_at;
";

sql_migration!(UP, DOWN);
