//! The caches Strata knows, in one place: each adapter file describes its table once
//! (a [`CacheTable`]: its columns, how its entries expire, whether it keeps the most
//! recent, its maintenance tasks), and [`CACHES`] lists them. Purge, the statistics,
//! the doctor, `strata cache` and the maintenance schedule all derive from that list:
//! a new cache is one adapter file and one line here.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::LazyLock;

use chrono::{Duration as TimeDelta, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Serialize, Serializer};

use super::{CacheError, ai_response, exercise, pdf, vision};
use crate::error::DbError;

/// Every cache, in the order lists and reports show them. Add a cache here.
pub const CACHES: [CacheKind; 4] = [pdf::KIND, ai_response::KIND, vision::KIND, exercise::KIND];

/// How a cache's entries expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// They do not: only retention by age or a purge removes them.
    Never,
    /// An entry is expired once this column's time has passed (a `DELETE` by it).
    Column(&'static str),
    /// The seed's own clean-up function, a statement that returns how many went
    /// (`SELECT cleanup_expired_cache()`).
    Function(&'static str),
}

/// What a cache's maintenance task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheAction {
    /// Deletes the expired entries ([`Expiry`]).
    DeleteExpired,
    /// Keeps the `max_entries` most recently used (parameter, with this default).
    KeepRecent {
        /// `max_entries` when the schedule gives none.
        default_max: u64,
    },
    /// Deletes entries whose `column` is older than `days` (parameter, with this
    /// default).
    Retention {
        /// The time the age is measured from.
        column: &'static str,
        /// `days` when the schedule gives none.
        default_days: u64,
    },
}

/// One maintenance task of a cache, as `maintenance_tasks` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheTask {
    /// Its name in `maintenance_tasks`.
    pub name: &'static str,
    /// The cache's table.
    pub table: &'static str,
    /// What it does.
    pub action: CacheAction,
}

impl CacheTask {
    /// The cache it belongs to (looked up in [`CACHES`] by table: a task listed by a
    /// cache of the registry always finds it).
    pub fn kind(&self) -> Result<CacheKind, CacheError> {
        CACHES
            .into_iter()
            .find(|k| k.table() == self.table)
            .ok_or_else(|| CacheError::InvalidField {
                cache: self.table,
                field: "task",
                value: self.name.to_owned(),
                reason: "its table is not a cache of the registry",
            })
    }
}

/// What purge, statistics, the doctor and maintenance know of one cache's table.
#[derive(Debug)]
pub struct CacheTable {
    /// The short name commands take (`pdf`, `ai`, `vision`, `exercise`).
    pub name: &'static str,
    /// The table.
    pub table: &'static str,
    /// The name of its check in `strata doctor` (`cache pdf`).
    pub check: &'static str,
    /// The column counting an entry's hits.
    pub hits_column: &'static str,
    /// When an entry was written.
    pub created_column: &'static str,
    /// When an entry was last read or written.
    pub accessed_column: &'static str,
    /// How entries expire.
    pub expiry: Expiry,
    /// The statement that keeps the `$1` most recently used entries and returns how
    /// many went, when the cache has one (the seed's `evict_lru_cache($1)`).
    pub keep_recent: Option<&'static str>,
    /// Its maintenance tasks; the first is its clean-up (`strata cache cleanup`).
    pub tasks: &'static [CacheTask],
}

/// One cache: a reference to its [`CacheTable`], compared and shown by name.
#[derive(Clone, Copy)]
pub struct CacheKind(pub &'static CacheTable);

impl CacheKind {
    /// Its short name (`pdf`, `ai`, `vision`, `exercise`).
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// Its table.
    pub fn table(self) -> &'static str {
        self.0.table
    }

    /// Its description.
    pub fn describe(self) -> &'static CacheTable {
        self.0
    }

    /// Its clean-up task: retention by age, or expiry.
    pub fn cleanup_task(self) -> Option<&'static CacheTask> {
        self.0.tasks.first()
    }
}

impl PartialEq for CacheKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for CacheKind {}

impl Hash for CacheKind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for CacheKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKind({})", self.name())
    }
}

impl fmt::Display for CacheKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for CacheKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl FromStr for CacheKind {
    type Err = CacheError;

    /// A cache by its short name, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        CACHES
            .into_iter()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| CacheError::InvalidField {
                cache: "cache",
                field: "kind",
                value: s.to_owned(),
                reason: "pdf, ai, vision or exercise",
            })
    }
}

