//! The shape every background service shares, and the supervisor that runs one: a
//! service that fails is recorded in its health and started again after a pause,
//! while the others go on.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::health::{Probe, ServiceState};
use crate::error::BoxError;

/// A boxed future, as the services' object-safe methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a service learns that the runtime is stopping, and until when its work may
/// finish. Clones share the signal.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<Option<Instant>>);

impl Stop {
    /// A signal not given yet, and the sender that gives it.
    pub(crate) fn new() -> (watch::Sender<Option<Instant>>, Self) {
        let (tx, rx) = watch::channel(None);
        (tx, Self(rx))
    }

    /// Whether the stop was asked.
    pub fn is_requested(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Resolves when the stop is asked, with its deadline (a dropped sender stops
    /// now).
    pub async fn requested(&self) -> Instant {
        let mut rx = self.0.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(deadline) => deadline.unwrap_or_else(Instant::now),
            Err(_) => Instant::now(),
        }
    }
}

/// What a service did, as [`super::RuntimeReport`] gathers it.
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// A queue's worker, and its report.
    Queue(super::QueueReport),
    /// The rescuer, and how many jobs it rescued.
    Rescuer(u64),
    /// The schedule, and how many runs it made.
    Schedule(u64),
    /// A flusher, and its last flush.
    Flush(super::FlushReport),
}

/// One background service: a name (its [`Probe`]) and a run that lasts until the
/// [`Stop`]. A run that returns an error is started again by the supervisor.
pub(crate) trait Service: Send + Sync + 'static {
    /// Where it reports its health.
    fn probe(&self) -> Probe;

    /// Runs until `stop`; what it did.
    fn run(&self, stop: Stop) -> BoxFuture<'_, Result<Ended, BoxError>>;
}

/// The pause before a failed service starts again: 1 s, doubling, at most 30 s.
fn restart_pause(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(30))
}

/// Runs `service` until `stop`, in a task of its own each time, so a panic in the
/// service itself (not in a job: those are failures of the job) is caught like an
/// error: recorded in its health, then a pause, then a new run. Returns what its last
/// run did, or `None` when the stop came while it was failing.
pub(crate) async fn supervise(service: std::sync::Arc<dyn Service>, stop: Stop) -> Option<Ended> {
    let probe = service.probe();
    let mut failures = 0;
    loop {
        probe.set_state(ServiceState::Running);
        let run = {
            let (service, stop) = (std::sync::Arc::clone(&service), stop.clone());
            tokio::spawn(async move { service.run(stop).await })
        };
        let error = match run.await {
            Ok(Ok(ended)) => {
                probe.set_state(ServiceState::Stopped);
                return Some(ended);
            }
            Ok(Err(e)) => e.to_string(),
            Err(join) if join.is_panic() => format!("panicked: {join}"),
            Err(join) => join.to_string(),
        };
        probe.error(&error);
        tracing::warn!(service = %probe.name(), error = %error, "service failed; starting it again");
        if stop.is_requested() {
            probe.set_state(ServiceState::Stopped);
            return None;
        }
        probe.set_state(ServiceState::Restarting);
        tokio::select! {
            _ = tokio::time::sleep(restart_pause(failures)) => {}
            _ = stop.requested() => {
                probe.set_state(ServiceState::Stopped);
                return None;
            }
        }
        failures += 1;
        probe.restarted();
    }
}
