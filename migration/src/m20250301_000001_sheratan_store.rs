//! Seed 003 (Sheratan store, its initial Alembic migration): documents with pgvector
//! chunks, the `jobs` queue, `audit_logs` and `search_logs`.
//!
//! - `documents (id, title, content, source, metadata, created_at, updated_at)`,
//!   indexed on `created_at` and `source`.
//! - `document_chunks (id, document_id, chunk_index, content, embedding
//!   vector(VECTOR_DIMENSION), metadata, created_at)`; FK
//!   `fk_document_chunks_document` → documents ON DELETE CASCADE; `document_id` is
//!   indexed by the unique `idx_chunks_document_id (document_id, chunk_index)`, and
//!   `idx_chunks_embedding` is IVFFlat with `vector_cosine_ops`, `lists = 100` (the
//!   service can rebuild it with a `lists` suited to the row count).
//!   `VECTOR_DIMENSION` is read when the migration runs (default 384); outside
//!   1..=2000 (pgvector indexes at most 2000 dimensions) the migration stops before
//!   any DDL with an error naming the value.
//! - `jobs`: the seed's priority queue (`pending → running → completed | failed`, and
//!   `cancelled` for jobs cancelled before they ran) with what a robust queue needs:
//!   `attempts`, `max_attempts` (≥ 1), `run_at` (scheduled jobs), the lease
//!   (`locked_by`, `locked_until`), `last_error`, `result`, and an optional
//!   `dedup_key`, unique among pending and running jobs. Indexes: `idx_jobs_status`,
//!   `idx_jobs_job_type`, `idx_jobs_created_at` (redefined for the queue's hot path
//!   by `m20250501_000001_queue_hot_path`), and `idx_jobs_priority
//!   (priority DESC, run_at) WHERE status = 'pending'`: the claim order over runnable
//!   jobs only, so claiming stays an index scan however many finished rows there are;
//!   `idx_jobs_lease (locked_until) WHERE status = 'running'` finds expired leases.
//!   Trigger `trigger_jobs_timestamps` runs `set_job_timestamps('running')`, the
//!   timestamp function every job table shares: `completed_at` is set on a
//!   transition from a non-terminal to a terminal state (and cleared when a job goes
//!   back to pending), `started_at` when it starts running, `updated_at` on every
//!   update. Trigger `trigger_jobs_notify` (`notify_job_enqueued('strata_jobs')`)
//!   sends one `NOTIFY strata_jobs` per INSERT statement, waking idle workers. Autovacuum runs early on this
//!   high-churn table.
//! - `audit_logs (id, event_type, user_id, resource, resource_id, action, details,
//!   ip_address, user_agent, created_at)`, indexed on `created_at`, `event_type`,
//!   `user_id`, `resource`. `user_id` has no foreign key: the trail outlives users.
//! - `search_logs (id, query, results_count, top_k, latency_ms, filters, user_id,
//!   created_at)`, indexed on `created_at`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{
    create_indexes, drop_tables, empty_object, exec, foreign_key, id, index, now_column,
    queue_indexes, updated_at_trigger,
};

/// The embedding dimension when `VECTOR_DIMENSION` is unset.
pub const DEFAULT_VECTOR_DIMENSION: u32 = 384;
/// The largest dimension pgvector can index.
pub const MAX_VECTOR_DIMENSION: u32 = 2000;

/// The embedding dimension for `document_chunks.embedding`: `VECTOR_DIMENSION`, or
/// 384 when unset. An error names the value when it is not a whole number in
/// 1..=2000.
pub fn vector_dimension() -> Result<u32, DbErr> {
    match std::env::var("VECTOR_DIMENSION") {
        Err(_) => Ok(DEFAULT_VECTOR_DIMENSION),
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_VECTOR_DIMENSION).contains(&n) => Ok(n),
            Ok(n) => Err(DbErr::Migration(format!(
                "VECTOR_DIMENSION={n} is out of range: pgvector indexes 1 to {MAX_VECTOR_DIMENSION} dimensions"
            ))),
            Err(_) => Err(DbErr::Migration(format!(
                "VECTOR_DIMENSION={text:?} is not a whole number of dimensions (1 to {MAX_VECTOR_DIMENSION})"
            ))),
        },
    }
}

