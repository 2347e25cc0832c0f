//! Where statements go: the primary through `DATABASE_URL` (which may be a
//! transaction-mode pooler such as PgBouncer or Supavisor), and work that needs a
//! session of its own through `DIRECT_URL` (Prisma's `url` and `directUrl`).
//!
//! Through a transaction-mode pooler a client connection is not a session: the pooler
//! hands each transaction to whichever server connection is free. Three rules follow,
//! and [`Topology`] keeps them on its pooled pool:
//! - no named prepared statement (the statement cache is off, so sqlx uses the unnamed
//!   statement);
//! - every statement inside a transaction. sqlx parses a statement and binds it in two
//!   protocol exchanges; outside a transaction a pooler (PgBouncer 1.18 measured: see
//!   `docs/topology.md`) may hand the second to another server, where it binds another
//!   client's unnamed statement — a wrong answer, not an error. Inside a transaction
//!   both go to the same server;
//! - no session `SET` and no session advisory lock: settings are `SET LOCAL`, locks
//!   `pg_advisory_xact_lock`.
//!
//! What needs a session ([`SessionUse`]) takes a connection of the direct pool.

use std::sync::Arc;

use sea_orm::sqlx::{self, PgConnection, PgPool};
use sea_orm::{
    AccessMode, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult, Statement, TransactionError,
    TransactionOptions, TransactionTrait,
};

use super::replicas::{ReplicaConfig, Replicas, open_replica};
use super::{ConnectError, redact};
use crate::error::DbError;

/// The URLs of a deployment. `direct_url` defaults to `database_url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatabaseUrls {
    /// `DATABASE_URL`: the primary, perhaps through a transaction-mode pooler.
    pub database_url: String,
    /// `DIRECT_URL`: a session connection to the primary, for [`SessionUse`] work.
    pub direct_url: Option<String>,
    /// `REPLICA_URLS`: streaming replicas of the primary, for reads (zero or more).
    pub replica_urls: Vec<String>,
}

impl DatabaseUrls {
    /// One URL for everything (no pooler, or a session-mode one).
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            direct_url: None,
            replica_urls: Vec::new(),
        }
    }

    /// With a read replica added.
    pub fn with_replica(mut self, replica_url: impl Into<String>) -> Self {
        self.replica_urls.push(replica_url.into());
        self
    }

    /// With `DIRECT_URL` set: `database_url` is then taken to be a transaction-mode
    /// pooler.
    pub fn with_direct(mut self, direct_url: impl Into<String>) -> Self {
        self.direct_url = Some(direct_url.into());
        self
    }

    /// `DATABASE_URL`, `DIRECT_URL` and `REPLICA_URLS` (separated by commas or
    /// whitespace) from the environment; `None` without `DATABASE_URL`. An empty
    /// variable counts as unset.
    pub fn from_env() -> Option<Self> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Some(Self {
            database_url: var("DATABASE_URL")?,
            direct_url: var("DIRECT_URL"),
            replica_urls: var("REPLICA_URLS")
                .map(|list| split_urls(&list))
                .unwrap_or_default(),
        })
    }

    /// The session URL: `direct_url`, else `database_url`.
    pub fn session_url(&self) -> &str {
        self.direct_url.as_deref().unwrap_or(&self.database_url)
    }

    /// Whether `DIRECT_URL` names another endpoint than `DATABASE_URL`.
    pub fn has_distinct_direct(&self) -> bool {
        self.direct_url
            .as_deref()
            .is_some_and(|direct| direct != self.database_url)
    }
}

/// URLs separated by commas or whitespace (`REPLICA_URLS`, `--replica-urls`).
pub fn split_urls(list: &str) -> Vec<String> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Work that needs a session of its own, and so `DIRECT_URL` when `DATABASE_URL` is a
/// transaction-mode pooler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionUse {
    /// A worker's `LISTEN` for new jobs (a pooler drops notifications).
    Listen,
    /// A cache's single-flight lock held while a value is computed.
    AdvisoryLock,
    /// Binary `COPY` of document chunks (`store::ingest_copy`).
    Copy,
    /// `CREATE INDEX CONCURRENTLY` (`store::reindex`, `store::promote_key`).
    ConcurrentIndex,
    /// Migrations and their lock.
    Migrations,
}

