//! One file per command family; each writes to the [`Output`] it is given.

pub mod audit;
pub mod cache;
pub mod db;
pub mod docs;
pub mod doctor;
pub mod jobs;
pub mod maintain;
pub mod output;
pub mod review;
pub mod serve;
pub mod users;
pub mod worker;

pub use output::Output;

use anyhow::Context;
use service::db::{DatabaseUrls, Topology, split_urls};
use uuid::Uuid;

/// The pool of a command that is not the worker: a few connections.
pub const POOL_SIZE: u32 = 4;

/// The URLs: `--database-url` (or the embedded default), `--direct-url` and
/// `--replica-urls`.
pub fn urls(
    url: Option<&str>,
    direct_url: Option<&str>,
    replica_urls: Option<&str>,
) -> anyhow::Result<DatabaseUrls> {
    let url = devdb::embedded::resolve_url(url)?;
    let mut urls = DatabaseUrls::new(url);
    urls.direct_url = direct_url.map(str::to_owned);
    urls.replica_urls = replica_urls.map(split_urls).unwrap_or_default();
    Ok(urls)
}

/// Connects the topology of `urls` with pools of `pool_size`.
pub async fn connect(urls: &DatabaseUrls, pool_size: u32) -> anyhow::Result<Topology> {
    Ok(Topology::connect(urls, pool_size).await?)
}

/// The id of the user with `email`; an error naming it when there is none.
pub async fn user_id(db: &Topology, email: &str) -> anyhow::Result<Uuid> {
    service::accounts::get_user_by_email(db, email)
        .await?
        .map(|u| u.id)
        .with_context(|| format!("no user with email {email:?}"))
}

/// A page from its arguments.
pub fn page(args: crate::cli::PageArgs) -> anyhow::Result<service::page::Page> {
    Ok(service::page::Page::new(args.limit, args.offset)?)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
