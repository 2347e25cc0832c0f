//! The integration-test harness: a database per test, cloned from a migrated template.
//!
//! - The server is `DATABASE_URL`'s when set, else the embedded default cluster.
//! - One template database per migration set, `strata_tpl_<hash>`, where the hash
//!   covers the migration names, the migration crate's sources and
//!   `VECTOR_DIMENSION`: a changed set builds a new template. It is built once even
//!   when several test processes start together (a server-side advisory lock), and
//!   marked `IS_TEMPLATE` only when complete, so a build that died is redone.
//! - [`TestDb::new`] creates `strata_t_<pid>_<n>` with `CREATE DATABASE … TEMPLATE`
//!   (a file copy: tens of milliseconds), and dropping the [`TestDb`] drops it again.
//!   Databases left by killed test processes (their pid no longer runs) are dropped
//!   the next time a test process starts.
//!
//! The harness panics on failure: it runs only in tests, where a panic is the report.

pub mod local_api;
pub mod pgbouncer;
pub mod proxy;
pub mod queue;
pub mod replica;
pub mod socket;
pub mod vectors;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use migration::MigratorTrait;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};

/// Advisory-lock key that serialises template builds on the server ("STRATATP").
const TEMPLATE_LOCK_KEY: i64 = 0x5354_5241_5441_5450;
const TEST_DB_PREFIX: &str = "strata_t_";
const TEMPLATE_PREFIX: &str = "strata_tpl_";

/// A database of its own for one test, dropped when this value is dropped.
pub struct TestDb {
    /// The database name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// A pool of up to 10 connections to it, acting as [`test_role`].
    pub db: DatabaseConnection,
    /// The raw-SQL helpers' pool ([`TestDb::sql`] and its kin): the server user that
    /// owns the schema, for a test's set-up and inspection whatever role `db` acts as.
    owner: DatabaseConnection,
}

impl TestDb {
    /// A fresh database with every migration applied (a clone of the template).
    pub async fn new() -> Self {
        let template = template().await;
        Self::create(Some(&template)).await
    }

    /// A fresh, empty database (nothing migrated), for tests of the migrations.
    pub async fn empty() -> Self {
        Self::create(None).await
    }

    async fn create(template: Option<&str>) -> Self {
        let db = Self::create_bare(template).await;
        if template.is_none() {
            db.sql(SUPABASE_PREPARATION).await;
        }
        db
    }

    async fn create_bare(template: Option<&str>) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{TEST_DB_PREFIX}{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin().await;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        admin
            .execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = admin.close().await;
        let owner_url = url_with_database(&server_url(), &name);
        let url = as_test_role(&owner_url);
        let db = pool(&url, 10).await;
        let owner = if url == owner_url {
            db.clone()
        } else {
            pool(&owner_url, 4).await
        };
        Self {
            name,
            url,
            db,
            owner,
        }
    }

    /// The URL of this database as the server user that owns it (a session, straight
    /// to the server: a `DIRECT_URL`).
    pub fn owner_url(&self) -> String {
        url_with_database(&server_url(), &self.name)
    }

    /// Runs `sql` (as the schema's owner) and returns the first column of every row
    /// as text (NULL as "NULL").
    pub async fn column(&self, sql: &str) -> Vec<String> {
        first_column(&self.sql(sql).await)
    }

    /// Runs `sql`, which must return one row with one column, as text.
    pub async fn scalar(&self, sql: &str) -> String {
        let rows = self.column(sql).await;
        assert_eq!(rows.len(), 1, "expected one row from {sql}, got {rows:?}");
        rows.into_iter().next().unwrap_or_default()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // FORCE ends this test's pooled connections.
        admin_blocking(vec![format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )]);
    }
}

