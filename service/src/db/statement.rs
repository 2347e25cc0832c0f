//! Running a SeaORM [`Statement`] on a sqlx connection of a component's own (the
//! connection that holds a cache key's advisory lock, a worker's claimer): the same
//! statement a caller's transaction runs through `ConnectionTrait`, so each write is
//! written once whichever connection carries it.

use sea_orm::Statement;
use sea_orm::sqlx::{self, PgConnection};
use sea_query_sqlx::SqlxValues;

/// Executes `stmt` on `conn` as a prepared (cached) statement; how many rows it
/// changed. One round trip.
pub(crate) async fn execute_on(
    conn: &mut PgConnection,
    stmt: Statement,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx_query(stmt).execute(conn).await?.rows_affected())
}

/// `stmt` as a sqlx query with its values bound.
pub(crate) fn sqlx_query(
    stmt: Statement,
) -> sqlx::query::Query<'static, sqlx::Postgres, SqlxValues> {
    let values = SqlxValues(stmt.values.unwrap_or(sea_orm::Values(Vec::new())));
    sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql), values)
}
