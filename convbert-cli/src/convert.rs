//! `convbert convert`: any checkpoint this project reads (safetensors, `.bin`, sharded,
//! `tf_model.h5`, a TF1 checkpoint) written again as `model.safetensors` or as the `tf_model.h5`
//! of HF's `TFConvBert*` classes, with config.json and the tokenizer files. The directory appears
//! whole or not at all: everything is written into a temporary directory beside it and renamed.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use convbert_heads::{
    ConvBertForMaskedLM, ConvBertForMultipleChoice, ConvBertForQuestionAnswering,
    ConvBertForSequenceClassification, ConvBertForTokenClassification, HeadLoadReport,
};
use convbert_model::checkpoint::{self, WeightsFormat};
use convbert_model::{ConvBertConfig, ConvBertModel};
use tch::{Device, Kind};

use crate::common::{default_model, CliError, CliResult};
use crate::forward::{task_of, Task};

/// The files of a checkpoint directory that describe its tokenizer, copied as they are.
const TOKENIZER_FILES: [&str; 5] = [
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
];

/// The HF class of the bare encoder.
const MODEL_CLASS: &str = "ConvBertModel";

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// tf_model.h5, for TFConvBert* (and PyTorch's TF loader)
    Tf,
    /// model.safetensors, for ConvBert* in PyTorch
    Safetensors,
}

/// Arguments of `convbert convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Checkpoint directory, HF model id (from the HF cache, downloaded from the Hub when missing), or one weights file (tf_model.h5, a TF1 model.ckpt-N.index) [default: the shipped checkpoint]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Weights format to write
    #[arg(long, value_enum)]
    pub format: Format,
    /// New directory to write (an existing one must be empty)
    #[arg(long, short)]
    pub output: PathBuf,
    /// The model class [default: config.json `architectures`, else ConvBertModel]
    #[arg(long, value_enum, default_value = "auto")]
    pub task: Task,
}

pub fn run(args: &ConvertArgs) -> CliResult {
    let source = args.model.clone().unwrap_or_else(default_model);
    let dir = checkpoint::locate(&source).map_err(CliError::failed)?;
    let config = ConvBertConfig::from_file(dir.join("config.json")).map_err(CliError::failed)?;
    let format = match args.format {
        Format::Tf => WeightsFormat::TensorFlow,
        Format::Safetensors => WeightsFormat::Safetensors,
    };
    if format == WeightsFormat::TensorFlow {
        checkpoint::check_tf_compatible(&config).map_err(CliError::failed)?;
    }
    let task = match args.task {
        Task::Auto => task_of(&config)?,
        t => t,
    };
    let staging = Staging::new(&args.output)?;
    let summary = write_model(&source, &dir, &config, task, format, staging.path())?;
    let mut copied = Vec::new();
    for name in TOKENIZER_FILES {
        let from = dir.join(name);
        if from.is_file() {
            std::fs::copy(&from, staging.path().join(name))
                .map_err(|e| CliError::Failed(format!("cannot copy {}: {e}", from.display())))?;
            copied.push(name);
        }
    }
    staging.commit()?;
    let line = serde_json::json!({
        "output": args.output,
        "class": summary.class,
        "weights": format.file_name(),
        "read": summary.read,
        "ignored": summary.ignored,
        "tokenizer_files": copied,
    });
    println!("{line}");
    Ok(())
}

/// What was converted: the class written, the weights file read, the stored tensors skipped.
struct Summary {
    class: &'static str,
    read: PathBuf,
    ignored: usize,
}

fn write_model(
    source: &Path,
    dir: &Path,
    config: &ConvBertConfig,
    task: Task,
    format: WeightsFormat,
    out: &Path,
) -> CliResult<Summary> {
    // Weights are converted as fp32 on the CPU: the precision every format holds exactly.
    let (device, kind) = (Device::Cpu, Kind::Float);
    let head_summary = |class: &'static str, report: Option<&HeadLoadReport>| Summary {
        class,
        read: report.map(|r| r.file.clone()).unwrap_or_default(),
        ignored: report.map_or(0, |r| r.ignored.len()),
    };
    macro_rules! head {
        ($head:ty) => {{
            let m = <$head>::from_pretrained(source, device, kind).map_err(CliError::failed)?;
            m.save_pretrained_as(out, format)
                .map_err(CliError::failed)?;
            head_summary(<$head>::CLASS, m.load_report())
        }};
    }
    Ok(match task {
        Task::Base | Task::Auto => {
            let weights = checkpoint::open_weights(source, dir).map_err(CliError::failed)?;
            let (_, vs, _) = ConvBertModel::from_weights(config, &weights, device, kind)
                .map_err(CliError::failed)?;
            let mut config = config.clone();
            config
                .extra
                .insert("architectures".into(), serde_json::json!([MODEL_CLASS]));
            config
                .to_file(out.join("config.json"))
                .map_err(CliError::failed)?;
            checkpoint::save_weights(&vs, &config, out, format, MODEL_CLASS)
                .map_err(CliError::failed)?;
            Summary {
                class: MODEL_CLASS,
                read: weights.source().to_path_buf(),
                ignored: weights.skipped().len(),
            }
        }
        Task::MaskedLm => head!(ConvBertForMaskedLM),
        Task::SequenceClassification => head!(ConvBertForSequenceClassification),
        Task::MultipleChoice => head!(ConvBertForMultipleChoice),
        Task::TokenClassification => head!(ConvBertForTokenClassification),
        Task::QuestionAnswering => head!(ConvBertForQuestionAnswering),
    })
}

/// A temporary directory beside the output, renamed into place on commit and removed otherwise.
struct Staging {
    target: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

impl Staging {
    fn new(target: &Path) -> CliResult<Self> {
        if let Ok(mut entries) = std::fs::read_dir(target) {
            if entries.next().is_some() {
                return Err(CliError::Failed(format!(
                    "{} exists and is not empty; choose a new --output directory",
                    target.display()
                )));
            }
        } else if target.exists() {
            return Err(CliError::Failed(format!(
                "{} exists and is not a directory",
                target.display()
            )));
        }
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = target.file_name().ok_or_else(|| {
            CliError::Failed(format!("{} is not a directory name", target.display()))
        })?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .tempdir_in(parent)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", target.display())))?;
        Ok(Self {
            target: target.to_path_buf(),
            tmp: Some(tmp),
        })
    }

    fn path(&self) -> &Path {
        self.tmp.as_ref().map_or(Path::new("."), |t| t.path())
    }

    fn commit(mut self) -> CliResult {
        let failed = |e: std::io::Error| {
            CliError::Failed(format!("cannot write {}: {e}", self.target.display()))
        };
        let Some(tmp) = self.tmp.take() else {
            return Ok(());
        };
        let path = tmp.keep();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // A temporary directory is private (0700); the output is an ordinary directory.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(failed)?;
        }
        // rename(2) replaces an empty directory; a non-empty one was refused up front.
        std::fs::rename(&path, &self.target).map_err(|e| {
            let _ = std::fs::remove_dir_all(&path);
            failed(e)
        })
    }
}
