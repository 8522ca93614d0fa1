//! `convbert train`: fine-tunes a ConvBERT head (or trains one from a config) on a task's data with
//! `convbert-train` (HF Trainer parity), writing checkpoints, `train_log.jsonl`, `loss_curve.svg`,
//! the final model and the tokenizer's vocab.txt into `--output`; prints a JSON summary.
//! A new run refuses a non-empty `--output` unless `--resume-from` or `--overwrite-output-dir`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use convbert_distributed::{Backend, DistEnv, ProcessGroup};
use convbert_model::{checkpoint, ConvBertConfig};
use convbert_tokenizer::{ConvBertTokenizer, TokenizerConfig};
use convbert_train::data::{read_dataset, DataOptions, Task};
use convbert_train::{
    check_output_dir, train, AdamWConfig, Collator, DataParallel, MixedPrecision, MlmMasking,
    TaskModel, TrainError, TrainingArgs, Warmup,
};
use serde_json::{json, Map, Value};
use tch::Device;

use crate::common::{exit_code, parse_device, CliError, CliResult};

/// Arguments of `convbert train` (hyper-parameter defaults are HF TrainingArguments').
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The head to train
    #[arg(long, value_enum)]
    task: TaskArg,
    /// Checkpoint directory or HF model id (local cache) to start from
    #[arg(long, required_unless_present = "config")]
    model: Option<PathBuf>,
    /// config.json of a model trained from scratch (or replacing the checkpoint's)
    #[arg(long)]
    config: Option<PathBuf>,
    /// vocab.txt or tokenizer.json (default: the model's, else bert-base-uncased)
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Training data (JSONL, CSV, SQuAD JSON or text lines, by task)
    #[arg(long)]
    train: PathBuf,
    /// Evaluation data, same format
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Output directory; must be empty (or absent) unless --resume-from or --overwrite-output-dir
    #[arg(long, short)]
    output: PathBuf,
    /// Train into a non-empty --output: first remove its earlier run's checkpoint-* directories,
    /// final model (config.json, model.safetensors), train_log.jsonl and loss_curve.svg; other
    /// files stay
    #[arg(long, conflicts_with = "resume_from")]
    overwrite_output_dir: bool,
    /// Peak learning rate of AdamW
    #[arg(long, default_value_t = 5e-5)]
    learning_rate: f64,
    /// AdamW weight decay (not on biases and LayerNorm weights)
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// AdamW beta1
    #[arg(long, default_value_t = 0.9)]
    adam_beta1: f64,
    /// AdamW beta2
    #[arg(long, default_value_t = 0.999)]
    adam_beta2: f64,
    /// AdamW epsilon
    #[arg(long, default_value_t = 1e-8)]
    adam_epsilon: f64,
    /// Warm-up steps (overrides --warmup-ratio)
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// Fraction of the steps spent warming up the learning rate linearly
    #[arg(long, default_value_t = 0.0)]
    warmup_ratio: f64,
    /// Passes over the training data
    #[arg(long, visible_alias = "num-train-epochs", default_value_t = 3)]
    epochs: usize,
    /// Total optimizer steps (overrides --epochs)
    #[arg(long)]
    max_steps: Option<usize>,
    /// Training examples per step (before gradient accumulation)
    #[arg(
        long,
        visible_alias = "per-device-train-batch-size",
        default_value_t = 8
    )]
    batch_size: usize,
    /// Evaluation examples per forward pass
    #[arg(
        long,
        visible_alias = "per-device-eval-batch-size",
        default_value_t = 8
    )]
    eval_batch_size: usize,
    /// Steps whose gradients are summed before each optimizer update
    #[arg(long, default_value_t = 1)]
    gradient_accumulation_steps: usize,
    /// 0 disables clipping
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Random seed of the weights, shuffling, dropout and masking
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Log the training loss every N optimizer steps
    #[arg(long, default_value_t = 500)]
    logging_steps: usize,
    /// Evaluate every N optimizer steps [default: at the end only]
    #[arg(long)]
    eval_steps: Option<usize>,
    /// Save a checkpoint-<step> directory every N optimizer steps [default: none]
    #[arg(long)]
    save_steps: Option<usize>,
    /// Keep only the newest N checkpoints
    #[arg(long)]
    save_total_limit: Option<usize>,
    /// Intra-op CPU threads (default: libtorch's choice)
    #[arg(long)]
    threads: Option<usize>,
    /// cpu | cuda | cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
    /// bf16 mixed precision (autocast with fp32 master weights; CPU or CUDA)
    #[arg(long, conflicts_with = "fp16")]
    bf16: bool,
    /// fp16 mixed precision with dynamic loss scaling (CUDA)
    #[arg(long)]
    fp16: bool,
    /// Longest example in tokens, special tokens included (longer ones are truncated)
    #[arg(long, default_value_t = 128)]
    max_length: usize,
    /// QA: overlap of context windows in tokens, as HF's run_qa [default: 128, at most half of
    /// --max-length]
    #[arg(long)]
    doc_stride: Option<usize>,
    /// MLM: fraction of the tokens masked
    #[arg(long, default_value_t = 0.15)]
    mlm_probability: f64,
    /// MLM: mask whole words
    #[arg(long)]
    whole_word_mask: bool,
    /// A checkpoint-<step> directory of an earlier run with the same arguments
    #[arg(long, visible_alias = "resume-from-checkpoint")]
    resume_from: Option<PathBuf>,
    /// No progress bar
    #[arg(long)]
    no_progress: bool,
    /// Join a torch.distributed job (data-parallel) even when WORLD_SIZE is absent or 1; with
    /// WORLD_SIZE > 1 (torchrun, srun, PyTorchJob) this is implied. --batch-size is per process
    #[arg(long)]
    distributed: bool,
    /// torch.distributed backend: gloo (CPU tensors; CUDA gradients go through host memory) or
    /// nccl (CUDA, builds with the `nccl` feature); default nccl on CUDA where built, else gloo
    #[arg(long, value_enum)]
    ddp_backend: Option<DdpBackend>,
    /// Seconds a rank waits for the others (rendezvous, every all-reduce) before failing
    #[arg(long, default_value_t = 1800)]
    ddp_timeout: u64,
}

