//! Deny by default to Supabase's client roles (`anon`, `authenticated`): on Supabase,
//! default privileges grant every table, sequence and function created in `public` to
//! them, and the REST API serves whatever they can reach to anyone holding the public
//! anon key. After this migration no Strata object is open to them except what a seed
//! opens on purpose ([`SEED_GRANTS`]):
//!
//! - row-level security on every Strata table ([`TABLES`]), with no new policy: the
//!   client roles see no row and change none even where someone grants them the table
//!   later. The tables' owner (who ran the migrations; Supabase's `postgres`) is not
//!   subject to it (RLS is not forced), nor is a `BYPASSRLS` role such as Supabase's
//!   `service_role`: the service runs as either;
//! - every privilege on Strata's tables, their sequences, views, materialized views and
//!   functions revoked from `anon`, `authenticated` and `PUBLIC` (functions are
//!   executable by `PUBLIC` by default), then the seeds' own grants given back;
//! - views made `security_invoker` (PostgreSQL 15+), so a view obeys the policies of
//!   the tables it reads for whoever queries it;
//! - every Strata function given a fixed `search_path` (its own schema, then
//!   `pg_temp`), and the two materialized-view refreshes made `SECURITY DEFINER`, so a
//!   `service_role` that does not own the views can still refresh them.
//!
//! A later migration that creates an object calls [`deny_client_roles`] for it.
//! `down` switches off what `up` switched on (RLS on the tables the seeds left without
//! it, `security_invoker`, the search paths and `SECURITY DEFINER` it set); it gives
//! no privilege back: reopening Strata to the client roles is never a rollback's job.

use sea_orm_migration::prelude::*;

use crate::helpers::exec;
use crate::m20250101_000001_foundation::MARK as FOUNDATION_MARK;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Every table the migrations create in `public`, the migration history included.
pub const TABLES: &[&str] = &[
    "ai_annotation_jobs",
    "ai_cache_stats",
    "ai_response_cache",
    "annotations",
    "audit_logs",
    "batch_job_errors",
    "batch_jobs",
    "courses",
    "document_chunks",
    "documents",
    "embedding_model",
    "exercise_cache",
    "images",
    "jobs",
    "layer0_cost_tracking",
    "lecture_content_hashes",
    "lectures",
    "maintenance_runs",
    "maintenance_tasks",
    "pdf_cache",
    "search_logs",
    "seaql_migrations",
    "users",
    "vector_index_builds",
    "vision_api_cache",
];

/// Tables whose seed switches row-level security on itself (seed 001): `down` leaves
/// it on.
const SEED_RLS_TABLES: &[&str] = &["ai_response_cache"];

/// Every view the migrations create.
pub const VIEWS: &[&str] = &[
    "ai_job_stats",
    "cache_stats",
    "pending_ai_annotations",
    "reviewer_stats",
    "user_roles_summary",
];

/// Every materialized view the migrations create.
pub const MATERIALIZED_VIEWS: &[&str] = &["cache_performance_metrics", "layer0_stats"];

/// Every function the migrations create, by signature. `update_updated_at_column()`
/// is Strata's only when the foundation created it (an existing one is left alone).
pub const FUNCTIONS: &[&str] = &[
    "change_user_role(uuid,text,uuid)",
    "cleanup_expired_cache()",
    "clear_ended_claim_token()",
    "count_ai_job_batch_item()",
    "evict_lru_cache(integer)",
    "get_cache_stats()",
    "get_cache_stats(date,date)",
    "has_permission(uuid,text)",
    "increment_cache_stats(date,boolean,integer)",
    "invalidate_cache_on_lecture_change()",
    "notify_job_enqueued()",
    "record_batch_item(uuid,boolean,integer,text,text)",
    "refresh_cache_metrics()",
    "refresh_layer0_stats()",
    "role_permissions()",
    "set_job_timestamps()",
    "sync_lecture_content_hash()",
    "update_cache_access()",
    "update_cache_stats_timestamp()",
    "update_lecture_hash_timestamp()",
    "update_updated_at_column()",
];

