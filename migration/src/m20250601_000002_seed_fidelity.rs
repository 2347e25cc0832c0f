//! Seed fidelity: three places where a user running the seeds' own SQL met a surprise.
//!
//! 1. **Seed 001's "Full Rollback" left a function behind.** The batched statistics
//!    upsert was a second public overload, `increment_cache_stats(date, bigint, bigint,
//!    bigint)`, which the seed's DROP list does not name. The overload goes: the
//!    seed's `increment_cache_stats(date, boolean, integer)` does its own upsert
//!    again, and the AI-response cache's bookkeeping flush upserts `ai_cache_stats`
//!    in its own statement. After the seed's rollback nothing of its migrations stays.
//! 2. **`has_permission(user, 'moderator')` was false for a moderator.** A role name
//!    now means "has at least this role" (user ⊂ moderator ⊂ admin): the role names
//!    join the matrix of `role_permissions()` as permissions at their own level, so
//!    `has_permission` (unchanged) answers `'user'` for every user, `'moderator'` for
//!    moderators and admins, `'admin'` for admins.
//! 3. **`layer0_cost_tracking` refused a processing event without a `pdf_hash`.** Seed
//!    000 logs "every processing event"; an event whose hash was not computed (a
//!    failed upload, a stream) is still an event. `check_layer0_cost_lookups` keeps
//!    only what makes a row truly invalid: `lookups >= 1`.
//!
//! `down` restores the three as they were.

use sea_orm_migration::prelude::*;

use crate::helpers::exec;
use crate::m20250201_000004_add_ai_cache_stats::{INCREMENT_BATCH, INCREMENT_ONE_VIA_BATCH};
use crate::m20250401_000002_aves_add_user_roles::{PERMISSION_LEVELS, role_permissions_function};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The seed's one-event statistics function, upserting by itself.
const INCREMENT_ONE: &str = r#"
CREATE OR REPLACE FUNCTION increment_cache_stats(p_date date, p_hit boolean, p_tokens_saved integer)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_tokens_saved < 0 THEN
        RAISE EXCEPTION 'increment_cache_stats: tokens_saved must not be negative (%)', p_tokens_saved
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO ai_cache_stats AS s (date, total_requests, cache_hits, cache_misses, tokens_saved)
    VALUES (p_date, 1, CASE WHEN p_hit THEN 1 ELSE 0 END, CASE WHEN p_hit THEN 0 ELSE 1 END,
            coalesce(p_tokens_saved, 0))
    ON CONFLICT (date) DO UPDATE SET
        total_requests = s.total_requests + 1,
        cache_hits = s.cache_hits + EXCLUDED.cache_hits,
        cache_misses = s.cache_misses + EXCLUDED.cache_misses,
        tokens_saved = s.tokens_saved + EXCLUDED.tokens_saved;
END;
$fn$;
DROP FUNCTION IF EXISTS increment_cache_stats(date, bigint, bigint, bigint);
"#;

/// The permission matrix with each role name a permission of that role and those
/// above it.
fn matrix_with_role_names() -> String {
    role_permissions_function(&format!(
        "{PERMISSION_LEVELS},\n        ('user', 1), ('moderator', 2), ('admin', 3)"
    ))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(manager, INCREMENT_ONE).await?;
        exec(manager, &matrix_with_role_names()).await?;
        exec(
            manager,
            "ALTER TABLE layer0_cost_tracking DROP CONSTRAINT check_layer0_cost_lookups;
             ALTER TABLE layer0_cost_tracking ADD CONSTRAINT check_layer0_cost_lookups CHECK (lookups >= 1);",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            "ALTER TABLE layer0_cost_tracking DROP CONSTRAINT check_layer0_cost_lookups;
             ALTER TABLE layer0_cost_tracking ADD CONSTRAINT check_layer0_cost_lookups
                 CHECK (lookups >= 1 AND (cache_hit OR (pdf_hash IS NOT NULL AND lookups = 1)));",
        )
        .await?;
        exec(manager, &role_permissions_function(PERMISSION_LEVELS)).await?;
        exec(
            manager,
            &format!("{INCREMENT_BATCH}{INCREMENT_ONE_VIA_BATCH}"),
        )
        .await
    }
}
