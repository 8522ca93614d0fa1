//! ConvBERT (Jiang et al., 2020, <https://arxiv.org/abs/2008.02496>) on libtorch via `tch`, with
//! numerical parity to Hugging Face `transformers` v4.57.6 `ConvBertModel`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py>).
//!
//! ```
//! use convbert_model::{ConvBertConfig, ConvBertInputs, ConvBertModel, ForwardOptions};
//! use tch::{nn::VarStore, Device, Kind, Tensor};
//!
//! let cfg = ConvBertConfig::from_json_str(
//!     r#"{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
//!        "intermediate_size": 24, "embedding_size": 8, "max_position_embeddings": 32}"#,
//! )?;
//! let vs = VarStore::new(Device::Cpu);
//! let model = ConvBertModel::new(&vs.root(), &cfg)?;
//! let ids = Tensor::from_slice(&[3i64, 7, 9, 0]).view([1, 4]);
//! let mask = Tensor::from_slice(&[1i64, 1, 1, 0]).view([1, 4]);
//! let inputs = ConvBertInputs { input_ids: Some(&ids), attention_mask: Some(&mask), ..Default::default() };
//! let options = ForwardOptions { output_hidden_states: true, ..Default::default() };
//! let out = model.forward_t(&inputs, &options, false)?;
//! assert_eq!(out.last_hidden_state.size(), [1, 4, 16]);
//! assert_eq!(out.hidden_states.map(|h| h.len()), Some(2));
//! assert_eq!(out.last_hidden_state.kind(), Kind::Float);
//! # Ok::<(), convbert_model::ConvBertError>(())
//! ```

mod activation;
mod attention;
pub mod checkpoint;
mod config;
mod device;
mod embeddings;
mod encoder;
mod error;
mod grouped_linear;
pub mod hub;
mod inputs;
mod layer;
mod mask;
mod model;
pub mod primitives;
mod separable_conv;

pub use activation::Activation;
pub use checkpoint::{load_into, save_safetensors, LoadOptions, LoadReport, Weights};
pub use config::ConvBertConfig;
pub use device::parse_device;
pub use error::{ConvBertError, Result};
pub use inputs::{with_prevalidated_ids, ConvBertInputs, ForwardOptions};
pub use model::{ConvBertModel, ConvBertModelOutput};
