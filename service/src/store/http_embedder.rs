//! An OpenAI-compatible embeddings client (`POST {base}/embeddings`), over reqwest
//! with rustls.

use std::time::Duration;

use crate::http::JsonEndpoint;

use serde::{Deserialize, Serialize};

use super::embed::{EmbedError, Embedder};
use super::model::EmbeddingModel;

/// Where and how to call an OpenAI-compatible embeddings API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpEmbedderConfig {
    /// The API's base URL, e.g. `https://api.openai.com/v1`; `/embeddings` is added.
    pub base_url: String,
    /// The model's name as the API knows it (and as chunks record it).
    pub model: String,
    /// Its vectors' length.
    pub dimension: usize,
    /// Sent as `Authorization: Bearer …` when present.
    pub api_key: Option<String>,
    /// Texts per request. Default 64.
    pub batch_size: usize,
    /// Per-request timeout. Default 30 s.
    pub timeout: Duration,
    /// Attempts for a request answered 429 or 5xx, or not answered. Default 3.
    pub attempts: u32,
}

impl HttpEmbedderConfig {
    /// A configuration with the defaults.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>, dimension: usize) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            dimension,
            api_key: None,
            batch_size: 64,
            timeout: Duration::from_secs(30),
            attempts: 3,
        }
    }

    /// From the environment: `STRATA_EMBED_URL`, `STRATA_EMBED_MODEL`,
    /// `STRATA_EMBED_DIMENSION`, and `STRATA_EMBED_API_KEY` (or `OPENAI_API_KEY`).
    pub fn from_env() -> Result<Self, EmbedError> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| EmbedError::Config(format!("{name} is not set")))
        };
        let dimension = var("STRATA_EMBED_DIMENSION")?;
        let dimension = dimension.parse().map_err(|_| {
            EmbedError::Config(format!(
                "STRATA_EMBED_DIMENSION = {dimension:?} is not a number"
            ))
        })?;
        let mut config = Self::new(
            var("STRATA_EMBED_URL")?,
            var("STRATA_EMBED_MODEL")?,
            dimension,
        );
        config.api_key = std::env::var("STRATA_EMBED_API_KEY")
            .or_else(|_| std::env::var("OPENAI_API_KEY"))
            .ok();
        Ok(config)
    }
}

/// An [`Embedder`] that calls an OpenAI-compatible `/embeddings` endpoint (OpenAI,
/// Azure OpenAI's compatible route, vLLM, Ollama, LM Studio, text-embeddings-inference).
/// One HTTP request per batch; 429 and 5xx answers are retried with exponential
/// backoff (honouring `Retry-After` in seconds).
#[derive(Debug, Clone)]
pub struct HttpEmbedder {
    endpoint: JsonEndpoint,
    config: HttpEmbedderConfig,
    model: EmbeddingModel,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Datum>,
}

#[derive(Deserialize)]
struct Datum {
    index: usize,
    embedding: Vec<f32>,
}

impl HttpEmbedder {
    /// A client for `config`; refuses a base URL that is not http(s).
    pub fn new(config: HttpEmbedderConfig) -> Result<Self, EmbedError> {
        let model = EmbeddingModel::new(config.model.clone(), config.dimension)
            .map_err(|e| EmbedError::Config(e.to_string()))?;
        let endpoint = JsonEndpoint::new(
            &config.base_url,
            "/embeddings",
            config.api_key.clone(),
            config.timeout,
            config.attempts,
        )?;
        Ok(Self {
            endpoint,
            config,
            model,
        })
    }
}

impl Embedder for HttpEmbedder {
    fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    fn batch_size(&self) -> usize {
        self.config.batch_size.max(1)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut answer: Response = self
            .endpoint
            .post(&Request {
                model: &self.config.model,
                input: texts,
                encoding_format: "float",
            })
            .await?;
        answer.data.sort_by_key(|d| d.index);
        if answer.data.iter().enumerate().any(|(i, d)| d.index != i)
            || answer.data.len() != texts.len()
        {
            return Err(EmbedError::BadAnswer(format!(
                "indexes {:?} for {} texts",
                answer.data.iter().map(|d| d.index).collect::<Vec<_>>(),
                texts.len()
            )));
        }
        Ok(answer.data.into_iter().map(|d| d.embedding).collect())
    }
}
