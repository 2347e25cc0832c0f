//! Checks of what the database is and holds: server, pgvector, migrations, the objects
//! the service needs, invalid indexes and constraints.

use std::collections::HashSet;

use sea_orm::{ConnectionTrait, DatabaseTransaction, FromQueryResult};

use super::{Check, CheckResult, Expectations, first, sql};

/// Server version and its number, in one row.
const SERVER_SQL: &str = "SELECT current_setting('server_version') AS version,
        current_setting('server_version_num')::int AS num";

#[derive(FromQueryResult)]
struct Server {
    version: String,
    num: i32,
}

/// The oldest server the schema's features need (pgvector 0.8 supports 13 and later).
const MIN_SERVER: i32 = 130_000;

/// The server's version: `fail` below PostgreSQL 13.
pub(super) async fn server(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let s = Server::find_by_statement(sql(SERVER_SQL))
        .one(db)
        .await?
        .ok_or_else(|| crate::error::DbError::no_row("server version"))?;
    let check = if s.num < MIN_SERVER {
        Check::fail(
            "server",
            format!("PostgreSQL {}: 13 or later needed", s.version),
        )
    } else {
        Check::ok("server", format!("PostgreSQL {}", s.version))
    };
    Ok(vec![check])
}

/// pgvector installed here and the newest the server has.
const PGVECTOR_SQL: &str =
    "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS installed,
        (SELECT default_version FROM pg_available_extensions WHERE name = 'vector') AS available";

#[derive(FromQueryResult)]
struct Pgvector {
    installed: Option<String>,
    available: Option<String>,
}

/// A version's numbers (`0.8.1` → [0, 8, 1]).
fn version(text: &str) -> Vec<u32> {
    text.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// pgvector: `fail` when not installed in this database, `warn` before 0.8 (no
/// iterative index scans: filtered searches could under-return) or when the server
/// has a newer version than the one installed.
pub(super) async fn pgvector(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let p = Pgvector::find_by_statement(sql(PGVECTOR_SQL))
        .one(db)
        .await?
        .ok_or_else(|| crate::error::DbError::no_row("pgvector versions"))?;
    let check = match (p.installed, p.available) {
        (None, None) => Check::fail(
            "pgvector",
            "extension vector is not available on the server",
        ),
        (None, Some(a)) => Check::fail(
            "pgvector",
            format!("extension vector {a} is available but not installed in this database"),
        ),
        (Some(i), _) if version(&i) < vec![0, 8] => Check::warn(
            "pgvector",
            format!("vector {i}: 0.8 or later gives iterative index scans"),
        ),
        (Some(i), Some(a)) if version(&a) > version(&i) => Check::warn(
            "pgvector",
            format!("vector {i} installed, {a} available: ALTER EXTENSION vector UPDATE"),
        ),
        (Some(i), _) => Check::ok("pgvector", format!("vector {i}")),
    };
    Ok(vec![check])
}

/// Migrations: `fail` when none was ever applied, `warn` when some are pending or
/// some applied ones are unknown to this build (a newer build migrated the database).
pub(super) async fn migrations(db: &DatabaseTransaction, expect: &Expectations) -> CheckResult {
    let Some(applied) = crate::db::applied_migrations(db).await? else {
        return Ok(vec![Check::fail(
            "migrations",
            "no migration applied: run `strata migrate up`",
        )]);
    };
    let known: HashSet<&String> = expect.migrations.iter().collect();
    let done: HashSet<&String> = applied.iter().collect();
    let pending: Vec<String> = expect
        .migrations
        .iter()
        .filter(|m| !done.contains(m))
        .cloned()
        .collect();
    let unknown: Vec<String> = applied
        .iter()
        .filter(|m| !known.is_empty() && !known.contains(m))
        .cloned()
        .collect();
    let check = if !pending.is_empty() {
        Check::warn(
            "migrations",
            format!(
                "{} applied, {} pending: {}",
                applied.len(),
                pending.len(),
                first(&pending, 3)
            ),
        )
        .with_details(pending)
    } else if !unknown.is_empty() {
        Check::warn(
            "migrations",
            format!(
                "{} applied that this build does not know: {}",
                unknown.len(),
                first(&unknown, 3)
            ),
        )
        .with_details(unknown)
    } else {
        Check::ok(
            "migrations",
            format!("{} applied, none pending", applied.len()),
        )
    };
    Ok(vec![check])
}

/// Every object of schema `public` (and the extensions) by the kinds of
/// [`ObjectKind`], with the names [`super::REQUIRED_OBJECTS`] uses: a function by its
/// signature, a trigger or policy as `name on table`. One catalogue query.
pub const PRESENT_OBJECTS_SQL: &str = r#"
SELECT 'extension' AS kind, extname::text AS name FROM pg_extension WHERE extname <> 'plpgsql'
UNION ALL
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' ELSE 'index' END,
       c.relname::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'i', 'I')
  AND c.relname NOT IN ('seaql_migrations', 'seaql_migrations_pkey')
