//! `strata jobs list|show|enqueue|stats|retry|cancel` on either queue. A bulk retry or
//! cancel by filter shows its count first and changes nothing without `--yes`.

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;
use service::db::Topology;
use service::queue::{self, JobFilter, NewJob, QueueTable};

use super::Output;
use super::output::{count_of, or_dash};
use crate::cli::{BulkArgs, JobFilterArgs, JobsArgs, JobsCommand, QueueArg};

/// The queue's table.
fn table(queue: QueueArg) -> QueueTable {
    match queue {
        QueueArg::Jobs => queue::JOBS,
        QueueArg::Ai => queue::AI_ANNOTATION_JOBS,
    }
}

fn filter(args: JobFilterArgs) -> JobFilter {
    JobFilter {
        status: args.status,
        job_type: args.job_type,
        ..JobFilter::default()
    }
}

/// Runs `strata jobs …`.
pub async fn run(db: &Topology, args: JobsArgs, out: &mut Output<'_>) -> anyhow::Result<()> {
    let table = table(args.queue);
    match args.command {
        JobsCommand::List {
            filter: f,
            limit,
            before,
        } => {
            let reader = db.reader().await;
            let jobs = queue::list_jobs(&reader, table, &filter(f), before, limit).await?;
            let rows = jobs
                .iter()
                .map(|j| {
                    vec![
                        j.id.to_string(),
                        j.job_type.clone(),
                        j.status.to_string(),
                        format!("{}/{}", j.attempts, j.max_attempts),
                        j.run_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        or_dash(j.last_error.clone()),
                    ]
                })
                .collect();
            out.show(
                &jobs,
                &["id", "type", "status", "attempts", "run at", "last error"],
                rows,
            )
        }
        JobsCommand::Show { id } => {
            let job = queue::show_job(&db.reader().await, table, id)
                .await?
                .with_context(|| format!("no job {id} in {}", table.name()))?;
            let s = &job.summary;
            let rows = vec![
                vec!["id".into(), s.id.to_string()],
                vec!["type".into(), s.job_type.clone()],
                vec!["status".into(), s.status.to_string()],
                vec!["priority".into(), s.priority.to_string()],
                vec![
                    "attempts".into(),
                    format!("{}/{}", s.attempts, s.max_attempts),
                ],
                vec!["run at".into(), s.run_at.to_rfc3339()],
                vec!["locked by".into(), or_dash(s.locked_by.clone())],
                vec!["created".into(), s.created_at.to_rfc3339()],
                vec![
                    "completed".into(),
                    or_dash(s.completed_at.map(|t| t.to_rfc3339())),
                ],
                vec!["last error".into(), or_dash(s.last_error.clone())],
                vec!["payload".into(), job.payload.to_string()],
                vec![
                    "result".into(),
                    or_dash(job.result.as_ref().map(Value::to_string)),
                ],
            ];
            out.show(&job, &["field", "value"], rows)
        }
        JobsCommand::Enqueue {
            job_type,
            payload,
            priority,
            delay,
            max_attempts,
            dedup_key,
        } => {
            let payload: Value = serde_json::from_str(&payload).context("payload is not JSON")?;
            let id = match args.queue {
                QueueArg::Jobs => {
                    let mut job = NewJob::new(job_type, payload).priority(priority);
                    if let Some(delay) = delay {
                        let delay = chrono::Duration::from_std(delay).context("delay")?;
                        let at = chrono::Utc::now()
                            .checked_add_signed(delay)
                            .context("--delay is too far in the future")?;
                        job = job.run_at(at);
                    }
                    if let Some(n) = max_attempts {
                        job = job.max_attempts(n);
                    }
                    if let Some(key) = dedup_key {
                        job = job.dedup_key(key);
                    }
                    queue::enqueue_one(db, job).await?
                }
                QueueArg::Ai => {
                    if priority != 0
                        || delay.is_some()
                        || max_attempts.is_some()
                        || dedup_key.is_some()
                    {
                        bail!(
                            "--queue ai takes no --priority, --delay, --max-attempts or --dedup-key: \
                             an annotation job is one per image and provider"
                        );
                    }
                    let provider = service::provider::parse(&job_type)?;
                    let image = payload
                        .get("image_id")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok())
                        .context("the payload names no image: {\"image_id\": \"<uuid>\"}")?;
                    service::vision::request_annotations(db, image, provider, None).await?
                }
            };
            #[derive(Serialize)]
            struct Enqueued<'a> {
                id: uuid::Uuid,
                queue: &'a str,
            }
            out.done(
                &Enqueued {
                    id,
                    queue: table.name(),
                },
                &format!("enqueued {id} in {}", table.name()),
            )
        }
        JobsCommand::Stats => {
            let reader = db.reader().await;
            let counts = queue::counts(&reader, table).await?;
            let wait = queue::oldest_pending_age(&reader, table).await?;
            #[derive(Serialize)]
            struct Stats<'a> {
                queue: &'a str,
                counts: &'a [queue::StatusCount],
                oldest_runnable_wait_seconds: Option<f64>,
            }
            let mut rows: Vec<Vec<String>> = counts
                .iter()
                .map(|c| {
                    vec![
                        c.status.to_string(),
                        c.job_type.clone(),
                        c.count.to_string(),
                    ]
                })
                .collect();
            rows.push(vec![
                "oldest runnable wait".into(),
                "-".into(),
                wait.map_or("none".into(), |w| format!("{:.1}s", w.as_secs_f64())),
            ]);
            out.show(
                &Stats {
                    queue: table.name(),
                    counts: &counts,
                    oldest_runnable_wait_seconds: wait.map(|w| w.as_secs_f64()),
                },
                &["status", "type", "jobs"],
                rows,
            )
        }
        JobsCommand::Retry(bulk) => change(db, table, bulk, Change::Retry, out).await,
        JobsCommand::Cancel(bulk) => change(db, table, bulk, Change::Cancel, out).await,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Retry,
    Cancel,
}

