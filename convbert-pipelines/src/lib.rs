//! Task pipelines on ConvBERT with Hugging Face `pipeline(...)` parity (transformers v4.57.6):
//! [`FillMaskPipeline`] (with `targets`), [`TextClassificationPipeline`],
//! [`TokenClassificationPipeline`] (NER, with aggregation strategies and `stride` windows over long
//! texts), [`QuestionAnsweringPipeline`] and [`FeatureExtractionPipeline`].
//!
//! Every pipeline tokenizes with the checkpoint's tokenizer ([`TextTokenizer`]), sorts inputs by
//! length into batches of [`PipelineOptions::batch_size`] and returns results in input order. By
//! default the model runs in `convbert-model`'s padding-invariant mode, so a result never depends
//! on what else was in its batch (see [`PipelineOptions`]). Inputs that cannot be processed get an
//! `Err` in their own slot; the others are still computed. A text longer than the model takes is
//! such an error unless the pipeline's `with_truncation` ([`Truncation`], HF's `truncation=True`
//! / `max_length`) cuts it.
//!
//! ```
//! use convbert_pipelines::{FillMaskPipeline, PipelineOptions};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/pipelines/models/mlm");
//! let fill = FillMaskPipeline::from_pretrained(dir, PipelineOptions::default())?;
//! let results = fill.run(&["paris is the [MASK] of france.", "no mask here"], 3)?;
//! let first = results[0].as_ref().expect("one mask");
//! assert_eq!(first.len(), 1); // one [MASK]
//! assert_eq!(first[0].len(), 3); // top 3
//! assert!(first[0][0].score >= first[0][1].score);
//! assert!(results[1].is_err()); // no [MASK]: reported, the first input still answered
//! # Ok::<(), convbert_pipelines::PipelineError>(())
//! ```

mod batch;
mod batch_model;
mod error;
mod feature_extraction;
mod fill_mask;
mod loading;
mod options;
mod quantization;
mod question_answering;
mod text_classification;
mod token_classification;
mod tokenizer;

pub use batch::{Prepared, Row};
pub use batch_model::BatchModel;
pub use convbert_cuda_graphs::GraphStats;
pub use error::{PipelineError, Result};
pub use feature_extraction::{FeatureExtractionPipeline, Pooling};
pub use fill_mask::{FillMaskCandidate, FillMaskPipeline, FillMaskTargets};
pub use options::{PipelineOptions, Truncation};
pub use quantization::Quantization;
pub use question_answering::{Answer, QaInput, QaOptions, QuestionAnsweringPipeline};
pub use text_classification::{LabelScore, ScoreFunction, TextClassificationPipeline, TextInput};
pub use token_classification::{AggregationStrategy, Entity, TokenClassificationPipeline};
pub use tokenizer::{TextTokenizer, TruncationSide};