/// `--task`: the head to train.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TaskArg {
    TextClassification,
    TokenClassification,
    QuestionAnswering,
    MultipleChoice,
    MaskedLm,
}

impl TaskArg {
    fn task(self) -> Task {
        match self {
            TaskArg::TextClassification => Task::TextClassification,
            TaskArg::TokenClassification => Task::TokenClassification,
            TaskArg::QuestionAnswering => Task::QuestionAnswering,
            TaskArg::MultipleChoice => Task::MultipleChoice,
            TaskArg::MaskedLm => Task::MaskedLm,
        }
    }
}

/// Runs `convbert train`; errors go to stderr with exit code 1 (2 for bad arguments).
pub fn main(args: &TrainArgs) -> ExitCode {
    exit_code(run(args).and_then(|summary| match summary {
        Some(summary) => print_summary(&summary),
        None => Ok(()),
    }))
}

/// `--ddp-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DdpBackend {
    Gloo,
    Nccl,
}

/// The c10d backend of `--ddp-backend` (or the device's default).
fn backend(a: &TrainArgs, cuda: bool) -> CliResult<Backend> {
    match (a.ddp_backend, cuda) {
        (Some(DdpBackend::Gloo), _) => Ok(Backend::Gloo),
        #[cfg(feature = "nccl")]
        (Some(DdpBackend::Nccl), true) | (None, true) => Ok(Backend::Nccl),
        #[cfg(feature = "nccl")]
        (Some(DdpBackend::Nccl), false) => Err(CliError::Usage(
            "--ddp-backend nccl needs --device cuda".into(),
        )),
        #[cfg(not(feature = "nccl"))]
        (Some(DdpBackend::Nccl), _) => Err(CliError::Usage(
            "--ddp-backend nccl: this convbert was built without NCCL (cargo feature `nccl` of \
             convbert-cli); use --ddp-backend gloo"
                .into(),
        )),
        (None, _) => Ok(Backend::Gloo),
    }
}

