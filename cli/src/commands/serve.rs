//! `strata serve`: the web console (the `console` crate) on `--listen` until Ctrl-C
//! or SIGTERM. It prints where it listens on stderr and serves no page without a
//! token of `strata users token create`.

use std::sync::Arc;

use anyhow::Context;
use console::ConsoleConfig;
use service::db::DatabaseUrls;
use service::doctor::Expectations;

use super::Output;
use crate::cli::ServeArgs;

/// The console's pools: a page's read, a sign-in check, an action, a background
/// reindex or maintenance run at once.
const POOL_SIZE: u32 = 8;

/// Connects, builds the console and serves it until a shutdown signal.
pub async fn run(
    urls: &DatabaseUrls,
    args: ServeArgs,
    _out: &mut Output<'_>,
) -> anyhow::Result<()> {
    let db = super::connect(urls, POOL_SIZE).await?;
    let mut config = ConsoleConfig::new(Expectations::new(migration::names()));
    config.read_only = args.read_only;
    config.statement_timeout = args.statement_timeout;
    config.secure_cookie = args.secure_cookie;
    config.session_key = args.session_key.map(String::into_bytes);
    config.urls = Some(urls.clone());
    if let Some(which) = args.embed {
        config.embedder = Some(Arc::new(super::docs::load_embedder(which)?));
    }
    let app = console::router(db.clone(), config)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "strata serve: the console is on http://{addr}/{} (sign in with a token of \
         `strata users token create EMAIL`; Ctrl-C stops it)",
        if args.read_only { " (read-only)" } else { "" }
    );
    let served = console::serve(listener, app, super::shutdown_signal()).await;
    db.close().await;
    served.with_context(|| format!("serving on {addr}"))
}
