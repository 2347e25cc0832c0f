//! The get-or-compute engine shared by every cache: single flight, buffered
//! bookkeeping, statistics. It knows no table: a [`Store`] says how to read, write,
//! delete and account for one kind of entry.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sea_orm::ConnectionTrait;
use sea_orm::sqlx::{self, PgConnection, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::advisory_lock::{HeldLock, LockScope, lock_id};
use super::{CacheConfig, CacheError, CacheStats, Fetched, Found, Origin, Store};
use crate::db::{
    OwnConnection, Pools, PrimaryPool, ReadYourWrites, SessionUse, Topology, execute_on, on_primary,
};
use crate::error::{BoxError, DbError};

/// Planner settings of the flush connection, which runs nothing but flushes: index
/// or TID lookups per row of the batch instead of a sequential scan hashed into it
/// (which took 18 % of the CPU of a hit benchmark), and a custom plan per flush, so
/// `x = ANY($n)` over the batch's array is hashed rather than searched per row
/// (`docs/performance.md`).
const FLUSH_SETTINGS: &[(&str, &str)] = &[
    ("plan_cache_mode", "force_custom_plan"),
    ("enable_seqscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
];

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    computes: AtomicU64,
    waits: AtomicU64,
    errors: AtomicU64,
    flushes: AtomicU64,
}

struct Shared<S: Store> {
    store: S,
    db: Topology,
    /// `db`'s primary pool: the hit path's connections.
    pool: PgPool,
    /// The pool of the key locks' connections: `db`'s sessions, or its primary
    /// through a pooler without `DIRECT_URL` (transaction-scoped locks).
    lock_pool: PgPool,
    /// How the key locks are held on `lock_pool`'s connections.
    lock_scope: LockScope,
    /// With replicas: the WAL position after this cache's last store, so its hits
    /// read a replica only once that replica has replayed it.
    written: Option<ReadYourWrites>,
    config: CacheConfig,
    counters: Counters,
    /// Buffered bookkeeping events, written by [`Shared::flush`].
    events: Mutex<Vec<S::Event>>,
    /// Per-key locks of the computes running in this process.
    inflight: Mutex<HashMap<S::Key, Arc<tokio::sync::Mutex<()>>>>,
    stop: Notify,
    /// Wakes the flusher before its interval ends: the buffer is full enough.
    flush_now: Notify,
    /// The connection flushes write on (one flush at a time): bookkeeping never takes
    /// a pooled connection from the traffic, and commits asynchronously.
    flush_conn: tokio::sync::Mutex<OwnConnection>,
}

/// A cache over one [`Store`]: see the module documentation of [`crate::cache`].
pub struct CacheCore<S: Store> {
    shared: Arc<Shared<S>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl<S: Store> CacheCore<S> {
    /// A cache over `store` on `db`. When bookkeeping is on, starts the background
    /// task that flushes it every `config.flush_interval`, and as soon as
    /// `config.max_batch_events` events are buffered (so it must be called inside
    /// a Tokio runtime). Call [`CacheCore::shutdown`] to write what is buffered.
    /// `db` ([`Topology`], or a `DatabaseConnection`: one URL, sessions) must be a
    /// PostgreSQL pool ([`crate::db::postgres_pool`]): the hit path and the flushes use
    /// its primary's connections directly, the key locks its session connections —
    /// or, through a pooler without `DIRECT_URL`, transaction-scoped locks on the
    /// primary, each holding a transaction open while its value is computed.
    pub fn new(store: S, db: impl Into<Topology>, config: CacheConfig) -> Result<Self, CacheError> {
        let db = db.into();
        let primary = db.primary_pool()?;
        let flush_conn =
            tokio::sync::Mutex::new(OwnConnection::with_settings(primary, FLUSH_SETTINGS));
        let pool = primary.pool.clone();
        let (lock_pool, lock_scope) = match db.session_pool(SessionUse::AdvisoryLock) {
            Ok(sessions) => (sessions.clone(), LockScope::Session),
            Err(_) => (pool.clone(), LockScope::Transaction),
        };
        let written = db.has_replicas().then(|| ReadYourWrites::new(db.clone()));
        let shared = Arc::new(Shared {
            store,
            flush_conn,
            pool,
            lock_pool,
            lock_scope,
            written,
            db,
            config,
            counters: Counters::default(),
            events: Mutex::new(Vec::new()),
            inflight: Mutex::new(HashMap::new()),
            stop: Notify::new(),
            flush_now: Notify::new(),
        });
        let flusher = shared.config.bookkeeping.then(|| {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(shared.config.flush_interval);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shared.flush_now.notified() => {}
                        _ = shared.stop.notified() => break,
                    }
                    if let Err(e) = shared.flush().await {
                        tracing::warn!(cache = shared.store.name(), error = %e, "bookkeeping flush failed; will retry");
                    }
                }
            })
        });
        Ok(Self {
            shared,
            flusher: Mutex::new(flusher),
        })
    }

    /// The store, for adapter-specific queries.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// The connections the cache uses.
    pub fn db(&self) -> &Topology {
        &self.shared.db
    }

    /// With replicas, makes hits wait for `lsn` (a [`Topology::wal_position`] taken
    /// after the commit of a [`CacheCore::put`] or [`CacheCore::delete`] in the
    /// caller's transaction): until a replica has replayed it, hits read the primary.
    /// The cache's own stores (a computed miss) do this themselves. No round trip.
    pub fn saw(&self, lsn: crate::db::Lsn) {
        if let Some(written) = &self.shared.written {
            written.saw(lsn);
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CacheConfig {
        &self.shared.config
    }

    /// The live value for `key`, if any. One round trip (with replicas, on one that
    /// has replayed this cache's last store, a miss there read again on the
    /// primary; through a pooler, in a transaction: begin and commit more), no
    /// write; the hit is counted in memory and written at the next flush. A corrupt entry is logged,
    /// counted as an error and reported as a miss.
    pub async fn get(&self, key: &S::Key) -> Result<Option<S::Value>, CacheError> {
        let value = self.shared.read_hit(key, true).await?;
        if value.is_none() {
            self.shared.counters.misses.fetch_add(1, Ordering::Relaxed);
        }
        Ok(value)
    }

    /// Stores `value` under `key` (insert or replace) on `db`: any SeaORM connection,
    /// so inside the caller's transaction the entry exists only if it commits.
    /// Checks the size first: an oversize value is refused and nothing is written.
    /// One round trip.
    pub async fn put<C: ConnectionTrait>(
        &self,
        db: &C,
        key: &S::Key,
        value: &S::Value,
    ) -> Result<(), CacheError> {
        self.shared.check_size(key, value)?;
        db.execute_raw(self.shared.store.save(key, value)?).await?;
        Ok(())
    }

    /// Deletes the entry for `key` on `db` (any SeaORM connection; a transaction
    /// joins it); whether there was one. One round trip.
    pub async fn delete<C: ConnectionTrait>(
        &self,
        db: &C,
        key: &S::Key,
    ) -> Result<bool, CacheError> {
        let done = db.execute_raw(self.shared.store.remove(key)?).await?;
        Ok(done.rows_affected() > 0)
    }

    /// The value for `key` and how it was got ([`Origin`]: a hit, computed by this
    /// caller, or computed by another while this one waited), computing and storing
    /// it on a miss.
    ///
    /// A hit costs one round trip. On a miss, concurrent callers for the same key —
    /// tasks of this process or other processes on the same database — compute once:
    /// the first takes a per-key lock (an in-process mutex, then a session-level
    /// PostgreSQL advisory lock on a session connection, no transaction — through a
    /// pooler without `DIRECT_URL`, a transaction-scoped one), reads again,
    /// computes, stores and releases; the others wait (up to `config.wait_timeout`,
    /// then [`CacheError::WaitTimeout`]) and then read its result as a hit. If the
    /// compute fails, its error goes to its caller and the next waiter computes.
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: &S::Key,
        compute: F,
    ) -> Result<Fetched<S::Value>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<S::Value, E>>,
        E: Into<BoxError>,
    {
        let shared = &self.shared;
        if let Some(value) = shared.read_hit(key, false).await? {
            return Ok(Fetched {
                value,
                origin: Origin::Hit,
            });
        }
        let deadline = Instant::now() + shared.config.wait_timeout;
        let local = shared.local_lock(key);
        let local_guard = match Arc::clone(&local).try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                shared.counters.waits.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout_at(deadline.into(), Arc::clone(&local).lock_owned())
                    .await
                {
                    Ok(guard) => guard,
                    Err(_) => {
                        shared.release_local(key, local);
                        return Err(shared.wait_timeout(key));
                    }
                }
            }
        };
        let result = async {
            let mut held = shared.advisory_lock(key, deadline).await?;
            let outcome = shared.compute_locked(held.conn(), key, compute).await;
            held.release().await;
            outcome
        }
        .await;
        drop(local_guard);
        shared.release_local(key, local);
        result
    }

    /// Writes every buffered bookkeeping event now (one statement per table).
    pub async fn flush(&self) -> Result<(), CacheError> {
        self.shared.flush().await
    }

    /// Stops the background flusher and writes what is buffered. After N hits and a
    /// shutdown, the stored counters say exactly N. If that last flush fails, its
    /// error is returned and the events stay buffered for a later [`CacheCore::flush`]. The cache stays usable, but hits
    /// after a shutdown are only written by an explicit [`CacheCore::flush`].
    pub async fn shutdown(&self) -> Result<(), CacheError> {
        let handle = self.flusher.lock().map(|mut h| h.take()).unwrap_or(None);
        if let Some(handle) = handle {
            self.shared.stop.notify_one();
            let _ = handle.await;
        }
        self.shared.flush().await
    }

    /// A snapshot of the in-memory counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.shared.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            computes: c.computes.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            pending_events: self
                .shared
                .events
                .lock()
                .map(|e| e.len() as u64)
                .unwrap_or(0),
        }
    }
}

