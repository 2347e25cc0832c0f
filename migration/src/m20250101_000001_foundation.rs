//! Foundation: what every later migration and seed assumes to exist.
//!
//! - extensions `vector` (pgvector) and `uuid-ossp`;
//! - the shared trigger function `update_updated_at_column()` (seed 004's
//!   `001_create_users_table.sql`), which sets `NEW.updated_at = now()`;
//! - Supabase compatibility (SPEC.md decision 1): schema `auth` with a minimal
//!   `auth.users (id uuid primary key, email text unique, created_at timestamptz)`, and
//!   the roles `anon`, `authenticated`, `service_role` (NOLOGIN).
//!
//! Each object is created only if missing, so the same migration runs on plain
//! PostgreSQL and on Supabase. What this migration creates is marked with the comment
//! [`MARK`]; `down` drops exactly the marked objects and leaves pre-existing ones alone.
//! The roles are the exception: roles are cluster-wide, shared by every database of
//! the server (and referenced by their policies), so `down` leaves them in place.

use sea_orm_migration::prelude::*;

/// The comment that marks an object as created by this migration.
pub const MARK: &str = "strata: created by m20250101_000001_foundation";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = r#"
DO $strata$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
    CREATE EXTENSION vector;
    COMMENT ON EXTENSION vector IS '@MARK@';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'uuid-ossp') THEN
    CREATE EXTENSION "uuid-ossp";
    COMMENT ON EXTENSION "uuid-ossp" IS '@MARK@';
  END IF;

  IF to_regprocedure('public.update_updated_at_column()') IS NULL THEN
    CREATE FUNCTION public.update_updated_at_column() RETURNS trigger
      LANGUAGE plpgsql AS $fn$
    BEGIN
      NEW.updated_at = now();
      RETURN NEW;
    END;
    $fn$;
    COMMENT ON FUNCTION public.update_updated_at_column() IS '@MARK@';
  END IF;

  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth') THEN
    CREATE SCHEMA auth;
    COMMENT ON SCHEMA auth IS '@MARK@';
  END IF;
  IF to_regclass('auth.users') IS NULL THEN
    CREATE TABLE auth.users (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      email text UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE auth.users IS '@MARK@';
  END IF;

END
$strata$;
-- Roles are cluster-wide: another database of the same server may create one at the
-- same moment, so each is created in its own block that accepts losing that race.
DO $strata$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $strata$;
DO $strata$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $strata$;
DO $strata$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN BYPASSRLS; END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $strata$;
DO $strata$ BEGIN
  IF obj_description((SELECT oid FROM pg_namespace WHERE nspname = 'auth'), 'pg_namespace') = '@MARK@' THEN
    GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
  END IF;
END $strata$;
"#
        .replace("@MARK@", MARK);
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = r#"
DO $strata$
BEGIN
  IF obj_description(to_regclass('auth.users'), 'pg_class') = '@MARK@' THEN
    DROP TABLE auth.users;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_namespace n
             WHERE n.nspname = 'auth' AND obj_description(n.oid, 'pg_namespace') = '@MARK@') THEN
    DROP SCHEMA auth;
  END IF;
  IF obj_description(to_regprocedure('public.update_updated_at_column()'), 'pg_proc') = '@MARK@' THEN
    DROP FUNCTION public.update_updated_at_column();
  END IF;
  IF EXISTS (SELECT 1 FROM pg_extension e
             WHERE e.extname = 'uuid-ossp' AND obj_description(e.oid, 'pg_extension') = '@MARK@') THEN
    DROP EXTENSION "uuid-ossp";
  END IF;
  IF EXISTS (SELECT 1 FROM pg_extension e
             WHERE e.extname = 'vector' AND obj_description(e.oid, 'pg_extension') = '@MARK@') THEN
    DROP EXTENSION vector;
  END IF;
END
$strata$;
"#
        .replace("@MARK@", MARK);
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }
}
