//! Review decisions: each checks the reviewer's permission, decides only a pending AI
//! annotation (one statement, so of two reviewers at once one wins), and writes its
//! audit row, all in one transaction (a savepoint inside the caller's).

use entity::annotations::{self, Column};
use entity::sea_orm_active_enums::{AiProvider, ReviewStatus};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveEnum, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    Statement, TransactionSession, TransactionTrait, UpdateMany,
};
use serde_json::json;
use uuid::Uuid;

use super::ReviewError;
use crate::audit::{self, AuditEvent, Outcome};
use crate::error::InvalidInput;
use crate::provider;
use crate::vision::BoundingBox;

/// The permission a reviewer needs (moderators and admins have it).
const REVIEW_PERMISSION: &str = "annotations.review";

/// What the reviewer fixes before approving.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Correction {
    /// The right label.
    pub label: Option<String>,
    /// The right box.
    pub bounding_box: Option<BoundingBox>,
}

/// A reviewer's decision on one annotation.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The AI got it right.
    Approve,
    /// The AI got it wrong.
    Reject,
    /// The AI was close: fix it, then approve.
    Correct(Correction),
}

impl Decision {
    fn action(&self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
            Decision::Correct(_) => "correct",
        }
    }

    fn status_name(&self) -> &'static str {
        status_name(&self.status())
    }

    fn status(&self) -> ReviewStatus {
        match self {
            Decision::Reject => ReviewStatus::Rejected,
            Decision::Approve | Decision::Correct(_) => ReviewStatus::Approved,
        }
    }
}

/// The status as `review_status` spells it.
fn status_name(status: &ReviewStatus) -> &'static str {
    match status {
        ReviewStatus::Pending => "pending",
        ReviewStatus::Approved => "approved",
        ReviewStatus::Rejected => "rejected",
    }
}

/// The audit event of a review decision.
fn event(reviewer: Uuid, resource_id: impl ToString, action: &str) -> AuditEvent {
    AuditEvent::new("annotation.reviewed")
        .actor(reviewer)
        .resource("annotations", resource_id)
        .action(action)
}

#[derive(FromQueryResult)]
struct Reviewer {
    allowed: bool,
}

/// Whether user `$1` has permission `$2`, holding a share lock on their row until the
/// decision commits, so a concurrent role change waits for it (and one that committed
/// first is seen: the locked row is read again). `has_permission`'s matrix, with the
/// lock: SeaORM's builder cannot say it.
const REVIEWER_SQL: &str = "SELECT EXISTS (SELECT 1 FROM role_permissions() rp
                              WHERE rp.role = u.role AND rp.permission = $2) AS allowed
     FROM users u WHERE u.id = $1 FOR SHARE OF u";

/// Whether `reviewer` may review (a share lock on their row until the transaction
/// ends); when not, records the refusal (outcome `denied`) on
/// `txn` and commits it, and says so.
async fn permitted<T: ConnectionTrait + TransactionSession>(
    txn: T,
    reviewer: Uuid,
    refused: AuditEvent,
) -> Result<Option<T>, ReviewError> {
    let allowed = Reviewer::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        REVIEWER_SQL,
        [reviewer.into(), REVIEW_PERMISSION.into()],
    ))
    .one(&txn)
    .await?
    .is_some_and(|r| r.allowed);
    if allowed {
        return Ok(Some(txn));
    }
    audit::record(&txn, &refused.outcome(Outcome::Denied)).await?;
    txn.commit().await?;
    Ok(None)
}

/// Decides `annotation` as `reviewer`: approves, rejects, or corrects then approves,
/// setting `review_status`, `reviewed_by` and `reviewed_at`. Refused as
/// [`ReviewError::NotPermitted`] without `annotations.review` (the refusal is
/// audited), [`ReviewError::NotFound`], [`ReviewError::NotAiGenerated`] for a
/// person's annotation, and [`ReviewError::AlreadyReviewed`] when it is no longer
/// pending — also when another reviewer decided it a moment before: the UPDATE only
/// matches a pending row and waits for a concurrent decision's lock, so one of two
/// simultaneous reviewers wins. Writes the `annotation.reviewed` audit row with the
/// decision. Round trips: begin, permission, UPDATE … RETURNING, audit, commit (a
/// failed UPDATE reads the row once to say why).
pub async fn review<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    annotation: Uuid,
    reviewer: Uuid,
    decision: Decision,
) -> Result<annotations::Model, ReviewError> {
    if let Decision::Correct(c) = &decision {
        if c.label.is_none() && c.bounding_box.is_none() {
            return Err(ReviewError::Invalid(InvalidInput::new(
                "correction",
                String::new(),
                "a correction fixes the label, the box or both",
            )));
        }
        if let Some(label) = &c.label
            && (label.trim().is_empty() || label.chars().count() > 200)
        {
            return Err(ReviewError::Invalid(InvalidInput::new(
                "label",
                label.clone(),
                "labels are 1 to 200 characters",
            )));
        }
    }
    let action = decision.action();
    let Some(txn) = permitted(
        db.begin().await?,
        reviewer,
        event(reviewer, annotation, action),
    )
    .await?
    else {
        return Err(ReviewError::NotPermitted(reviewer));
    };
    let mut update = decide_pending(decision.status(), reviewer).filter(Column::Id.eq(annotation));
    let mut details = json!({"status": decision.status_name()});
    if let Decision::Correct(c) = &decision {
        if let Some(label) = &c.label {
            update = update.col_expr(Column::Label, Expr::value(label.trim()));
            details["label"] = json!(label.trim());
        }
        if let Some(b) = &c.bounding_box {
            update = update.col_expr(Column::BoundingBox, Expr::value(b.to_json()));
            details["bounding_box"] = b.to_json();
        }
    }
    let Some(decided) = update.exec_with_returning(&txn).await?.into_iter().next() else {
        return Err(why_not(&txn, annotation).await);
    };
    audit::record(&txn, &event(reviewer, annotation, action).details(details)).await?;
    txn.commit().await?;
    Ok(decided)
}