/// Runs `statements` on the server's `postgres` database, in order, ignoring their
/// errors, from a `Drop`: drop cannot await and the test's runtime may be shutting
/// down, so a thread with a runtime of its own does it, and this waits for it.
fn admin_blocking(statements: Vec<String>) {
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime for clean-up statements");
        rt.block_on(async move {
            let admin = admin().await;
            for sql in statements {
                let _ = admin.execute_unprepared(&sql).await;
            }
            let _ = admin.close().await;
        });
    });
    let _ = handle.join();
}

/// The server's URL (its `postgres` database): `DATABASE_URL`'s server when set, else
/// the embedded cluster's (started on demand).
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let url = devdb::embedded::database_url().expect("a PostgreSQL server for the tests");
        url_with_database(&url, "postgres")
    })
    .clone()
}

/// `url` with its database replaced by `db` (see [`service::db::url_with_database`]).
pub use service::db::url_with_database;

/// A login role of one test's own (a superuser with a password, so it logs in under
/// trust and password authentication alike), for connections the test can cut off:
/// [`OutageRole::cut_off`] is an outage as that role's sessions see it — their
/// connections are terminated and no new one is accepted — while the test's own
/// connections go on. Dropped (sessions ended, role removed) with this value.
pub struct OutageRole {
    /// The role's name.
    pub name: String,
    /// `url` (a test database's) with this role as its user.
    pub url: String,
}

impl OutageRole {
    /// Creates the role for `t`'s database.
    pub async fn new(t: &TestDb) -> Self {
        let name = format!("{}_role", t.name);
        t.sql(&format!(
            "CREATE ROLE \"{name}\" LOGIN SUPERUSER PASSWORD 'outage'"
        ))
        .await;
        let (scheme, rest) = t.url.split_once("://").expect("a URL with a scheme");
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let url = format!("{scheme}://{name}:outage@{host}");
        Self { name, url }
    }

    /// Refuses the role's new connections and terminates its sessions. Two round
    /// trips on `t`.
    pub async fn cut_off(&self, t: &TestDb) {
        for sql in self.cut_off_statements() {
            t.sql(&sql).await;
        }
    }

    fn cut_off_statements(&self) -> [String; 2] {
        let name = &self.name;
        [
            format!("ALTER ROLE \"{name}\" NOLOGIN"),
            format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{name}'"
            ),
        ]
    }
}

impl Drop for OutageRole {
    fn drop(&mut self) {
        let mut statements = self.cut_off_statements().to_vec();
        statements.push(format!("DROP ROLE IF EXISTS \"{}\"", self.name));
        admin_blocking(statements);
    }
}

