//! The embedder an operator picks at run time — in-process or over HTTP — as one
//! [`Embedder`], for the command line and the console.

use super::{EmbedError, Embedder, EmbeddingModel, HttpEmbedder, HttpEmbedderConfig};

/// Which embedder ([`AnyEmbedder::load`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedderChoice {
    /// all-MiniLM-L6-v2 in-process (the `local-embedder` feature;
    /// `scripts/setup-model.sh` fetches the model).
    Local,
    /// An OpenAI-compatible endpoint ([`HttpEmbedderConfig::from_env`]).
    Http,
}

/// Either embedder, chosen at run time.
pub enum AnyEmbedder {
    /// The in-process model.
    #[cfg(feature = "local-embedder")]
    Local(super::LocalEmbedder),
    /// The HTTP endpoint.
    Http(HttpEmbedder),
}

impl AnyEmbedder {
    /// Loads `choice`: the local model from its default directory (a few hundred
    /// milliseconds, once), or the HTTP client from the environment. Without the
    /// `local-embedder` feature, `Local` is [`EmbedError::Config`].
    pub fn load(choice: EmbedderChoice) -> Result<Self, EmbedError> {
        match choice {
            #[cfg(feature = "local-embedder")]
            EmbedderChoice::Local => super::LocalEmbedder::load_default().map(Self::Local),
            #[cfg(not(feature = "local-embedder"))]
            EmbedderChoice::Local => Err(EmbedError::Config(
                "built without the local-embedder feature (a default feature of cli)".into(),
            )),
            EmbedderChoice::Http => Ok(Self::Http(HttpEmbedder::new(
                HttpEmbedderConfig::from_env()?,
            )?)),
        }
    }
}

impl Embedder for AnyEmbedder {
    fn model(&self) -> &EmbeddingModel {
        match self {
            #[cfg(feature = "local-embedder")]
            Self::Local(e) => e.model(),
            Self::Http(e) => e.model(),
        }
    }

    fn batch_size(&self) -> usize {
        match self {
            #[cfg(feature = "local-embedder")]
            Self::Local(e) => e.batch_size(),
            Self::Http(e) => e.batch_size(),
        }
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            #[cfg(feature = "local-embedder")]
            Self::Local(e) => e.embed(texts).await,
            Self::Http(e) => e.embed(texts).await,
        }
    }
}