impl SessionUse {
    /// Every use, in the order the doctor reports them.
    pub const ALL: [SessionUse; 5] = [
        SessionUse::Listen,
        SessionUse::AdvisoryLock,
        SessionUse::Copy,
        SessionUse::ConcurrentIndex,
        SessionUse::Migrations,
    ];

    /// Who needs the session, for messages.
    pub fn component(self) -> &'static str {
        match self {
            SessionUse::Listen => "queue workers' LISTEN (wake-ups on new jobs)",
            SessionUse::AdvisoryLock => "cache single flight (session advisory locks)",
            SessionUse::Copy => "store ingest_copy (binary COPY)",
            SessionUse::ConcurrentIndex => {
                "store reindex and promote_key (CREATE INDEX CONCURRENTLY)"
            }
            SessionUse::Migrations => "migrations and their advisory lock",
        }
    }
}

/// The primary's sqlx pool, and whether a transaction-mode pooler multiplexes its
/// connections (then every statement on it runs inside a transaction).
#[derive(Debug, Clone, Copy)]
pub struct PrimaryPool<'a> {
    /// The pool.
    pub pool: &'a PgPool,
    /// Whether its connections go through a transaction-mode pooler.
    pub multiplexed: bool,
}

/// The pools a component reaches: what [`Topology`] and a plain `DatabaseConnection`
/// (one URL, sessions) both give.
pub trait Pools: ConnectionTrait + TransactionTrait + Send + Sync {
    /// The primary's pool (see [`PrimaryPool`]).
    fn primary_pool(&self) -> Result<PrimaryPool<'_>, DbError>;

    /// A pool whose connections are sessions, for `purpose`; an error naming it when
    /// `DATABASE_URL` is a pooler and no `DIRECT_URL` was given.
    fn session_pool(&self, purpose: SessionUse) -> Result<&PgPool, DbError>;
}

impl Pools for DatabaseConnection {
    fn primary_pool(&self) -> Result<PrimaryPool<'_>, DbError> {
        Ok(PrimaryPool {
            pool: super::postgres_pool(self)?,
            multiplexed: false,
        })
    }

    fn session_pool(&self, _purpose: SessionUse) -> Result<&PgPool, DbError> {
        super::postgres_pool(self)
    }
}

/// A deployment's connections: the primary (`DATABASE_URL`, perhaps a
/// transaction-mode pooler) and a session pool (`DIRECT_URL`). Cheap to clone (pools
/// are shared). As a SeaORM connection it sends statements to the primary; through a
/// pooler each statement runs in a transaction of its own (begin and commit: two more
/// round trips — `docs/topology.md` measures them), and transactions are the
/// pooler's as they are. Build it with [`Topology::connect`], or from a
/// `DatabaseConnection` (one URL, sessions).
#[derive(Clone)]
pub struct Topology {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    primary: DatabaseConnection,
    multiplexed: bool,
    /// `None` when the primary is multiplexed and no `DIRECT_URL` was given.
    session: Option<DatabaseConnection>,
    pub(super) replicas: Replicas,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("multiplexed", &self.inner.multiplexed)
            .field("has_session", &self.inner.session.is_some())
            .finish()
    }
}

impl From<DatabaseConnection> for Topology {
    /// One URL that gives sessions: the primary and the session pool are the same.
    fn from(db: DatabaseConnection) -> Self {
        Self {
            inner: Arc::new(Inner {
                session: Some(db.clone()),
                primary: db,
                multiplexed: false,
                replicas: Replicas::new(Vec::new(), ReplicaConfig::default()),
            }),
        }
    }
}

/// The backend serving a fresh client connection, asked in the simple protocol (no
/// statement is prepared, so it is safe through any pooler).
const BACKEND_PID_SQL: &str = "SELECT pg_backend_pid()";

impl Topology {
    /// Connects pools of at most `max_connections` each: to `DATABASE_URL`, and to
    /// `DIRECT_URL` when it names another endpoint. `DATABASE_URL` is treated as a
    /// transaction-mode pooler when `DIRECT_URL` differs from it, or when
    /// [`multiplexed`] finds two client connections served by one backend. Round
    /// trips: the probe's two connections (and two per replica URL: a replica behind
    /// a transaction-mode pooler is refused), then one per pooled connection opened
    /// — six through a pooler, where a new connection first learns the types.
    pub async fn connect(urls: &DatabaseUrls, max_connections: u32) -> Result<Self, ConnectError> {
        Self::connect_with(urls, max_connections, ReplicaConfig::default()).await
    }

