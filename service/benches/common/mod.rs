//! What the benches share: their own database, medians.

use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use service::error::BoxError;

/// Recreates database `name` on `DATABASE_URL`'s server (else the embedded default
/// cluster) and migrates it; its URL.
#[allow(dead_code)] // each bench uses one of the two
pub async fn bench_database(name: &str) -> Result<String, BoxError> {
    database(name, true).await
}

/// Database `name`, created when missing and migrated, its rows kept between runs;
/// its URL.
#[allow(dead_code)] // each bench uses one of the two
pub async fn kept_database(name: &str) -> Result<String, BoxError> {
    database(name, false).await
}

async fn database(name: &str, fresh: bool) -> Result<String, BoxError> {
    let url = devdb::embedded::resolve_url(None)?;
    let admin = Database::connect(
        ConnectOptions::new(service::db::url_with_database(&url, "postgres"))
            .sqlx_logging(false)
            .to_owned(),
    )
    .await?;
    if fresh {
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
    }
    let exists = admin
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        ))
        .await?
        .is_some();
    if !exists {
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
    }
    admin.close().await?;
    let bench_url = service::db::url_with_database(&url, name);
    migration::up(&bench_url).await?;
    Ok(bench_url)
}

/// The median of `xs` (the upper one of an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Bench database `name`'s URL straight to the server without TLS (the pooler
/// comparisons' direct side: PgBouncer's own connections carry no TLS either).
#[allow(dead_code)] // the queue and cache benches use it
pub fn plain_tcp_url(name: &str) -> Result<String, BoxError> {
    let server = devdb::embedded::resolve_url(None)?;
    Ok(service::db::url_with_database(&server, name).replace("sslmode=require", "sslmode=disable"))
}
