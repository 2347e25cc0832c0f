//! Access tokens for the web console and scripts (`strata users token create`): a
//! user's bearer secret, stored only as its SHA-256, with an expiry, a revocation and
//! the time it was last used. Closed to Supabase's client roles like every Strata
//! table (row-level security on, nothing granted).

use sea_orm_migration::prelude::*;

use crate::helpers::exec;
use crate::m20261207_000001_deny_client_roles::{Objects, deny_client_roles};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
CREATE TABLE access_tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    name text CHECK (name IS NULL OR char_length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    last_used_at timestamptz,
    CONSTRAINT check_access_token_expiry CHECK (expires_at > created_at)
);
CREATE INDEX idx_access_tokens_user_id ON access_tokens (user_id);
COMMENT ON TABLE access_tokens IS 'Bearer tokens of users (SHA-256 only): console sign-in and scripts';
";

const DOWN: &str = "DROP TABLE IF EXISTS access_tokens;";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(manager, UP).await?;
        deny_client_roles(
            manager,
            Objects {
                tables: &["access_tokens"],
                ..Objects::default()
            },
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(manager, DOWN).await
    }
}