    /// [`Topology::connect`], with replicas chosen by `replicas` (their pools open
    /// lazily: a replica that is down does not stop the connect).
    pub async fn connect_with(
        urls: &DatabaseUrls,
        max_connections: u32,
        replicas: ReplicaConfig,
    ) -> Result<Self, ConnectError> {
        let distinct = urls.has_distinct_direct();
        let multiplexed = distinct || multiplexed(&urls.database_url).await?;
        let primary = open(&urls.database_url, max_connections, multiplexed).await?;
        let session = if distinct {
            Some(open(urls.session_url(), max_connections, false).await?)
        } else if multiplexed {
            None
        } else {
            Some(primary.clone())
        };
        let mut list = Vec::with_capacity(urls.replica_urls.len());
        for url in &urls.replica_urls {
            // A replica down now is opened lazily and skipped until it answers; one
            // that answers through a transaction-mode pooler is refused.
            if let Ok(true) = self::multiplexed(url).await {
                return Err(ConnectError::PooledReplica { url: redact(url) });
            }
            list.push(open_replica(url, max_connections, &replicas).await?);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                primary,
                multiplexed,
                session,
                replicas: Replicas::new(list, replicas),
            }),
        })
    }

    /// The primary's SeaORM connection, as it is: through a pooler, a statement sent
    /// on it outside a transaction is not safe (see the module). Prefer the topology
    /// itself, which wraps such statements.
    pub fn primary(&self) -> &DatabaseConnection {
        &self.inner.primary
    }

    /// Closes the pools (each connection ends its session).
    pub async fn close(&self) {
        let _ = self.inner.primary.close_by_ref().await;
        if let Some(session) = &self.inner.session {
            let _ = session.close_by_ref().await;
        }
        for replica in &self.inner.replicas.list {
            let _ = replica.db.close_by_ref().await;
        }
    }

    /// Whether the primary goes through a transaction-mode pooler.
    pub fn is_multiplexed(&self) -> bool {
        self.inner.multiplexed
    }

    /// The session connection (`DIRECT_URL`, or the primary when it gives sessions),
    /// for `purpose`; an error naming it when there is none.
    pub fn session(&self, purpose: SessionUse) -> Result<&DatabaseConnection, DbError> {
        self.inner
            .session
            .as_ref()
            .ok_or(DbError::NeedsSession { purpose })
    }
}

/// Opens a pool; through a pooler without the statement cache (unnamed statements).
pub(super) async fn open(
    url: &str,
    max_connections: u32,
    multiplexed: bool,
) -> Result<DatabaseConnection, ConnectError> {
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(max_connections.max(1))
        .sqlx_logging(false);
    if multiplexed {
        opt.map_sqlx_postgres_opts(|o| o.statement_cache_capacity(0))
            .map_sqlx_postgres_pool_opts(|pool| {
                pool.after_connect(|conn, _| Box::pin(learn_custom_types(conn)))
            });
    }
    Database::connect(opt)
        .await
        .map_err(|source| ConnectError::Database {
            url: redact(url),
            source,
        })
}

/// Whether `url` multiplexes client connections onto shared server sessions (a
/// transaction- or statement-mode pooler): two client connections, the first kept
/// open and idle, are asked which backend serves them; one backend for both is
/// possible only behind such a pooler (a direct server, or a session-mode pooler,
/// gives each open client its own). A busy pooler may hand the second client another
/// idle server, so `false` is not proof: set `DIRECT_URL` to say so. Two connections,
/// one round trip each, in the simple protocol.
pub async fn multiplexed(url: &str) -> Result<bool, ConnectError> {
    use sqlx::{ConnectOptions as _, Row};
    let err = |e: sqlx::Error| ConnectError::Database {
        url: redact(url),
        source: DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(e))),
    };
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(err)?;
    let options = options.statement_cache_capacity(0);
    let pid = async |conn: &mut PgConnection| -> Result<i32, sqlx::Error> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(BACKEND_PID_SQL))
            .fetch_one(conn)
            .await?
            .try_get::<i32, _>(0)
    };
    let mut first = options.connect().await.map_err(err)?;
    let a = pid(&mut first).await.map_err(err)?;
    let mut second = options.connect().await.map_err(err)?;
    let b = pid(&mut second).await.map_err(err)?;
    Ok(a == b)
}

