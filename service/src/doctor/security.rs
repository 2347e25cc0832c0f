//! What Supabase's database advisor checks, for every object in `public`: on Supabase
//! the client roles `anon` and `authenticated` reach whatever they are granted through
//! the REST API, with the project's public key. A Strata object open to them is a
//! `fail` (the migrations close them all but what a seed opens through its own
//! policy); anything else of the application's is a `warn`.
//!
//! The advisor's lints, by the name each check prints:
//! - `rls disabled in public` (0013): a table in `public` without row-level security;
//! - `policy without rls` (0007): a table with policies whose RLS is off;
//! - `client access to tables`: a table a client role can read or write, that is,
//!   with the privilege and either no RLS or a policy that lets the role through;
//! - `views` (0010, and exposed views): a view that is not `security_invoker`, or
//!   that a client role may read;
//! - `function search_path` (0011): a function whose `search_path` is not fixed;
//! - `security definer functions` (0028, 0029): one a client role may execute;
//! - `materialized views` (0016): one a client role may read;
//! - `client access to functions and sequences`: a Strata function a client role may
//!   execute, or a Strata table's sequence it may use.
//!
//! One round trip per check; the client roles that do not exist are skipped (on a
//! plain PostgreSQL without them, nothing is open to them).

use sea_orm::{DatabaseTransaction, DbBackend, FromQueryResult, Statement, Value};

use super::{Check, CheckResult, Expectations, ObjectKind, first};

/// Supabase's client roles (the anonymous and the signed-in API role).
pub const CLIENT_ROLES: [&str; 2] = ["anon", "authenticated"];

/// The client roles that exist, and the objects in `public` that are not an
/// extension's: shared by every query below.
const COMMON_CTE: &str = r#"
WITH clients AS (
  SELECT rolname::text AS role FROM pg_roles WHERE rolname = ANY($1)
), rels AS (
  SELECT c.oid, c.relname::text AS name, c.relkind, c.relrowsecurity AS rls, c.reloptions
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
), procs AS (
  SELECT p.oid, p.oid::regprocedure::text AS name, p.prosecdef, p.proconfig
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                    AND d.objid = p.oid AND d.deptype = 'e')
)
"#;

/// Tables without row-level security. $2: Strata's tables.
const RLS_DISABLED_SQL: &str = "SELECT name, name = ANY($2) AS strata FROM rels
    WHERE relkind IN ('r', 'p') AND NOT rls ORDER BY 1";

/// Tables with a policy and RLS off (the policy does nothing). $2: Strata's tables.
const POLICY_WITHOUT_RLS_SQL: &str = "SELECT name, name = ANY($2) AS strata FROM rels r
    WHERE relkind IN ('r', 'p') AND NOT rls
      AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = r.oid) ORDER BY 1";

/// Each table a client role can reach, as `table to role (COMMANDS)`: the role holds
/// the privilege, and RLS is off or a permissive policy for the role covers the
/// command. `by_seed`: every policy that lets it through is one of $3 (the seeds'
/// policies, `name on table`). $2: Strata's tables.
const OPEN_TABLES_SQL: &str = r#"
, reach AS (
  SELECT r.name, cl.role, cmd.cmd, cmd.polcmd, r.oid, r.rls
  FROM rels r CROSS JOIN clients cl
  CROSS JOIN (VALUES ('SELECT', 'r'), ('INSERT', 'a'), ('UPDATE', 'w'), ('DELETE', 'd')) cmd(cmd, polcmd)
  WHERE r.relkind IN ('r', 'p') AND has_table_privilege(cl.role, r.oid, cmd.cmd)
), letting AS (
  SELECT x.*, p.polname::text || ' on ' || x.name AS policy
  FROM reach x JOIN pg_policy p ON p.polrelid = x.oid AND p.polpermissive
   AND p.polcmd IN ('*', x.polcmd)
   AND EXISTS (SELECT 1 FROM unnest(p.polroles) pr WHERE pr = 0 OR pg_has_role(x.role, pr, 'MEMBER'))
  WHERE x.rls
), opened AS (
  SELECT x.name, x.role, x.cmd,
         x.rls AND NOT EXISTS (SELECT 1 FROM letting l WHERE l.name = x.name AND l.role = x.role
                               AND l.cmd = x.cmd AND l.policy <> ALL($3)) AS by_seed
  FROM reach x
  WHERE NOT x.rls OR EXISTS (SELECT 1 FROM letting l WHERE l.name = x.name AND l.role = x.role AND l.cmd = x.cmd)
)
SELECT name || ' to ' || role || ' (' || string_agg(cmd, ', ' ORDER BY cmd) || ')' AS name,
       name = ANY($2) AS strata, bool_and(by_seed) AS by_seed
FROM opened GROUP BY name, role ORDER BY 1"#;

