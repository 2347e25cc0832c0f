//! A connection of a component's own, outside the application's pool.

use sea_orm::sqlx;

/// A connection of a component's own, outside the pool, for its batched writes (the
/// queue worker's claims and outcomes, a cache's bookkeeping flushes): they never
/// wait for a pooled connection nor take one from the traffic. By default they commit
/// with `synchronous_commit = off` — a crash of the server may lose the last such
/// commit, which these writers tolerate (a queue delivers at least once; bookkeeping
/// is statistics); [`OwnConnection::synchronous_commit`] turns that off. Opened on
/// first use and again after an error (see [`OwnConnection::run`]).
pub(crate) struct OwnConnection {
    options: std::sync::Arc<sqlx::postgres::PgConnectOptions>,
    settings: &'static [(&'static str, &'static str)],
    synchronous_commit: bool,
    conn: Option<sqlx::PgConnection>,
}

/// Applies the session settings (names, values) in one round trip; the aggregate
/// makes every `set_config` run (SeaORM has no statement for a session setting).
const APPLY_SETTINGS_SQL: &str = "SELECT count(set_config(name, value, false))
     FROM unnest($1::text[], $2::text[]) AS s(name, value)";

impl OwnConnection {
    /// A connection like `pool`'s, not opened yet.
    pub(crate) fn new(pool: &sqlx::PgPool) -> Self {
        Self::with_settings(pool, &[])
    }

    /// Like [`OwnConnection::new`], with more session settings (name, value), made
    /// when the connection opens, in the same round trip as `synchronous_commit`.
    pub(crate) fn with_settings(
        pool: &sqlx::PgPool,
        settings: &'static [(&'static str, &'static str)],
    ) -> Self {
        Self {
            options: pool.connect_options(),
            settings,
            synchronous_commit: false,
            conn: None,
        }
    }

    /// Whether its commits wait for the WAL flush (default `false`).
    pub(crate) fn synchronous_commit(mut self, on: bool) -> Self {
        self.synchronous_commit = on;
        self
    }

    /// The connection, opened (and set up: one more round trip) if needed.
    async fn get(&mut self) -> Result<&mut sqlx::PgConnection, sqlx::Error> {
        use sqlx::Connection;
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let mut conn = sqlx::PgConnection::connect_with(&self.options).await?;
                let commit = if self.synchronous_commit { "on" } else { "off" };
                let settings = [("synchronous_commit", commit)]
                    .into_iter()
                    .chain(self.settings.iter().copied());
                let (names, values): (Vec<&str>, Vec<&str>) = settings.unzip();
                sqlx::query(APPLY_SETTINGS_SQL)
                    .bind(names)
                    .bind(values)
                    .execute(&mut conn)
                    .await?;
                conn
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// Runs `write` on the connection, opened first if needed (`connect_error` maps a
    /// failure to open it). After any error the connection is dropped, so the next
    /// call starts on a fresh one.
    pub(crate) async fn run<T, E>(
        &mut self,
        connect_error: impl FnOnce(sqlx::Error) -> E,
        write: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let result = match self.get().await {
            Ok(conn) => write(conn).await,
            Err(e) => Err(connect_error(e)),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}
