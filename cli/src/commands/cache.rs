//! `strata cache stats|cleanup|evict|purge`: the four caches from a terminal. A
//! `--dry-run` runs the real statements in a transaction and rolls it back, so the
//! count it prints is exactly what the change would remove.

use anyhow::{Context, bail};
use sea_orm::TransactionTrait;
use serde::Serialize;
use service::cache::{self, CACHES, CacheKind, Purge};
use service::db::Topology;
use service::maintenance::{self, RunOutcome, Task};

use super::Output;
use super::output::or_dash;
use crate::cli::CacheCommand;

/// What a clean-up, eviction or purge removed (or would remove).
#[derive(Serialize)]
struct Removed {
    cache: CacheKind,
    what: String,
    rows: u64,
    dry_run: bool,
}

/// Runs `strata cache …`.
pub async fn run(db: &Topology, command: CacheCommand, out: &mut Output<'_>) -> anyhow::Result<()> {
    let runner = maintenance::runner_name();
    match command {
        CacheCommand::Stats => stats(db, out).await,
        CacheCommand::Cleanup { kind, dry_run } => {
            let kinds = kind.map_or(CACHES.to_vec(), |k| vec![k]);
            let mut removed = Vec::new();
            let mut failures = Vec::new();
            for kind in kinds {
                let task = cleanup_task(kind)?;
                let outcome = if dry_run {
                    let txn = db.begin().await?;
                    let record = maintenance::run(&txn, task, &runner).await;
                    txn.rollback().await?;
                    record
                } else {
                    // Recorded (and audited) as `strata maintain run` records it,
                    // a failure too.
                    maintenance::run(db, task, &runner).await
                };
                match outcome?.outcome {
                    RunOutcome::Success(report) => removed.push(Removed {
                        cache: kind,
                        what: task.name().to_owned(),
                        rows: report.rows_affected,
                        dry_run,
                    }),
                    RunOutcome::Failure { error } => {
                        failures.push(format!("{}: {error}", task.name()));
                    }
                }
            }
            show_removed(out, &removed)?;
            if !failures.is_empty() {
                bail!("clean-up failed: {}", failures.join("; "));
            }
            Ok(())
        }
        CacheCommand::Evict {
            max,
            kind,
            dry_run,
            by,
        } => purge(db, kind, Purge::KeepRecent(max), dry_run, by, out).await,
        CacheCommand::Purge {
            kind,
            expired,
            all: _,
            dry_run,
            by,
        } => {
            let what = if expired { Purge::Expired } else { Purge::All };
            purge(db, kind, what, dry_run, by, out).await
        }
    }
}

/// The seeds' clean-up of each cache, as a maintenance task: the first task the
/// cache registry lists for it.
fn cleanup_task(kind: CacheKind) -> anyhow::Result<Task> {
    kind.cleanup_task()
        .map(Task::Cache)
        .with_context(|| format!("the {kind} cache has no clean-up task"))
}

/// An audited purge (or LRU eviction) of one cache.
async fn purge(
    db: &Topology,
    kind: CacheKind,
    what: Purge,
    dry_run: bool,
    by: Option<String>,
    out: &mut Output<'_>,
) -> anyhow::Result<()> {
    let actor = match by {
        Some(email) => Some(super::user_id(db, &email).await?),
        None => None,
    };
    let txn = db.begin().await?;
    let rows = cache::purge(&txn, kind, what, actor).await?;
    if dry_run {
        txn.rollback().await?;
    } else {
        txn.commit().await?;
    }
    let what = match what {
        Purge::Expired => "expired".to_owned(),
        Purge::All => "all".to_owned(),
        Purge::KeepRecent(max) => format!("beyond the {max} most recent"),
    };
    show_removed(
        out,
        &[Removed {
            cache: kind,
            what,
            rows,
            dry_run,
        }],
    )
}

/// Prints what went (or would go).
fn show_removed(out: &mut Output<'_>, removed: &[Removed]) -> anyhow::Result<()> {
    let rows = removed
        .iter()
        .map(|r| {
            vec![
                r.cache.to_string(),
                r.what.clone(),
                if r.dry_run {
                    format!("{} (dry run: nothing removed)", r.rows)
                } else {
                    r.rows.to_string()
                },
            ]
        })
        .collect();
    out.show(&removed, &["cache", "removed", "rows"], rows)
}

/// Prints each cache's numbers.
async fn stats(db: &Topology, out: &mut Output<'_>) -> anyhow::Result<()> {
    let stats = cache::cache_stats(&db.reader().await).await?;
    let rows = stats
        .iter()
        .map(|s| {
            vec![
                s.kind.to_string(),
                s.entries.to_string(),
                service::doctor::human_bytes(s.total_bytes),
                s.hits.to_string(),
                s.hit_rate
                    .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
                or_dash(s.expired),
                or_dash(s.newest.map(|t| t.format("%Y-%m-%d %H:%M").to_string())),
            ]
        })
        .collect();
    out.show(
        &stats,
        &[
            "cache", "entries", "size", "hits", "hit rate", "expired", "newest",
        ],
        rows,
    )
}
