//! Read replicas (`REPLICA_URLS`): which one may serve a read, by what it has replayed
//! and how far it lags, and the connection that serves it ([`Reader`]).
//!
//! A replica serves a read when it is a standby (`pg_is_in_recovery()`), lags less
//! than [`ReplicaConfig::max_lag`], and — for a session that wrote — has replayed the
//! primary's WAL position after that write ([`Lsn`], from
//! `pg_current_wal_insert_lsn()`). Otherwise the primary serves it. What a replica
//! reported is kept for [`ReplicaConfig::recheck`] and asked again after (one round
//! trip to the replica); a replica that cannot be reached is skipped for
//! [`ReplicaConfig::down_for`], without an error to the caller.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::sqlx::PgPool;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    ExecResult, FromQueryResult, IsolationLevel, QueryResult, Statement, TransactionError,
    TransactionOptions, TransactionTrait,
};

use super::Topology;
use crate::error::DbError;

/// A position in the primary's write-ahead log, in bytes from `0/0`: what a write
/// must have reached on a replica before that replica serves the writer's reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Lsn(pub i64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0 as u64;
        write!(f, "{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF)
    }
}

/// How replicas are chosen.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// A replica lagging more is skipped (default 5 s).
    pub max_lag: Duration,
    /// How long what a replica reported is trusted before it is asked again
    /// (default 250 ms).
    pub recheck: Duration,
    /// How long a replica that could not be reached is skipped (default 5 s).
    pub down_for: Duration,
    /// How long to wait for a replica's connection or status (default 2 s).
    pub timeout: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            max_lag: Duration::from_secs(5),
            recheck: Duration::from_millis(250),
            down_for: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        }
    }
}

/// What a replica last reported, as [`Topology::replicas`] gives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplicaStatus {
    /// Its URL, password removed.
    pub url: String,
    /// Whether it was reachable at its last check.
    pub up: bool,
    /// Whether it is a standby (a promoted one is not, and serves no read).
    pub in_recovery: bool,
    /// The WAL position it has replayed.
    pub replayed: Lsn,
    /// How far behind it was: 0 when it streams and has replayed all it received,
    /// else the time since the last transaction it replayed (an overestimate after
    /// an idle spell).
    pub lag: Duration,
    /// When it was last asked, if ever.
    #[serde(skip)]
    pub checked: Option<Instant>,
}

/// One replica: its pool and what it last reported.
pub(crate) struct Replica {
    pub(crate) db: DatabaseConnection,
    /// Its URL, password removed.
    url: String,
    seen: Mutex<Seen>,
}

/// What a replica last reported, and until when it is skipped: copied out under the
/// lock at every read's choice, so the choice allocates nothing.
#[derive(Debug, Clone, Copy)]
struct Seen {
    up: bool,
    in_recovery: bool,
    replayed: Lsn,
    lag: Duration,
    checked: Option<Instant>,
    down_until: Option<Instant>,
}

/// A replica's state in one round trip: standby or not, replayed position, lag. The
/// catalogue's recovery functions have no SeaORM form.
/// A replica that is not streaming (its primary is gone, or it still follows a
/// promoted-away one) lags by the age of its last replayed transaction, however
/// complete its replay of what it received.
const STATUS_SQL: &str = "SELECT pg_is_in_recovery() AS in_recovery,
       coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0) AS replayed,
       (CASE WHEN NOT pg_is_in_recovery() THEN 0
             WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver
                          WHERE coalesce(status, 'streaming') = 'streaming')
                  AND pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
             ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
        END)::float8 AS lag_seconds";

/// The primary's WAL position now: the end of what has been inserted, so every commit
/// before this call is at or before it.
const WAL_POSITION_SQL: &str =
    "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint AS lsn";

#[derive(FromQueryResult)]
struct StatusRow {
    in_recovery: bool,
    replayed: i64,
    lag_seconds: f64,
}

impl Replica {
    pub(crate) fn new(url: &str, db: DatabaseConnection) -> Self {
        Self {
            db,
            url: super::redact(url),
            seen: Mutex::new(Seen {
                up: true,
                in_recovery: true,
                replayed: Lsn(0),
                lag: Duration::ZERO,
                checked: None,
                down_until: None,
            }),
        }
    }

