//! Connecting to the database and describing what is in it.

pub mod binary_copy;
mod own_connection;
mod replicas;
mod session;
mod statement;
mod topology;

pub(crate) use own_connection::OwnConnection;
pub use replicas::{Lsn, ReadYourWrites, Reader, ReplicaConfig, ReplicaStatus, ServedBy};
pub(crate) use session::SessionConnection;
pub(crate) use statement::execute_on;
pub(crate) use topology::on_primary;
pub use topology::{
    DatabaseUrls, Pools, PrimaryPool, SessionUse, Topology, multiplexed, split_urls,
};

use crate::error::DbError;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, Statement};

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// PostgreSQL refused or could not be reached.
    #[error("cannot connect to {url}: {source}")]
    Database {
        /// The URL tried, password removed.
        url: String,
        /// The driver's error.
        source: DbErr,
    },
    /// A replica URL goes through a transaction-mode pooler: replicas are read over
    /// sessions (their statements are not wrapped in transactions), so name the
    /// replica itself or a session-mode pooler.
    #[error("replica {url} goes through a transaction-mode pooler; give its direct URL")]
    PooledReplica {
        /// The URL, password removed.
        url: String,
    },
}

/// Opens a connection pool of at most `max_connections` to `url`, with SQL statement
/// logging off. The library never starts a database: `url` is whatever the
/// application was given (the `strata` command and the tests resolve their embedded
/// default themselves). Nothing here is needed for speed: sqlx (0.9.1 and later) sets
/// `TCP_NODELAY` on its sockets, so a pool an application builds with
/// `Database::connect(url)` is as fast. One round trip per connection opened.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, ConnectError> {
    topology::open(url, max_connections, false).await
}

/// The sqlx PostgreSQL pool under `db`, for the components that need sessions of
/// their own (a cache's lock and flush connections, a worker's claimer). A
/// connection of another kind (SeaORM's mock or proxy connections, a disconnected
/// one) is a typed error, not the panic of `get_postgres_connection_pool`.
pub fn postgres_pool(db: &DatabaseConnection) -> Result<&sea_orm::sqlx::PgPool, DbError> {
    match &db.inner {
        sea_orm::DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
            Ok(db.get_postgres_connection_pool())
        }
        _ => Err(DbError::Other {
            code: None,
            message: "this component needs a PostgreSQL connection pool (sqlx-postgres); \
                      got another kind of SeaORM connection"
                .into(),
        }),
    }
}

/// Whether `db`'s connections are encrypted (TLS), as the server reports for the one
/// this query runs on. One round trip.
pub async fn connection_encrypted(db: &impl ConnectionTrait) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get("", "ssl")?,
        None => false,
    })
}

/// `url` with its database (path) replaced by `db`; query parameters are kept.
pub fn url_with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    match query {
        Some(q) => format!("{scheme}://{authority}/{db}?{q}"),
        None => format!("{scheme}://{authority}/{db}"),
    }
}

/// `url` with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// What a database holds: server and extension versions, migrations, and the
/// project's objects in schema `public`, counted by kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inventory {
    /// `server_version` of the server.
    pub server_version: String,
    /// Installed pgvector version, if the extension exists in this database.
    pub pgvector_version: Option<String>,
    /// Names of the applied migrations, in order.
    pub applied: Vec<String>,
    /// Names of the migrations not applied yet.
    pub pending: Vec<String>,
    /// Base tables in `public` (without `seaql_migrations`), sorted.
    pub tables: Vec<String>,
    /// Views in `public`, sorted.
    pub views: Vec<String>,
    /// Materialized views in `public`, sorted.
    pub materialized_views: Vec<String>,
    /// Number of indexes on tables in `public`.
    pub indexes: i64,
    /// Functions in `public` that no extension owns, sorted.
    pub functions: Vec<String>,
    /// Number of user triggers on tables in `public`.
    pub triggers: i64,
    /// Number of row-level-security policies in `public`.
    pub policies: i64,
    /// Enum types in `public`, sorted.
    pub enums: Vec<String>,
}

/// The catalogue's answer for [`inventory`].
#[derive(FromQueryResult)]
struct Catalogue {
    server_version: String,
    pgvector_version: Option<String>,
    tables: Vec<String>,
    views: Vec<String>,
    matviews: Vec<String>,
    indexes: i64,
    functions: Vec<String>,
    triggers: i64,
    policies: i64,
    enums: Vec<String>,
    has_migration_table: bool,
}