const JOB_STATUSES: &str = "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let dimension = vector_dimension()?;
        manager
            .create_table(
                Table::create()
                    .table("documents")
                    .col(id())
                    .col(text_null("title"))
                    .col(text("content"))
                    .col(text_null("source"))
                    .col(json_binary("metadata").default(empty_object()))
                    .col(now_column("created_at"))
                    .col(now_column("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("document_chunks")
                    .col(id())
                    .col(uuid("document_id"))
                    .col(integer("chunk_index"))
                    .col(text("content"))
                    .col(ColumnDef::new("embedding").vector(Some(dimension)).null())
                    .col(json_binary("metadata").default(empty_object()))
                    .col(now_column("created_at"))
                    .foreign_key(&mut foreign_key(
                        "fk_document_chunks_document",
                        "document_chunks",
                        "document_id",
                        "documents",
                        ForeignKeyAction::Cascade,
                    ))
                    .index(
                        Index::create()
                            .unique()
                            .name("idx_chunks_document_id")
                            .col("document_id")
                            .col("chunk_index"),
                    )
                    .check(("check_chunk_index", Expr::cust("chunk_index >= 0")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("jobs")
                    .col(id())
                    .col(text("job_type"))
                    .col(json_binary("payload").default(empty_object()))
                    .col(text("status").default("pending"))
                    .col(integer("priority").default(0))
                    .col(integer("attempts").default(0))
                    .col(integer("max_attempts").default(3))
                    .col(now_column("run_at"))
                    .col(text_null("locked_by"))
                    .col(timestamp_with_time_zone_null("locked_until"))
                    .col(text_null("last_error"))
                    .col(json_binary_null("result"))
                    .col(text_null("dedup_key"))
                    .col(now_column("created_at"))
                    .col(now_column("updated_at"))
                    .col(timestamp_with_time_zone_null("started_at"))
                    .col(timestamp_with_time_zone_null("completed_at"))
                    .check(("check_jobs_status", Expr::cust(JOB_STATUSES)))
                    .check((
                        "check_jobs_attempts",
                        Expr::cust("max_attempts >= 1 AND attempts >= 0"),
                    ))
                    .check((
                        "check_jobs_job_type",
                        Expr::cust("char_length(job_type) BETWEEN 1 AND 200"),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("audit_logs")
                    .col(id())
                    .col(text("event_type"))
                    .col(uuid_null("user_id"))
                    .col(text_null("resource"))
                    .col(text_null("resource_id"))
                    .col(text_null("action"))
                    .col(json_binary("details").default(empty_object()))
                    .col(text_null("ip_address"))
                    .col(text_null("user_agent"))
                    .col(now_column("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("search_logs")
                    .col(id())
                    .col(text("query"))
                    .col(integer("results_count").default(0))
                    .col(integer_null("top_k"))
                    .col(double_null("latency_ms"))
                    .col(json_binary("filters").default(empty_object()))
                    .col(uuid_null("user_id"))
                    .col(now_column("created_at"))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            queue_indexes(
                "jobs",
                ["idx_jobs_priority", "idx_jobs_lease", "idx_jobs_dedup_key"],
                "running",
            ),
        )
        .await?;
        create_indexes(
            manager,
            vec![
                index("idx_documents_created_at", "documents")
                    .col("created_at")
                    .take(),
                index("idx_documents_source", "documents")
                    .col("source")
                    .take(),
                index("idx_jobs_status", "jobs").col("status").take(),
                index("idx_jobs_job_type", "jobs").col("job_type").take(),
                index("idx_jobs_created_at", "jobs")
                    .col("created_at")
                    .take(),
                index("idx_audit_logs_created_at", "audit_logs")
                    .col("created_at")
                    .take(),
                index("idx_audit_logs_event_type", "audit_logs")
                    .col("event_type")
                    .take(),
                index("idx_audit_logs_user_id", "audit_logs")
                    .col("user_id")
                    .take(),
                index("idx_audit_logs_resource", "audit_logs")
                    .col("resource")
                    .take(),
                index("idx_search_logs_created_at", "search_logs")
                    .col("created_at")
                    .take(),
            ],
        )
        .await?;
        let ivfflat = index("idx_chunks_embedding", "document_chunks")
            .col(IndexColumn::from("embedding").with_operator_class("vector_cosine_ops"))
            .index_type(IndexType::Custom("ivfflat".into()))
            .to_string(PostgresQueryBuilder);
        exec(
            manager,
            &format!(
                r#"
{ivfflat} WITH (lists = 100);
{documents_updated_at}

-- The one timestamp trigger of every job table (jobs, ai_annotation_jobs, batch_jobs).
-- TG_ARGV[0] is the table's word for a running job. Statuses compare as text, so the
-- same function serves text columns and the ai_job_status enum.
CREATE OR REPLACE FUNCTION set_job_timestamps() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.updated_at = now();
    IF NEW.status::text IS DISTINCT FROM OLD.status::text THEN
        IF NEW.status::text IN ('completed', 'failed', 'cancelled')
           AND OLD.status::text NOT IN ('completed', 'failed', 'cancelled') THEN
            NEW.completed_at = now();
        ELSIF NEW.status::text = 'pending' THEN
            NEW.completed_at = NULL;
        END IF;
        IF NEW.status::text = TG_ARGV[0] THEN
            NEW.started_at = now();
        END IF;
    END IF;
    RETURN NEW;
END;
$fn$;
CREATE TRIGGER trigger_jobs_timestamps BEFORE UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION set_job_timestamps('running');

-- Wakes idle workers: one NOTIFY per INSERT statement (however many rows), on the
-- channel the trigger names, delivered when the inserting transaction commits.
CREATE OR REPLACE FUNCTION notify_job_enqueued() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);
    RETURN NULL;
END;
$fn$;
CREATE TRIGGER trigger_jobs_notify AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION notify_job_enqueued('strata_jobs');

ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    fillfactor = 90
);
"#,
                documents_updated_at = updated_at_trigger("documents"),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            manager,
            &[
                "search_logs",
                "audit_logs",
                "jobs",
                "document_chunks",
                "documents",
            ],
        )
        .await?;
        exec(
            manager,
            "DROP FUNCTION set_job_timestamps(); DROP FUNCTION notify_job_enqueued();",
        )
        .await
    }
}