/// The job this process joins: `--distributed`, or a launcher's WORLD_SIZE above 1.
fn join_job(a: &TrainArgs, cuda: bool) -> CliResult<Option<DataParallel>> {
    let world = std::env::var("WORLD_SIZE")
        .or_else(|_| std::env::var("SLURM_NTASKS"))
        .ok();
    let launched = world.as_deref().is_some_and(|w| w.trim() != "1");
    if !(a.distributed || launched) {
        return Ok(None);
    }
    let backend = backend(a, cuda)?;
    let env = DistEnv::from_env().map_err(|e| CliError::Usage(e.to_string()))?;
    let timeout = Duration::from_secs(a.ddp_timeout.max(1));
    let group = ProcessGroup::with_backend(&env, backend, timeout).map_err(CliError::failed)?;
    Ok(Some(DataParallel::new(group)))
}

/// `--device cuda` of a data-parallel rank is the GPU of its local rank (torchrun's LOCAL_RANK).
fn rank_device(device: Device, a: &TrainArgs, dp: Option<&DataParallel>) -> Device {
    match (device, dp) {
        (Device::Cuda(0), Some(_)) if a.device == "cuda" => {
            let local = std::env::var("LOCAL_RANK")
                .or_else(|_| std::env::var("SLURM_LOCALID"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            Device::Cuda(local)
        }
        _ => device,
    }
}

/// Writes the summary line to stdout. A closed stdout (`convbert train ... | head -0`) ends the
/// command quietly: everything is saved by then, and nobody reads the summary.
fn print_summary(summary: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{summary}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::failed(format!(
            "writing the summary to stdout: {e}"
        ))),
        _ => Ok(()),
    }
}

/// A usage error (exit 2) for a bad argument or a non-empty output directory, in flag names.
fn usage(e: TrainError) -> CliError {
    match e {
        TrainError::OutputDirNotEmpty(dir) => CliError::Usage(format!(
            "--output {} is not empty (an earlier run?): give another directory, --resume-from \
             one of its checkpoints, or --overwrite-output-dir",
            dir.display()
        )),
        // The library names its fields (`learning_rate`); the user typed flags.
        TrainError::Argument { name, reason } => {
            CliError::Usage(format!("--{}: {reason}", flag_of(name)))
        }
        other => CliError::Usage(other.to_string()),
    }
}

/// The command-line flag of a `TrainingArgs` field.
fn flag_of(field: &str) -> String {
    match field {
        "train_batch_size" => "batch-size".into(),
        "num_train_epochs" => "epochs".into(),
        "mixed_precision" => "fp16/--bf16".into(),
        "resume_from_checkpoint" => "resume-from".into(),
        other => other.replace('_', "-"),
    }
}

fn load_tokenizer(
    explicit: Option<&Path>,
    model_dir: Option<&Path>,
) -> CliResult<ConvBertTokenizer> {
    let candidates: Vec<PathBuf> = match (explicit, model_dir) {
        (Some(p), _) => vec![p.to_path_buf()],
        (None, Some(d)) => vec![d.join("tokenizer.json"), d.join("vocab.txt")],
        (None, None) => Vec::new(),
    };
    let found = candidates.iter().find(|p| p.exists() || explicit.is_some());
    if let Some(path) = found {
        let is_json = path.extension().is_some_and(|e| e == "json");
        return if is_json {
            ConvBertTokenizer::from_tokenizer_json(path)
        } else {
            ConvBertTokenizer::from_vocab_file(path, TokenizerConfig::default())
        }
        .map_err(CliError::failed);
    }
    ConvBertTokenizer::bert_base_uncased().map_err(CliError::failed)
}