/// Functions that refresh a materialized view: `REFRESH` needs the view's owner, so
/// they run as their owner (`SECURITY DEFINER`), executable by the service's role
/// and never by a client role.
const REFRESH_FUNCTIONS: &[&str] = &["refresh_cache_metrics()", "refresh_layer0_stats()"];

/// Functions created `SECURITY DEFINER` with their search path by their seed: `down`
/// leaves them as the seed made them.
const SEED_DEFINER_FUNCTIONS: &[&str] = &[
    "invalidate_cache_on_lecture_change()",
    "sync_lecture_content_hash()",
];

/// A privilege a seed grants a client role on purpose: the only exceptions to deny by
/// default, given back after the revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedGrant {
    /// The seed that grants it.
    pub seed: &'static str,
    /// Why, in the seed's terms.
    pub reason: &'static str,
    /// The `GRANT` statement, verbatim from the seed.
    pub sql: &'static str,
}

/// Every privilege a seed grants a client role, in one place.
pub const SEED_GRANTS: &[SeedGrant] = &[SeedGrant {
    seed: "001-ai-response-cache",
    reason: "signed-in users read cached AI answers directly (its policy \"Allow read \
             access for authenticated users\"); writes stay refused by RLS, for no \
             policy lets `authenticated` write",
    sql: "GRANT SELECT, INSERT, UPDATE, DELETE ON ai_response_cache TO authenticated, service_role",
}];

/// The client roles: Supabase's anonymous and signed-in API roles.
pub const CLIENT_ROLES: &[&str] = &["anon", "authenticated"];

/// The Strata objects one call of [`deny_client_roles`] closes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Objects<'a> {
    /// Tables (in the search path's first schema).
    pub tables: &'a [&'a str],
    /// Views.
    pub views: &'a [&'a str],
    /// Materialized views.
    pub materialized_views: &'a [&'a str],
    /// Functions, by signature.
    pub functions: &'a [&'a str],
}

/// A SQL array literal of `names` (`ARRAY['a','b']::text[]`). The names are this
/// crate's constants, quoted as literals all the same.
fn text_array(names: &[&str]) -> String {
    let quoted: Vec<String> = names
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "''")))
        .collect();
    format!("ARRAY[{}]::text[]", quoted.join(","))
}

/// Closes `objects` to the client roles and `PUBLIC`: RLS on each table, every
/// privilege on it, its sequences, the views, materialized views and functions
/// revoked, views `security_invoker` (PostgreSQL 15+), each function's `search_path`
/// fixed where it has none. Objects that do not exist are skipped. One round trip.
pub async fn deny_client_roles(
    manager: &SchemaManager<'_>,
    objects: Objects<'_>,
) -> Result<(), DbErr> {
    let sql = DENY_SQL
        .replace("@TABLES@", &text_array(objects.tables))
        .replace("@VIEWS@", &text_array(objects.views))
        .replace("@MATVIEWS@", &text_array(objects.materialized_views))
        .replace("@FUNCTIONS@", &text_array(objects.functions))
        .replace("@CLIENTS@", &CLIENT_ROLES.join(", "))
        .replace("@FOUNDATION_MARK@", FOUNDATION_MARK);
    exec(manager, &sql).await
}

/// The closing, as one `DO` block (loops over catalogue rows: beyond SeaORM's
/// statement builders).
const DENY_SQL: &str = r#"
DO $strata$
DECLARE
  t text;
  obj regclass;
  seq regclass;
  f text;
  fn regprocedure;
