//! The overview: per queue its depth, oldest runnable job, running jobs, failures of
//! the last hour, expired leases and a throughput sparkline; per cache entries, size
//! and hit rate; the next and the failing maintenance runs; the doctor's warn and
//! fail counts; replica lag. The live part reloads every 5 s while the tab is shown.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use sea_orm::DatabaseTransaction;
use service::cache;
use service::doctor::Status;
use service::maintenance;
use service::queue::{self, QueueTable};

use super::{Chrome, Done, queue_name, render};
use crate::auth::Viewer;
use crate::format::{age, maybe_time, percent, time_fixed};
use crate::{AppState, PageError, sparkline};

/// One queue's card.
pub(crate) struct QueueCard {
    pub(crate) name: &'static str,
    pub(crate) table: &'static str,
    pub(crate) runnable: String,
    pub(crate) oldest: String,
    pub(crate) running: String,
    pub(crate) failed_last_hour: String,
    pub(crate) expired_leases: String,
    pub(crate) completed_last_hour: i64,
    pub(crate) sparkline: String,
}

/// One cache's line.
pub(crate) struct CacheLine {
    pub(crate) name: &'static str,
    pub(crate) entries: i64,
    pub(crate) size: String,
    pub(crate) hit_rate: String,
}

/// One maintenance task's line.
pub(crate) struct TaskLine {
    pub(crate) task: String,
    pub(crate) enabled: bool,
    pub(crate) next_run: String,
    pub(crate) last_status: String,
    pub(crate) failing: bool,
}

/// One replica's line.
pub(crate) struct ReplicaLine {
    pub(crate) url: String,
    pub(crate) state: &'static str,
    pub(crate) lag: String,
}

/// One service of the runtime in this process.
pub(crate) struct ServiceLine {
    pub(crate) name: String,
    pub(crate) state: String,
    pub(crate) last_tick: String,
    pub(crate) errors: u64,
    pub(crate) restarts: u64,
    pub(crate) last_error: String,
    pub(crate) counts: String,
}

/// What the live part shows.
pub(crate) struct Live {
    pub(crate) queues: Vec<QueueCard>,
    pub(crate) caches: Vec<CacheLine>,
    pub(crate) tasks: Vec<TaskLine>,
    pub(crate) failing_tasks: usize,
    pub(crate) doctor_warn: usize,
    pub(crate) doctor_fail: usize,
    pub(crate) replicas: Vec<ReplicaLine>,
    pub(crate) services: Vec<ServiceLine>,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    live: Live,
}

#[derive(Template)]
#[template(path = "overview_live.html")]
struct OverviewLive {
    live: Live,
}

/// `GET /`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let live = gather(&state).await?;
    Ok(render(OverviewPage {
        chrome: Chrome::new(&state, viewer, "Overview").with_flash(&done),
        live,
    }))
}

/// `GET /overview/live`: the live part alone, for htmx.
pub(crate) async fn live(State(state): State<AppState>) -> Result<Response, PageError> {
    let live = gather(&state).await?;
    Ok(render(OverviewLive { live }).into_response())
}

async fn queue_card(txn: &DatabaseTransaction, table: QueueTable) -> Result<QueueCard, PageError> {
    let o = queue::overview(txn, table).await?;
    let minutes = queue::throughput(txn, table).await?;
    Ok(QueueCard {
        name: queue_name(table),
        table: table.name(),
        runnable: queue::capped(o.runnable),
        oldest: o
            .oldest_runnable_seconds
            .map_or_else(|| "–".to_owned(), age),
        running: queue::capped(o.running),
        failed_last_hour: queue::capped(o.failed_last_hour),
        expired_leases: queue::capped(o.expired_leases),
        completed_last_hour: minutes.iter().sum(),
        sparkline: sparkline(&minutes, 240, 36),
    })
}

/// Everything the overview shows. Queries: two per queue and the task list in one
/// read transaction (a replica when there is one); the cache statistics and the
/// doctor reused across requests (30 s and 60 s); replica lag as last seen.
async fn gather(state: &AppState) -> Result<Live, PageError> {
    let txn = state.read().await?;
    let mut queues = Vec::new();
    for table in [queue::JOBS, queue::AI_ANNOTATION_JOBS] {
        queues.push(queue_card(&txn, table).await?);
    }
    let tasks: Vec<TaskLine> = maintenance::list(&txn)
        .await?
        .into_iter()
        .map(|t| TaskLine {
            failing: t.last_status.as_deref() == Some("failure"),
            last_status: t.last_status.unwrap_or_else(|| "never run".to_owned()),
            next_run: time_fixed(t.next_run_at),
            enabled: t.enabled,
            task: t.task,
        })
        .collect();
    let stats = state
        .0
        .cache_stats
        .get(async { cache::cache_stats(&txn).await })
        .await?;
    txn.commit().await?;
    let caches = stats
        .iter()
        .map(|s| CacheLine {
            name: s.kind.name(),
            entries: s.entries,
            size: service::doctor::human_bytes(s.total_bytes),
            hit_rate: percent(s.hit_rate),
        })
        .collect();
    let doctor = super::doctor::examination(state).await?;
    // What the topology last saw of each replica (it asks them at most every 250 ms
    // as reads are routed): no round trip per refresh.
    let replicas = state
        .db()
        .replica_status()
        .into_iter()
        .map(|r| ReplicaLine {
            state: if !r.up {
                "down"
            } else if !r.in_recovery {
                "promoted"
            } else {
                "streaming"
            },
            lag: format!("{:.1} s", r.lag.as_secs_f64()),
            url: r.url,
        })
        .collect();
    let services = state
        .config()
        .runtime
        .as_ref()
        .map(|r| r.health())
        .unwrap_or_default()
        .into_iter()
        .map(|h| ServiceLine {
            state: format!("{:?}", h.state).to_lowercase(),
            last_tick: maybe_time(h.last_tick),
            errors: h.errors,
            restarts: h.restarts,
            last_error: h.last_error.unwrap_or_default(),
            counts: h
                .counts
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            name: h.name,
        })
        .collect();
    Ok(Live {
        services,
        failing_tasks: tasks.iter().filter(|t| t.failing).count(),
        tasks,
        queues,
        caches,
        doctor_warn: doctor.count(Status::Warn),
        doctor_fail: doctor.count(Status::Fail),
        replicas,
    })
}
