//! `ConvBertModel`: embeddings, optional `embeddings_project`, encoder; no pooler.
//! Reference: transformers v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L773>).

use std::path::Path as FsPath;

use tch::nn::{Path, VarStore};
use tch::{Device, Kind, Tensor};

use crate::attention::AttentionContext;
use crate::checkpoint::{self, LoadOptions};
use crate::config::ConvBertConfig;
use crate::embeddings::ConvBertEmbeddings;
use crate::encoder::ConvBertEncoder;
use crate::error::Result;
use crate::inputs::{prepare, ConvBertInputs, ForwardOptions};
use crate::mask;
use crate::primitives::{Linear, LinearKernelFactory, ReplaceLinears};

/// The ConvBERT encoder. Var names under its path equal HF's state-dict keys.
#[derive(Debug)]
pub struct ConvBertModel {
    embeddings: ConvBertEmbeddings,
    embeddings_project: Option<Linear>,
    encoder: ConvBertEncoder,
    config: ConvBertConfig,
}

/// Output of [`ConvBertModel::forward_t`], HF field names.
#[derive(Debug)]
pub struct ConvBertModelOutput {
    /// (B, L, D).
    pub last_hidden_state: Tensor,
    /// layers + 1 tensors (B, L, D), the (projected) embedding output first.
    pub hidden_states: Option<Vec<Tensor>>,
    /// one (B, H, L, L) tensor per layer, H = `config.attention_heads()`.
    pub attentions: Option<Vec<Tensor>>,
}

impl ConvBertModel {
    /// Creates the vars under `p` (HF init); heads pass `vs.root() / "convbert"`.
    pub fn new(p: &Path, cfg: &ConvBertConfig) -> Result<Self> {
        cfg.validate()?;
        let embeddings_project = if cfg.embedding_size != cfg.hidden_size {
            Some(Linear::new(
                &(p / "embeddings_project"),
                cfg.embedding_size,
                cfg.hidden_size,
                cfg.initializer_range,
            )?)
        } else {
            None
        };
        Ok(ConvBertModel {
            embeddings: ConvBertEmbeddings::new(&(p / "embeddings"), cfg)?,
            embeddings_project,
            encoder: ConvBertEncoder::new(&(p / "encoder"), cfg)?,
            config: cfg.clone(),
        })
    }

    /// Loads a checkpoint directory or an HF model id (from the HF cache, downloaded from the Hub
    /// when missing: [`checkpoint::locate`]), with weights in `kind` on `device` (whatever the
    /// file's dtype). The returned VarStore is frozen (inference); call `unfreeze` on it to train.
    pub fn from_pretrained(
        name_or_dir: impl AsRef<FsPath>,
        device: Device,
        kind: Kind,
    ) -> Result<(Self, VarStore)> {
        let dir = checkpoint::locate(name_or_dir.as_ref())?;
        let cfg = ConvBertConfig::from_file(dir.join("config.json"))?;
        let weights = checkpoint::open_weights(name_or_dir.as_ref(), &dir)?;
        let (model, vs, _) = Self::from_weights(&cfg, &weights, device, kind)?;
        Ok((model, vs))
    }

    /// [`from_pretrained`](Self::from_pretrained) from weights already opened, with what the
    /// load did (the file read, the stored tensors ignored).
    pub fn from_weights(
        cfg: &ConvBertConfig,
        weights: &checkpoint::Weights,
        device: Device,
        kind: Kind,
    ) -> Result<(Self, VarStore, checkpoint::LoadReport)> {
        let mut vs = VarStore::new(device);
        let model = ConvBertModel::new(&vs.root(), cfg)?;
        if kind != Kind::Float {
            vs.set_kind(kind);
        }
        let report = checkpoint::load_into(&vs, weights, &LoadOptions::base_model())?;
        vs.freeze();
        Ok((model, vs, report))
    }

    /// The validated config the model was built from.
    pub fn config(&self) -> &ConvBertConfig {
        &self.config
    }

    /// Kind and device of the weights (they follow `VarStore::set_kind`).
    pub fn kind_and_device(&self) -> (Kind, Device) {
        let w = self.embeddings.word_table();
        (w.kind(), w.device())
    }

    /// Runs the encoder; dropout is active only when `train`. Inputs are validated (typed errors
    /// for bad shapes, kinds, ids and lengths) and moved to the model's device.
    pub fn forward_t(
        &self,
        inputs: &ConvBertInputs,
        options: &ForwardOptions,
        train: bool,
    ) -> Result<ConvBertModelOutput> {
        let (kind, device) = self.kind_and_device();
        let cfg = &self.config;
        let x = prepare(cfg, inputs, options, device, kind)?;
        let mask_bias = match &x.attention_mask {
            Some(m) => Some(mask::additive_attention_mask(m, kind, cfg.is_decoder())?),
            None if cfg.is_decoder() => {
                let len = x.position_ids.size()[1];
                let ones = Tensor::f_ones([1, len], (kind, device))?;
                Some(mask::additive_attention_mask(&ones, kind, true)?)
            }
            None => None,
        };
        let keep = match (&x.attention_mask, options.padding_invariant) {
            (Some(m), true) => Some(mask::keep_mask(m, kind)?),
            _ => None,
        };
        let head_masks = match &x.head_mask {
            Some(hm) => Some(mask::per_layer_head_mask(hm, cfg.num_hidden_layers, kind)?),
            None => None,
        };
        let mut h = self.embeddings.forward(
            x.input_ids.as_ref(),
            x.inputs_embeds.as_ref(),
            &x.position_ids,
            &x.token_type_ids,
            train,
        )?;
        if let Some(project) = &self.embeddings_project {
            h = project.forward(&h)?;
        }
        let ctx = AttentionContext {
            mask_bias: mask_bias.as_ref(),
            keep: keep.as_ref(),
            output_attentions: options.output_attentions,
            train,
        };
        let out =
            self.encoder
                .forward(h, head_masks.as_deref(), options.output_hidden_states, &ctx)?;
        Ok(ConvBertModelOutput {
            last_hidden_state: out.last,
            hidden_states: out.hidden_states,
            attentions: out.attentions,
        })
    }

    /// Runs every Linear and pointwise convolution of the encoder (and `embeddings_project`)
    /// through a kernel `make(weight (out, in), bias (out,))` builds, e.g. int8 dynamic
    /// quantization (the `convbert-quant` crate). The four projections of each attention layer
    /// are one kernel over their concatenated weights, as the fp32 path runs them. Irreversible
    /// for this instance; the VarStore is untouched. Returns how many kernels were made.
    pub fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> Result<usize> {
        let mut n = 0;
        if let Some(project) = self.embeddings_project.as_mut() {
            project.replace_kernel(make)?;
            n += 1;
        }
        Ok(n + self.encoder.replace_linears(make)?)
    }

    /// Shorthand: ids (B, L) and optional mask (B, L), eval mode, HF semantics -> (B, L, D).
    pub fn forward_ids(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let inputs = ConvBertInputs {
            input_ids: Some(input_ids),
            attention_mask,
            ..Default::default()
        };
        Ok(self
            .forward_t(&inputs, &ForwardOptions::default(), false)?
            .last_hidden_state)
    }
}

impl ReplaceLinears for ConvBertModel {
    fn kind_and_device(&self) -> (Kind, Device) {
        ConvBertModel::kind_and_device(self)
    }

    fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> Result<usize> {
        ConvBertModel::replace_linears(self, make)
    }
}
