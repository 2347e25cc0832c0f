//! The flushers: what buffers writes in memory (the caches' bookkeeping, the search
//! log) is written by the runtime, on a timer, when a buffer fills, and at the stop.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::Probe;
use super::service::{BoxFuture, Ended, Service, Stop};
use crate::error::BoxError;

/// Something that buffers writes in memory and must be flushed: each cache (its
/// bookkeeping) and the search log. Given to [`super::RuntimeBuilder::flush`], it is
/// flushed by the runtime from then on; without a runtime it flushes itself.
pub trait Flush: Send + Sync + 'static {
    /// Its name in the runtime's health (`pdf_cache`, `search_logs`…).
    fn flush_name(&self) -> String;

    /// How often it wants its buffer written.
    fn flush_interval(&self) -> Duration;

    /// Writes what is buffered now.
    fn write_buffered(&self) -> BoxFuture<'_, Result<(), BoxError>>;

    /// Resolves when its buffer filled up before the interval ended (never, for one
    /// that writes full buffers itself).
    fn buffer_full(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }

    /// Stops the timer it runs on its own: the runtime flushes it from now on.
    fn hand_over_flushing(&self);
}

/// How a flusher's last flush, at the stop, went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlushReport {
    /// What was flushed.
    pub name: String,
    /// Flushes it made while running (the last one included).
    pub flushes: u64,
    /// The last flush's error, when it failed: what was buffered stays buffered in
    /// the component, for a later flush.
    pub error: Option<String>,
}

/// Flushes one [`Flush`] every `flush_interval`, when its buffer fills, and once more
/// at the stop. A failed flush is recorded in its health and tried again at the next
/// tick; the other services are not affected. One statement per table written, per
/// flush.
pub(super) struct Flusher {
    target: Arc<dyn Flush>,
    probe: Probe,
}

impl Flusher {
    pub(super) fn new(target: Arc<dyn Flush>) -> Self {
        let probe = Probe::new(format!("flush:{}", target.flush_name()));
        target.hand_over_flushing();
        Self { target, probe }
    }

    async fn write(&self) -> Result<(), String> {
        self.probe.tick();
        match self.target.write_buffered().await {
            Ok(()) => {
                self.probe.count("flushes", 1);
                Ok(())
            }
            Err(e) => {
                self.probe.error(&e);
                tracing::warn!(flusher = %self.probe.name(), error = %e, "flush failed; will retry");
                Err(e.to_string())
            }
        }
    }
}

impl Service for Flusher {
    fn probe(&self) -> Probe {
        self.probe.clone()
    }

    fn run(&self, stop: Stop) -> BoxFuture<'_, Result<Ended, BoxError>> {
        Box::pin(async move {
            let mut tick = tokio::time::interval(self.target.flush_interval());
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = self.target.buffer_full() => {}
                    _ = stop.requested() => break,
                }
                let _ = self.write().await;
            }
            let error = self.write().await.err();
            Ok(Ended::Flush(FlushReport {
                name: self.target.flush_name(),
                flushes: self.probe.counted("flushes"),
                error,
            }))
        })
    }
}
