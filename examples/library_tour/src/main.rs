//! `DATABASE_URL=… cargo run -p library-tour`: Strata used from an application, step
//! by step; see [`library_tour`]. `-- --serve` runs the worker until Ctrl-C instead.
//! In this workspace, `cargo run -p cli --bin strata -- db url` prints the embedded
//! development cluster's URL.

use service::error::BoxError;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("DATABASE_URL").map_err(|_| {
        "set DATABASE_URL (here, the embedded cluster's: cargo run -p cli --bin strata -- db url)"
    })?;
    if std::env::args().any(|a| a == "--serve") {
        let db = library_tour::own_pool(&url).await?;
        return library_tour::serve(db).await;
    }
    library_tour::tour(&url, &mut std::io::stdout()).await?;
    Ok(())
}
