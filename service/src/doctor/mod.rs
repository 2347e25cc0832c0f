//! A database doctor: the checks PgHero makes that SQL can make, plus this schema's
//! own — each `ok`, `warn` or `fail` with a one-line reason.
//!
//! [`examine`] runs every check in its own read-only transaction under a statement
//! timeout, so one slow catalogue or a missing privilege costs that check only: a
//! check that times out or lacks a privilege is a `warn` saying so, never a failure
//! of the whole examination. The checks are in four files: `catalog` (the server,
//! pgvector, migrations, the objects the service needs, invalid indexes and
//! constraints), `security` (what Supabase's database advisor checks: row-level
//! security, what the client roles `anon` and `authenticated` can reach), `usage` (unused and duplicate indexes, sizes,
//! dead tuples and vacuum, sequence headroom, the buffer cache hit rate, long and
//! idle-in-transaction sessions) and `app` (the materialized views, the vector index,
//! both queues, the caches, the maintenance schedule).

mod app;
mod catalog;
mod connections;
mod required;
mod security;
mod usage;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait};
use serde::Serialize;

use crate::cache::CacheError;
use crate::error::DbError;
use crate::queue::QueueError;
use crate::store::StoreError;

pub use catalog::{PRESENT_OBJECTS_SQL, PresentObject, present_objects};
pub use connections::{connection_checks, replica_checks};
pub use required::{ObjectKind, REQUIRED_OBJECTS, RequiredObject};
pub use security::CLIENT_ROLES;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Worth a look; the database works.
    Warn,
    /// Something required is missing or broken.
    Fail,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        })
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`required objects`, `unused indexes`, …).
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// Why, in one line.
    pub reason: String,
    /// What the reason summarises (objects by name, sessions, tables), when a list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, reason: impl Into<String>) -> Self {
        Self {
            name,
            status,
            reason: reason.into(),
            details: Vec::new(),
        }
    }

    fn ok(name: &'static str, reason: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, reason)
    }

    fn warn(name: &'static str, reason: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, reason)
    }

    fn fail(name: &'static str, reason: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, reason)
    }

    fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }
}

/// What the examination compares the database with.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// The migrations the caller knows, in order (`migration::names()`); those not
    /// recorded as applied are reported as pending.
    pub migrations: Vec<String>,
    /// The objects that must exist ([`REQUIRED_OBJECTS`] by default).
    pub objects: &'static [RequiredObject],
    /// Each check's statement timeout.
    pub statement_timeout: Duration,
}

