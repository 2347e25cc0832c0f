//! Seed 004's human review of AI annotations (`003`): the pending queue (lowest
//! confidence first), decisions by moderators and admins — approve, reject, correct
//! then approve, bulk approval above a confidence — each with its audit row in the
//! same transaction, and the reviewers' and AI jobs' statistics.
//!
//! The files: `pending` (the queue), `decide` (decisions), `stats` (the views).

use uuid::Uuid;

use crate::audit::AuditError;
use crate::error::{DbError, InvalidInput};
use crate::page::InvalidPage;
use crate::vision::InvalidBox;

mod decide;
mod pending;
mod stats;

pub use decide::{
    Correction, Decision, approve, bulk_approve, correct_and_approve, reject, review,
};
pub use pending::{PendingAnnotation, PendingFilter, pending};
pub use stats::{AiJobStats, ReviewerStats, ai_job_stats, reviewer_stats};

/// What can go wrong in review. Nothing was decided when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The reviewer lacks `annotations.review` (moderators and admins have it); the
    /// refusal is in the audit log.
    #[error("user {0} may not review annotations")]
    NotPermitted(Uuid),
    /// No annotation has this id.
    #[error("no annotation {0}")]
    NotFound(Uuid),
    /// The annotation was made by a person, not by AI: there is nothing to review.
    #[error("annotation {0} is not AI-generated")]
    NotAiGenerated(Uuid),
    /// Someone decided first (or the same reviewer already did).
    #[error("annotation {annotation} was already {status}")]
    AlreadyReviewed {
        /// The annotation.
        annotation: Uuid,
        /// `approved` or `rejected`.
        status: String,
        /// Who decided.
        reviewed_by: Option<Uuid>,
    },
    /// A corrected bounding box the schema would refuse.
    #[error(transparent)]
    InvalidBox(#[from] InvalidBox),
    /// A value refused before anything was written.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A page size out of range.
    #[error(transparent)]
    Page(#[from] InvalidPage),
    /// The decision's audit row was refused.
    #[error("audit: {0}")]
    Audit(#[from] AuditError),
    /// The database failed; the variant says how.
    #[error("database: {0}")]
    Database(#[from] DbError),
}

impl From<sea_orm::DbErr> for ReviewError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}
