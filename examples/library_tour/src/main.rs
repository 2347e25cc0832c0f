//! `cargo run -p library-tour` (on `DATABASE_URL`, or the embedded default
//! database): Strata used from an application, step by step; see [`library_tour`].
//! `-- --serve` runs the worker until Ctrl-C instead.

use service::error::BoxError;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = devdb::embedded::database_url()?;
    if std::env::args().any(|a| a == "--serve") {
        let db = library_tour::own_pool(&url).await?;
        return library_tour::serve(db).await;
    }
    library_tour::tour(&url, &mut std::io::stdout()).await?;
    Ok(())
}