impl Expectations {
    /// The service's required objects, the given migrations, a 5-second timeout.
    pub fn new(migrations: Vec<String>) -> Self {
        Self {
            migrations,
            objects: REQUIRED_OBJECTS,
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// The whole examination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Examination {
    /// The worst verdict of any check.
    pub status: Status,
    /// Every check, in a fixed order.
    pub checks: Vec<Check>,
}

impl Examination {
    /// How many checks ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// With `more` checks appended (the connection checks), the verdict updated.
    pub fn with(mut self, more: Vec<Check>) -> Self {
        self.checks.extend(more);
        self.status = self
            .checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok);
        self
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// What a check function returns: its results (a check may report several lines),
/// or the error that stopped it.
type CheckResult = Result<Vec<Check>, CheckError>;

/// Why a check could not run: the database's error (its SQLSTATE makes a missing
/// privilege or a timeout a `warn`), or a domain error of the service function it
/// called that is not a database error.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("{0}")]
    Other(String),
}

impl From<sea_orm::DbErr> for CheckError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}

/// A domain error as a [`CheckError`]: its `Database` variant keeps the database's
/// error, any other is its message.
macro_rules! check_error_from {
    ($($error:ident),*) => {$(
        impl From<$error> for CheckError {
            fn from(e: $error) -> Self {
                match e {
                    $error::Database(e) => Self::Database(e),
                    other => Self::Other(other.to_string()),
                }
            }
        }
    )*};
}
check_error_from!(StoreError, QueueError, CacheError);
type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckResult> + Send + 'a>>;

/// A check: its name (reported when it cannot run) and its function.
struct Probe {
    name: &'static str,
    run: for<'a> fn(&'a DatabaseTransaction, &'a Expectations) -> CheckFuture<'a>,
}

/// Makes a check's transaction read-only and sets its timeouts, for that transaction
/// only: one statement (the timeout is a number, not a caller's text).
fn setup_sql(timeout: Duration) -> String {
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
    format!(
        "SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = {ms}; \
         SET LOCAL lock_timeout = {ms}"
    )
}

/// Examines `db` (a connection, not a transaction: each check needs its own): every check, each in a read-only transaction of its own (rolled
/// back) under `expect.statement_timeout`. Round trips: about four per check
/// (begin, read-only and timeouts, its one or two queries, rollback), 27 checks. Needs
/// only the rights to read the catalogue and the statistics views; a check without a
/// privilege it needs is a `warn` naming the missing privilege.
pub async fn examine(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
    expect: &Expectations,
) -> Result<Examination, DbError> {
    let setup = setup_sql(expect.statement_timeout);
    let mut checks = Vec::new();
    for probe in probes() {
        let txn = db.begin().await?;
        txn.execute_unprepared(&setup).await?;
        let result = (probe.run)(&txn, expect).await;
        let _ = txn.rollback().await;
        match result {
            Ok(found) => checks.extend(found),
            Err(e) => checks.push(could_not_run(probe.name, &e, expect)),
        }
    }
    let status = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    Ok(Examination { status, checks })
}

/// A check that could not run: a missing privilege or a timeout is a `warn` saying
/// so; any other error a `fail` quoting it.
fn could_not_run(name: &'static str, e: &CheckError, expect: &Expectations) -> Check {
    let code = match e {
        CheckError::Database(e) => e.code(),
        CheckError::Other(_) => None,
    };
    match code {
        Some("42501") => Check::warn(name, format!("missing privilege: {e}")),
        Some("57014") => Check::warn(
            name,
            format!(
                "timed out after {} ms (statement timeout)",
                expect.statement_timeout.as_millis()
            ),
        ),
        Some("55P03") => Check::warn(name, "waited too long for a lock"),
        _ => Check::fail(name, format!("could not run: {e}")),
    }
}

/// Every check, in the order reported.
fn probes() -> Vec<Probe> {
    macro_rules! probe {
        ($name:literal, $f:path) => {
            Probe {
                name: $name,
                run: |db, expect| Box::pin($f(db, expect)),
            }
        };
    }
    vec![
        probe!("server", catalog::server),
        probe!("pgvector", catalog::pgvector),
        probe!("migrations", catalog::migrations),
        probe!("required objects", catalog::required_objects),
        probe!("invalid indexes", catalog::invalid_indexes),
        probe!("invalid constraints", catalog::invalid_constraints),
        probe!("row-level security", security::row_level_security),
        probe!("client access to tables", security::client_tables),
        probe!("views", security::views),
        probe!(
            "materialized views in the api",
            security::materialized_views
        ),
        probe!("functions", security::functions),
        probe!(
            "client access to functions and sequences",
            security::client_functions_and_sequences
        ),
        probe!("unused indexes", usage::unused_indexes),
        probe!("duplicate indexes", usage::duplicate_indexes),
        probe!("sizes", usage::sizes),
        probe!("dead tuples", usage::dead_tuples),
        probe!("vacuum and analyze", usage::vacuum_and_analyze),
        probe!("sequences", usage::sequences),
        probe!("buffer cache hit rate", usage::cache_hit_rate),
        probe!("long-running queries", usage::long_running_queries),
        probe!("idle in transaction", usage::idle_in_transaction),
        probe!("materialized views", app::materialized_views),
        probe!("vector index", app::vector_index),
        probe!("queue jobs", app::queue_jobs),
        probe!("queue ai_annotation_jobs", app::queue_ai_jobs),
        probe!("caches", app::caches),
        probe!("maintenance", app::maintenance),
    ]
}

/// A statement with no parameters.
fn sql(text: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, text)
}

/// Up to `n` items, then "and N more".
fn first(items: &[String], n: usize) -> String {
    if items.len() <= n {
        items.join(", ")
    } else {
        format!("{}, and {} more", items[..n].join(", "), items.len() - n)
    }
}

/// A byte count for people (`12 kB`, `3.4 MB`), as `doctor` and `strata` print sizes.
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