/// Why a keep-recent purge is refused, naming the caches that have one (from
/// [`CACHES`]).
static KEEP_RECENT_CACHES: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = CACHES
        .iter()
        .filter(|k| k.0.keep_recent.is_some())
        .map(|k| k.name())
        .collect();
    format!(
        "no LRU eviction to a count here; the caches with one: {}",
        names.join(", ")
    )
});

/// A refusal of an operation (`what`) the cache has no notion of.
fn unsupported(kind: CacheKind, what: &str, reason: &'static str) -> CacheError {
    CacheError::InvalidField {
        cache: kind.table(),
        field: "purge",
        value: what.to_owned(),
        reason,
    }
}

/// The count a seed function returned (an `int`), as rows gone.
async fn count_of<C: ConnectionTrait>(db: &C, statement: Statement) -> Result<u64, CacheError> {
    let row = db
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| DbError::no_row("a cache clean-up function"))?;
    Ok(Ord::max(row.try_get_by_index::<i32>(0)?, 0) as u64)
}

/// Deletes `kind`'s expired entries on any connection; how many went. A cache whose
/// entries do not expire is [`CacheError::InvalidField`]. One round trip.
pub async fn delete_expired<C: ConnectionTrait>(
    db: &C,
    kind: CacheKind,
) -> Result<u64, CacheError> {
    match kind.0.expiry {
        Expiry::Never => Err(unsupported(
            kind,
            "expired",
            "this cache's entries do not expire",
        )),
        Expiry::Column(column) => {
            let delete = Query::delete()
                .from_table(Alias::new(kind.table()))
                .and_where(Expr::col(Alias::new(column)).lte(Expr::current_timestamp()))
                .to_owned();
            Ok(db.execute(&delete).await?.rows_affected())
        }
        Expiry::Function(sql) => {
            count_of(db, Statement::from_string(DbBackend::Postgres, sql)).await
        }
    }
}

/// Keeps `kind`'s `max_entries` most recently used entries and deletes the rest, by
/// the recency stored now (a running cache's buffered accesses count once flushed);
/// how many went. A negative count, or a cache without this eviction, is
/// [`CacheError::InvalidField`]. One round trip.
pub async fn keep_recent<C: ConnectionTrait>(
    db: &C,
    kind: CacheKind,
    max_entries: i32,
) -> Result<u64, CacheError> {
    let Some(sql) = kind.0.keep_recent else {
        return Err(unsupported(kind, "keep_recent", &KEEP_RECENT_CACHES));
    };
    if max_entries < 0 {
        return Err(CacheError::InvalidField {
            cache: kind.table(),
            field: "max_entries",
            value: max_entries.to_string(),
            reason: "cannot be negative",
        });
    }
    count_of(
        db,
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [max_entries.into()]),
    )
    .await
}

/// Deletes `kind`'s entries whose `column` is more than `days` old; how many went. One
/// round trip.
pub async fn delete_older_than<C: ConnectionTrait>(
    db: &C,
    kind: CacheKind,
    column: &'static str,
    days: i64,
) -> Result<u64, CacheError> {
    let delete = Query::delete()
        .from_table(Alias::new(kind.table()))
        .and_where(Expr::col(Alias::new(column)).lt(Utc::now() - TimeDelta::days(days)))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}

/// Deletes every entry of `kind`; how many went. One round trip.
pub async fn delete_all<C: ConnectionTrait>(db: &C, kind: CacheKind) -> Result<u64, CacheError> {
    let delete = Query::delete()
        .from_table(Alias::new(kind.table()))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cache_is_listed_once_with_its_clean_up_first() {
        let mut names: Vec<&str> = CACHES.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CACHES.len());
        for kind in CACHES {
            assert_eq!(kind.name().parse::<CacheKind>().expect("known"), kind);
            let cleanup = kind.cleanup_task().expect("a clean-up task");
            assert_eq!(cleanup.table, kind.table());
            assert!(matches!(
                cleanup.action,
                CacheAction::DeleteExpired | CacheAction::Retention { .. }
            ));
            for task in kind.describe().tasks {
                assert_eq!(task.table, kind.table(), "{}", task.name);
            }
        }
        assert!("bitmap".parse::<CacheKind>().is_err());
    }
}
