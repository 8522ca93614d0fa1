//! `ConvBertEmbeddings` (word + position + token type, LayerNorm, dropout) and the optional
//! `embeddings_project` Linear(E -> D). Reference: transformers v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L172>).

use tch::nn::{Init, Path};
use tch::Tensor;

use crate::config::ConvBertConfig;
use crate::error::Result;
use crate::primitives::{dropout, LayerNorm};

/// Embedding tables (V, E), (P, E), (T, E) and the LayerNorm over E.
#[derive(Debug)]
pub(crate) struct ConvBertEmbeddings {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    layer_norm: LayerNorm,
    padding_idx: i64,
    dropout: f64,
}

fn table(p: &Path, rows: i64, cols: i64, std: f64) -> Result<Tensor> {
    Ok(p.f_var(
        "weight",
        &[rows, cols],
        Init::Randn {
            mean: 0.0,
            stdev: std,
        },
    )?)
}

impl ConvBertEmbeddings {
    pub(crate) fn new(p: &Path, cfg: &ConvBertConfig) -> Result<Self> {
        let (e, std) = (cfg.embedding_size, cfg.initializer_range);
        let word_embeddings = table(&(p / "word_embeddings"), cfg.vocab_size, e, std)?;
        let padding_idx = cfg
            .pad_token_id
            .filter(|&i| (0..cfg.vocab_size).contains(&i))
            .unwrap_or(-1);
        if padding_idx >= 0 {
            // HF zeroes the padding row at init.
            tch::no_grad(|| word_embeddings.f_get(padding_idx)?.f_zero_().map(|_| ()))?;
        }
        Ok(ConvBertEmbeddings {
            word_embeddings,
            position_embeddings: table(
                &(p / "position_embeddings"),
                cfg.max_position_embeddings,
                e,
                std,
            )?,
            token_type_embeddings: table(
                &(p / "token_type_embeddings"),
                cfg.type_vocab_size,
                e,
                std,
            )?,
            layer_norm: LayerNorm::new(&(p / "LayerNorm"), e, cfg.layer_norm_eps)?,
            padding_idx,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    /// The word table (V, E); its kind and device are the model's.
    pub(crate) fn word_table(&self) -> &Tensor {
        &self.word_embeddings
    }

    /// ids or embeds (B, L) / (B, L, E), positions and types (B, L) or (1, L) -> (B, L, E).
    pub(crate) fn forward(
        &self,
        input_ids: Option<&Tensor>,
        inputs_embeds: Option<&Tensor>,
        position_ids: &Tensor,
        token_type_ids: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let words = match (input_ids, inputs_embeds) {
            (_, Some(embeds)) => embeds.shallow_clone(),
            (Some(ids), None) => {
                Tensor::f_embedding(&self.word_embeddings, ids, self.padding_idx, false, false)?
            }
            (None, None) => {
                return Err(crate::error::ConvBertError::Input(
                    "no input_ids or inputs_embeds".into(),
                ))
            }
        };
        let pos = Tensor::f_embedding(&self.position_embeddings, position_ids, -1, false, false)?;
        let types = Tensor::f_embedding(
            &self.token_type_embeddings,
            token_type_ids,
            -1,
            false,
            false,
        )?;
        // Same summation order as HF: (inputs_embeds + position) + token_type.
        let e = words.f_add(&pos)?.f_add(&types)?;
        dropout(self.layer_norm.forward(&e)?, self.dropout, train)
    }
}
