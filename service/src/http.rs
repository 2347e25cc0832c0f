//! JSON APIs over HTTP (reqwest with rustls): one POST with retries of what may pass
//! on a second try, shared by the embeddings and vision clients.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call of a JSON API failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The configuration is wrong (a base URL that does not parse or is not http(s)).
    #[error("configuration: {0}")]
    Config(String),
    /// No answer (connection, timeout, TLS), after the retries.
    #[error("request to {endpoint} failed: {message}")]
    Transport {
        /// The endpoint called.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// An error status (after the retries a 429 or 5xx gets).
    #[error("{endpoint} answered {status}: {body}")]
    Status {
        /// The endpoint called.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// An answer that is not JSON of the expected shape.
    #[error("answer is not what the API promises: {0}")]
    BadAnswer(String),
}

/// The longest wait between attempts, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// An endpoint of a JSON API: `POST {base_url}{path}`, with a bearer key when given, a
/// timeout per request, and `attempts` tries for a request answered 429 or 5xx or not
/// answered (exponential backoff from 200 ms, honouring `Retry-After` in seconds up
/// to a minute). When the tries run out, a last 429 or 5xx is [`HttpError::Status`].
#[derive(Debug, Clone)]
pub(crate) struct JsonEndpoint {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    attempts: u32,
}

impl JsonEndpoint {
    /// The endpoint `path` under `base_url`; refuses a base URL that is not http(s).
    pub(crate) fn new(
        base_url: &str,
        path: &str,
        api_key: Option<String>,
        timeout: Duration,
        attempts: u32,
    ) -> Result<Self, HttpError> {
        let base = url::Url::parse(base_url)
            .map_err(|e| HttpError::Config(format!("base URL {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(HttpError::Config(format!(
                "base URL {base_url:?} is not http or https"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| HttpError::Config(e.to_string()))?;
        Ok(Self {
            client,
            url: format!("{}{path}", base_url.trim_end_matches('/')),
            api_key,
            attempts: attempts.max(1),
        })
    }

    /// POSTs `body` and decodes the answer, retrying as configured. One HTTP request
    /// per attempt.
    pub(crate) async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        body: &B,
    ) -> Result<R, HttpError> {
        let mut backoff = Duration::from_millis(200);
        let mut last = HttpError::Transport {
            endpoint: self.url.clone(),
            message: "not tried".into(),
        };
        for attempt in 1..=self.attempts {
            match self.attempt(body).await? {
                Ok(answer) => return Ok(answer),
                Err((error, after)) => {
                    last = error;
                    if attempt < self.attempts {
                        tokio::time::sleep(after.unwrap_or(backoff).min(MAX_WAIT)).await;
                        backoff = (backoff * 2).min(MAX_WAIT);
                    }
                }
            }
        }
        Err(last)
    }

    /// One request; `Ok(Err((error, delay)))` when it may be retried (after `delay`,
    /// when the service said).
    #[allow(clippy::type_complexity)]
    async fn attempt<B: Serialize, R: DeserializeOwned>(
        &self,
        body: &B,
    ) -> Result<Result<R, (HttpError, Option<Duration>)>, HttpError> {
        let mut request = self.client.post(&self.url).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() || e.is_connect() => {
                let error = HttpError::Transport {
                    endpoint: self.url.clone(),
                    message: e.to_string(),
                };
                return Ok(Err((error, None)));
            }
            Err(e) => {
                return Err(HttpError::Transport {
                    endpoint: self.url.clone(),
                    message: e.to_string(),
                });
            }
        };
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response.text().await.unwrap_or_default();
            let error = HttpError::Status {
                endpoint: self.url.clone(),
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            };
            return Ok(Err((error, after)));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(HttpError::Status {
                endpoint: self.url.clone(),
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            });
        }
        match response.json().await {
            Ok(answer) => Ok(Ok(answer)),
            // The body stopped coming: as retryable as no answer.
            Err(e) if e.is_timeout() => Ok(Err((
                HttpError::Transport {
                    endpoint: self.url.clone(),
                    message: e.to_string(),
                },
                None,
            ))),
            Err(e) => Err(HttpError::BadAnswer(e.to_string())),
        }
    }
}