/// Views that are security definer (no `security_invoker`), as `view`, and views a
/// client role may read, as `view to role`. $2: Strata's views.
const VIEWS_SQL: &str = r#"
SELECT name || ' (security definer)' AS name, name = ANY($2) AS strata FROM rels
WHERE relkind = 'v' AND NOT EXISTS (SELECT 1 FROM unnest(reloptions) o
  WHERE lower(o) IN ('security_invoker=1', 'security_invoker=true', 'security_invoker=yes', 'security_invoker=on'))
UNION ALL
SELECT r.name || ' to ' || cl.role, r.name = ANY($2) FROM rels r CROSS JOIN clients cl
WHERE r.relkind = 'v' AND has_table_privilege(cl.role, r.oid, 'SELECT')
ORDER BY 1"#;

/// Materialized views a client role may read. $2: Strata's materialized views.
const MATVIEWS_SQL: &str = r#"
SELECT r.name || ' to ' || cl.role AS name, r.name = ANY($2) AS strata FROM rels r CROSS JOIN clients cl
WHERE r.relkind = 'm' AND has_table_privilege(cl.role, r.oid, 'SELECT') ORDER BY 1"#;

/// Functions without a fixed `search_path`. $2: Strata's functions (signatures).
const SEARCH_PATH_SQL: &str = r#"
SELECT name, name = ANY($2) AS strata FROM procs
WHERE NOT EXISTS (SELECT 1 FROM unnest(proconfig) c WHERE c LIKE 'search\_path=%') ORDER BY 1"#;

/// `SECURITY DEFINER` functions a client role may execute. $2: Strata's functions.
const DEFINER_SQL: &str = r#"
SELECT p.name || ' to ' || cl.role AS name, p.name = ANY($2) AS strata FROM procs p CROSS JOIN clients cl
WHERE p.prosecdef AND has_function_privilege(cl.role, p.oid, 'EXECUTE') ORDER BY 1"#;

/// Strata's functions a client role may execute, and the sequences of Strata's tables
/// it may use. $2: Strata's functions; $3: Strata's tables.
const FUNCTIONS_AND_SEQUENCES_SQL: &str = r#"
SELECT 'function ' || p.name || ' to ' || cl.role AS name, true AS strata
FROM procs p CROSS JOIN clients cl
WHERE p.name = ANY($2) AND has_function_privilege(cl.role, p.oid, 'EXECUTE')
UNION ALL
SELECT 'sequence ' || s.name || ' to ' || cl.role, true
FROM rels s CROSS JOIN clients cl
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype IN ('a', 'i')
JOIN pg_class t ON t.oid = d.refobjid
WHERE s.relkind = 'S' AND t.relname::text = ANY($3)
  AND has_sequence_privilege(cl.role, s.oid, 'USAGE, SELECT, UPDATE')
ORDER BY 1"#;

/// A finding: the object (and the client role, where one reaches it), and whether it
/// is Strata's.
#[derive(Debug, FromQueryResult)]
struct Finding {
    name: String,
    strata: bool,
}

/// A reachable table, and whether only a seed's policy lets the role through.
#[derive(Debug, FromQueryResult)]
struct OpenTable {
    name: String,
    strata: bool,
    by_seed: bool,
}