    fn seen(&self) -> Seen {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn status(&self) -> ReplicaStatus {
        let seen = self.seen();
        ReplicaStatus {
            url: self.url.clone(),
            up: seen.up,
            in_recovery: seen.in_recovery,
            replayed: seen.replayed,
            lag: seen.lag,
            checked: seen.checked,
        }
    }

    pub(crate) fn mark_down(&self, config: &ReplicaConfig) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.down_until = Some(Instant::now() + config.down_for);
        seen.up = false;
    }

    /// Asks the replica (one round trip, under `config.timeout`); `None` (and the
    /// replica marked down) when it cannot answer.
    async fn check(&self, config: &ReplicaConfig) -> Option<Seen> {
        let asked = tokio::time::timeout(
            config.timeout,
            StatusRow::find_by_statement(Statement::from_string(DbBackend::Postgres, STATUS_SQL))
                .one(&self.db),
        )
        .await;
        match asked {
            Ok(Ok(Some(row))) => {
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                seen.up = true;
                seen.in_recovery = row.in_recovery;
                seen.replayed = Lsn(row.replayed);
                seen.lag = Duration::from_secs_f64(row.lag_seconds.max(0.0));
                seen.checked = Some(Instant::now());
                Some(*seen)
            }
            other => {
                if let Ok(Err(e)) = &other {
                    tracing::warn!(replica = %self.url, error = %e, "replica status failed; skipping it");
                } else {
                    tracing::warn!(replica = %self.url, "replica did not answer in time; skipping it");
                }
                self.mark_down(config);
                None
            }
        }
    }

    /// Whether it may serve a read that must see `after`: asks again when what it
    /// reported is older than `config.recheck`, or has not reached `after` yet. No
    /// round trip (a lock and a copy) while what it reported is fresh.
    async fn serves(&self, after: Lsn, config: &ReplicaConfig) -> bool {
        let cached = self.seen();
        if cached
            .down_until
            .is_some_and(|until| Instant::now() < until)
        {
            return false;
        }
        let fresh = cached
            .checked
            .is_some_and(|at| at.elapsed() < config.recheck);
        let seen = if fresh && cached.replayed >= after {
            cached
        } else {
            match self.check(config).await {
                Some(seen) => seen,
                None => return false,
            }
        };
        seen.in_recovery && seen.lag <= config.max_lag && seen.replayed >= after
    }
}

/// The replicas of a topology and how they are chosen.
pub(crate) struct Replicas {
    pub(crate) list: Vec<Replica>,
    pub(crate) config: ReplicaConfig,
    next: AtomicUsize,
}

impl Replicas {
    pub(crate) fn new(list: Vec<Replica>, config: ReplicaConfig) -> Self {
        Self {
            list,
            config,
            next: AtomicUsize::new(0),
        }
    }

    /// The first replica, in turn from a rotating start, that may serve a read that
    /// must see `after`.
    async fn choose(&self, after: Lsn) -> Option<usize> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let index = (start + i) % n;
            if self.list[index].serves(after, &self.config).await {
                return Some(index);
            }
        }
        None
    }
}

/// Where a read was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServedBy {
    /// The primary (no replica could serve it).
    Primary,
    /// The replica at this index of `REPLICA_URLS`.
    Replica(usize),
}

/// A connection for read-only work: a replica chosen by [`Topology::reader`] or
/// [`ReadYourWrites::reader`], or the primary. As a SeaORM connection, a statement the
/// replica cannot answer for want of a connection is sent to the primary instead, and
/// the replica is skipped for a while (a recovery conflict is re-sent too, the
/// replica kept); a transaction begun on the replica is read-only. Use it for reads
/// only: a write fails on a replica, but would succeed where a failed replica's
/// statement is re-sent to the primary.
#[derive(Clone)]
pub struct Reader {
    topology: Topology,
    replica: Option<usize>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("served_by", &self.served_by())
            .finish()
    }
}

impl Reader {
    /// Where its reads go.
    pub fn served_by(&self) -> ServedBy {
        match self.replica {
            Some(i) => ServedBy::Replica(i),
            None => ServedBy::Primary,
        }
    }