/// An UPDATE deciding `status` by `reviewer`, now, of the AI annotations still
/// pending (the caller narrows it further).
fn decide_pending(status: ReviewStatus, reviewer: Uuid) -> UpdateMany<annotations::Entity> {
    annotations::Entity::update_many()
        .col_expr(Column::ReviewStatus, ActiveEnum::as_enum(&status))
        .col_expr(Column::ReviewedBy, Expr::value(reviewer))
        .col_expr(Column::ReviewedAt, Expr::current_timestamp())
        .filter(Column::VisionGenerated.eq(true))
        .filter(Column::ReviewStatus.eq(ReviewStatus::Pending))
}

/// Why a decision matched no row: the annotation is missing, a person's, or decided.
async fn why_not<C: ConnectionTrait>(db: &C, annotation: Uuid) -> ReviewError {
    match annotations::Entity::find_by_id(annotation).one(db).await {
        Err(e) => e.into(),
        Ok(None) => ReviewError::NotFound(annotation),
        Ok(Some(a)) if !a.vision_generated => ReviewError::NotAiGenerated(annotation),
        Ok(Some(a)) => ReviewError::AlreadyReviewed {
            annotation,
            status: status_name(&a.review_status).to_owned(),
            reviewed_by: a.reviewed_by,
        },
    }
}

/// Approves `annotation` as `reviewer` (see [`review`]).
pub async fn approve<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    annotation: Uuid,
    reviewer: Uuid,
) -> Result<annotations::Model, ReviewError> {
    review(db, annotation, reviewer, Decision::Approve).await
}

/// Rejects `annotation` as `reviewer` (see [`review`]).
pub async fn reject<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    annotation: Uuid,
    reviewer: Uuid,
) -> Result<annotations::Model, ReviewError> {
    review(db, annotation, reviewer, Decision::Reject).await
}

/// Fixes `annotation`'s label or box, then approves it, as `reviewer` (see
/// [`review`]); a box the schema would refuse cannot be built ([`BoundingBox`]).
pub async fn correct_and_approve<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    annotation: Uuid,
    reviewer: Uuid,
    correction: Correction,
) -> Result<annotations::Model, ReviewError> {
    review(db, annotation, reviewer, Decision::Correct(correction)).await
}

/// Approves every pending AI annotation with a confidence of at least
/// `min_confidence` (0..1), from `provider` when given, as `reviewer`; returns how
/// many. Needs `annotations.review` (a refusal is audited); writes one audit row with
/// the count and the threshold. Round trips: begin, permission, one UPDATE, audit,
/// commit; row locks on the approved annotations until the transaction ends.
pub async fn bulk_approve<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    reviewer: Uuid,
    min_confidence: f64,
    provider: Option<AiProvider>,
) -> Result<u64, ReviewError> {
    if !(0.0..=1.0).contains(&min_confidence) {
        return Err(ReviewError::Invalid(InvalidInput::new(
            "min_confidence",
            min_confidence.to_string(),
            "confidence is 0 to 1",
        )));
    }
    let provider_name = provider.as_ref().map(provider::name);
    let bulk = |e: AuditEvent| {
        e.details(json!({"min_confidence": min_confidence, "provider": provider_name}))
    };
    let Some(txn) = permitted(
        db.begin().await?,
        reviewer,
        bulk(event(reviewer, "*", "bulk_approve")),
    )
    .await?
    else {
        return Err(ReviewError::NotPermitted(reviewer));
    };
    let mut update = decide_pending(ReviewStatus::Approved, reviewer)
        // Compared as `numeric`, the column's type (a float8 bound would cast every
        // row's confidence instead).
        .filter(
            Expr::col(Column::VisionConfidence).gte(Expr::val(min_confidence).cast_as("numeric")),
        );
    if let Some(p) = provider {
        update = update.filter(Column::VisionProvider.eq(p));
    }
    let approved = update.exec(&txn).await?.rows_affected;
    let mut done = bulk(event(reviewer, "*", "bulk_approve"));
    done.details["approved"] = json!(approved);
    audit::record(&txn, &done).await?;
    txn.commit().await?;
    Ok(approved)
}
