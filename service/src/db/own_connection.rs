//! A connection of a component's own, outside the application's pool.

use sea_orm::sqlx;

use super::PrimaryPool;

/// A connection of a component's own, outside the pool, for its batched writes (the
/// queue worker's claims and outcomes, a cache's bookkeeping flushes): they never
/// wait for a pooled connection nor take one from the traffic. By default they commit
/// with `synchronous_commit = off` — a crash of the server may lose the last such
/// commit, which these writers tolerate (a queue delivers at least once; bookkeeping
/// is statistics); [`OwnConnection::synchronous_commit`] turns that off. Opened on
/// first use and again after an error (see [`OwnConnection::run`]).
///
/// Through a transaction-mode pooler (a multiplexed [`PrimaryPool`]) the connection is
/// no session: each [`OwnConnection::run`] is a transaction of its own, opened with
/// its settings as `SET LOCAL` in one simple-protocol message and committed after —
/// two more round trips than on a session.
pub(crate) struct OwnConnection {
    options: std::sync::Arc<sqlx::postgres::PgConnectOptions>,
    settings: &'static [(&'static str, &'static str)],
    synchronous_commit: bool,
    multiplexed: bool,
    conn: Option<sqlx::PgConnection>,
}

/// Applies the session settings (names, values) in one round trip; the aggregate
/// makes every `set_config` run (SeaORM has no statement for a session setting).
const APPLY_SETTINGS_SQL: &str = "SELECT count(set_config(name, value, false))
     FROM unnest($1::text[], $2::text[]) AS s(name, value)";

impl OwnConnection {
    /// A connection like `primary`'s, not opened yet.
    pub(crate) fn new(primary: PrimaryPool<'_>) -> Self {
        Self::with_settings(primary, &[])
    }

    /// Like [`OwnConnection::new`], with more session settings (name, value), made
    /// when the connection opens, in the same round trip as `synchronous_commit`.
    pub(crate) fn with_settings(
        primary: PrimaryPool<'_>,
        settings: &'static [(&'static str, &'static str)],
    ) -> Self {
        Self {
            options: primary.pool.connect_options(),
            settings,
            synchronous_commit: false,
            multiplexed: primary.multiplexed,
            conn: None,
        }
    }

    /// The settings as (name, value) pairs, `synchronous_commit` first.
    fn settings(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        let commit = if self.synchronous_commit { "on" } else { "off" };
        [("synchronous_commit", commit)]
            .into_iter()
            .chain(self.settings.iter().copied())
    }

    /// `BEGIN` and the settings as `SET LOCAL`, for one message (names and values are
    /// this crate's constants, never a caller's text).
    fn begin_sql(&self) -> String {
        let mut sql = String::from("BEGIN");
        for (name, value) in self.settings() {
            sql.push_str(&format!("; SET LOCAL {name} TO '{value}'"));
        }
        sql
    }

    /// Whether its commits wait for the WAL flush (default `false`).
    pub(crate) fn synchronous_commit(mut self, on: bool) -> Self {
        self.synchronous_commit = on;
        self
    }

    /// The connection, taken out (opened and set up — one more round trip, five
    /// through a pooler — if there was none): a run that does not end well, or is
    /// cancelled, never puts it back.
    async fn take(&mut self) -> Result<sqlx::PgConnection, sqlx::Error> {
        use sqlx::Connection;
        Ok(match self.conn.take() {
            Some(conn) => conn,
            None => {
                let mut conn = sqlx::PgConnection::connect_with(&self.options).await?;
                if self.multiplexed {
                    super::topology::learn_custom_types(&mut conn).await?;
                } else {
                    let (names, values): (Vec<&str>, Vec<&str>) = self.settings().unzip();
                    sqlx::query(APPLY_SETTINGS_SQL)
                        .bind(names)
                        .bind(values)
                        .execute(&mut conn)
                        .await?;
                }
                conn
            }
        })
    }

    /// Runs `write` on the connection, opened first if needed (`connect_error` maps a
    /// driver failure outside `write`). After any error, or if this future is
    /// dropped before it ends, the connection is closed, so the next call starts on a
    /// fresh one and never inside a half-done transaction.
    pub(crate) async fn run<T, E>(
        &mut self,
        connect_error: impl FnOnce(sqlx::Error) -> E,
        write: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let begin = self.multiplexed.then(|| self.begin_sql());
        let mut conn = match self.take().await {
            Ok(conn) => conn,
            Err(e) => return Err(connect_error(e)),
        };
        let result = match begin {
            None => write(&mut conn).await,
            Some(begin) => in_transaction(&mut conn, &begin, connect_error, write).await,
        };
        if result.is_ok() {
            self.conn = Some(conn);
        }
        result
    }
}

/// `write` inside `BEGIN` (with `begin`'s settings) and `COMMIT`, both in the simple
/// protocol. On an error the transaction is left open: [`OwnConnection::run`] then
/// closes the connection, which ends it.
async fn in_transaction<T, E>(
    conn: &mut sqlx::PgConnection,
    begin: &str,
    connect_error: impl FnOnce(sqlx::Error) -> E,
    write: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, E>,
) -> Result<T, E> {
    let raw = |sql: &str| sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()));
    if let Err(e) = raw(begin).execute(&mut *conn).await {
        return Err(connect_error(e));
    }
    let value = write(&mut *conn).await?;
    match raw("COMMIT").execute(&mut *conn).await {
        Ok(_) => Ok(value),
        Err(e) => Err(connect_error(e)),
    }
}
