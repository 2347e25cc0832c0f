//! What each background service says about itself while it runs: the snapshot
//! [`crate::runtime::RuntimeHandle::health`] returns, which `strata worker` and the web
//! console read.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Built, not started yet.
    Idle,
    /// Running.
    Running,
    /// It failed and is waiting to start again (see [`ServiceHealth::last_error`]).
    Restarting,
    /// A stop was asked; it is finishing its work.
    Stopping,
    /// It ended.
    Stopped,
}

/// A snapshot of one service's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceHealth {
    /// The service's name (`queue:jobs`, `rescuer`, `schedule`, `flush:pdf_cache`…).
    pub name: String,
    /// Where it is.
    pub state: ServiceState,
    /// When it last did its work (a claim, a tick, a flush).
    pub last_tick: Option<DateTime<Utc>>,
    /// Its last error: a failed statement, a handler's panic, a failed flush.
    pub last_error: Option<String>,
    /// When that was.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Errors so far.
    pub errors: u64,
    /// Times it was started again after failing.
    pub restarts: u64,
    /// What it did, by name (`completed`, `failed`, `rescued`, `runs`, `flushes`…).
    pub counts: BTreeMap<&'static str, u64>,
}

/// Where a service writes its health; clones share it. Each update takes a mutex for
/// a few instructions: no I/O.
#[derive(Debug, Clone)]
pub struct Probe(Arc<Mutex<ServiceHealth>>);

impl Probe {
    /// The probe of a service named `name`, idle, with nothing counted.
    pub fn new(name: impl Into<String>) -> Self {
        Self(Arc::new(Mutex::new(ServiceHealth {
            name: name.into(),
            state: ServiceState::Idle,
            last_tick: None,
            last_error: None,
            last_error_at: None,
            errors: 0,
            restarts: 0,
            counts: BTreeMap::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, ServiceHealth> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The service's name.
    pub fn name(&self) -> String {
        self.lock().name.clone()
    }

    /// A copy of what it says now.
    pub fn snapshot(&self) -> ServiceHealth {
        self.lock().clone()
    }

    /// Records that it did its work now.
    pub fn tick(&self) {
        self.lock().last_tick = Some(Utc::now());
    }

    /// Records an error (and the time).
    pub fn error(&self, error: impl Display) {
        let mut health = self.lock();
        health.errors += 1;
        health.last_error = Some(error.to_string());
        health.last_error_at = Some(Utc::now());
    }

    /// Adds `n` to the count `what`.
    pub fn count(&self, what: &'static str, n: u64) {
        if n > 0 {
            *self.lock().counts.entry(what).or_default() += n;
        }
    }

    /// The count `what` (0 when never counted).
    pub fn counted(&self, what: &'static str) -> u64 {
        self.lock().counts.get(what).copied().unwrap_or(0)
    }

    /// Sets its state.
    pub(crate) fn set_state(&self, state: ServiceState) {
        self.lock().state = state;
    }

    /// Counts a restart.
    pub(crate) fn restarted(&self) {
        self.lock().restarts += 1;
    }
}