    fn replica(&self) -> Option<&Replica> {
        self.replica.map(|i| &self.topology.replicas().list[i])
    }

    /// The replica's sqlx pool, when a replica serves it (for components that run
    /// their own sqlx statements: a cache's hit path).
    pub(crate) fn replica_pool(&self) -> Option<&PgPool> {
        self.replica()
            .and_then(|r| super::postgres_pool(&r.db).ok())
    }

    /// Marks the replica down after a failure of its connection.
    pub(crate) fn replica_failed(&self) {
        if let Some(replica) = self.replica() {
            replica.mark_down(&self.topology.replicas().config);
        }
    }

    /// Runs `op` on the replica, then on the primary if the replica's connection
    /// failed (or directly on the primary).
    async fn run<T, F, P>(&self, on_replica: F, on_primary: P) -> Result<T, DbErr>
    where
        F: AsyncFnOnce(&DatabaseConnection) -> Result<T, DbErr>,
        P: AsyncFnOnce(&Topology) -> Result<T, DbErr>,
    {
        if let Some(replica) = self.replica() {
            match on_replica(&replica.db).await {
                Err(e) if is_connection(&e) => {
                    tracing::warn!(error = %e, "replica failed; reading from the primary");
                    self.replica_failed();
                }
                Err(e) if is_recovery_conflict(&e) => {
                    tracing::debug!(error = %e, "recovery conflict on the replica; reading from the primary");
                }
                other => return other,
            }
        }
        on_primary(&self.topology).await
    }
}

/// Whether `e` says the connection failed (not the statement).
pub(crate) fn is_connection(e: &DbErr) -> bool {
    matches!(DbError::from(e.clone()), DbError::Connection { .. })
}

/// Whether `e` is a hot standby's recovery conflict (SQLSTATE 40001: replay had to
/// remove what the query was reading), which the primary answers instead.
fn is_recovery_conflict(e: &DbErr) -> bool {
    matches!(
        DbError::from(e.clone()),
        DbError::SerializationFailure { .. }
    )
}

impl Topology {
    pub(crate) fn replicas(&self) -> &Replicas {
        &self.inner.replicas
    }

    /// Whether `REPLICA_URLS` named any replica.
    pub fn has_replicas(&self) -> bool {
        !self.replicas().list.is_empty()
    }

    /// How replicas are chosen.
    pub fn replica_config(&self) -> &ReplicaConfig {
        &self.replicas().config
    }

    /// What each replica last reported, in `REPLICA_URLS` order (no round trip).
    pub fn replica_status(&self) -> Vec<ReplicaStatus> {
        self.replicas().list.iter().map(Replica::status).collect()
    }

    /// Asks every replica now (one round trip each) and returns what they said; an
    /// unreachable one is reported down.
    pub async fn check_replicas(&self) -> Vec<ReplicaStatus> {
        let replicas = self.replicas();
        for replica in &replicas.list {
            replica.check(&replicas.config).await;
        }
        self.replica_status()
    }

    /// A connection for reads that need not see any particular write: a replica that
    /// is a standby lagging less than the bound, else the primary. No round trip when
    /// what the replica last reported is recent; one to the replica otherwise.
    pub async fn reader(&self) -> Reader {
        self.reader_after(Lsn(0)).await
    }

    /// A connection for reads that must see every write up to `after`: a replica that
    /// has replayed it (and lags less than the bound), else the primary.
    pub async fn reader_after(&self, after: Lsn) -> Reader {
        Reader {
            topology: self.clone(),
            replica: self.replicas().choose(after).await,
        }
    }

    /// The primary's WAL position now (`pg_current_wal_insert_lsn()`): call after a
    /// commit, and a read that waits for it sees that commit. One round trip.
    pub async fn wal_position(&self) -> Result<Lsn, DbError> {
        let row = self
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                WAL_POSITION_SQL,
            ))
            .await?
            .ok_or_else(|| DbError::no_row("pg_current_wal_insert_lsn"))?;
        Ok(Lsn(row.try_get("", "lsn")?))
    }
}

