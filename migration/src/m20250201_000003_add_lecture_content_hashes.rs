//! Seed 001, `add_lecture_content_hashes.sql`: content hashes that invalidate the cache.
//!
//! `lecture_content_hashes (lecture_id PK → lectures ON DELETE CASCADE, content_hash,
//! updated_at)`; the foreign key is `lecture_content_hashes_lecture_id_fkey`.
//!
//! Two triggers:
//! - `trigger_update_lecture_hash_timestamp` (`update_lecture_hash_timestamp()`):
//!   `updated_at = now()` on every update;
//! - `trigger_invalidate_cache_on_lecture_change`
//!   (`invalidate_cache_on_lecture_change()`): when a lecture's `content_hash` changes
//!   (an UPDATE, including `INSERT … ON CONFLICT DO UPDATE`), or its row goes (the
//!   lecture was deleted), deletes the `ai_response_cache` rows whose `lecture_ids`
//!   contain that lecture (`@>`, through the GIN index). A first INSERT invalidates
//!   nothing: there was no earlier hash to differ from. The function is
//!   `SECURITY DEFINER` so that the invalidation is not filtered by the cache's RLS
//!   when an ordinary role changes a hash.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{drop_tables, exec, foreign_key, now_column};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("lecture_content_hashes")
                    .col(uuid("lecture_id").primary_key())
                    .col(text("content_hash"))
                    .col(now_column("updated_at"))
                    .foreign_key(&mut foreign_key(
                        "lecture_content_hashes_lecture_id_fkey",
                        "lecture_content_hashes",
                        "lecture_id",
                        "lectures",
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        exec(
            manager,
            r#"
CREATE OR REPLACE FUNCTION update_lecture_hash_timestamp() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$fn$;
CREATE TRIGGER trigger_update_lecture_hash_timestamp
    BEFORE UPDATE ON lecture_content_hashes
    FOR EACH ROW EXECUTE FUNCTION update_lecture_hash_timestamp();

CREATE OR REPLACE FUNCTION invalidate_cache_on_lecture_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
    changed uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD.lecture_id;
    ELSIF NEW.content_hash IS DISTINCT FROM OLD.content_hash THEN
        changed := NEW.lecture_id;
    ELSE
        RETURN NULL;
    END IF;
    DELETE FROM ai_response_cache WHERE lecture_ids @> ARRAY[changed];
    RETURN NULL;
END;
$fn$;
CREATE TRIGGER trigger_invalidate_cache_on_lecture_change
    AFTER UPDATE OF content_hash OR DELETE ON lecture_content_hashes
    FOR EACH ROW EXECUTE FUNCTION invalidate_cache_on_lecture_change();
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["lecture_content_hashes"]).await?;
        exec(
            manager,
            "DROP FUNCTION invalidate_cache_on_lecture_change(); DROP FUNCTION update_lecture_hash_timestamp();",
        )
        .await
    }
}
