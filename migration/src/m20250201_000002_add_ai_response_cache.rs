//! Seed 001, `add_ai_response_cache.sql`: cached AI responses over lectures.
//!
//! `ai_response_cache` has every column the seed's SQL uses: `id`, `cache_key`
//! (unique), `operation_type`, `lecture_ids uuid[]`, `params jsonb`, `content_hash`,
//! `response_data jsonb`, `tokens_used`, `content_size`, `hit_count`, `created_at`,
//! `last_accessed_at`. (The seed's "11 columns" undercounts: its own statements use
//! these twelve.)
//!
//! Indexes, one per job: `idx_ai_cache_key` is the UNIQUE constraint on `cache_key`
//! (lookup and uniqueness in one), `idx_ai_cache_lecture_ids` GIN on `lecture_ids`
//! (invalidation by lecture, `@>`), `idx_ai_cache_operation_type`,
//! `idx_ai_cache_content_hash`, `idx_ai_cache_created_at`; plus the primary key.
//!
//! Row-level security is enabled with the seed's two policies: authenticated users may
//! read (`SELECT`), the service role may do everything. Both roles get the table
//! privileges Supabase grants by default, so it is the policies that deny
//! `authenticated` its writes.
//!
//! `update_cache_access()`: trigger function that stamps `last_accessed_at = now()`
//! whenever `hit_count` changes (trigger `trigger_update_cache_access`), so a hit
//! recorded as `hit_count = hit_count + n` also dates the access.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{create_indexes, drop_tables, empty_object, exec, id, index, now_column};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("ai_response_cache")
                    .col(id())
                    .col(text("cache_key"))
                    .col(text("operation_type"))
                    .col(array("lecture_ids", ColumnType::Uuid).default(Expr::cust("'{}'::uuid[]")))
                    .col(json_binary("params").default(empty_object()))
                    .col(text("content_hash"))
                    .col(json_binary("response_data"))
                    .col(integer("tokens_used").default(0))
                    .col(integer("content_size").default(0))
                    .col(integer("hit_count").default(0))
                    .col(now_column("created_at"))
                    .col(now_column("last_accessed_at"))
                    .index(
                        Index::create()
                            .unique()
                            .name("idx_ai_cache_key")
                            .col("cache_key"),
                    )
                    .check((
                        "check_ai_cache_key",
                        Expr::cust("char_length(cache_key) BETWEEN 1 AND 512"),
                    ))
                    .check((
                        "check_ai_cache_counts",
                        Expr::cust("tokens_used >= 0 AND content_size >= 0 AND hit_count >= 0"),
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                index("idx_ai_cache_lecture_ids", "ai_response_cache")
                    .col("lecture_ids")
                    .index_type(IndexType::Custom("gin".into()))
                    .take(),
                index("idx_ai_cache_operation_type", "ai_response_cache")
                    .col("operation_type")
                    .take(),
                index("idx_ai_cache_content_hash", "ai_response_cache")
                    .col("content_hash")
                    .take(),
                index("idx_ai_cache_created_at", "ai_response_cache")
                    .col("created_at")
                    .take(),
            ],
        )
        .await?;
        exec(
            manager,
            r#"
-- Hits update hit_count and last_accessed_at, neither indexed: free space on each
-- page keeps those updates on the page (HOT).
ALTER TABLE ai_response_cache SET (fillfactor = 90);
ALTER TABLE ai_response_cache ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Allow read access for authenticated users" ON ai_response_cache
    FOR SELECT TO authenticated USING (true);
CREATE POLICY "Allow all access for service role" ON ai_response_cache
    FOR ALL TO service_role USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON ai_response_cache TO authenticated, service_role;

CREATE OR REPLACE FUNCTION update_cache_access() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.last_accessed_at = now();
    RETURN NEW;
END;
$fn$;
CREATE TRIGGER trigger_update_cache_access
    BEFORE UPDATE OF hit_count ON ai_response_cache
    FOR EACH ROW WHEN (NEW.hit_count IS DISTINCT FROM OLD.hit_count)
    EXECUTE FUNCTION update_cache_access();
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["ai_response_cache"]).await?;
        exec(manager, "DROP FUNCTION update_cache_access();").await
    }
}