impl<S: Store> crate::runtime::Flush for CacheCore<S> {
    fn flush_name(&self) -> String {
        self.shared.store.name().to_owned()
    }

    fn flush_interval(&self) -> std::time::Duration {
        self.shared.config.flush_interval
    }

    fn write_buffered(&self) -> crate::runtime::BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move { Ok(self.shared.flush().await?) })
    }

    fn buffer_full(&self) -> crate::runtime::BoxFuture<'_, ()> {
        Box::pin(self.shared.flush_now.notified())
    }

    /// Stops the cache's own flusher task once a flush it is making is done (no last
    /// flush of its own: the runtime's flusher writes the buffer from now on).
    fn hand_over_flushing(&self) {
        let handle = self.flusher.lock().map(|mut h| h.take()).unwrap_or(None);
        if handle.is_some() {
            self.shared.stop.notify_one();
        }
    }
}

/// Each cache adapter (a `Deref` to its core) is flushed as its core.
impl<T, S> crate::runtime::Flush for T
where
    T: std::ops::Deref<Target = CacheCore<S>> + Send + Sync + 'static,
    S: Store,
{
    fn flush_name(&self) -> String {
        (**self).flush_name()
    }

    fn flush_interval(&self) -> std::time::Duration {
        (**self).flush_interval()
    }

    fn write_buffered(&self) -> crate::runtime::BoxFuture<'_, Result<(), BoxError>> {
        (**self).write_buffered()
    }

    fn buffer_full(&self) -> crate::runtime::BoxFuture<'_, ()> {
        (**self).buffer_full()
    }

    fn hand_over_flushing(&self) {
        (**self).hand_over_flushing()
    }
}

