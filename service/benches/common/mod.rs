//! What the benches share: their own database, medians.

use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use service::error::BoxError;

/// Recreates database `name` on `DATABASE_URL`'s server (else the embedded default
/// cluster) and migrates it; its URL.
pub async fn bench_database(name: &str) -> Result<String, BoxError> {
    let url = devdb::embedded::resolve_url(None)?;
    let admin = Database::connect(
        ConnectOptions::new(service::db::url_with_database(&url, "postgres"))
            .sqlx_logging(false)
            .to_owned(),
    )
    .await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
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