/// The names of `expect.objects` of `kinds`.
fn strata(expect: &Expectations, kinds: &[ObjectKind]) -> Vec<String> {
    let mut names: Vec<String> = expect
        .objects
        .iter()
        .filter(|o| kinds.contains(&o.kind))
        .map(|o| o.name.to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The statement `COMMON_CTE` + `query`, with the client roles as $1 and `params`
/// after it.
fn statement(query: &str, params: Vec<Vec<String>>) -> Statement {
    let roles: Vec<String> = CLIENT_ROLES.iter().map(|r| (*r).to_owned()).collect();
    let mut values: Vec<Value> = vec![roles.into()];
    values.extend(params.into_iter().map(Value::from));
    Statement::from_sql_and_values(DbBackend::Postgres, format!("{COMMON_CTE}{query}"), values)
}

async fn findings(
    db: &DatabaseTransaction,
    query: &str,
    params: Vec<Vec<String>>,
) -> Result<Vec<Finding>, crate::error::DbError> {
    Ok(Finding::find_by_statement(statement(query, params))
        .all(db)
        .await?)
}

/// One check from its findings: `fail` naming Strata's, else `warn` naming the
/// application's, else `ok` with `fine`.
fn verdict(name: &'static str, found: Vec<Finding>, what: &str, fine: String) -> Check {
    let (ours, theirs): (Vec<Finding>, Vec<Finding>) = found.into_iter().partition(|f| f.strata);
    let ours: Vec<String> = ours.into_iter().map(|f| f.name).collect();
    let theirs: Vec<String> = theirs.into_iter().map(|f| f.name).collect();
    if !ours.is_empty() {
        let mut details = ours.clone();
        details.extend(theirs.iter().map(|t| format!("{t} (not Strata's)")));
        Check::fail(
            name,
            format!("{} Strata {what}: {}", ours.len(), first(&ours, 3)),
        )
        .with_details(details)
    } else if !theirs.is_empty() {
        Check::warn(
            name,
            format!(
                "{} {what}, none Strata's: {}",
                theirs.len(),
                first(&theirs, 3)
            ),
        )
        .with_details(theirs)
    } else {
        Check::ok(name, fine)
    }
}

/// Tables without RLS, and policies on tables whose RLS is off.
pub(super) async fn row_level_security(
    db: &DatabaseTransaction,
    expect: &Expectations,
) -> CheckResult {
    let tables = strata(expect, &[ObjectKind::Table, ObjectKind::RowLevelSecurity]);
    let count = tables.len();
    let off = findings(db, RLS_DISABLED_SQL, vec![tables.clone()]).await?;
    let idle = findings(db, POLICY_WITHOUT_RLS_SQL, vec![tables]).await?;
    Ok(vec![
        verdict(
            "rls disabled in public",
            off,
            "tables without row-level security",
            format!("row-level security on every table in public ({count} of them Strata's)"),
        ),
        verdict(
            "policy without rls",
            idle,
            "tables with policies but row-level security off",
            "no policy on a table whose row-level security is off".into(),
        ),
    ])
}

/// Tables a client role can read or write: `fail` for a Strata table unless only a
/// seed's policy opens it (listed in the `ok` line).
pub(super) async fn client_tables(db: &DatabaseTransaction, expect: &Expectations) -> CheckResult {
    let tables = strata(expect, &[ObjectKind::Table, ObjectKind::RowLevelSecurity]);
    let policies = strata(expect, &[ObjectKind::Policy]);
    let open = OpenTable::find_by_statement(statement(OPEN_TABLES_SQL, vec![tables, policies]))
        .all(db)
        .await
        .map_err(crate::error::DbError::from)?;
    let (seeded, open): (Vec<OpenTable>, Vec<OpenTable>) =
        open.into_iter().partition(|t| t.strata && t.by_seed);
    let seeded: Vec<String> = seeded.into_iter().map(|t| t.name).collect();
    let fine = if seeded.is_empty() {
        "no table open to a client role".to_owned()
    } else {
        format!(
            "only what a seed opens through its policy: {}",
            seeded.join(", ")
        )
    };
    let found = open
        .into_iter()
        .map(|t| Finding {
            name: t.name,
            strata: t.strata,
        })
        .collect();
    Ok(vec![verdict(
        "client access to tables",
        found,
        "tables open to a client role",
        fine,
    )])
}

/// Views that are security definer or readable by a client role.
pub(super) async fn views(db: &DatabaseTransaction, expect: &Expectations) -> CheckResult {
    let found = findings(db, VIEWS_SQL, vec![strata(expect, &[ObjectKind::View])]).await?;
    Ok(vec![verdict(
        "views",
        found,
        "views security definer or open to a client role",
        "every view security_invoker, none open to a client role".into(),
    )])
}

/// Materialized views (no RLS possible) readable by a client role.
pub(super) async fn materialized_views(
    db: &DatabaseTransaction,
    expect: &Expectations,
) -> CheckResult {
    let names = strata(expect, &[ObjectKind::MaterializedView]);
    let found = findings(db, MATVIEWS_SQL, vec![names]).await?;
    Ok(vec![verdict(
        "materialized views in the api",
        found,
        "materialized views readable by a client role",
        "no materialized view readable by a client role".into(),
    )])
}

/// Functions without a fixed `search_path`, and `SECURITY DEFINER` functions a client
/// role may execute.
pub(super) async fn functions(db: &DatabaseTransaction, expect: &Expectations) -> CheckResult {
    let names = strata(expect, &[ObjectKind::Function]);
    let mutable = findings(db, SEARCH_PATH_SQL, vec![names.clone()]).await?;
    let definer = findings(db, DEFINER_SQL, vec![names]).await?;
    Ok(vec![
        verdict(
            "function search_path",
            mutable,
            "functions with a mutable search_path",
            "every function in public has a fixed search_path".into(),
        ),
        verdict(
            "security definer functions",
            definer,
            "security definer functions executable by a client role",
            "no security definer function executable by a client role".into(),
        ),
    ])
}

/// Strata's functions a client role may execute and its sequences a client role may
/// use (the application's own are its business: Supabase grants them by default).
pub(super) async fn client_functions_and_sequences(
    db: &DatabaseTransaction,
    expect: &Expectations,
) -> CheckResult {
    let functions = strata(expect, &[ObjectKind::Function]);
    let tables = strata(expect, &[ObjectKind::Table, ObjectKind::RowLevelSecurity]);
    let found = findings(db, FUNCTIONS_AND_SEQUENCES_SQL, vec![functions, tables]).await?;
    Ok(vec![verdict(
        "client access to functions and sequences",
        found,
        "functions or sequences open to a client role",
        "no Strata function or sequence open to a client role".into(),
    )])
}
