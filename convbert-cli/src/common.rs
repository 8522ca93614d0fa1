//! What the model subcommands share: `--model/--device/--dtype/--threads/--batch-size`,
//! `--truncation/--max-length` of the text subcommands, reading
//! inputs from arguments, a file or stdin (one input per line), writing JSON Lines, the progress
//! bar, and the error type with its exit codes (2 usage, 1 anything else).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use convbert_pipelines::{
    PipelineError, PipelineOptions, Quantization, Truncation, TruncationSide,
};
use serde::Serialize;
use tch::{Device, Kind};

pub use crate::lines::{Line, LineReader};
pub use crate::output::{Output, OutputFile};
pub use crate::report::{exit_code, progress, say, write_error, CliError, CliResult};
use crate::shard::{self, Shard, ShardArgs};

impl From<convbert_pipelines::PipelineError> for CliError {
    fn from(e: convbert_pipelines::PipelineError) -> Self {
        match e {
            convbert_pipelines::PipelineError::Option { .. } => CliError::Usage(e.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

/// Weight and compute dtype; int8 is dynamic quantization of an f32 model on the CPU (every
/// Linear and the pointwise convolutions, as torch's `quantize_dynamic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
    Int8,
}

impl Dtype {
    /// The kind the weights load in (f32 for int8, quantized after loading).
    pub fn kind(self) -> Kind {
        match self {
            Dtype::F32 | Dtype::Int8 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::Bf16 => Kind::BFloat16,
        }
    }

    /// What the pipelines do after loading.
    pub fn quantization(self) -> Quantization {
        match self {
            Dtype::Int8 => Quantization::DynamicInt8,
            _ => Quantization::None,
        }
    }

    /// int8 runs on the CPU only: a usage error for another `--device`, checked before the
    /// device itself (so the message is about int8 on a machine without that GPU too).
    pub fn check_device(self, device: &str) -> CliResult<()> {
        let cpu = convbert_model::parse_device(device).is_none_or(|d| d == Device::Cpu);
        if self == Dtype::Int8 && !cpu {
            return Err(CliError::Usage(format!(
                "--dtype int8 runs on cpu only (fbgemm's int8 GEMMs), not --device {device}"
            )));
        }
        Ok(())
    }
}

/// The checkpoint used without `--model` (a tiny pretrained MLM model, see
/// fixtures/default-model/README.md), the first that exists of: `$CONVBERT_DEFAULT_MODEL`;
/// `default-model/` next to the binary (an installed or copied binary); `$CONVBERT_HOME/default-model`;
/// the repository's `fixtures/default-model` the binary was built from. None existing, the last
/// (its loading error then names the path).
pub fn default_model() -> PathBuf {
    if let Some(path) = std::env::var_os("CONVBERT_DEFAULT_MODEL") {
        return PathBuf::from(path);
    }
    let built_with = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/default-model"
    ));
    // Beside the `convbert` that exec'd this binary (it says where), else beside this binary.
    let beside_binary = match std::env::var_os("CONVBERT_FRONT_DIR") {
        Some(dir) => Some(PathBuf::from(dir).join("default-model")),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("default-model"))),
    };
    let home = std::env::var_os("CONVBERT_HOME").map(|h| PathBuf::from(h).join("default-model"));
    [beside_binary, home]
        .into_iter()
        .flatten()
        .find(|dir| dir.join("config.json").is_file())
        .unwrap_or(built_with)
}

/// `cpu`, `cuda` or `cuda:N`, a GPU that exists.
pub fn parse_device(s: &str) -> CliResult<Device> {
    let device = convbert_model::parse_device(s).ok_or_else(|| {
        CliError::Usage(format!("invalid --device {s:?}: use cpu, cuda or cuda:N"))
    })?;
    let count = tch::Cuda::device_count() as usize;
    match device {
        Device::Cuda(n) if n >= count => Err(CliError::Usage(format!(
            "--device {s}: {count} CUDA device(s) available"
        ))),
        d => Ok(d),
    }
}

/// Model and runtime options of the model subcommands.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Checkpoint directory, or HF model id (from the HF cache, downloaded from the Hub when missing) [default: the shipped tiny pretrained checkpoint]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weight and compute dtype
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
    /// Intra-op CPU threads (default: libtorch's choice)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sequences per forward pass (inputs are sorted by length into batches)
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// HF's exact padded computation instead of the padding-invariant default (results then
    /// depend on the other inputs of a batch)
    #[arg(long)]
    pub hf_padding: bool,
    /// With --device cuda, run every batch eagerly instead of replaying CUDA graphs of small
    /// batches (a build with the cuda-graphs feature)
    #[arg(long)]
    pub no_cuda_graphs: bool,
}

