//! An OpenAI-compatible chat-completions client with image input (`POST
//! {base}/chat/completions`), asking for the annotations as a JSON object.

use std::time::Duration;

use entity::sea_orm_active_enums::AiProvider;
use serde::Deserialize;
use serde_json::{Value, json};

use super::VisionError;
use super::provider::{ProviderAnnotation, VisionAnswer, VisionProvider};
use crate::http::JsonEndpoint;

/// Where and how to call the API.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiVisionConfig {
    /// The API's base URL, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The model, e.g. `gpt-4o-mini`.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when present.
    pub api_key: Option<String>,
    /// Which `ai_provider` its jobs and cache entries are (default `openai`; an
    /// OpenAI-compatible gateway to another vendor says which).
    pub provider: AiProvider,
    /// US dollars per call (default 0.01).
    pub cost_per_call: f64,
    /// Per-request timeout (default 60 s).
    pub timeout: Duration,
    /// Attempts for a request answered 429 or 5xx, or not answered (default 3).
    pub attempts: u32,
}

impl OpenAiVisionConfig {
    /// A configuration with the defaults.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            provider: AiProvider::Openai,
            cost_per_call: 0.01,
            timeout: Duration::from_secs(60),
            attempts: 3,
        }
    }

    /// From the environment: `STRATA_VISION_URL`, `STRATA_VISION_MODEL`, and
    /// `STRATA_VISION_API_KEY` (or `OPENAI_API_KEY`).
    pub fn from_env() -> Result<Self, VisionError> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| VisionError::Config(format!("{name} is not set")))
        };
        let mut config = Self::new(var("STRATA_VISION_URL")?, var("STRATA_VISION_MODEL")?);
        config.api_key = std::env::var("STRATA_VISION_API_KEY")
            .or_else(|_| std::env::var("OPENAI_API_KEY"))
            .ok();
        Ok(config)
    }
}

/// The instructions sent with every image.
const SYSTEM_PROMPT: &str = "You annotate bird photographs for a field guide. Answer with one \
JSON object: {\"annotations\": [{\"label\": the species or body part, \"confidence\": a number \
from 0 to 1, \"box\": {\"x1\": left, \"y1\": top, \"x2\": right, \"y2\": bottom}}]}, the box \
as fractions of the image's width and height (0 to 1, x1 < x2, y1 < y2). No other text.";

/// A [`VisionProvider`] over an OpenAI-compatible `/chat/completions` endpoint with
/// image input (OpenAI, Azure OpenAI's compatible route, vLLM, Ollama, LiteLLM).
#[derive(Debug, Clone)]
pub struct OpenAiVision {
    endpoint: JsonEndpoint,
    config: OpenAiVisionConfig,
}

#[derive(Deserialize)]
struct Completion {
    model: Option<String>,
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    annotations: Vec<RawAnnotation>,
}

#[derive(Deserialize)]
struct RawAnnotation {
    label: String,
    confidence: f64,
    #[serde(rename = "box")]
    bounding_box: Value,
}

impl OpenAiVision {
    /// A client for `config`; refuses a base URL that is not http(s) and a negative
    /// or non-finite price.
    pub fn new(config: OpenAiVisionConfig) -> Result<Self, VisionError> {
        if !(config.cost_per_call.is_finite() && config.cost_per_call >= 0.0) {
            return Err(VisionError::Config(format!(
                "cost per call {} is not a price",
                config.cost_per_call
            )));
        }
        let endpoint = JsonEndpoint::new(
            &config.base_url,
            "/chat/completions",
            config.api_key.clone(),
            config.timeout,
            config.attempts,
        )?;
        Ok(Self { endpoint, config })
    }
}

/// A `{x1, y1, x2, y2}` box in the schema's shape, unchecked (the pipeline checks);
/// anything else is kept as it came, to be refused by name.
fn schema_box(raw: &Value) -> Value {
    let corner = |k: &str| raw.get(k).and_then(Value::as_f64);
    match (corner("x1"), corner("y1"), corner("x2"), corner("y2")) {
        (Some(x1), Some(y1), Some(x2), Some(y2)) => json!({
            "topLeft": {"x": x1, "y": y1},
            "bottomRight": {"x": x2, "y": y2},
            "width": x2 - x1,
            "height": y2 - y1,
        }),
        _ => raw.clone(),
    }
}

impl VisionProvider for OpenAiVision {
    fn provider(&self) -> AiProvider {
        self.config.provider.clone()
    }

    fn cost_per_call(&self) -> f64 {
        self.config.cost_per_call
    }

    async fn analyze(&self, image_url: &str) -> Result<VisionAnswer, VisionError> {
        let request = json!({
            "model": self.config.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": [
                    {"type": "text", "text": "Annotate this image."},
                    {"type": "image_url", "image_url": {"url": image_url}}
                ]}
            ]
        });
        let completion: Completion = self.endpoint.post(&request).await?;
        let content = completion
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| VisionError::BadAnswer("no message content".into()))?;
        let parsed: Content = serde_json::from_str(content.trim()).map_err(|e| {
            VisionError::BadAnswer(format!(
                "content is not the annotations object ({e}): {}",
                content.chars().take(200).collect::<String>()
            ))
        })?;
        Ok(VisionAnswer {
            model: completion.model,
            annotations: parsed
                .annotations
                .into_iter()
                .map(|a| ProviderAnnotation {
                    label: a.label,
                    confidence: a.confidence,
                    bounding_box: schema_box(&a.bounding_box),
                })
                .collect(),
        })
    }
}
