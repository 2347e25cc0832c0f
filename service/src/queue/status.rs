//! A job's status, as both queue tables spell it: `jobs.status` (text with a check)
//! and `ai_annotation_jobs.status` (the enum `ai_job_status`) share every word but
//! the running one (`running`, `processing`).

use entity::sea_orm_active_enums::AiJobStatus;

use crate::text_enum::text_enum;

text_enum! {
    /// A job's status. Read from a query as a value of its own (the column as text).
    pub enum JobStatus / UnknownStatus {
        /// Waiting to run (or to be retried at its `run_at`).
        Pending => "pending",
        /// Claimed by a worker (`jobs`).
        Running => "running",
        /// Claimed by a worker (`ai_annotation_jobs`).
        Processing => "processing",
        /// Finished with a result.
        Completed => "completed",
        /// Out of attempts.
        Failed => "failed",
        /// Cancelled before it finished.
        Cancelled => "cancelled",
    }
}

/// A status word that neither queue table has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?} (pending, running, processing, completed, failed, cancelled)")]
pub struct UnknownStatus(pub String);

impl JobStatus {
    /// Whether the job is done for good (completed, failed or cancelled).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl From<AiJobStatus> for JobStatus {
    fn from(s: AiJobStatus) -> Self {
        match s {
            AiJobStatus::Pending => JobStatus::Pending,
            AiJobStatus::Processing => JobStatus::Processing,
            AiJobStatus::Completed => JobStatus::Completed,
            AiJobStatus::Failed => JobStatus::Failed,
            AiJobStatus::Cancelled => JobStatus::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_serde_keeps_them() {
        for s in [
            JobStatus::Pending,
            JobStatus::Running,
            JobStatus::Processing,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).expect("json"),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(
            "done".parse::<JobStatus>(),
            Err(UnknownStatus("done".into()))
        );
    }
}
