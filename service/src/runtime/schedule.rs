//! The maintenance schedule as a service: what is due runs every interval.

use std::sync::Arc;
use std::time::Duration;

use super::Probe;
use super::service::{BoxFuture, Ended, Service, Stop};
use crate::error::BoxError;
use crate::maintenance::{self, RunOutcome, RunRecord};

/// What the schedule is told of each pass's runs (`strata maintain --every` prints
/// them).
pub type OnRuns = Arc<dyn Fn(&[RunRecord]) + Send + Sync>;

/// How the schedule runs.
#[derive(Clone)]
pub struct ScheduleConfig {
    /// How often it runs what is due ([`maintenance::run_due`]). Default 60 s: the
    /// schedules are cron expressions to the minute.
    pub every: Duration,
    /// The runner name recorded on its runs. Default [`maintenance::runner_name`].
    pub runner: String,
    /// Called with each pass's runs, when there were any.
    pub on_runs: Option<OnRuns>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            runner: maintenance::runner_name(),
            on_runs: None,
        }
    }
}

impl std::fmt::Debug for ScheduleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleConfig")
            .field("every", &self.every)
            .field("runner", &self.runner)
            .field("on_runs", &self.on_runs.is_some())
            .finish()
    }
}

/// Runs [`maintenance::run_due`] every `every` (at least 1 s), from the first tick at
/// start. A run in progress finishes before a stop. Failed runs are recorded by the
/// runner and shown here as errors; the schedule goes on. Costs what the due tasks
/// cost, plus one read of the schedule per tick.
pub(super) struct Schedule {
    db: crate::db::Topology,
    config: ScheduleConfig,
    probe: Probe,
}

impl Schedule {
    pub(super) fn new(db: crate::db::Topology, config: ScheduleConfig) -> Self {
        Self {
            db,
            config,
            probe: Probe::new("schedule"),
        }
    }

    /// One pass; how many runs it made.
    async fn pass(&self) -> u64 {
        let runs = match maintenance::run_due(&self.db, &self.config.runner).await {
            Ok(runs) => runs,
            Err(e) => {
                self.probe.error(format_args!("reading the schedule: {e}"));
                tracing::warn!(error = %e, "maintenance schedule failed");
                return 0;
            }
        };
        self.probe.tick();
        for run in &runs {
            if let RunOutcome::Failure { error } = &run.outcome {
                self.probe.count("failed", 1);
                self.probe
                    .error(format_args!("{}: {error}", run.task.name()));
            }
        }
        self.probe.count("runs", runs.len() as u64);
        if let Some(on_runs) = &self.config.on_runs
            && !runs.is_empty()
        {
            on_runs(&runs);
        }
        runs.len() as u64
    }
}

impl Service for Schedule {
    fn probe(&self) -> Probe {
        self.probe.clone()
    }

    fn run(&self, stop: Stop) -> BoxFuture<'_, Result<Ended, BoxError>> {
        Box::pin(async move {
            let mut total = 0;
            let mut tick = tokio::time::interval(self.config.every.max(Duration::from_secs(1)));
            loop {
                tokio::select! {
                    // A pass is not interrupted by the stop: its runs finish first.
                    _ = tick.tick() => total += self.pass().await,
                    _ = stop.requested() => return Ok(Ended::Schedule(total)),
                }
            }
        })
    }
}
