//! The two job tables as data: what differs between seed 003's `jobs` and seed 004's
//! `ai_annotation_jobs` — names, columns, status words — never logic.

use super::JobStatus;
use super::sql::{AI_ANNOTATION_JOBS_SQL, JOBS_SQL, Statements};

/// A job table, as data. Its fields are SQL fragments pasted into the queue's
/// statements, so they are private: the only values are [`JOBS`] and
/// [`AI_ANNOTATION_JOBS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTable {
    /// Which of the two: selects its rendered statements.
    pub(super) which: Which,
    /// The table.
    pub(super) table: &'static str,
    /// The expression that gives a job's type as text.
    pub(super) type_expr: &'static str,
    /// The JSON payload column.
    pub(super) payload_column: &'static str,
    /// The JSON result column.
    pub(super) result_column: &'static str,
    /// The last-error column.
    pub(super) error_column: &'static str,
    /// The status word of a running job.
    pub(super) running: &'static str,
    /// The SQL type of `status`.
    pub(super) status_type: &'static str,
    /// The NOTIFY channel its inserts signal.
    pub(super) channel: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    Jobs,
    AiAnnotationJobs,
}

/// Seed 003's `jobs`: job types are `job_type`.
pub const JOBS: QueueTable = QueueTable {
    which: Which::Jobs,
    table: "jobs",
    type_expr: "job_type",
    payload_column: "payload",
    result_column: "result",
    error_column: "last_error",
    running: "running",
    status_type: "text",
    channel: "strata_jobs",
};

/// Seed 004's `ai_annotation_jobs`: a job's type is its provider.
pub const AI_ANNOTATION_JOBS: QueueTable = QueueTable {
    which: Which::AiAnnotationJobs,
    table: "ai_annotation_jobs",
    type_expr: "provider::text",
    payload_column: "request_payload",
    result_column: "response_data",
    error_column: "error_message",
    running: "processing",
    status_type: "ai_job_status",
    channel: "strata_ai_annotation_jobs",
};

impl QueueTable {
    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.table
    }

    /// The status of a running job here ([`JobStatus::Running`] in `jobs`,
    /// [`JobStatus::Processing`] in `ai_annotation_jobs`).
    pub fn running_status(&self) -> JobStatus {
        if self.running == "processing" {
            JobStatus::Processing
        } else {
            JobStatus::Running
        }
    }

    /// The statuses a job of this table can have.
    pub fn statuses(&self) -> [JobStatus; 5] {
        [
            JobStatus::Pending,
            self.running_status(),
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
    }

    /// The `NOTIFY` channel its inserts signal.
    pub fn channel(&self) -> &'static str {
        self.channel
    }

    /// The queue's statements for this table, rendered once.
    pub(super) fn sql(&self) -> &'static Statements {
        match self.which {
            Which::Jobs => &JOBS_SQL,
            Which::AiAnnotationJobs => &AI_ANNOTATION_JOBS_SQL,
        }
    }

    /// `template` with this table's names and words in its `{…}` placeholders.
    pub(super) fn render(&self, template: &str) -> String {
        template
            .replace("{t}", self.table)
            .replace("{ty}", self.type_expr)
            .replace("{payload}", self.payload_column)
            .replace("{result}", self.result_column)
            .replace("{error}", self.error_column)
            .replace("{running}", self.running)
            .replace("{st}", self.status_type)
    }
}