impl<S: Store> Drop for CacheCore<S> {
    fn drop(&mut self) {
        if let Ok(mut handle) = self.flusher.lock()
            && let Some(handle) = handle.take()
        {
            handle.abort();
        }
    }
}

impl<S: Store> Shared<S> {
    /// [`Shared::load_hit`] on a replica when the topology has one that may serve
    /// reads (see [`Topology::reader`]), and on the primary when it has not, when the
    /// replica's connection failed, or — with `miss_to_primary` — when the replica
    /// missed (it may lag behind a store). One round trip, two on a replica's miss
    /// sent on. A caller that computes on a miss passes `false`: its locked re-read
    /// is on the primary anyway.
    async fn read_hit(
        &self,
        key: &S::Key,
        miss_to_primary: bool,
    ) -> Result<Option<S::Value>, CacheError> {
        if let Some(written) = &self.written {
            let reader = written.reader().await;
            if let Some(pool) = reader.replica_pool() {
                let read = match pool.acquire().await {
                    Ok(mut conn) => self.load_hit(&mut conn, key).await,
                    Err(e) => Err(db_err(e)),
                };
                match read {
                    Ok(Some(value)) => return Ok(Some(value)),
                    Ok(None) if !miss_to_primary => return Ok(None),
                    Ok(None) => {}
                    Err(CacheError::Database(DbError::Connection { message })) => {
                        tracing::warn!(cache = self.store.name(), error = %message, "replica failed; reading from the primary");
                        reader.replica_failed();
                    }
                    // A recovery conflict: the primary answers instead.
                    Err(CacheError::Database(DbError::SerializationFailure { .. })) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let primary = PrimaryPool {
            pool: &self.pool,
            multiplexed: self.db.is_multiplexed(),
        };
        on_primary(primary, db_err, async |conn| self.load_hit(conn, key).await).await
    }

    /// Loads `key`'s entry and, when there is one, counts the hit (in memory: the
    /// bookkeeping event goes to the buffer). A corrupt entry is logged, counted as
    /// an error and reported as absent. One round trip.
    async fn load_hit(
        &self,
        db: &mut PgConnection,
        key: &S::Key,
    ) -> Result<Option<S::Value>, CacheError> {
        let found = match self.store.load(db, key).await {
            Err(e @ CacheError::Corrupt { .. }) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cache = self.store.name(), error = %e, "corrupt entry treated as a miss");
                return Ok(None);
            }
            other => other?,
        };
        let Some(Found { value, row }) = found else {
            return Ok(None);
        };
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        if self.config.bookkeeping {
            self.buffer(self.store.hit_event(key, &value, row));
        }
        Ok(Some(value))
    }

    fn check_size(&self, key: &S::Key, value: &S::Value) -> Result<(), CacheError> {
        let size = self.store.size_of(value)?;
        if size > self.config.max_value_bytes {
            return Err(CacheError::Oversize {
                cache: self.store.name(),
                key: S::key_text(key),
                size,
                limit: self.config.max_value_bytes,
            });
        }
        Ok(())
    }

    fn wait_timeout(&self, key: &S::Key) -> CacheError {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        CacheError::WaitTimeout {
            cache: self.store.name(),
            key: S::key_text(key),
            waited: self.config.wait_timeout,
        }
    }

    fn local_lock(&self, key: &S::Key) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(key.clone()).or_default())
    }

    fn release_local(&self, key: &S::Key, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        drop(lock);
        // Only the map holds it now (guards hold a clone too): nobody waits for this key.
        if map.get(key).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(key);
        }
    }

    /// Takes the key's advisory lock on a connection of `lock_pool` (see [`HeldLock`]), or
    /// [`CacheError::WaitTimeout`] at `deadline`.
    async fn advisory_lock(&self, key: &S::Key, deadline: Instant) -> Result<HeldLock, CacheError> {
        let id = lock_id(self.store.name(), &S::key_text(key));
        let held = HeldLock::acquire(&self.lock_pool, self.lock_scope, id, deadline, || {
            self.counters.waits.fetch_add(1, Ordering::Relaxed);
        })
        .await
        .map_err(db_err)?;
        held.ok_or_else(|| self.wait_timeout(key))
    }

    /// With the key's locks held: read again (another holder may have stored it),
    /// else compute and store — both on `conn`, the connection that holds the
    /// advisory lock, so a compute never needs a second pooled connection.
    async fn compute_locked<F, Fut, E>(
        &self,
        conn: &mut PgConnection,
        key: &S::Key,
        compute: F,
    ) -> Result<Fetched<S::Value>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<S::Value, E>>,
        E: Into<BoxError>,
    {
        if let Some(value) = self.load_hit(&mut *conn, key).await? {
            return Ok(Fetched {
                value,
                origin: Origin::Waited,
            });
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        self.counters.computes.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let value = compute().await.map_err(|e| {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            CacheError::Compute {
                cache: self.store.name(),
                key: S::key_text(key),
                source: e.into(),
            }
        })?;
        let elapsed = started.elapsed();
        self.check_size(key, &value)?;
        execute_on(conn, self.store.save(key, &value)?)
            .await
            .map_err(db_err)?;
        // With replicas, hits wait for this store (one more round trip). Through a
        // pooler without a direct URL the store commits with the lock, later: the
        // position is then taken before it, and the lag bound covers the rest.
        if let Some(written) = &self.written
            && let Err(e) = written.wrote().await
        {
            tracing::warn!(cache = self.store.name(), error = %e, "could not read the WAL position after a store");
        }
        if self.config.bookkeeping
            && let Some(event) = self.store.miss_event(key, &value, elapsed)
        {
            self.buffer(event);
        }
        Ok(Fetched {
            value,
            origin: Origin::Computed,
        })
    }

    /// Buffers a bookkeeping event; the `max_batch_events`-th wakes the flusher.
    fn buffer(&self, event: S::Event) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.push(event);
        if events.len() == self.config.max_batch_events {
            self.flush_now.notify_one();
        }
    }

    async fn flush(&self) -> Result<(), CacheError> {
        let batch = match self.events.lock() {
            Ok(mut events) if !events.is_empty() => std::mem::take(&mut *events),
            _ => return Ok(()),
        };
        let written = self
            .flush_conn
            .lock()
            .await
            .run(db_err, async |conn| self.store.flush(conn, &batch).await)
            .await;
        match written {
            Ok(()) => {
                self.counters.flushes.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.requeue(batch);
                Err(e)
            }
        }
    }

    /// Puts a batch that failed to flush back in front of the newer events, keeping
    /// at most `config.max_buffered_events` (the oldest go first, counted as errors).
    fn requeue(&self, mut batch: Vec<S::Event>) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        batch.append(&mut events);
        let excess = batch.len().saturating_sub(self.config.max_buffered_events);
        if excess > 0 {
            batch.drain(..excess);
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                cache = self.store.name(),
                dropped = excess,
                "bookkeeping buffer full: oldest events dropped"
            );
        }
        *events = batch;
    }
}

/// A driver error as a [`CacheError::Database`], its class kept.
pub(crate) fn db_err(e: sqlx::Error) -> CacheError {
    CacheError::Database(e.into())
}