impl ModelArgs {
    /// The checkpoint to load.
    pub fn model(&self) -> PathBuf {
        self.model.clone().unwrap_or_else(default_model)
    }

    /// Applies `--threads` and builds the pipeline options.
    pub fn options(&self) -> CliResult<PipelineOptions> {
        if let Some(n) = self.threads {
            if n == 0 {
                return Err(CliError::Usage("--threads must be at least 1".into()));
            }
            tch::set_num_threads(n as i32);
        }
        if self.batch_size == 0 {
            return Err(CliError::Usage("--batch-size must be at least 1".into()));
        }
        self.dtype.check_device(&self.device)?;
        Ok(PipelineOptions {
            device: parse_device(&self.device)?,
            kind: self.dtype.kind(),
            batch_size: self.batch_size,
            padding_invariant: !self.hf_padding,
            quantization: self.dtype.quantization(),
            cuda_graphs: !self.no_cuda_graphs,
        })
    }
}

/// HF's `truncation=True` / `max_length` for fill-mask, classify, ner and embed.
#[derive(Debug, Clone, Args)]
pub struct TruncationArgs {
    /// Cut inputs longer than the model takes instead of failing them: the end of a text is
    /// dropped (the longer text of a pair first), as HF's truncation=True
    #[arg(long)]
    pub truncation: bool,
    /// Longest input in tokens, special tokens included; implies --truncation [default: the
    /// tokenizer's model_max_length, at most max_position_embeddings]
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,
    /// Which end is cut (HF's truncation_side); implies --truncation [default: right]
    #[arg(long, value_enum, value_name = "SIDE")]
    pub truncation_side: Option<Side>,
}

/// `--truncation-side`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// Keep the end of the text
    Left,
    /// Keep the start of the text
    Right,
}

impl TruncationArgs {
    /// The pipelines' truncation, `None` without --truncation, --max-length or --truncation-side.
    pub fn truncation(&self) -> Option<Truncation> {
        let side = match self.truncation_side {
            Some(Side::Left) => TruncationSide::Left,
            Some(Side::Right) | None => TruncationSide::Right,
        };
        (self.truncation || self.max_length.is_some() || self.truncation_side.is_some()).then_some(
            Truncation {
                max_length: self.max_length,
                side,
            },
        )
    }

    /// A pipeline's refusal of the truncation (a --max-length below the special tokens): a
    /// usage error.
    pub fn refused(e: PipelineError) -> CliError {
        match e {
            PipelineError::Option { reason, .. } => {
                CliError::Usage(format!("--max-length {reason}"))
            }
            other => CliError::from(other),
        }
    }

    /// A failed input's message; one too long for the model names --truncation when it was not
    /// given.
    pub fn explain(&self, e: PipelineError) -> String {
        match e {
            // A --max-length too short for a text pair's special tokens.
            PipelineError::Option {
                name: "max_length",
                reason,
            } => format!("--max-length {reason}"),
            e if e.is_too_long() && self.truncation().is_none() => {
                format!("{e} (use --truncation)")
            }
            e => e.to_string(),
        }
    }
}

/// Where the inputs come from and where results go.
#[derive(Debug, Clone, Args)]
pub struct IoArgs {
    /// Inputs; when none, lines of --input (or stdin)
    pub texts: Vec<String>,
    /// Read one input per line from FILE ("-" = stdin)
    #[arg(long, short)]
    pub input: Option<PathBuf>,
    /// Each input line is a JSON object (see the subcommand's help) instead of plain text
    #[arg(long)]
    pub jsonl: bool,
    /// Write results to FILE instead of stdout (replaced whole when the command ends; "-" =
    /// stdout)
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub shard: ShardArgs,
}

impl IoArgs {
    /// The inputs, one at a time: arguments, else lines of --input, else lines of stdin.
    pub fn lines(&self) -> CliResult<LineReader> {
        if !self.texts.is_empty() {
            return Ok(LineReader::from_args(self.texts.clone()));
        }
        LineReader::open(self.input.as_deref())
    }

    /// The JSON Lines sink: --output (checked writable now, see [`OutputFile`]) or stdout.
    pub fn writer(&self) -> CliResult<Output> {
        Ok(match &self.output {
            Some(p) if p != Path::new("-") => Output::File(BufWriter::new(OutputFile::create(p)?)),
            _ => Output::Stdout(BufWriter::new(std::io::stdout())),
        })
    }

    /// The JSON Lines sink of [`run_jsonl`], for this process's `--shard` (resolved now, so a
    /// bad `--shard auto` fails before the model loads).
    pub fn sink(&self) -> CliResult<JsonlSink> {
        let shard = self.shard.shard()?;
        Ok(JsonlSink::new(self.writer()?, shard))
    }
}

