//! `strata review list|approve|reject|stats`.

use service::db::Topology;
use service::provider;
use service::queue::JobStatus;
use service::review::{self, PendingFilter};

use super::Output;
use super::output::{count_of, or_dash};
use crate::cli::ReviewCommand;

/// Runs `strata review …`.
pub async fn run(
    db: &Topology,
    command: ReviewCommand,
    out: &mut Output<'_>,
) -> anyhow::Result<()> {
    match command {
        ReviewCommand::List {
            provider,
            min_confidence,
            max_confidence,
            page,
        } => {
            let provider = provider.map(|p| service::provider::parse(&p)).transpose()?;
            let filter = PendingFilter {
                provider,
                min_confidence,
                max_confidence,
            };
            let pending = review::pending(&db.reader().await, &filter, super::page(page)?).await?;
            let rows = pending
                .iter()
                .map(|p| {
                    vec![
                        p.id.to_string(),
                        p.label.clone(),
                        format!("{:.3}", p.confidence),
                        provider::name(&p.provider).to_owned(),
                        or_dash(p.species.clone()),
                        p.image_url.clone(),
                    ]
                })
                .collect();
            out.show(
                &pending,
                &[
                    "annotation",
                    "label",
                    "confidence",
                    "provider",
                    "species",
                    "image",
                ],
                rows,
            )
        }
        ReviewCommand::Approve { id, by } => {
            let reviewer = super::user_id(db, &by).await?;
            let decided = review::approve(db, id, reviewer).await?;
            out.done(&decided, &format!("approved {id} ({})", decided.label))
        }
        ReviewCommand::Reject { id, by } => {
            let reviewer = super::user_id(db, &by).await?;
            let decided = review::reject(db, id, reviewer).await?;
            out.done(&decided, &format!("rejected {id} ({})", decided.label))
        }
        ReviewCommand::Stats => {
            let reader = db.reader().await;
            let reviewers = review::reviewer_stats(&reader).await?;
            let jobs = review::ai_job_stats(&reader).await?;
            let value = serde_json::json!({"reviewers": reviewers, "ai_jobs": jobs});
            let mut rows: Vec<Vec<String>> = reviewers
                .iter()
                .map(|r| {
                    vec![
                        format!("reviewer {}", r.reviewer_email),
                        format!(
                            "{}: {} approved, {} rejected",
                            count_of(r.total_reviews, "review"),
                            r.approved_count,
                            r.rejected_count
                        ),
                    ]
                })
                .collect();
            rows.extend(jobs.iter().map(|j| {
                vec![
                    format!(
                        "{} jobs {}",
                        provider::name(&j.provider),
                        JobStatus::from(j.status.clone())
                    ),
                    format!(
                        "{}, {}",
                        count_of(j.job_count, "job"),
                        count_of(j.annotations_created.unwrap_or(0), "annotation")
                    ),
                ]
            }));
            out.show(&value, &["what", "count"], rows)
        }
    }
}
