//! Invalidation that no write can bypass: `lecture_content_hashes` follows
//! `lectures.content` in the database itself.
//!
//! Before, only the service's `set_lecture_content` wrote a lecture's hash: a lecture
//! inserted through the `lectures` entity (or any SQL client) had none, and a content
//! changed that way changed no hash, so the AI-response cache went on serving answers
//! computed over the old content. Now `sync_lecture_content_hash()` runs after every
//! insert of a lecture and every update that changes its `content`: it upserts the
//! hash — lowercase hex SHA-256 of the content's UTF-8 bytes, the service's own
//! formula; an absent content hashes as the empty text — and changes the row only when
//! the hash differs, so seed 001's `trigger_invalidate_cache_on_lecture_change`
//! deletes exactly that lecture's cached responses. The function is `SECURITY
//! DEFINER` (with a fixed `search_path`), as the invalidation is, so a role that may
//! edit lectures keeps the hash in step without rights on the hash table.
//!
//! `up` also brings every existing lecture's hash in step (a lecture whose content
//! changed behind the service's back loses its stale responses now). `down` drops the
//! two triggers and the function; the hashes stay.

use sea_orm_migration::prelude::*;

use crate::helpers::exec;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE OR REPLACE FUNCTION sync_lecture_content_hash() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
BEGIN
    INSERT INTO lecture_content_hashes AS h (lecture_id, content_hash)
    VALUES (NEW.id, encode(sha256(convert_to(coalesce(NEW.content, ''), 'UTF8')), 'hex'))
    ON CONFLICT (lecture_id) DO UPDATE SET content_hash = EXCLUDED.content_hash
    WHERE h.content_hash IS DISTINCT FROM EXCLUDED.content_hash;
    RETURN NULL;
END;
$fn$;
CREATE TRIGGER trigger_sync_lecture_hash_on_insert
    AFTER INSERT ON lectures
    FOR EACH ROW EXECUTE FUNCTION sync_lecture_content_hash();
CREATE TRIGGER trigger_sync_lecture_hash_on_update
    AFTER UPDATE OF content ON lectures
    FOR EACH ROW WHEN (NEW.content IS DISTINCT FROM OLD.content)
    EXECUTE FUNCTION sync_lecture_content_hash();
INSERT INTO lecture_content_hashes AS h (lecture_id, content_hash)
SELECT id, encode(sha256(convert_to(coalesce(content, ''), 'UTF8')), 'hex') FROM lectures
ON CONFLICT (lecture_id) DO UPDATE SET content_hash = EXCLUDED.content_hash
WHERE h.content_hash IS DISTINCT FROM EXCLUDED.content_hash;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            "DROP TRIGGER trigger_sync_lecture_hash_on_update ON lectures;
             DROP TRIGGER trigger_sync_lecture_hash_on_insert ON lectures;
             DROP FUNCTION sync_lecture_content_hash();",
        )
        .await
    }
}
