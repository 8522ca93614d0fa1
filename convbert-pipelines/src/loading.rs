//! What every pipeline does at load time: find the checkpoint (a directory or an HF model id in
//! the local cache), load its tokenizer, and turn a head's load report into a user warning when
//! the head weights were newly initialised (e.g. the encoder-only YituTech checkpoints).

use std::path::{Path, PathBuf};

use convbert_heads::{
    ConvBertForMaskedLM, ConvBertForQuestionAnswering, ConvBertForSequenceClassification,
    ConvBertForTokenClassification, HeadLoadReport,
};
use convbert_model::{checkpoint, ConvBertInputs, ForwardOptions};
use tch::{Device, Kind, Tensor};

use crate::batch::{run_batched, Granularity, Row};
use crate::error::Result;
use crate::options::PipelineOptions;
use crate::tokenizer::TextTokenizer;

/// A task head a pipeline runs: how it loads and what its load report says.
pub(crate) trait TaskHead: Sized {
    fn load(dir: &Path, device: Device, kind: Kind) -> convbert_heads::Result<Self>;
    fn report(&self) -> Option<&HeadLoadReport>;
}

macro_rules! task_head {
    ($($head:ty),*) => {$(
        impl TaskHead for $head {
            fn load(dir: &Path, device: Device, kind: Kind) -> convbert_heads::Result<Self> {
                <$head>::from_pretrained(dir, device, kind)
            }
            fn report(&self) -> Option<&HeadLoadReport> {
                self.load_report()
            }
        }
    )*};
}

task_head!(
    ConvBertForMaskedLM,
    ConvBertForSequenceClassification,
    ConvBertForTokenClassification,
    ConvBertForQuestionAnswering
);

/// What every head pipeline holds: the model, its tokenizer, the options and the load warnings.
#[derive(Debug)]
pub(crate) struct Loaded<H> {
    pub(crate) model: H,
    pub(crate) tokenizer: TextTokenizer,
    pub(crate) options: PipelineOptions,
    pub(crate) warnings: Vec<String>,
}

impl<H: TaskHead> Loaded<H> {
    /// Loads a checkpoint directory or a cached HF model id; warns when the `task` head is new.
    pub(crate) fn from_pretrained(
        source: &Path,
        options: PipelineOptions,
        task: &str,
    ) -> Result<Self> {
        options.check()?;
        let (dir, tokenizer) = locate_with_tokenizer(source)?;
        let model = H::load(&dir, options.device, options.kind)?;
        Ok(Self::new(model, tokenizer, options, task))
    }

    /// Wraps an already built model and tokenizer.
    pub(crate) fn new(
        model: H,
        tokenizer: TextTokenizer,
        options: PipelineOptions,
        task: &str,
    ) -> Self {
        let warnings = head_warnings(model.report(), task);
        Self {
            model,
            tokenizer,
            options,
            warnings,
        }
    }
}

/// The checkpoint directory of `source` and its tokenizer.
pub(crate) fn locate_with_tokenizer(source: &Path) -> Result<(PathBuf, TextTokenizer)> {
    let dir = checkpoint::locate(source)?;
    let tokenizer = TextTokenizer::from_dir(&dir)?;
    Ok((dir, tokenizer))
}

/// A warning when `report` says head weights were not in the checkpoint.
fn head_warnings(report: Option<&HeadLoadReport>, task: &str) -> Vec<String> {
    match report {
        Some(r) if !r.is_complete() => vec![format!(
            "warning: {task}: the checkpoint at {} has no trained {} head ({}); these weights are \
             newly initialised at random, so the {task} results are meaningless. Use a checkpoint \
             fine-tuned for {task}.",
            r.source.display(),
            r.class,
            r.newly_initialized.join(", ")
        )],
        _ => Vec::new(),
    }
}

impl<H> Loaded<H> {
    /// [`run_batched`] with this pipeline's options and padding id.
    pub(crate) fn run_rows<F>(
        &self,
        rows: &[Row],
        granularity: Granularity,
        forward: F,
    ) -> Result<Vec<Vec<Tensor>>>
    where
        F: FnMut(&ConvBertInputs, &ForwardOptions) -> Result<Vec<Tensor>>,
    {
        let pad_id = i64::from(self.tokenizer.pad_id());
        run_batched(rows, &self.options, pad_id, granularity, forward)
    }
}

/// Checks a sequence length against the model's position table.
pub(crate) fn check_len(len: usize, max: i64) -> Result<(), String> {
    if len as i64 > max {
        Err(format!(
            "sequence of {len} tokens exceeds max_position_embeddings = {max}"
        ))
    } else {
        Ok(())
    }
}
