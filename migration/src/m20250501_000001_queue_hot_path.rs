//! Queue hot path: what every enqueued, claimed and finished job pays for, cut down.
//!
//! 1. **Timestamp triggers fire only when a statement left the timestamps to them.**
//!    `set_job_timestamps` (seed 003's `jobs`, seed 004's `ai_annotation_jobs`) is a
//!    PL/pgSQL row trigger; run for every claimed and every finished job it cost about
//!    40 % of the queue's row writes (measured: 1,000-row claim 32 ms → 19 ms,
//!    1,000-row completion 35 ms → 17 ms). The queue's own statements set
//!    `updated_at`, `started_at` and `completed_at` themselves, so both triggers get a
//!    `WHEN` condition, evaluated by the executor without calling the function: the
//!    trigger runs when `updated_at` was not changed by the statement, or when the
//!    status changed and a timestamp that transition needs was not set (a terminal
//!    status without a new `completed_at`, a return to pending that keeps one, a
//!    start without a new `started_at`). Any other `UPDATE` — by hand, by the seeds'
//!    scripts — gets exactly the timestamps it got before.
//! 2. **`jobs`' status, type and creation indexes stop taking an entry per row
//!    version.** Seed 003 indexes `jobs` on status, job type, creation time and
//!    priority. As plain B-trees the first three took an index entry for every
//!    insert, claim and completion — about 40 % of a bulk insert (20,000 rows:
//!    ~145 ms → ~85 ms without them) — while the queue never looks pending, running
//!    or completed jobs up through them: pending jobs are found by
//!    `idx_jobs_priority`, running ones by `idx_jobs_lease`. They become:
//!    - `idx_jobs_status (status, completed_at DESC NULLS LAST) WHERE status IN
//!      ('failed', 'cancelled')`: the jobs that ended badly, newest first
//!      (`queue::failed_jobs`, retries). Written only when a job fails or is
//!      cancelled.
//!    - `idx_jobs_job_type (job_type) WHERE status IN ('failed', 'cancelled')`: the
//!      same jobs by type (which handler is failing).
//!    - `idx_jobs_created_at USING brin (created_at)`: rows are inserted in
//!      `created_at` order, so a BRIN index (a few pages, updated only when a block
//!      range's bounds move) serves time ranges — the retention delete, which
//!      bounds `created_at` too, and "jobs created since" queries.
//!
//! `down` restores the unconditional triggers and the three plain B-trees.
use sea_orm_migration::prelude::*;

use crate::helpers::exec;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (trigger, table, status word of a running job) of the two queue tables.
const TRIGGERS: [(&str, &str, &str); 2] = [
    ("trigger_jobs_timestamps", "jobs", "running"),
    (
        "trigger_ai_jobs_timestamps",
        "ai_annotation_jobs",
        "processing",
    ),
];

/// `CREATE TRIGGER` for `set_job_timestamps(running)` on `table`, guarded or not.
fn create_trigger(name: &str, table: &str, running: &str, guarded: bool) -> String {
    let when = if guarded {
        format!(
            "WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at
          OR (NEW.status::text IS DISTINCT FROM OLD.status::text AND (
                 (NEW.status::text IN ('completed', 'failed', 'cancelled')
                  AND OLD.status::text NOT IN ('completed', 'failed', 'cancelled')
                  AND NEW.completed_at IS NOT DISTINCT FROM OLD.completed_at)
              OR (NEW.status::text = 'pending' AND NEW.completed_at IS NOT NULL)
              OR (NEW.status::text = '{running}'
                  AND NEW.started_at IS NOT DISTINCT FROM OLD.started_at))))\n    "
        )
    } else {
        String::new()
    };
    format!(
        "DROP TRIGGER {name} ON {table};
CREATE TRIGGER {name} BEFORE UPDATE ON {table}
    FOR EACH ROW {when}EXECUTE FUNCTION set_job_timestamps('{running}');\n"
    )
}

/// The triggers of both tables, guarded or not.
fn triggers(guarded: bool) -> String {
    TRIGGERS
        .iter()
        .map(|(name, table, running)| create_trigger(name, table, running, guarded))
        .collect()
}

const INDEXES_UP: &str = "
DROP INDEX idx_jobs_status, idx_jobs_job_type, idx_jobs_created_at;
CREATE INDEX idx_jobs_status ON jobs (status, completed_at DESC NULLS LAST)
    WHERE status IN ('failed', 'cancelled');
CREATE INDEX idx_jobs_job_type ON jobs (job_type) WHERE status IN ('failed', 'cancelled');
CREATE INDEX idx_jobs_created_at ON jobs USING brin (created_at);
";

const INDEXES_DOWN: &str = "
DROP INDEX idx_jobs_status, idx_jobs_job_type, idx_jobs_created_at;
CREATE INDEX idx_jobs_status ON jobs (status);
CREATE INDEX idx_jobs_job_type ON jobs (job_type);
CREATE INDEX idx_jobs_created_at ON jobs (created_at);
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(manager, &(triggers(true) + INDEXES_UP)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(manager, &(triggers(false) + INDEXES_DOWN)).await
    }
}