/// A pool of at most `max` connections to `url`, statement logging off.
pub async fn pool(url: &str, max: u32) -> DatabaseConnection {
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(max)
        .min_connections(0)
        .sqlx_logging(false);
    Database::connect(opt)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A pool like [`pool`], or `None` when `url` cannot be reached now (a test that
/// waits through an outage).
pub async fn pool_checked(url: &str, max: u32) -> Option<DatabaseConnection> {
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(max)
        .min_connections(0)
        .connect_timeout(std::time::Duration::from_secs(2))
        .acquire_timeout(std::time::Duration::from_secs(2))
        .sqlx_logging(false);
    Database::connect(opt).await.ok()
}

/// Like [`column`], `None` on any error (a test that waits through an outage).
pub async fn column_checked(db: &impl ConnectionTrait, sql: &str) -> Option<Vec<String>> {
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .ok()?;
    rows.iter().map(|row| text_at(row, 0).ok()).collect()
}

/// Runs `sql` on `db` and returns the first column of every row as text.
pub async fn column(db: &impl ConnectionTrait, sql: &str) -> Vec<String> {
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .map(|row| text_at(row, 0).unwrap_or_else(|e| panic!("{sql}: {e}")))
        .collect()
}

/// Column `i` of `row` as text, whatever its type (NULL as "NULL").
pub fn text_at(row: &sea_orm::QueryResult, i: usize) -> Result<String, DbErr> {
    if let Ok(v) = row.try_get_by_index::<Option<String>>(i) {
        return Ok(v.unwrap_or_else(|| "NULL".into()));
    }
    if let Ok(v) = row.try_get_by_index::<Option<i64>>(i) {
        return Ok(v.map_or("NULL".into(), |v| v.to_string()));
    }
    if let Ok(v) = row.try_get_by_index::<Option<i32>>(i) {
        return Ok(v.map_or("NULL".into(), |v| v.to_string()));
    }
    if let Ok(v) = row.try_get_by_index::<Option<bool>>(i) {
        return Ok(v.map_or("NULL".into(), |v| v.to_string()));
    }
    if let Ok(v) = row.try_get_by_index::<Option<f64>>(i) {
        return Ok(v.map_or("NULL".into(), |v| v.to_string()));
    }
    Err(DbErr::Type(format!(
        "column {i} is not text, integer, boolean or float: cast it to text in the query"
    )))
}

/// The role the tests' connections act as: `STRATA_TEST_ROLE` when set (for example
/// `service_role`, Supabase's `BYPASSRLS` role that owns nothing), else the server
/// user the migrations ran as, which owns every table.
pub fn test_role() -> Option<String> {
    std::env::var("STRATA_TEST_ROLE")
        .ok()
        .filter(|r| !r.is_empty())
}

/// `url` whose sessions act as [`test_role`] (`SET ROLE` at connection start, the
/// connection parameter `role`), or `url` itself when none is set.
pub fn as_test_role(url: &str) -> String {
    match test_role() {
        Some(role) => with_role(url, &role),
        None => url.to_owned(),
    }
}

/// `url` whose sessions act as `role` from their start (`options[role]=…`: the
/// server's `SET ROLE`, as Supabase's API does for its roles).
pub fn with_role(url: &str, role: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options[role]={role}")
}

/// What Supabase does to every project's database before any migration of the
/// application runs, so every test database is prepared the same way (the template
/// and [`TestDb::empty`]): the client roles `anon` and `authenticated` and the
/// `service_role` (`BYPASSRLS`), `USAGE` on `public` for all three, and default
/// privileges that grant them every table, sequence and function created in `public`
/// afterwards. Roles are cluster-wide: each is created in a block that accepts losing
/// the race to another database.
pub const SUPABASE_PREPARATION: &str = r#"
DO $prep$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN NOINHERIT; END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $prep$;
DO $prep$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN NOINHERIT; END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $prep$;
DO $prep$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS; END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $prep$;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
"#;

/// A one-connection pool to the server's `postgres` database.
async fn admin() -> DatabaseConnection {
    pool(&server_url(), 1).await
}

/// The name of the template for the compiled migration set.
pub fn template_name() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let names: Vec<String> = migration::Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let dimension = std::env::var("VECTOR_DIMENSION").unwrap_or_default();
    let key = format!(
        "{}|{}|{}|{}",
        names.join(","),
        env!("STRATA_MIGRATIONS_HASH"),
        dimension,
        SUPABASE_PREPARATION
    );
    for b in key.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{TEMPLATE_PREFIX}{hash:016x}")
}

/// Makes sure the migrated template exists (once per process; across processes the
/// advisory lock makes one build it while the others wait) and returns its name.
pub async fn template() -> String {
    static READY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    // The cell's value is a plain string, so sharing it across test runtimes is safe.
    READY
        .get_or_init(|| async {
            let name = template_name();
            let admin = admin().await;
            admin
                .execute_unprepared(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
                .await
                .expect("template lock");
            drop_stale_databases(&admin, &name).await;
            let ready = column(
                &admin,
                &format!("SELECT datistemplate::text FROM pg_database WHERE datname = '{name}'"),
            )
            .await;
            if ready.first().map(String::as_str) != Some("true") {
                if !ready.is_empty() {
                    // A build that died half-way: start over.
                    admin
                        .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                        .await
                        .expect("drop half-built template");
                }
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create template database");
                let url = url_with_database(&server_url(), &name);
                let prepare = pool(&url, 1).await;
                prepare
                    .execute_unprepared(SUPABASE_PREPARATION)
                    .await
                    .unwrap_or_else(|e| panic!("preparing the template {name}: {e}"));
                let _ = prepare.close().await;
                migration::up(&url)
                    .await
                    .unwrap_or_else(|e| panic!("migrating the template {name}: {e}"));
                admin
                    .execute_unprepared(&format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE true"))
                    .await
                    .expect("mark template");
            }
            admin
                .execute_unprepared(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
                .await
                .expect("template unlock");
            let _ = admin.close().await;
            name
        })
        .await
        .clone()
}

/// Drops test databases whose process is gone and templates of other migration sets.
async fn drop_stale_databases(admin: &DatabaseConnection, keep_template: &str) {
    let names = column(
        admin,
        &format!(
            "SELECT datname::text FROM pg_database WHERE datname LIKE '{TEST_DB_PREFIX}%' OR datname LIKE '{TEMPLATE_PREFIX}%'"
        ),
    )
    .await;
    for name in names {
        let stale = if let Some(rest) = name.strip_prefix(TEMPLATE_PREFIX) {
            rest != keep_template.trim_start_matches(TEMPLATE_PREFIX)
        } else {
            let pid = name
                .trim_start_matches(TEST_DB_PREFIX)
                .split('_')
                .next()
                .unwrap_or("");
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        };
        if stale {
            let _ = admin
                .execute_unprepared(&format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE false"))
                .await;
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

/// Rows as text, the way psql shows them: every column of every row of every result
/// of `sql` (NULL as "NULL"), or the error.
pub type Rows = Result<Vec<Vec<String>>, sea_orm::sqlx::Error>;

impl TestDb {
    /// Runs `sql` (one or more statements, verbatim) with the simple-query protocol on
    /// one of the owner's connections and returns every row as text, or the error.
    pub async fn try_sql(&self, sql: &str) -> Rows {
        let pool = self.owner.get_postgres_connection_pool();
        let mut conn = pool.acquire().await?;
        let rows = sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut *conn)
            .await;
        text_rows(rows)
    }

    /// [`TestDb::try_sql`] that panics on an error.
    pub async fn sql(&self, sql: &str) -> Vec<Vec<String>> {
        self.try_sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}\n=> {e}"))
    }

    /// Runs `sql` inside a transaction that is always rolled back, on one connection:
    /// for the seeds' destructive statements (rollback DROPs, re-created indexes) and
    /// for session settings such as `SET LOCAL enable_seqscan = off`.
    pub async fn rolled_back(&self, sql: &str) -> Rows {
        let pool = self.owner.get_postgres_connection_pool();
        let mut conn = pool.acquire().await?;
        sea_orm::sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
        let rows = sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut *conn)
            .await;
        sea_orm::sqlx::raw_sql("ROLLBACK")
            .execute(&mut *conn)
            .await?;
        text_rows(rows)
    }
}

fn text_rows(rows: Result<Vec<sea_orm::sqlx::postgres::PgRow>, sea_orm::sqlx::Error>) -> Rows {
    use sea_orm::sqlx::Row;
    Ok(rows?
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    // The simple-query protocol returns every value in text form.
                    row.try_get_unchecked::<Option<String>, _>(i)
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "NULL".into())
                })
                .collect()
        })
        .collect())
}

/// The SQLSTATE of a database error, for matching errors by kind.
pub fn sqlstate(err: &sea_orm::sqlx::Error) -> String {
    err.as_database_error()
        .and_then(|e| e.code().map(|c| c.into_owned()))
        .unwrap_or_else(|| format!("not a database error: {err}"))
}

/// The first column of each row.
pub fn first_column(rows: &[Vec<String>]) -> Vec<String> {
    rows.iter().map(|r| r[0].clone()).collect()
}

/// The whole text of an EXPLAIN's rows.
pub fn plan_text(rows: &[Vec<String>]) -> String {
    first_column(rows).join("\n")
}