/// Every type a column or parameter can have and sqlx can read — base types (`tid`,
/// `oidvector`, pgvector's), enums, domains and ranges, and their arrays: about 160 on
/// a fresh database — as one `SELECT NULL::type, …` list. sqlx knows only some of
/// them, and SQL cannot ask which. Left out: composite row types, multiranges and
/// internal types, which sqlx cannot describe, and types with no binary output.
const TYPES_SQL: &str = "SELECT coalesce(string_agg(format('NULL::%s', t.oid::regtype), ', '), '')
FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE t.typtype IN ('b', 'e', 'd', 'r') AND t.typcategory <> 'Z' AND t.typsend <> 0
  AND (e.oid IS NULL
       OR (e.typtype IN ('b', 'e', 'd', 'r') AND e.typcategory <> 'Z' AND e.typsend <> 0))";

/// Teaches a new connection of a multiplexed pool every type ([`TYPES_SQL`]), in a
/// transaction of its own (five round trips, once per connection). sqlx looks up a
/// type it does not know with a query of its own between preparing a statement and
/// binding it, which destroys the unnamed statement; sqlx 0.9.1 prepares it again
/// only for a query marked not persistent, not for the unnamed statements a disabled
/// statement cache gives — so the first statement of a connection that reads an
/// enum, a vector or a `tid` would fail with "unnamed prepared statement does not
/// exist". Knowing the types beforehand, sqlx never looks one up later (a type
/// created after the connection opened is the exception: its first use on that
/// connection fails once, and the connection is then taught it).
pub(crate) async fn learn_custom_types(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    use sqlx::{Connection, Row};
    let mut tx = conn.begin().await?;
    let select: String = sqlx::raw_sql(sqlx::AssertSqlSafe(TYPES_SQL))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    if !select.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {select}")))
            .persistent(false)
            .fetch_optional(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Runs `work` on a connection of the primary pool: inside a transaction of its own
/// when the pool is multiplexed (begin and commit: two more round trips), as it is
/// otherwise. For statements that commit on their own (a claim, an outcome batch).
pub(crate) async fn on_primary<T, E>(
    primary: PrimaryPool<'_>,
    map: impl Fn(sqlx::Error) -> E,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
) -> Result<T, E> {
    let mut conn = primary.pool.acquire().await.map_err(&map)?;
    if !primary.multiplexed {
        return work(&mut conn).await;
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(&map)?;
    let value = work(&mut tx).await?;
    tx.commit().await.map_err(&map)?;
    Ok(value)
}

impl Pools for Topology {
    fn primary_pool(&self) -> Result<PrimaryPool<'_>, DbError> {
        Ok(PrimaryPool {
            pool: super::postgres_pool(&self.inner.primary)?,
            multiplexed: self.inner.multiplexed,
        })
    }

    fn session_pool(&self, purpose: SessionUse) -> Result<&PgPool, DbError> {
        super::postgres_pool(self.session(purpose)?)
    }
}

impl Topology {
    /// A transaction on the primary, for one statement when it is multiplexed.
    async fn one_statement(&self) -> Result<Option<DatabaseTransaction>, DbErr> {
        if self.inner.multiplexed {
            Ok(Some(self.inner.primary.begin().await?))
        } else {
            Ok(None)
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Topology {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self.one_statement().await? {
            Some(tx) => {
                let done = tx.execute_raw(stmt).await?;
                tx.commit().await?;
                Ok(done)
            }
            None => self.inner.primary.execute_raw(stmt).await,
        }
    }

    /// The simple protocol: one message, safe through a pooler as it is.
    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.inner.primary.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self.one_statement().await? {
            Some(tx) => {
                let row = tx.query_one_raw(stmt).await?;
                tx.commit().await?;
                Ok(row)
            }
            None => self.inner.primary.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self.one_statement().await? {
            Some(tx) => {
                let rows = tx.query_all_raw(stmt).await?;
                tx.commit().await?;
                Ok(rows)
            }
            None => self.inner.primary.query_all_raw(stmt).await,
        }
    }

    fn support_returning(&self) -> bool {
        true
    }
}

#[async_trait::async_trait]
impl TransactionTrait for Topology {
    type Transaction = DatabaseTransaction;

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.inner.primary.begin().await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.inner
            .primary
            .begin_with_config(isolation_level, access_mode)
            .await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.inner.primary.begin_with_options(options).await
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
        self.inner.primary.transaction(callback).await
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
        self.inner
            .primary
            .transaction_with_config(callback, isolation_level, access_mode)
            .await
    }
}
