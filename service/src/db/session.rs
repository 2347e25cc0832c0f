//! A SeaORM connection over one sqlx connection a component holds (for a step that
//! needs the session itself, such as `COPY`), so the statements the rest of the crate
//! sends through `ConnectionTrait` run on it unchanged.

use std::sync::Arc;

use sea_orm::sqlx::{self, PgConnection};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement};
use tokio::sync::Mutex;

use super::statement::sqlx_query as query;

/// `ConnectionTrait` over a borrowed sqlx connection (or open sqlx transaction): each
/// call is one round trip on it, prepared and cached as sqlx does; calls take turns.
/// Database errors keep their class (they are SeaORM's `Exec` / `Query` errors over
/// the sqlx error, as on a pooled connection).
pub(crate) struct SessionConnection<'a> {
    conn: Mutex<&'a mut PgConnection>,
}

impl<'a> SessionConnection<'a> {
    /// Statements on `conn` until this is dropped.
    pub(crate) fn new(conn: &'a mut PgConnection) -> Self {
        Self {
            conn: Mutex::new(conn),
        }
    }
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
}

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

#[async_trait::async_trait]
impl ConnectionTrait for SessionConnection<'_> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        let done = query(stmt).execute(&mut **conn).await.map_err(exec_err)?;
        Ok(done.into())
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut **conn)
            .await
            .map_err(exec_err)?;
        Ok(done.into())
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        let row = query(stmt)
            .fetch_optional(&mut **conn)
            .await
            .map_err(query_err)?;
        Ok(row.map(Into::into))
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        let rows = query(stmt)
            .fetch_all(&mut **conn)
            .await
            .map_err(query_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    fn support_returning(&self) -> bool {
        true
    }
}