/// The label names of the model config, unless they are HF's placeholders `LABEL_i`.
fn config_labels(config: &ConvBertConfig) -> Option<Vec<String>> {
    let Some(Value::Object(m)) = config.extra.get("id2label") else {
        return None;
    };
    let mut pairs: Vec<(i64, String)> = m
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
        .collect();
    pairs.sort();
    let names: Vec<String> = pairs.into_iter().map(|(_, n)| n).collect();
    let placeholders = names
        .iter()
        .enumerate()
        .all(|(i, n)| *n == format!("LABEL_{i}"));
    (!placeholders).then_some(names)
}

fn set_labels(config: &mut ConvBertConfig, names: &[String]) {
    let id2label: Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (i.to_string(), Value::from(n.as_str())))
        .collect();
    let label2id: Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), Value::from(i)))
        .collect();
    config
        .extra
        .insert("id2label".into(), Value::Object(id2label));
    config
        .extra
        .insert("label2id".into(), Value::Object(label2id));
    config.extra.remove("num_labels");
}

/// The library's training arguments for the command line's.
fn training_args(a: &TrainArgs, device: Device) -> TrainingArgs {
    TrainingArgs {
        output_dir: a.output.clone(),
        learning_rate: a.learning_rate,
        adam: AdamWConfig {
            beta1: a.adam_beta1,
            beta2: a.adam_beta2,
            eps: a.adam_epsilon,
            weight_decay: a.weight_decay,
            ..AdamWConfig::default()
        },
        warmup: a
            .warmup_steps
            .map_or(Warmup::Ratio(a.warmup_ratio), Warmup::Steps),
        num_train_epochs: a.epochs,
        max_steps: a.max_steps,
        train_batch_size: a.batch_size,
        eval_batch_size: a.eval_batch_size,
        gradient_accumulation_steps: a.gradient_accumulation_steps,
        max_grad_norm: a.max_grad_norm,
        seed: a.seed,
        logging_steps: a.logging_steps,
        eval_steps: a.eval_steps,
        save_steps: a.save_steps,
        save_total_limit: a.save_total_limit,
        threads: a.threads,
        device,
        mixed_precision: match (a.bf16, a.fp16) {
            (true, _) => MixedPrecision::Bf16,
            (_, true) => MixedPrecision::Fp16,
            _ => MixedPrecision::No,
        },
        progress: !a.no_progress,
        resume_from: a.resume_from.clone(),
        data_parallel: None,
        overwrite_output_dir: a.overwrite_output_dir,
    }
}

