//! all-MiniLM-L6-v2 in-process on the CPU: BERT from candle-transformers over the
//! model's safetensors, the `tokenizers` crate, mean pooling and L2 normalisation as
//! sentence-transformers does. Behind the `local-embedder` feature.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::embed::{EmbedError, Embedder};
use super::model::EmbeddingModel;

/// The model's name, as chunks embedded by it record it.
pub const LOCAL_MODEL_NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Its vectors' length.
pub const LOCAL_MODEL_DIMENSION: usize = 384;

/// The longest input in tokens (sentence-transformers' `max_seq_length` for this
/// model); longer texts are truncated.
const MAX_TOKENS: usize = 256;

struct Loaded {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

/// all-MiniLM-L6-v2 on the CPU. Loading maps the 90 MB of weights once; each batch
/// runs on a blocking thread (CPU work never stalls the async runtime). Cheap to
/// clone: clones share the loaded model.
#[derive(Clone)]
pub struct LocalEmbedder {
    loaded: Arc<Loaded>,
    model: EmbeddingModel,
    batch_size: usize,
}

fn local(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Local(e.to_string())
}

/// A 256×256 matrix product (16.8 M multiply-adds): here 0.45 ms with candle and
/// gemm optimised and 24 ms without (the best of three, three runs each). An
/// application's debug build compiles them at `opt-level = 0` unless its manifest
/// says otherwise, and then embeds about 25 times slower.
const PROBE_SIZE: usize = 256;

/// Above this, the best of three probe products means an unoptimised build: near the
/// geometric middle of the two measurements, so a machine several times slower or
/// faster than this one still falls on the right side.
const UNOPTIMISED_PROBE: std::time::Duration = std::time::Duration::from_millis(4);

/// Whether candle's matrix products run at optimised speed here: the best of three
/// [`PROBE_SIZE`] products, measured once per process (a few milliseconds at most).
/// The first time it says no, it logs a warning (`tracing`) with the manifest lines
/// that fix it.
pub(crate) fn optimised() -> bool {
    static OPTIMISED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OPTIMISED.get_or_init(|| {
        let best = probe().unwrap_or_default();
        let fast = best <= UNOPTIMISED_PROBE;
        if !fast {
            tracing::warn!(
                probe_ms = best.as_millis() as u64,
                "the local embedder runs unoptimised (candle built at opt-level 0): \
                 embedding is about 25x slower. Add to your Cargo.toml: \
                 [profile.dev.package.candle-core] opt-level = 3, and the same for \
                 candle-nn, candle-transformers, gemm, gemm-common, gemm-f32, gemm-f16, \
                 pulp, half, tokenizers and safetensors (see Strata's README)"
            );
        }
        fast
    })
}

/// The best time of three [`PROBE_SIZE`] products on the CPU.
fn probe() -> Result<std::time::Duration, candle_core::Error> {
    let a = Tensor::ones((PROBE_SIZE, PROBE_SIZE), DType::F32, &Device::Cpu)?;
    let mut best = std::time::Duration::MAX;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let product = a.matmul(&a)?;
        // Read one value back, so the product is computed.
        product.get(0)?.get(0)?.to_scalar::<f32>()?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}

impl LocalEmbedder {
    /// The directory `scripts/setup-model.sh` unpacks to: `STRATA_MODEL_DIR`, else
    /// `~/.cache/strata/all-minilm-l6-v2-0.1.2`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("STRATA_MODEL_DIR") {
            return PathBuf::from(dir);
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/root/.cache"));
        cache.join("strata").join("all-minilm-l6-v2-0.1.2")
    }

    /// Whether candle was built optimised (`opt-level = 3` for its crates): measured
    /// once per process by timing one 256×256 matrix product; an unoptimised build
    /// embeds about 25 times slower.
    pub fn optimised() -> bool {
        optimised()
    }

    /// Loads the model from [`LocalEmbedder::default_dir`].
    pub fn load_default() -> Result<Self, EmbedError> {
        Self::load(&Self::default_dir())
    }

    /// Loads the model from `dir` (`model.safetensors`, `tokenizer.json`,
    /// `config.json`). The first load in a process also times one small matrix
    /// product, and logs a warning once if candle runs unoptimised
    /// ([`LocalEmbedder::optimised`]).
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        optimised();
        let file = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(EmbedError::Local(format!(
                    "{} is missing (run scripts/setup-model.sh)",
                    path.display()
                )))
            }
        };
        let config: Config =
            serde_json::from_str(&std::fs::read_to_string(file("config.json")?).map_err(local)?)
                .map_err(local)?;
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json")?).map_err(local)?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(local)?;
        let device = Device::Cpu;
        let weights = file("model.safetensors")?;
        // SAFETY: the weights file is mapped read-only and not changed while mapped
        // (the set-up script writes it once, before any load).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &device) }
            .map_err(local)?;
        let model = BertModel::load(vb, &config).map_err(local)?;
        Ok(Self {
            loaded: Arc::new(Loaded {
                model,
                tokenizer,
                device,
            }),
            model: EmbeddingModel {
                name: LOCAL_MODEL_NAME.to_owned(),
                dimension: LOCAL_MODEL_DIMENSION,
            },
            batch_size: 32,
        })
    }
}

impl Loaded {
    /// Tokenise, run BERT, mean-pool over the attention mask, L2-normalise.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(local)?;
        let ids = encodings
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &self.device))
            .collect::<Result<Vec<_>, _>>()
            .map_err(local)?;
        let masks = encodings
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
            .collect::<Result<Vec<_>, _>>()
            .map_err(local)?;
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::stack(&ids, 0)?;
            let mask = Tensor::stack(&masks, 0)?;
            let types = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?;
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?;
            let mean = summed.broadcast_div(&counts)?;
            let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
            mean.broadcast_div(&norms)?.to_vec2::<f32>()
        };
        run().map_err(local)
    }
}

impl Embedder for LocalEmbedder {
    fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let loaded = self.loaded.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || loaded.embed(&texts))
            .await
            .map_err(local)?
    }
}

#[cfg(test)]
mod tests {
    /// This workspace builds candle optimised in every profile (the root manifest's
    /// `[profile.dev.package.*]` lines): the probe must say so.
    #[test]
    fn the_probe_finds_this_workspace_optimised() {
        let best = super::probe().expect("probe");
        assert!(
            best <= super::UNOPTIMISED_PROBE,
            "a 256x256 product took {best:?}"
        );
        assert!(super::optimised());
    }
}