/// Parses a JSON Lines input line into `T`, with the line number in the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(line: &Line) -> Result<T, String> {
    serde_json::from_str(&line.text).map_err(|e| format!("invalid JSON: {e}"))
}

/// Writes results in input order; a failed line becomes `{"error", "line"}` here and a message
/// on stderr. Returns an error (exit 1) when any line failed, after writing all the others.
/// With a shard, rows carry their line numbers and a footer ends the output (see shard.rs).
pub struct JsonlSink {
    out: Output,
    failed: usize,
    shard: Option<Shard>,
}

impl JsonlSink {
    pub fn new(out: Output, shard: Option<Shard>) -> Self {
        Self {
            out,
            failed: 0,
            shard,
        }
    }

    pub fn write<T: Serialize>(&mut self, line: usize, result: Result<T, String>) -> CliResult {
        let value = match result {
            Ok(v) => serde_json::to_value(v).map_err(CliError::failed)?,
            Err(e) => {
                say(format_args!("error: line {line}: {e}"));
                self.failed += 1;
                serde_json::json!({"error": e, "line": line})
            }
        };
        match self.shard {
            None => writeln!(self.out, "{value}"),
            Some(_) => shard::write_result(&mut self.out, line, value),
        }
        .map_err(|e| write_error(e, "output"))
    }

    /// Flushes stdout or commits the output file (also when some lines failed: their rows say
    /// so); a shard's output first gets its footer, with the `lines` read in all.
    pub fn finish(mut self, lines: usize) -> CliResult {
        if let Some(s) = self.shard {
            shard::write_footer(&mut self.out, s, lines).map_err(|e| write_error(e, "output"))?;
        }
        self.out.finish()?;
        match self.failed {
            0 => Ok(()),
            n => Err(CliError::Failed(format!(
                "{n} input line(s) failed; see the messages above"
            ))),
        }
    }
}

/// Inputs per pipeline call, so the progress bar moves while results stream out.
pub fn chunk_size(batch_size: usize) -> usize {
    (batch_size * 16).max(64)
}

/// Prints load warnings (e.g. a newly initialised head) on stderr.
pub fn warn(warnings: &[String]) {
    for w in warnings {
        say(format_args!("{w}"));
    }
}

/// A line's text: the line itself, or with --jsonl its `{"text": ...}` field.
pub fn text_of(line: &Line, jsonl: bool) -> Result<String, String> {
    if !jsonl {
        return Ok(line.text.clone());
    }
    let v: serde_json::Value = parse_json(line)?;
    v["text"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "expected {\"text\": ...}".into())
}

/// HF's pipeline shape: one result alone, several as a list.
pub fn one_or_list<T: Serialize>(mut items: Vec<T>) -> serde_json::Value {
    let value = if items.len() == 1 {
        serde_json::to_value(items.remove(0))
    } else {
        serde_json::to_value(items)
    };
    value.unwrap_or(serde_json::Value::Null)
}

/// The JSON Lines loop of every text subcommand: read the input chunk by chunk, parse each line,
/// run the valid ones (progress bar), write one result per line in order, report bad lines
/// (unparsable, not UTF-8, failed) without losing others. `sink` is opened by the caller before
/// the model loads, so an unwritable output fails first.
pub fn run_jsonl<I, O, E, P, R>(
    io: &IoArgs,
    mut sink: JsonlSink,
    batch_size: usize,
    parse: P,
    mut run: R,
) -> CliResult
where
    O: Serialize,
    E: std::fmt::Display,
    P: Fn(&Line) -> Result<I, String>,
    R: FnMut(&[I]) -> CliResult<Vec<Result<O, E>>>,
{
    let mut lines = io.lines()?.shard(sink.shard);
    let bar = progress((!io.texts.is_empty()).then_some(io.texts.len()));
    loop {
        let read = lines.count();
        let chunk = lines.next_chunk(chunk_size(batch_size))?;
        if chunk.is_empty() {
            break;
        }
        let mut inputs = Vec::new();
        let mut rows: Vec<(usize, Option<String>)> = Vec::with_capacity(chunk.len());
        for line in &chunk {
            match line {
                Ok(l) => match parse(l) {
                    Ok(x) => {
                        inputs.push(x);
                        rows.push((l.number, None));
                    }
                    Err(e) => rows.push((l.number, Some(e))),
                },
                Err(bad) => rows.push((bad.number, Some(bad.message()))),
            }
        }
        let mut results = run(&inputs)?.into_iter();
        for (number, error) in rows {
            let result = match error {
                Some(e) => Err(e),
                None => match results.next() {
                    Some(r) => r.map_err(|e| e.to_string()),
                    None => Err("no result".to_string()),
                },
            };
            sink.write(number, result)?;
        }
        if let Some(bar) = &bar {
            bar.inc((lines.count() - read) as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    sink.finish(lines.count())
}