BEGIN
  FOREACH t IN ARRAY @TABLES@ LOOP
    obj := to_regclass(t);
    CONTINUE WHEN obj IS NULL;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', obj);
    EXECUTE format('REVOKE ALL ON TABLE %s FROM @CLIENTS@, PUBLIC', obj);
    FOR seq IN
      SELECT d.objid::regclass FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
        AND d.refobjid = obj AND d.deptype IN ('a', 'i') AND s.relkind = 'S'
    LOOP
      EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM @CLIENTS@, PUBLIC', seq);
    END LOOP;
  END LOOP;
  FOREACH t IN ARRAY @VIEWS@ || @MATVIEWS@ LOOP
    obj := to_regclass(t);
    CONTINUE WHEN obj IS NULL;
    EXECUTE format('REVOKE ALL ON TABLE %s FROM @CLIENTS@, PUBLIC', obj);
    IF t = ANY(@VIEWS@) AND current_setting('server_version_num')::int >= 150000 THEN
      EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', obj);
    END IF;
  END LOOP;
  FOREACH f IN ARRAY @FUNCTIONS@ LOOP
    fn := to_regprocedure(f);
    CONTINUE WHEN fn IS NULL;
    -- A function of this name that Strata did not create is not Strata's to change.
    CONTINUE WHEN f = 'update_updated_at_column()'
      AND obj_description(fn, 'pg_proc') IS DISTINCT FROM '@FOUNDATION_MARK@';
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM @CLIENTS@, PUBLIC', fn);
    IF NOT EXISTS (SELECT 1 FROM pg_proc p, unnest(p.proconfig) c
                   WHERE p.oid = fn AND c LIKE 'search\_path=%') THEN
      EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', fn,
                     (SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                      WHERE p.oid = fn));
    END IF;
  END LOOP;
END
$strata$;
"#;

/// What `down` undoes, as one `DO` block.
const UNDO_SQL: &str = r#"
DO $strata$
DECLARE
  t text;
  obj regclass;
  f text;
  fn regprocedure;
BEGIN
  FOREACH t IN ARRAY @TABLES@ LOOP
    obj := to_regclass(t);
    CONTINUE WHEN obj IS NULL OR t = ANY(@SEED_RLS@);
    EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', obj);
  END LOOP;
  IF current_setting('server_version_num')::int >= 150000 THEN
    FOREACH t IN ARRAY @VIEWS@ LOOP
      obj := to_regclass(t);
      CONTINUE WHEN obj IS NULL;
      EXECUTE format('ALTER VIEW %s RESET (security_invoker)', obj);
    END LOOP;
  END IF;
  FOREACH f IN ARRAY @FUNCTIONS@ LOOP
    fn := to_regprocedure(f);
    CONTINUE WHEN fn IS NULL OR f = ANY(@SEED_DEFINER@);
    CONTINUE WHEN f = 'update_updated_at_column()'
      AND obj_description(fn, 'pg_proc') IS DISTINCT FROM '@FOUNDATION_MARK@';
    EXECUTE format('ALTER FUNCTION %s RESET search_path', fn);
  END LOOP;
  FOREACH f IN ARRAY @REFRESH@ LOOP
    fn := to_regprocedure(f);
    CONTINUE WHEN fn IS NULL;
    EXECUTE format('ALTER FUNCTION %s SECURITY INVOKER', fn);
  END LOOP;
END
$strata$;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for f in REFRESH_FUNCTIONS {
            exec(manager, &format!("ALTER FUNCTION {f} SECURITY DEFINER")).await?;
        }
        deny_client_roles(
            manager,
            Objects {
                tables: TABLES,
                views: VIEWS,
                materialized_views: MATERIALIZED_VIEWS,
                functions: FUNCTIONS,
            },
        )
        .await?;
        for grant in SEED_GRANTS {
            exec(manager, grant.sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = UNDO_SQL
            .replace("@TABLES@", &text_array(TABLES))
            .replace("@SEED_RLS@", &text_array(SEED_RLS_TABLES))
            .replace("@VIEWS@", &text_array(VIEWS))
            .replace("@FUNCTIONS@", &text_array(FUNCTIONS))
            .replace("@SEED_DEFINER@", &text_array(SEED_DEFINER_FUNCTIONS))
            .replace("@REFRESH@", &text_array(REFRESH_FUNCTIONS))
            .replace("@FOUNDATION_MARK@", FOUNDATION_MARK);
        exec(manager, &sql).await
    }
}
