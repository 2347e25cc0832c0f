//! A job's status, as both queue tables spell it: `jobs.status` (text with a check)
//! and `ai_annotation_jobs.status` (the enum `ai_job_status`) share every word but
//! the running one (`running`, `processing`).

use std::fmt;
use std::str::FromStr;

use entity::sea_orm_active_enums::AiJobStatus;
use serde::{Deserialize, Serialize};

/// A job's status. Read from a query as a value of its own (the column as text).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    sea_orm::DeriveValueType,
)]
#[serde(rename_all = "lowercase")]
#[sea_orm(value_type = "String")]
pub enum JobStatus {
    /// Waiting to run (or to be retried at its `run_at`).
    Pending,
    /// Claimed by a worker (`jobs`).
    Running,
    /// Claimed by a worker (`ai_annotation_jobs`).
    Processing,
    /// Finished with a result.
    Completed,
    /// Out of attempts.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

/// A status word that neither queue table has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?} (pending, running, processing, completed, failed, cancelled)")]
pub struct UnknownStatus(pub String);

impl JobStatus {
    /// The word as the tables spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the job is done for good (completed, failed or cancelled).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    /// A status word (trimmed, any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pending" => Ok(JobStatus::Pending),
            "running" => Ok(JobStatus::Running),
            "processing" => Ok(JobStatus::Processing),
            "completed" => Ok(JobStatus::Completed),
            "failed" => Ok(JobStatus::Failed),
            "cancelled" => Ok(JobStatus::Cancelled),
            _ => Err(UnknownStatus(s.to_owned())),
        }
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
