//! The web console behind `strata serve`: an operator's view of queues, caches,
//! documents, reviews, maintenance, audit and the doctor, rendered on the server
//! (axum, askama, and htmx served from the binary — no build step, no CDN).
//!
//! Closed by default: no page without sign-in (a token of `strata users token
//! create`, kept as a signed, HttpOnly, SameSite=Strict session cookie, or sent as
//! `Authorization: Bearer`), every route checked against one table of route to
//! permission ([`routes::ROUTES`]), every form POST of a session carrying its CSRF
//! token, `--read-only` refusing every change in one layer, and every query under
//! `SET LOCAL statement_timeout`. Reads go to a replica when the topology has one.
//!
//! [`router`] builds the application; [`serve`] runs it on a listener.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use service::db::{DatabaseUrls, Topology};
use service::doctor::Expectations;
use service::runtime::HealthSource;
use service::store::AnyEmbedder;

mod assets;
mod auth;
mod db;
mod error;
mod format;
mod pages;
mod redact;
pub mod routes;
mod sparkline;
mod state;

pub use error::PageError;
pub use redact::redact;
pub use sparkline::sparkline;
pub use state::AppState;

/// How the console behaves.
pub struct ConsoleConfig {
    /// Refuse every request that changes anything (403), in one layer.
    pub read_only: bool,
    /// The `statement_timeout` of every query the console sends (default 2 s).
    pub statement_timeout: Duration,
    /// The key that signs session cookies (at least 32 bytes); `None` draws one from
    /// the operating system at start, so sessions end when the process does.
    pub session_key: Option<Vec<u8>>,
    /// How long a session lasts at most (default 12 h; never past its token).
    pub session_lifetime: Duration,
    /// Mark the session cookie `Secure` (served behind HTTPS).
    pub secure_cookie: bool,
    /// What the doctor page expects (the migrations this build knows).
    pub doctor: Expectations,
    /// The URLs, for the doctor's connection checks; `None` skips them.
    pub urls: Option<DatabaseUrls>,
    /// The search box's embedder (queries are embedded with it); `None`: the
    /// documents page says there is none and searches nothing.
    pub embedder: Option<Arc<AnyEmbedder>>,
    /// The health of a [`service::runtime::Runtime`] running in this process (its
    /// workers, rescuer, schedule and flushers), shown on the overview.
    pub runtime: Option<HealthSource>,
}

impl ConsoleConfig {
    /// The defaults: writable, 2 s statements, a fresh key, 12 h sessions, a plain
    /// HTTP cookie, no embedder.
    pub fn new(doctor: Expectations) -> Self {
        Self {
            read_only: false,
            statement_timeout: Duration::from_secs(2),
            session_key: None,
            session_lifetime: Duration::from_secs(12 * 3600),
            secure_cookie: false,
            doctor,
            urls: None,
            embedder: None,
            runtime: None,
        }
    }
}

/// The console as an axum [`Router`] over `db` (pages, actions, sign-in and the
/// static files), with its layers: read-only, then sign-in, permission and CSRF
/// on every route.
pub fn router(db: Topology, config: ConsoleConfig) -> Result<Router, PageError> {
    let state = AppState::new(db, config)?;
    Ok(routes::build(state))
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
