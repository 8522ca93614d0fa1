//! What every pipeline does at load time: find the checkpoint (a directory or an HF model id in
//! the local cache), load its tokenizer, and turn a head's load report into a user warning when
//! the head weights were newly initialised (e.g. the encoder-only YituTech checkpoints). The model
//! sits behind a lock: libtorch tensors may move between threads but not be shared, and the lock
//! lets a pipeline be shared (tokenizing and post-processing need no model) while one thread at a
//! time runs it. On a CUDA device small batches replay from CUDA graphs ([`GraphCache`], next to
//! the model under its own lock, always taken after the model's).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use convbert_cuda_graphs::{
    GraphCache, GraphInputs, GraphPolicy, GraphStats, HostBatch, InputLimits,
};
use convbert_heads::{
    ConvBertForMaskedLM, ConvBertForQuestionAnswering, ConvBertForSequenceClassification,
    ConvBertForTokenClassification, HeadLoadReport,
};
use convbert_model::primitives::{LinearKernelFactory, ReplaceLinears};
use convbert_model::{checkpoint, ConvBertConfig, ConvBertInputs, ConvBertModel, ForwardOptions};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::batch::{forward_batch, run_prepared, single_outputs, Granularity, Prepared, Row};
use crate::error::{PipelineError, Result};
use crate::options::{PipelineOptions, Truncation};
use crate::tokenizer::TextTokenizer;

/// A model a pipeline runs: how it loads, its encoder and what its load report says; its GEMMs
/// can be replaced (int8).
pub(crate) trait TaskHead: Sized + Send + ReplaceLinears {
    fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self>;
    fn report(&self) -> Option<&HeadLoadReport>;
    fn encoder(&self) -> &ConvBertModel;
}

