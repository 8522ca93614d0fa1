//! `ConvBertForMaskedLM`: the generator head of ConvBERT — dense (D -> E), exact GELU (whatever
//! `hidden_act` says), LayerNorm over E, then `generator_lm_head` (E -> V) whose weight is the word
//! embedding table itself when `tie_word_embeddings` is true (HF's default). Reference: transformers
//! v4.57.6 `modeling_convbert.py`, `ConvBertGeneratorPredictions` / `ConvBertForMaskedLM`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L864>).

use convbert_model::{Activation, ConvBertConfig, ConvBertInputs, ForwardOptions};
use serde_json::Value;
use tch::nn::{Init, Path};
use tch::Tensor;

use crate::error::{ConvBertHeadError, Result};
use crate::labels::Labels;
use crate::loss::{cross_entropy, IGNORE_INDEX};
use crate::pretrained::{impl_head, HeadModule};
use convbert_model::primitives::{self, LayerNorm, Linear, LinearKernel, LinearKernelFactory};

/// `generator_predictions`: t = LayerNorm_E(gelu(dense(h))), (B, L, D) -> (B, L, E).
#[derive(Debug)]
struct ConvBertGeneratorPredictions {
    dense: Linear,
    layer_norm: LayerNorm,
}

impl ConvBertGeneratorPredictions {
    fn new(p: &Path, cfg: &ConvBertConfig) -> Result<Self> {
        Ok(Self {
            dense: Linear::new(
                &(p / "dense"),
                cfg.hidden_size,
                cfg.embedding_size,
                cfg.initializer_range,
            )?,
            layer_norm: LayerNorm::new(&(p / "LayerNorm"), cfg.embedding_size, cfg.layer_norm_eps)?,
        })
    }

    fn forward(&self, h: &Tensor) -> Result<Tensor> {
        // HF hard-codes get_activation("gelu") here: exact erf GELU, independent of hidden_act.
        let x = Activation::Gelu.apply(&self.dense.forward(h)?)?;
        Ok(self.layer_norm.forward(&x)?)
    }
}

/// Whether `generator_lm_head.weight` is the word-embedding table (`tie_word_embeddings`, default true).
pub(crate) fn ties_word_embeddings(cfg: &ConvBertConfig) -> bool {
    !matches!(cfg.extra("tie_word_embeddings"), Some(Value::Bool(false)))
}

/// The MLM modules on top of the encoder.
#[derive(Debug)]
pub(crate) struct MaskedLmModules {
    generator_predictions: ConvBertGeneratorPredictions,
    /// (V, E); shares its storage with `convbert.embeddings.word_embeddings.weight` when tied.
    lm_weight: Tensor,
    /// (V,), always a parameter of its own.
    lm_bias: Tensor,
    /// Replaces the (E -> V) GEMM when set (`replace_linears`).
    lm_kernel: Option<Box<dyn LinearKernel>>,
    vocab_size: i64,
}

impl HeadModule for MaskedLmModules {
    const CLASS: &'static str = "ConvBertForMaskedLM";

    fn build(root: &Path, cfg: &ConvBertConfig, _labels: &Labels) -> Result<Self> {
        let generator_predictions =
            ConvBertGeneratorPredictions::new(&(root / "generator_predictions"), cfg)?;
        let lm = root / "generator_lm_head";
        let lm_weight = if ties_word_embeddings(cfg) {
            // One tensor, not a copy: the encoder's variable itself (a shallow handle to it), so
            // training and loading update both. It is not a variable of the head, hence not saved.
            let emb = root / "convbert" / "embeddings" / "word_embeddings";
            emb.get("weight").ok_or_else(|| ConvBertHeadError::Config {
                field: "tie_word_embeddings".into(),
                reason: "the encoder has no embeddings.word_embeddings.weight to tie to".into(),
            })?
        } else {
            lm.f_var(
                "weight",
                &[cfg.vocab_size, cfg.embedding_size],
                Init::Randn {
                    mean: 0.0,
                    stdev: cfg.initializer_range,
                },
            )?
        };
        let lm_bias = lm.f_var("bias", &[cfg.vocab_size], Init::Const(0.0))?;
        Ok(Self {
            generator_predictions,
            lm_weight,
            lm_bias,
            lm_kernel: None,
            vocab_size: cfg.vocab_size,
        })
    }

    fn shared_with_encoder(cfg: &ConvBertConfig, key: &str) -> bool {
        key == "generator_lm_head.weight" && ties_word_embeddings(cfg)
    }

    fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> convbert_model::Result<usize> {
        self.generator_predictions.dense.replace_kernel(make)?;
        // A tied weight is read as it is now; the kernel keeps its own (quantized) copy, as torch's
        // quantize_dynamic does, while the embeddings stay fp32.
        self.lm_kernel = Some(make(&self.lm_weight, &self.lm_bias)?);
        Ok(2)
    }
}

impl MaskedLmModules {
    /// t (B, L, E) -> logits (B, L, V).
    fn lm_head(&self, t: &Tensor) -> Result<Tensor> {
        Ok(match &self.lm_kernel {
            Some(k) => k.forward(t)?,
            None => primitives::linear(t, &self.lm_weight, &self.lm_bias)?,
        })
    }
}

/// Output of [`ConvBertForMaskedLM::forward_t`] (HF `MaskedLMOutput`).
#[derive(Debug)]
pub struct MaskedLMOutput {
    /// Mean cross-entropy over positions whose label is not -100; present when labels were given.
    pub loss: Option<Tensor>,
    /// (B, L, V) prediction scores.
    pub logits: Tensor,
    /// Layers + 1 encoder states (B, L, D) when requested.
    pub hidden_states: Option<Vec<Tensor>>,
    /// Per-layer attention probabilities (B, H, L, L) when requested.
    pub attentions: Option<Vec<Tensor>>,
}

impl_head!(
    /// ConvBERT with the generator's masked-language-modelling head (HF `ConvBertForMaskedLM`).
    ConvBertForMaskedLM,
    MaskedLmModules
);

impl ConvBertForMaskedLM {
    /// Logits (B, L, V) and, with `labels` (B, L) int64 (token ids in `0..V`, or -100 to ignore),
    /// the masked-LM loss.
    pub fn forward_t(
        &self,
        inputs: &ConvBertInputs,
        labels: Option<&Tensor>,
        options: &ForwardOptions,
        train: bool,
    ) -> Result<MaskedLMOutput> {
        let out = self.encode(inputs, options, train)?;
        let head = &self.core.head;
        let t = head.generator_predictions.forward(&out.last_hidden_state)?;
        let logits = head.lm_head(&t)?;
        let loss = match labels {
            None => None,
            Some(labels) => {
                let want = logits.size()[..2].to_vec();
                if labels.size() != want {
                    return Err(ConvBertHeadError::shape(
                        "labels",
                        format!("{want:?} (batch, seq)"),
                        labels,
                    ));
                }
                let flat = logits.f_view([-1, head.vocab_size])?;
                Some(cross_entropy(
                    &flat,
                    &labels.f_reshape([-1])?,
                    IGNORE_INDEX,
                    "labels",
                )?)
            }
        };
        Ok(MaskedLMOutput {
            loss,
            logits,
            hidden_states: out.hidden_states,
            attentions: out.attentions,
        })
    }

    /// The (V, E) output projection; with tied embeddings the very tensor of the word embeddings.
    pub fn lm_head_weight(&self) -> &Tensor {
        &self.core.head.lm_weight
    }
}
