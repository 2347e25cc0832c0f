//! Seed 004's AI vision annotations: the bounding boxes they carry, the providers that
//! make them ([`VisionProvider`], with [`OpenAiVision`] for OpenAI-compatible APIs),
//! and the pipeline from request to annotations pending review
//! ([`request_annotations`], [`AnnotationPipeline`], batches, cost by provider).
//!
//! The files: `bounding_box`, `provider` (the trait and answers), `openai_vision`,
//! `pipeline`.

use uuid::Uuid;

use crate::cache::CacheError;
use crate::error::{DbError, InvalidInput};
use crate::http::HttpError;
use crate::queue::QueueError;

mod bounding_box;
mod openai_vision;
mod pipeline;
mod provider;

pub use bounding_box::{BoundingBox, InvalidBox, Point};
pub use openai_vision::{OpenAiVision, OpenAiVisionConfig};
pub use pipeline::{
    AnnotationPipeline, BATCH_JOB_TYPE, BatchRequest, ProviderCost, batch_progress,
    cost_by_provider, request_annotations, request_batch,
};
pub use provider::{ProviderAnnotation, VisionAnswer, VisionProvider};

/// What can go wrong in the vision pipeline.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// The provider's configuration is wrong.
    #[error("vision provider configuration: {0}")]
    Config(String),
    /// The provider's API failed (after its retries).
    #[error("vision provider: {0}")]
    Http(#[from] HttpError),
    /// The provider answered something that is not annotations.
    #[error("vision provider answered badly: {0}")]
    BadAnswer(String),
    /// An annotation of the answer the schema would refuse: the whole answer is
    /// refused.
    #[error("annotation {index} of the answer: {reason}")]
    InvalidAnnotation {
        /// Its position in the answer.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// No image has this id.
    #[error("no image {0}")]
    UnknownImage(Uuid),
    /// A job whose payload the pipeline cannot read.
    #[error("vision job: {0}")]
    BadJob(String),
    /// A request refused before anything was written.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The vision cache failed.
    #[error("vision cache: {0}")]
    Cache(#[from] CacheError),
    /// The queue failed.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// The database failed; the variant says how.
    #[error("database: {0}")]
    Database(#[from] DbError),
}

impl From<sea_orm::DbErr> for VisionError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}

impl From<serde_json::Error> for VisionError {
    fn from(e: serde_json::Error) -> Self {
        Self::BadJob(e.to_string())
    }
}