/// Read-your-writes for one session (a user's requests, a job's steps): it keeps the
/// primary's WAL position after its last write, and its reads go to a replica only
/// once that replica has replayed it. Cheap to share; clones share the position.
#[derive(Clone)]
pub struct ReadYourWrites {
    topology: Topology,
    after: std::sync::Arc<AtomicI64>,
}

impl ReadYourWrites {
    /// A session that has written nothing yet.
    pub fn new(topology: Topology) -> Self {
        Self {
            topology,
            after: std::sync::Arc::new(AtomicI64::new(0)),
        }
    }

    /// Records the primary's WAL position now: call after a write commits. One round
    /// trip to the primary.
    pub async fn wrote(&self) -> Result<Lsn, DbError> {
        let lsn = self.topology.wal_position().await?;
        self.saw(lsn);
        Ok(lsn)
    }

    /// Records a position a write handed back (from another process, a cookie).
    pub fn saw(&self, lsn: Lsn) {
        self.after.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// The position its reads must see.
    pub fn position(&self) -> Lsn {
        Lsn(self.after.load(Ordering::Relaxed))
    }

    /// A connection for this session's reads (see [`Topology::reader_after`]).
    pub async fn reader(&self) -> Reader {
        self.topology.reader_after(self.position()).await
    }

    /// The topology, for writes (they go to the primary).
    pub fn topology(&self) -> &Topology {
        &self.topology
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Reader {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let again = stmt.clone();
        self.run(
            async |db| db.execute_raw(stmt).await,
            async |primary| primary.execute_raw(again).await,
        )
        .await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.run(
            async |db| db.execute_unprepared(sql).await,
            async |primary| primary.execute_unprepared(sql).await,
        )
        .await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let again = stmt.clone();
        self.run(
            async |db| db.query_one_raw(stmt).await,
            async |primary| primary.query_one_raw(again).await,
        )
        .await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let again = stmt.clone();
        self.run(
            async |db| db.query_all_raw(stmt).await,
            async |primary| primary.query_all_raw(again).await,
        )
        .await
    }

    fn support_returning(&self) -> bool {
        true
    }
}

#[async_trait::async_trait]
impl TransactionTrait for Reader {
    type Transaction = DatabaseTransaction;

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.begin_with_config(None, None).await
    }

    /// On a replica, read-only whatever `access_mode` says.
    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.run(
            async |db| {
                db.begin_with_config(isolation_level, Some(AccessMode::ReadOnly))
                    .await
            },
            async |primary| {
                primary
                    .begin_with_config(isolation_level, access_mode)
                    .await
            },
        )
        .await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.begin_with_config(options.isolation_level, options.access_mode)
            .await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, E>> + Send + 'c>,
            > + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.transaction_with_config(callback, None, None).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, E>> + Send + 'c>,
            > + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self
            .begin_with_config(isolation_level, access_mode)
            .await
            .map_err(TransactionError::Connection)?;
        match callback(&txn).await {
            Ok(value) => {
                txn.commit().await.map_err(TransactionError::Connection)?;
                Ok(value)
            }
            Err(e) => {
                let _ = txn.rollback().await;
                Err(TransactionError::Transaction(e))
            }
        }
    }
}

/// Opens a replica's pool: short connect and acquire timeouts, so a replica that is
/// down costs a read [`ReplicaConfig::timeout`] at most, once per `down_for`.
pub(crate) async fn open_replica(
    url: &str,
    max_connections: u32,
    config: &ReplicaConfig,
) -> Result<Replica, super::ConnectError> {
    let mut opt = sea_orm::ConnectOptions::new(url.to_owned());
    opt.max_connections(max_connections.max(1))
        .min_connections(0)
        .connect_timeout(config.timeout)
        .acquire_timeout(config.timeout)
        .connect_lazy(true)
        .sqlx_logging(false);
    let db =
        sea_orm::Database::connect(opt)
            .await
            .map_err(|source| super::ConnectError::Database {
                url: super::redact(url),
                source,
            })?;
    Ok(Replica::new(url, db))
}

#[cfg(test)]
mod tests {
    use super::Lsn;

    #[test]
    fn lsn_prints_as_postgres_does() {
        assert_eq!(Lsn(0x1_6B37_4D48).to_string(), "1/6B374D48");
        assert_eq!(Lsn(0).to_string(), "0/0");
    }
}
