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
//! Writers that do not know the token — workers of the version before this one during a
//! rolling deploy, an operator's `UPDATE … SET status = …` — would otherwise leave an
//! ended claim's token on the row, and a stale run carrying it could match the row
//! again once such a writer claims it. A guarded trigger clears the token when a
//! statement changes `status` but leaves a non-NULL token as it was. Its `WHEN` is
//! checked by the executor without calling the function, and the queue's own
//! statements always set the token when they change the status, so it never fires for
//! them.
//!
//! Adds `claim_token uuid` (nullable) to `jobs` and `ai_annotation_jobs`, the function
//! `clear_ended_claim_token()` and a trigger on each table; `down` drops them.

use sea_orm_migration::prelude::*;

use crate::helpers::exec;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (trigger, table) of the token-clearing triggers.
const TRIGGERS: [(&str, &str); 2] = [
    ("trigger_jobs_claim_token", "jobs"),
    ("trigger_ai_jobs_claim_token", "ai_annotation_jobs"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = String::from(
            "ALTER TABLE jobs ADD COLUMN claim_token uuid;
             ALTER TABLE ai_annotation_jobs ADD COLUMN claim_token uuid;
             CREATE OR REPLACE FUNCTION clear_ended_claim_token() RETURNS trigger
             LANGUAGE plpgsql AS $$
             BEGIN
                 NEW.claim_token := NULL;
                 RETURN NEW;
             END;
             $$;",
        );
        for (trigger, table) in TRIGGERS {
            sql.push_str(&format!(
                "CREATE TRIGGER {trigger} BEFORE UPDATE ON {table} FOR EACH ROW
                 WHEN (OLD.claim_token IS NOT NULL
                       AND NEW.claim_token IS NOT DISTINCT FROM OLD.claim_token
                       AND NEW.status::text IS DISTINCT FROM OLD.status::text)
                 EXECUTE FUNCTION clear_ended_claim_token();"
            ));
        }
        exec(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql: String = TRIGGERS
            .iter()
            .map(|(trigger, table)| format!("DROP TRIGGER {trigger} ON {table};"))
            .collect();
        sql.push_str(
            "DROP FUNCTION clear_ended_claim_token();
             ALTER TABLE jobs DROP COLUMN claim_token;
             ALTER TABLE ai_annotation_jobs DROP COLUMN claim_token;",
        );
        exec(manager, &sql).await
    }
}
