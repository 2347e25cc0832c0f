//! The lease rescuer: the one place expired leases are returned to pending.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::Probe;
use super::service::{BoxFuture, Ended, Service, Stop};
use crate::error::BoxError;
use crate::queue::{self, QueueTable};

/// The wake-up after a rescue: a `NOTIFY` on the table's channel, so idle workers
/// claim the rescued jobs now (SeaORM has no builder for it).
const WAKE_SQL: &str = "SELECT pg_notify($1, '')";

/// How the rescuer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RescuerConfig {
    /// How often it looks for expired leases. Default 15 s (half the default lease).
    pub interval: Duration,
    /// First back-off of a rescued job's next attempt; doubles each attempt. Default
    /// 1 s, as the workers' retries.
    pub retry_base: Duration,
    /// Longest back-off. Default 1 h.
    pub retry_max: Duration,
}

impl Default for RescuerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
        }
    }
}

/// Every `interval`, returns the running jobs whose lease expired (their worker died,
/// froze or lost the database) to pending — or to failed at their last attempt — on
/// each table the runtime works, and wakes the workers when it did. One statement per
/// table per tick (plus a `NOTIFY` when it rescued), on a pooled connection. Several
/// processes' rescuers are safe together: the statement locks the rows it changes.
pub(super) struct Rescuer {
    db: crate::db::Topology,
    tables: Vec<QueueTable>,
    config: RescuerConfig,
    probe: Probe,
}

impl Rescuer {
    pub(super) fn new(
        db: crate::db::Topology,
        tables: Vec<QueueTable>,
        config: RescuerConfig,
    ) -> Self {
        Self {
            db,
            tables,
            config,
            probe: Probe::new("rescuer"),
        }
    }

    /// One pass over the tables; how many jobs it rescued. A table that fails is
    /// recorded and the others still run.
    async fn pass(&self) -> u64 {
        let mut rescued = 0;
        for &table in &self.tables {
            let (base, max) = (self.config.retry_base, self.config.retry_max);
            match queue::rescue_expired(&self.db, table, base, max).await {
                Ok(0) => {}
                Ok(n) => {
                    rescued += n;
                    tracing::info!(queue = table.name(), jobs = n, "rescued expired leases");
                    let wake = Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        WAKE_SQL,
                        [table.channel().into()],
                    );
                    if let Err(e) = self.db.execute_raw(wake).await {
                        tracing::debug!(queue = table.name(), error = %e, "wake-up after a rescue failed");
                    }
                }
                Err(e) => {
                    self.probe.error(format_args!("{}: {e}", table.name()));
                    tracing::warn!(queue = table.name(), error = %e, "rescue failed");
                }
            }
        }
        self.probe.count("rescued", rescued);
        self.probe.tick();
        rescued
    }
}

impl Service for Rescuer {
    fn probe(&self) -> Probe {
        self.probe.clone()
    }

    fn run(&self, stop: Stop) -> BoxFuture<'_, Result<Ended, BoxError>> {
        Box::pin(async move {
            let mut rescued = 0;
            let mut tick = tokio::time::interval(self.config.interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => rescued += self.pass().await,
                    _ = stop.requested() => return Ok(Ended::Rescuer(rescued)),
                }
            }
        })
    }
}
