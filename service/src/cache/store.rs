//! What a cache is over: a [`Store`] says how to read, write, delete and account for
//! one kind of entry in one table; [`super::CacheCore`] does the rest.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use sea_orm::Statement;
use sea_orm::sqlx::PgConnection;

use super::{CacheError, RowId};

/// One kind of cache entry in one table: the SQL the core runs.
///
/// `load` is the whole hit path, so it must be one round trip and write nothing;
/// `flush` receives the buffered events and must write them with one statement per
/// table, however many there are.
pub trait Store: Send + Sync + 'static {
    /// The validated key of an entry.
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    /// The cached value, as callers see it.
    type Value: Send + Sync + 'static;
    /// What the store needs to remember about one lookup (a hit, or a computed miss).
    type Event: Send + Sync + 'static;

    /// The cache's name, for errors, logs and lock keys.
    fn name(&self) -> &'static str;

    /// The key as text, for errors and the advisory-lock hash.
    fn key_text(key: &Self::Key) -> String;

    /// Reads the live entry for `key` on `db` (the pool, or the connection that holds
    /// the key's lock): `Ok(None)` when absent or expired, `Err(CacheError::Corrupt)`
    /// when it cannot be decoded. One round trip, no write.
    fn load(
        &self,
        db: &mut PgConnection,
        key: &Self::Key,
    ) -> impl Future<Output = Result<Option<Found<Self::Value>>, CacheError>> + Send;

    /// The encoded size of `value`, checked against the configured maximum before
    /// anything is written.
    fn size_of(&self, value: &Self::Value) -> Result<usize, CacheError>;

    /// The statement that writes (inserts or replaces) the entry, for whichever
    /// connection runs it: the caller's (`CacheCore::put`, any SeaORM connection or
    /// transaction) or the one holding the key's lock (a computed miss). Built from
    /// the table's entity; one round trip when run.
    fn save(&self, key: &Self::Key, value: &Self::Value) -> Result<Statement, CacheError>;

    /// The statement that deletes the entry (0 or 1 rows). One round trip when run.
    fn remove(&self, key: &Self::Key) -> Result<Statement, CacheError>;

    /// The bookkeeping event of a hit on `value`, read at `row` (when
    /// [`Store::load`] reported it).
    fn hit_event(&self, key: &Self::Key, value: &Self::Value, row: Option<RowId>) -> Self::Event;

    /// The bookkeeping event of a miss whose compute took `elapsed`, if the store
    /// records misses.
    fn miss_event(
        &self,
        key: &Self::Key,
        value: &Self::Value,
        elapsed: Duration,
    ) -> Option<Self::Event>;

    /// Writes buffered events, all or none (one statement), on the cache's own
    /// bookkeeping connection. On an error the core keeps the events for the next
    /// flush.
    fn flush(
        &self,
        conn: &mut PgConnection,
        events: &[Self::Event],
    ) -> impl Future<Output = Result<(), CacheError>> + Send;
}

/// What [`Store::load`] found: the value, and where its row was read when the store
/// wants its flushes to find the row by address.
#[derive(Debug)]
pub struct Found<V> {
    /// The decoded value.
    pub value: V,
    /// The row's `ctid` at the read.
    pub row: Option<RowId>,
}