/// Writes vocab.txt into `output` whole: saved into a `.tmp-vocab` directory (which the next
/// run's start removes if a kill leaves it) and renamed into place, never a truncated file.
fn save_vocabulary(tokenizer: &ConvBertTokenizer, output: &Path) -> CliResult {
    let tmp = output.join(".tmp-vocab");
    let failed = |e: std::io::Error| CliError::failed(format!("{}: {e}", tmp.display()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(failed)?;
    }
    std::fs::create_dir(&tmp).map_err(failed)?;
    let (written, _) = tokenizer
        .save_vocabulary(&tmp, None)
        .map_err(CliError::failed)?;
    let target = output.join("vocab.txt");
    std::fs::rename(&written, &target)
        .map_err(|e| CliError::failed(format!("{}: {e}", target.display())))?;
    std::fs::remove_dir(&tmp).map_err(failed)
}

/// Fails when no file can be created in `output`, or (not created yet) in the nearest
/// directory above it; `output` itself is not created, and the probe is an unnamed file.
fn check_writable(output: &Path) -> CliResult {
    let mut dir = output;
    while !dir.exists() {
        dir = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
    tempfile::tempfile_in(dir)
        .map(drop)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", output.display())))
}

/// Trains; the summary to print, on rank 0 of a distributed job (and on a single process).
fn run(a: &TrainArgs) -> CliResult<Option<String>> {
    let task = a.task.task();
    let device = parse_device(&a.device)?;
    let dp = join_job(a, device.is_cuda())?;
    let device = rank_device(device, a, dp.as_ref());
    let mut args = training_args(a, device);
    args.data_parallel = dp.clone();
    args.validate().map_err(usage)?;
    // Before reading data or building the model: a refused directory costs nothing.
    check_output_dir(&args).map_err(usage)?;
    // And writable, before the data is read and tokenized (rank 0 alone writes in a job).
    if dp.as_ref().is_none_or(|dp| dp.is_main()) {
        check_writable(&a.output)?;
    }
    let model_dir = a
        .model
        .as_deref()
        .map(checkpoint::locate)
        .transpose()
        .map_err(CliError::failed)?;
    let config_path = match (&a.config, &model_dir) {
        (Some(c), _) => c.clone(),
        (None, Some(d)) => d.join("config.json"),
        (None, None) => return Err(CliError::Usage("give --model or --config".into())),
    };
    let mut config = ConvBertConfig::from_file(&config_path).map_err(CliError::failed)?;
    let tokenizer = load_tokenizer(a.tokenizer.as_deref(), model_dir.as_deref())?;
    let classifies = matches!(task, Task::TextClassification | Task::TokenClassification);
    let mut options = DataOptions {
        max_length: a.max_length,
        doc_stride: a
            .doc_stride
            .unwrap_or_else(|| DataOptions::default_doc_stride(a.max_length)),
        label_names: if classifies {
            config_labels(&config)
        } else {
            None
        },
    };
    let train_set = read_dataset(task, &a.train, &tokenizer, &options).map_err(CliError::failed)?;
    if classifies {
        options.label_names = Some(train_set.label_names.clone());
        set_labels(&mut config, &train_set.label_names);
    }
    let eval_set = a
        .eval
        .as_ref()
        .map(|p| read_dataset(task, p, &tokenizer, &options))
        .transpose()
        .map_err(CliError::failed)?;
    // HF's set_seed(args.seed) before the model is built: fresh weights (from a config, or a new
    // head on a checkpoint) are the same in every run of the same seed.
    tch::manual_seed(a.seed as i64);
    let model = match &model_dir {
        Some(dir) => TaskModel::from_pretrained(task, dir, config, device),
        None => TaskModel::from_config(task, config, device),
    }
    .map_err(CliError::failed)?;
    let vocab = tokenizer.vocab();
    let token = |t: &str| {
        vocab
            .token_to_id(t)
            .map(i64::from)
            .ok_or_else(|| CliError::failed(format!("no {t} in the vocabulary")))
    };
    let cfg = tokenizer.config();
    let collator = Collator {
        pad_id: token(&cfg.pad_token)?,
        mlm: match task {
            Task::MaskedLm => Some(MlmMasking {
                probability: a.mlm_probability,
                whole_word: a.whole_word_mask,
                mask_id: token(&cfg.mask_token)?,
                vocab_size: model.config().vocab_size,
            }),
            _ => None,
        },
    };
    let out =
        train(&model, &train_set, eval_set.as_ref(), &collator, &args).map_err(|e| match e {
            TrainError::OutputDirNotEmpty(_) => usage(e),
            other => CliError::failed(other),
        })?;
    if dp.as_ref().is_some_and(|dp| !dp.is_main()) {
        return Ok(None);
    }
    save_vocabulary(&tokenizer, &a.output)?;
    let summary = json!({
        "global_step": out.global_step,
        "train_loss": out.train_loss,
        "train_examples": train_set.len(),
        "examples_per_second": out.examples_per_second,
        "eval_loss": out.eval.as_ref().map(|e| e.loss),
        "eval_metrics": out.eval.as_ref().map(|e| e.metrics.clone()),
        "output": a.output,
    });
    Ok(Some(summary.to_string()))
}
