//! What a vision provider is to the pipeline: an image URL in, annotations out, with
//! its `ai_provider` value and its price per call.

use std::future::Future;

use entity::sea_orm_active_enums::AiProvider;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BoundingBox, VisionError};
use crate::queue::ai::VisionAnnotation;

/// One annotation as a provider gave it, before the checks the schema makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderAnnotation {
    /// What it marks.
    pub label: String,
    /// The provider's confidence; valid from 0 to 1.
    pub confidence: f64,
    /// The box in the schema's shape (`{topLeft, bottomRight, width, height}`).
    pub bounding_box: Value,
}

/// A provider's answer for one image: what is cached in `vision_api_cache`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionAnswer {
    /// The model that answered, when the provider says.
    pub model: Option<String>,
    /// Its annotations.
    pub annotations: Vec<ProviderAnnotation>,
}

impl VisionAnswer {
    /// The annotations, each checked as the schema checks it: a label of 1 to 200
    /// characters, a confidence from 0 to 1, a valid box. The first bad one is
    /// [`VisionError::InvalidAnnotation`] naming it: an answer is used whole or not at
    /// all.
    pub fn checked(&self) -> Result<Vec<VisionAnnotation>, VisionError> {
        self.annotations
            .iter()
            .enumerate()
            .map(|(index, a)| {
                let bad = |reason: String| VisionError::InvalidAnnotation { index, reason };
                let label = a.label.trim();
                if label.is_empty() || label.chars().count() > 200 {
                    return Err(bad(format!(
                        "label {:?} is not 1 to 200 characters",
                        a.label
                    )));
                }
                if !(0.0..=1.0).contains(&a.confidence) {
                    return Err(bad(format!("confidence {} is not 0 to 1", a.confidence)));
                }
                let bounding_box =
                    BoundingBox::from_json(&a.bounding_box).map_err(|e| bad(e.to_string()))?;
                Ok(VisionAnnotation {
                    label: label.to_owned(),
                    bounding_box: bounding_box.to_json(),
                    confidence: a.confidence,
                })
            })
            .collect()
    }
}

/// A vision API that annotates images.
pub trait VisionProvider: Send + Sync + 'static {
    /// Its value of `ai_provider` (its jobs' type).
    fn provider(&self) -> AiProvider;

    /// What one call costs, in US dollars (for the cost report; a cached answer costs
    /// nothing).
    fn cost_per_call(&self) -> f64;

    /// Annotates the image at `image_url`. One call of the provider's API (with its
    /// own retries of transient failures).
    fn analyze(
        &self,
        image_url: &str,
    ) -> impl Future<Output = Result<VisionAnswer, VisionError>> + Send;
}