/// What schema `public` holds, by kind, in one round trip: the system catalogues,
/// which have no entities.
const CATALOGUE_SQL: &str = r#"
SELECT
  current_setting('server_version') AS server_version,
  (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_version,
  ARRAY(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'seaql_migrations'
        ORDER BY 1) AS tables,
  ARRAY(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'v' ORDER BY 1) AS views,
  ARRAY(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'm' ORDER BY 1) AS matviews,
  (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'seaql_migrations') AS indexes,
  ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        ORDER BY 1) AS functions,
  (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND NOT t.tgisinternal) AS triggers,
  (SELECT count(*) FROM pg_policies WHERE schemaname = 'public') AS policies,
  ARRAY(SELECT t.typname::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'public' AND t.typtype = 'e' ORDER BY 1) AS enums,
  to_regclass('seaql_migrations') IS NOT NULL AS has_migration_table
"#;

/// The applied migrations, from the migrator's own table (no entity: the migration
/// crate owns it).
const APPLIED_MIGRATIONS_SQL: &str = "SELECT version FROM seaql_migrations ORDER BY version";

/// Whether the migrator's table exists.
const HAS_MIGRATION_TABLE_SQL: &str =
    "SELECT to_regclass('seaql_migrations') IS NOT NULL AS has_migration_table";

/// The applied migrations, in order, from the migrator's table (which must exist).
async fn read_applied(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        APPLIED_MIGRATIONS_SQL,
    ))
    .await?
    .iter()
    .map(|r| r.try_get("", "version"))
    .collect()
}

/// The applied migrations of `db`, in order; `None` when the migrator's table does
/// not exist (nothing was ever migrated). Two round trips (one when it does not).
pub async fn applied_migrations(db: &impl ConnectionTrait) -> Result<Option<Vec<String>>, DbErr> {
    let present = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            HAS_MIGRATION_TABLE_SQL,
        ))
        .await?
        .map(|r| r.try_get::<bool>("", "has_migration_table"))
        .transpose()?
        .unwrap_or(false);
    if present {
        Ok(Some(read_applied(db).await?))
    } else {
        Ok(None)
    }
}

/// Reads the [`Inventory`] of `db`, given the names of the migrations the caller
/// knows (in order; `migration::names()`): those recorded in `seaql_migrations` are
/// applied, the others pending. Two round trips (the catalogue, the migration table;
/// one when the table does not exist yet).
pub async fn inventory(
    db: &impl ConnectionTrait,
    migrations: &[String],
) -> Result<Inventory, DbErr> {
    let row = Catalogue::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        CATALOGUE_SQL,
    ))
    .one(db)
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("catalogue query returned no row".into()))?;
    let applied = if row.has_migration_table {
        read_applied(db).await?
    } else {
        Vec::new()
    };
    let pending = migrations
        .iter()
        .filter(|name| !applied.contains(name))
        .cloned()
        .collect();
    Ok(Inventory {
        server_version: row.server_version,
        pgvector_version: row.pgvector_version,
        applied,
        pending,
        tables: row.tables,
        views: row.views,
        materialized_views: row.matviews,
        indexes: row.indexes,
        functions: row.functions,
        triggers: row.triggers,
        policies: row.policies,
        enums: row.enums,
    })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[tokio::test]
    async fn components_refuse_a_connection_that_is_not_a_postgres_pool() {
        use crate::cache::{CacheConfig, CacheError, pdf::PdfCache, pdf::PdfSettings};
        use crate::queue::{JOBS, QueueError, worker::Worker, worker::WorkerConfig};
        let disconnected = sea_orm::DatabaseConnection::default();
        assert!(matches!(
            super::postgres_pool(&disconnected),
            Err(super::DbError::Other { code: None, .. })
        ));
        assert!(matches!(
            PdfCache::new(
                disconnected.clone(),
                CacheConfig::default(),
                PdfSettings::default()
            ),
            Err(CacheError::Database(super::DbError::Other { .. }))
        ));
        assert!(matches!(
            Worker::new(disconnected, JOBS, WorkerConfig::default()),
            Err(QueueError::Database(super::DbError::Other { .. }))
        ));
    }

    #[test]
    fn url_with_database_keeps_the_rest() {
        use super::url_with_database;
        assert_eq!(
            url_with_database("postgres://u:p@h:5/a?sslmode=require", "b"),
            "postgres://u:p@h:5/b?sslmode=require"
        );
        assert_eq!(url_with_database("postgres://h", "b"), "postgres://h/b");
    }

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact("postgres://u@h:5/db"), "postgres://u@h:5/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("not a url"), "not a url");
    }
}
