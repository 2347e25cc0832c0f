//! Completions per minute for the console's throughput sparkline in one index range:
//! `completed_at` of completed jobs. Without it the last hour's completions are found
//! by reading every job (completed jobs are most of a queue and no other index holds
//! them). One index entry more per completion.

use sea_orm_migration::prelude::*;

use crate::helpers::sql_migration;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
CREATE INDEX idx_jobs_completed_at ON jobs (completed_at) WHERE status = 'completed';
CREATE INDEX idx_ai_jobs_completed_at ON ai_annotation_jobs (completed_at)
    WHERE status = 'completed'::ai_job_status;
";

const DOWN: &str = "
DROP INDEX IF EXISTS idx_ai_jobs_completed_at;
DROP INDEX IF EXISTS idx_jobs_completed_at;
";

sql_migration!(UP, DOWN);
