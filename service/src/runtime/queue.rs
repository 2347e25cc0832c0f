//! A queue's worker as a service of the runtime.

use std::sync::Arc;

use super::service::{BoxFuture, Ended, Service, Stop};
use super::{Probe, QueueReport};
use crate::error::BoxError;
use crate::queue::worker::Worker;

/// Runs one [`Worker`] until the stop, whose deadline bounds how long running jobs
/// may finish. A run that could not start (the database was away) is started again by
/// the supervisor.
pub(super) struct QueueService {
    worker: Arc<Worker>,
}

impl QueueService {
    pub(super) fn new(worker: Worker) -> Self {
        Self {
            worker: Arc::new(worker),
        }
    }
}

impl Service for QueueService {
    fn probe(&self) -> Probe {
        self.worker.probe()
    }

    fn run(&self, stop: Stop) -> BoxFuture<'_, Result<Ended, BoxError>> {
        Box::pin(async move {
            let report = Arc::clone(&self.worker)
                .run_shared(async move { stop.requested().await })
                .await?;
            Ok(Ended::Queue(QueueReport {
                queue: self.worker.table().name(),
                report,
            }))
        })
    }
}
