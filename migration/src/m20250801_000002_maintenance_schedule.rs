//! The seeds' maintenance schedules (seeds 000, 001, 003, 004), kept in the database so
//! that runners run them — once each — instead of a person with cron.
//!
//! - `maintenance_tasks`: one row per task — its five-field cron `schedule`,
//!   `parameters` (retention days, the vision cache's maximum), `enabled`, when it is
//!   next due (`next_run_at`; a new task is due at once) and how its last run went.
//!   The defaults follow the seeds: layer-0 statistics hourly; expired vision and
//!   exercise entries, the vision cache's LRU eviction, finished jobs, the audit
//!   log and old runs daily; the AI response cache's 30-day clean-up and `ANALYZE`
//!   weekly; the 90-day `pdf_cache` and `ai_cache_stats` clean-ups and the cache
//!   metrics monthly; expired leases every five minutes; the vector index's health
//!   daily.
//! - `maintenance_runs`: each run — task, the time it was scheduled for, runner,
//!   status, rows affected, duration, details or error. `UNIQUE (task,
//!   scheduled_for)` is the exactly-once key: however many runners race for a due
//!   run, one inserts it.
//!
//! `down` drops both.

use sea_orm_migration::prelude::*;

use crate::helpers::sql_migration;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE maintenance_tasks (
    task text PRIMARY KEY CHECK (task ~ '^[a-z][a-z0-9_]{0,62}$'),
    schedule text NOT NULL CHECK (char_length(schedule) BETWEEN 9 AND 200),
    parameters jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled boolean NOT NULL DEFAULT true,
    next_run_at timestamptz NOT NULL DEFAULT now(),
    last_run_at timestamptz,
    last_status text CONSTRAINT check_maintenance_tasks_last_status
        CHECK (last_status IN ('success', 'failure')),
    last_result jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_maintenance_tasks_due ON maintenance_tasks (next_run_at) WHERE enabled;

CREATE TABLE maintenance_runs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task text NOT NULL REFERENCES maintenance_tasks (task) ON DELETE CASCADE,
    scheduled_for timestamptz NOT NULL,
    runner text NOT NULL,
    status text NOT NULL DEFAULT 'running' CONSTRAINT check_maintenance_runs_status
        CHECK (status IN ('running', 'success', 'failure')),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    rows_affected bigint,
    duration_ms bigint,
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    error text,
    CONSTRAINT maintenance_runs_once UNIQUE (task, scheduled_for)
);
CREATE INDEX idx_maintenance_runs_started_at ON maintenance_runs (started_at);

INSERT INTO maintenance_tasks (task, schedule, parameters) VALUES
    ('refresh_layer0_stats', '0 * * * *', '{}'),
    ('cleanup_expired_vision_cache', '15 3 * * *', '{}'),
    ('cleanup_expired_exercises', '20 3 * * *', '{}'),
    ('evict_vision_cache', '25 3 * * *', '{"max_entries": 10000}'),
    ('job_retention', '40 3 * * *', '{"days": 7}'),
    ('audit_log_retention', '50 3 * * *', '{"days": 90}'),
    ('maintenance_run_retention', '55 3 * * *', '{"days": 90}'),
    ('vector_index_health', '0 6 * * *', '{}'),
    ('ai_response_cache_retention', '0 4 * * 0', '{"days": 30}'),
    ('analyze_tables', '0 5 * * 0', '{}'),
    ('pdf_cache_retention', '0 4 1 * *', '{"days": 90}'),
    ('ai_cache_stats_retention', '10 4 1 * *', '{"days": 90}'),
    ('refresh_cache_metrics', '30 3 1 * *', '{}'),
    ('rescue_expired_leases', '*/5 * * * *', '{}');
"#;

const DOWN: &str = "DROP TABLE maintenance_runs; DROP TABLE maintenance_tasks;";

sql_migration!(UP, DOWN);