/// What a retry or cancel did (or would do, without `--yes`).
#[derive(Serialize)]
struct Changed {
    action: &'static str,
    matching: i64,
    changed: u64,
    confirmed: bool,
}

/// Retries or cancels one job, or every job matching the filter once `--yes` says so.
async fn change(
    db: &Topology,
    table: QueueTable,
    bulk: BulkArgs,
    what: Change,
    out: &mut Output<'_>,
) -> anyhow::Result<()> {
    let action = match what {
        Change::Retry => "retry",
        Change::Cancel => "cancel",
    };
    if let Some(id) = bulk.id {
        let changed = match what {
            Change::Retry => queue::retry_failed(db, table, &[id]).await?,
            Change::Cancel => u64::from(queue::cancel(db, table, id).await?),
        };
        if changed == 0 {
            match what {
                Change::Retry => bail!("job {id} is not failed (or does not exist)"),
                Change::Cancel => bail!("job {id} is not pending or running (or does not exist)"),
            }
        }
        let done = Changed {
            action,
            matching: 1,
            changed,
            confirmed: true,
        };
        return out.done(&done, &format!("{action}: job {id}"));
    }
    let f = filter(bulk.filter);
    // With --yes, the change itself says how many it changed (one statement: no job
    // enqueued between a count and the change is counted wrong); without, the count.
    let (matching, changed) = if bulk.yes {
        let changed = match what {
            Change::Retry => queue::retry_matching(db, table, &f).await?,
            Change::Cancel => queue::cancel_matching(db, table, &f).await?,
        };
        (changed as i64, changed)
    } else {
        let matching = queue::count_matching(db, table, &f).await?;
        let matching = match what {
            Change::Retry => matching.retryable,
            Change::Cancel => matching.cancellable,
        };
        (matching, 0)
    };
    let message = if bulk.yes {
        format!("{action}: {}", count_of(changed as i64, "job"))
    } else {
        format!(
            "{} match; run again with --yes to {action} them (nothing changed)",
            if matching > queue::COUNT_CAP {
                format!("{} jobs", queue::capped(matching))
            } else {
                count_of(matching, "job")
            }
        )
    };
    out.done(
        &Changed {
            action,
            matching,
            changed,
            confirmed: bulk.yes,
        },
        &message,
    )
}