UNION ALL
SELECT 'function', p.oid::regprocedure::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 'trigger', t.tgname || ' on ' || c.relname
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND NOT t.tgisinternal
UNION ALL
SELECT 'policy', policyname || ' on ' || tablename FROM pg_policies WHERE schemaname = 'public'
UNION ALL
SELECT 'row-level security', c.relname::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relrowsecurity
ORDER BY 1, 2"#;

/// An object found by [`PRESENT_OBJECTS_SQL`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, FromQueryResult)]
pub struct PresentObject {
    /// Its kind, as [`ObjectKind::as_str`] spells it.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// The objects `db` holds, as [`PRESENT_OBJECTS_SQL`] lists them. One round trip.
pub async fn present_objects<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<PresentObject>, crate::error::DbError> {
    Ok(PresentObject::find_by_statement(sql(PRESENT_OBJECTS_SQL))
        .all(db)
        .await?)
}

/// The required objects: `fail` naming each one missing (`index idx_chunks_embedding`).
pub(super) async fn required_objects(
    db: &DatabaseTransaction,
    expect: &Expectations,
) -> CheckResult {
    let present: HashSet<(String, String)> = present_objects(db)
        .await?
        .into_iter()
        .map(|o| (o.kind, o.name))
        .collect();
    let missing: Vec<String> = expect
        .objects
        .iter()
        .filter(|o| !present.contains(&(o.kind.as_str().to_owned(), o.name.to_owned())))
        .map(|o| format!("{} {}", o.kind.as_str(), o.name))
        .collect();
    let check = if missing.is_empty() {
        Check::ok(
            "required objects",
            format!("all {} present", expect.objects.len()),
        )
    } else {
        Check::fail(
            "required objects",
            format!("{} missing: {}", missing.len(), first(&missing, 5)),
        )
        .with_details(missing)
    };
    Ok(vec![check])
}

/// Indexes left invalid (an interrupted `CREATE INDEX CONCURRENTLY`): PgHero's
/// `invalid_indexes`.
const INVALID_INDEXES_SQL: &str = "SELECT c.relname::text || ' on ' || t.relname::text AS name
     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     ORDER BY 1";

/// Constraints added `NOT VALID` and never validated: PgHero's `invalid_constraints`.
const INVALID_CONSTRAINTS_SQL: &str =
    "SELECT c.conname::text || ' on ' || c.conrelid::regclass::text AS name
     FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
     WHERE NOT c.convalidated AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     ORDER BY 1";

#[derive(FromQueryResult)]
struct Named {
    name: String,
}

/// Names from a query of one `name` column.
async fn names(db: &DatabaseTransaction, text: &str) -> Result<Vec<String>, crate::error::DbError> {
    Ok(Named::find_by_statement(sql(text))
        .all(db)
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect())
}

/// Invalid indexes: `fail` (queries cannot use them, writes still maintain them).
pub(super) async fn invalid_indexes(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let found = names(db, INVALID_INDEXES_SQL).await?;
    Ok(vec![if found.is_empty() {
        Check::ok("invalid indexes", "none")
    } else {
        Check::fail(
            "invalid indexes",
            format!("{}: drop and rebuild {}", found.len(), first(&found, 3)),
        )
        .with_details(found)
    }])
}

/// Unvalidated constraints: `warn` (existing rows were never checked).
pub(super) async fn invalid_constraints(db: &DatabaseTransaction, _: &Expectations) -> CheckResult {
    let found = names(db, INVALID_CONSTRAINTS_SQL).await?;
    Ok(vec![if found.is_empty() {
        Check::ok("invalid constraints", "none")
    } else {
        Check::warn(
            "invalid constraints",
            format!("{} not validated: {}", found.len(), first(&found, 3)),
        )
        .with_details(found)
    }])
}
