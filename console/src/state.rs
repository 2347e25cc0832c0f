//! What every handler shares: the topology, the configuration, the session key,
//! and the doctor's last examination (examined at most once a minute).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum_extra::extract::cookie::Key;
use service::cache::CacheTableStats;
use service::db::Topology;
use service::doctor::Examination;
use tokio::sync::Mutex;

use crate::{ConsoleConfig, PageError};

/// How long the doctor's examination is reused: its ~27 checks run at most once a
/// minute however often pages refresh.
pub(crate) const DOCTOR_REUSE: Duration = Duration::from_secs(60);

/// How long the overview reuses the caches' statistics (each a full scan of its
/// table): a page refreshing every 5 s scans them twice a minute at most.
pub(crate) const CACHE_STATS_REUSE: Duration = Duration::from_secs(30);

/// A value computed at most once per period, shared by every request.
pub(crate) struct Reuse<T> {
    last: Mutex<Option<(Instant, Arc<T>)>>,
    period: Duration,
}

impl<T> Reuse<T> {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            last: Mutex::new(None),
            period,
        }
    }

    /// The value of the last `compute` if it is younger than the period, else a new
    /// one (concurrent callers wait for the one computation).
    pub(crate) async fn get<E>(
        &self,
        compute: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Arc<T>, E> {
        let mut last = self.last.lock().await;
        if let Some((at, value)) = last.as_ref()
            && at.elapsed() < self.period
        {
            return Ok(value.clone());
        }
        let value = Arc::new(compute.await?);
        *last = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}

/// The console's shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) db: Topology,
    pub(crate) config: ConsoleConfig,
    pub(crate) key: Key,
    /// The `SET LOCAL`s of every console transaction (timeout, plans), rendered once.
    pub(crate) timeout_sql: String,
    pub(crate) doctor: Reuse<Examination>,
    pub(crate) cache_stats: Reuse<Vec<CacheTableStats>>,
    /// Whether a rebuild of the vector index started here still runs.
    pub(crate) reindexing: std::sync::atomic::AtomicBool,
}

impl AppState {
    /// The state over `db`: the session key from the configuration (at least 32
    /// bytes) or 64 fresh bytes from the operating system.
    pub fn new(db: Topology, config: ConsoleConfig) -> Result<Self, PageError> {
        let key = match &config.session_key {
            Some(bytes) if bytes.len() < 32 => {
                return Err(PageError::BadRequest(format!(
                    "session key of {} bytes: at least 32",
                    bytes.len()
                )));
            }
            Some(bytes) => Key::derive_from(bytes),
            None => {
                let mut bytes = [0u8; 64];
                getrandom::fill(&mut bytes).map_err(|e| {
                    PageError::Internal(format!("the operating system's generator failed: {e}"))
                })?;
                Key::from(&bytes)
            }
        };
        // Custom plans always: the listing's optional filters (`$1 IS NULL OR …`) plan
        // well only with their values, and a cached generic plan may scan the table.
        // No sequential scan where an index can answer: a filter no index narrows
        // walks the primary key newest first and stops at its LIMIT (a page, or the
        // count cap) instead of reading a queue whole; the timeout bounds the rest.
        let timeout_sql = format!(
            "SET LOCAL statement_timeout = {}; SET LOCAL plan_cache_mode = force_custom_plan; \
             SET LOCAL enable_seqscan = off",
            config.statement_timeout.as_millis().max(1)
        );
        Ok(Self(Arc::new(Inner {
            db,
            config,
            key,
            timeout_sql,
            doctor: Reuse::new(DOCTOR_REUSE),
            cache_stats: Reuse::new(CACHE_STATS_REUSE),
            reindexing: std::sync::atomic::AtomicBool::new(false),
        })))
    }

    /// The topology.
    pub fn db(&self) -> &Topology {
        &self.0.db
    }

    /// The configuration.
    pub fn config(&self) -> &ConsoleConfig {
        &self.0.config
    }
}

impl axum::extract::FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Key {
        state.0.key.clone()
    }
}
