//! Claim tokens: every outcome, heartbeat and release of a queued job names the claim
//! it belongs to.
//!
//! A worker that stalls longer than its lease (a paused VM, a blocked runtime) has its
//! job rescued and claimed again — possibly by itself. Before this migration the
//! queue's writes checked only `status` and `locked_by`, so the stale attempt's outcome
//! could be written as the job's completion while the attempt holding the lease still
//! ran. `claim_token` is set to a fresh random UUID by every claim and cleared when the
//! claim ends (finish, rescue, release, cancel); the queue's statements touch a row only
//! while its token is the one they carry, so a stale run's writes change nothing.
//!
//! A UUID rather than the attempt number: `attempts` goes down on a release and back to
//! zero when failed jobs are retried, so one worker could hold attempt 1 of a job twice.
//! No index: the token is always checked on a row found by its primary key.
//!
//! Adds `claim_token uuid` (nullable) to `jobs` and `ai_annotation_jobs`; `down` drops
//! both columns.

use sea_orm_migration::prelude::*;

use crate::helpers::exec;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            "ALTER TABLE jobs ADD COLUMN claim_token uuid;
             ALTER TABLE ai_annotation_jobs ADD COLUMN claim_token uuid;",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            "ALTER TABLE jobs DROP COLUMN claim_token;
             ALTER TABLE ai_annotation_jobs DROP COLUMN claim_token;",
        )
        .await
    }
}