macro_rules! task_head {
    ($($head:ty),*) => {$(
        impl TaskHead for $head {
            fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
                Ok(<$head>::from_pretrained(dir, device, kind)?)
            }
            fn report(&self) -> Option<&HeadLoadReport> {
                self.load_report()
            }
            fn encoder(&self) -> &ConvBertModel {
                self.convbert()
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

/// The encoder alone (any checkpoint: base or head, whose head keys are ignored).
#[derive(Debug)]
pub(crate) struct Encoder {
    model: ConvBertModel,
    _vs: VarStore,
}

impl TaskHead for Encoder {
    fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        let (model, vs) = ConvBertModel::from_pretrained(dir, device, kind)?;
        Ok(Self { model, _vs: vs })
    }
    fn report(&self) -> Option<&HeadLoadReport> {
        None
    }
    fn encoder(&self) -> &ConvBertModel {
        &self.model
    }
}

impl ReplaceLinears for Encoder {
    fn kind_and_device(&self) -> (Kind, Device) {
        self.model.kind_and_device()
    }
    fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> convbert_model::Result<usize> {
        self.model.replace_linears(make)
    }
}

/// What every pipeline holds: the model, its config, its tokenizer, the options and the load
/// warnings.
#[derive(Debug)]
pub(crate) struct Loaded<H> {
    model: Mutex<H>,
    graphs: Mutex<GraphCache>,
    /// The graphs' counts after the last batch: readable while a batch runs.
    graph_stats: Mutex<GraphStats>,
    pub(crate) config: ConvBertConfig,
    pub(crate) tokenizer: TextTokenizer,
    pub(crate) options: PipelineOptions,
    pub(crate) warnings: Vec<String>,
    /// HF's `truncation=True`, when set by the pipeline's `with_truncation`.
    pub(crate) truncation: Option<Truncation>,
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
        let mut model = H::load(&dir, options.device, options.kind)?;
        options.quantization.apply(&mut model)?;
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
        let config = model.encoder().config().clone();
        let graphs = graph_cache(&options, &config);
        Self {
            graph_stats: Mutex::new(graphs.stats()),
            graphs: Mutex::new(graphs),
            config,
            model: Mutex::new(model),
            tokenizer,
            options,
            warnings,
            truncation: None,
        }
    }

    /// Sets HF's truncation; a `max_length` shorter than a text's special tokens is refused.
    pub(crate) fn set_truncation(&mut self, truncation: Option<Truncation>) -> Result<()> {
        if let Some(max) = truncation.and_then(|t| t.max_length) {
            self.tokenizer.check_max_length(max, false)?;
        }
        self.truncation = truncation;
        Ok(())
    }

    /// The model, for one thread at a time.
    pub(crate) fn model(&self) -> Result<MutexGuard<'_, H>> {
        self.model.lock().map_err(|_| PipelineError::Poisoned)
    }

    /// [`run_prepared`](crate::batch::run_prepared) with this pipeline's model, options and
    /// padding id.
    pub(crate) fn run_prepared<T, F, G>(
        &self,
        prepared: Vec<Result<Prepared>>,
        granularity: Granularity,
        mut forward: F,
        finish: G,
    ) -> Result<Vec<Result<T>>>
    where
        F: FnMut(&H, &ConvBertInputs, &ForwardOptions) -> Result<Vec<Tensor>>,
        G: FnMut(usize, &Prepared, Vec<Vec<Tensor>>) -> Result<T>,
    {
        let model = self.model()?;
        let mut graphs = self.graphs()?;
        let results = run_prepared(
            prepared,
            &self.options,
            self.pad_id(),
            granularity,
            |host, fo| run_graphed(&mut graphs, "head", host, |x| forward(&model, x, fo)),
            finish,
        );
        self.record_graph_stats(&graphs)?;
        results
    }

    /// One batch of `rows` through `forward` (the task head); per row its outputs.
    pub(crate) fn batch_rows<F>(
        &self,
        rows: &[&Row],
        granularity: Granularity,
        forward: F,
    ) -> Result<Vec<Vec<Tensor>>>
    where
        F: Fn(&H, &ConvBertInputs, &ForwardOptions) -> Result<Vec<Tensor>>,
    {
        self.batch_rows_as("head", rows, granularity, forward)
    }

    /// One batch of `rows` through the encoder; per row its `last_hidden_state` (L, D).
    pub(crate) fn feature_rows(&self, rows: &[&Row]) -> Result<Vec<Tensor>> {
        single_outputs(self.batch_rows_as(
            "features",
            rows,
            Granularity::Token,
            |m, inputs, fo| {
                Ok(vec![
                    m.encoder().forward_t(inputs, fo, false)?.last_hidden_state,
                ])
            },
        )?)
    }

    /// [`batch_rows`](Self::batch_rows) with `what` naming the forward for its CUDA graphs.
    fn batch_rows_as<F>(
        &self,
        what: &'static str,
        rows: &[&Row],
        granularity: Granularity,
        forward: F,
    ) -> Result<Vec<Vec<Tensor>>>
    where
        F: Fn(&H, &ConvBertInputs, &ForwardOptions) -> Result<Vec<Tensor>>,
    {
        let model = self.model()?;
        let mut graphs = self.graphs()?;
        let outputs = forward_batch(
            rows,
            &self.options,
            self.pad_id(),
            granularity,
            |host, fo| run_graphed(&mut graphs, what, host, |x| forward(&model, x, fo)),
        );
        self.record_graph_stats(&graphs)?;
        outputs
    }

    /// The CUDA graph cache, for the thread holding the model.
    fn graphs(&self) -> Result<MutexGuard<'_, GraphCache>> {
        self.graphs.lock().map_err(|_| PipelineError::Poisoned)
    }

    fn record_graph_stats(&self, graphs: &GraphCache) -> Result<()> {
        *self
            .graph_stats
            .lock()
            .map_err(|_| PipelineError::Poisoned)? = graphs.stats();
        Ok(())
    }

    /// The CUDA graphs' counts as of the last finished batch.
    pub(crate) fn graph_stats(&self) -> Result<GraphStats> {
        let stats = self
            .graph_stats
            .lock()
            .map_err(|_| PipelineError::Poisoned)?;
        Ok(stats.clone())
    }

    pub(crate) fn pad_id(&self) -> i64 {
        i64::from(self.tokenizer.pad_id())
    }
}

/// CUDA graphs for a model on `options.device`, or an always-eager cache when they are off or
/// the device is not CUDA.
fn graph_cache(options: &PipelineOptions, config: &ConvBertConfig) -> GraphCache {
    let limits = InputLimits {
        vocab_size: config.vocab_size,
        type_vocab_size: config.type_vocab_size,
        max_len: usize::try_from(config.max_position_embeddings).unwrap_or(0),
    };
    if options.cuda_graphs {
        GraphCache::new(options.device, limits, GraphPolicy::default())
    } else {
        GraphCache::disabled(limits)
    }
}

/// `host` through `forward` (given the model's inputs): replayed from the graph of `what` for
/// its bucket, or eagerly.
fn run_graphed<F>(
    graphs: &mut GraphCache,
    what: &'static str,
    host: &HostBatch,
    mut forward: F,
) -> Result<Vec<Tensor>>
where
    F: FnMut(&ConvBertInputs) -> Result<Vec<Tensor>>,
{
    graphs.run(what, host, |x: &GraphInputs| forward(&x.model_inputs()))
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

/// Checks a sequence length against the model's position table.
pub(crate) fn check_len(len: usize, max: i64) -> Result<()> {
    let max = usize::try_from(max).unwrap_or(0);
    if len > max {
        Err(PipelineError::TooLong {
            len,
            max,
            limit: "max_position_embeddings",
        })
    } else {
        Ok(())
    }
}
