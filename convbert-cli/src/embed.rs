//! `convbert embed`: encoder features of each input line. To stdout (no `-o`, or `-o -`) by
//! default as JSON Lines, one vector `[f32, ...]` per line (`--pooling none`: one per token), a
//! bad line giving its `{"error", "line"}` row as the other commands do. To a `.safetensors`
//! file (`-o FILE`, or stdout with `--format safetensors`): `embeddings` (N, D) f32 for
//! `--pooling cls|mean`, or `last_hidden_state.<i>` (L_i, D) per line for `--pooling none`;
//! `line_numbers` (N,) int64 maps rows to input lines (bad lines are reported on stderr and left
//! out). With `--shard`, the file's metadata also names the shard (see shard.rs).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use convbert_pipelines::{FeatureExtractionPipeline, Pooling};
use tch::Tensor;

use crate::common::{
    chunk_size, progress, run_jsonl, say, write_error, CliError, CliResult, IoArgs, ModelArgs,
    OutputFile, TruncationArgs,
};
use crate::shard::{Shard, ShardArgs};

/// `--pooling` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PoolingArg {
    None,
    Cls,
    Mean,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbedFormat {
    /// One JSON array of floats per input line
    Jsonl,
    /// One .safetensors file for all lines
    Safetensors,
}

/// Arguments of `convbert embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub truncation: TruncationArgs,
    /// Inputs; when none, lines of --input (or stdin)
    pub texts: Vec<String>,
    /// Read one text per line from FILE ("-" = stdin)
    #[arg(long, short)]
    pub input: Option<PathBuf>,
    /// Write to FILE ("-" = stdout) [default: stdout]
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Per-token states, or one vector per text
    #[arg(long, value_enum, default_value = "mean")]
    pub pooling: PoolingArg,
    /// Output format [default: jsonl to stdout, safetensors to a file]
    #[arg(long, value_enum)]
    pub format: Option<EmbedFormat>,
    #[command(flatten)]
    pub shard: ShardArgs,
}

impl EmbedArgs {
    /// The output file, `None` for stdout.
    fn file(&self) -> Option<&Path> {
        self.output.as_deref().filter(|p| *p != Path::new("-"))
    }

    fn format(&self) -> EmbedFormat {
        self.format.unwrap_or(match self.file() {
            Some(_) => EmbedFormat::Safetensors,
            None => EmbedFormat::Jsonl,
        })
    }

    fn io(&self) -> IoArgs {
        IoArgs {
            texts: self.texts.clone(),
            input: self.input.clone(),
            jsonl: false,
            output: self.file().map(Path::to_path_buf),
            shard: self.shard.clone(),
        }
    }
}

/// A JSON Lines row: one vector, or one per token.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Row {
    Pooled(Vec<f32>),
    Tokens(Vec<Vec<f32>>),
}

fn row(t: &Tensor, pooling: Pooling) -> Result<Row, String> {
    let e = |e: tch::TchError| e.to_string();
    match pooling {
        Pooling::None => Vec::<Vec<f32>>::try_from(t).map(Row::Tokens).map_err(e),
        _ => Vec::<f32>::try_from(&t.flatten(0, -1))
            .map(Row::Pooled)
            .map_err(e),
    }
}

pub fn run(args: &EmbedArgs) -> CliResult {
    let options = args.model.options()?;
    let io = args.io();
    let shard = args.shard.shard()?;
    // Before the model loads and computes: an unwritable --output fails first.
    let (sink, output) = match (args.format(), args.file()) {
        (EmbedFormat::Jsonl, _) => (Some(io.sink()?), None),
        (EmbedFormat::Safetensors, Some(path)) => (None, Some(OutputFile::create(path)?)),
        (EmbedFormat::Safetensors, None) => (None, None),
    };
    let pipe = FeatureExtractionPipeline::from_pretrained(args.model.model(), options)?
        .with_truncation(args.truncation.truncation())
        .map_err(TruncationArgs::refused)?;
    let pooling = match args.pooling {
        PoolingArg::None => Pooling::None,
        PoolingArg::Cls => Pooling::Cls,
        PoolingArg::Mean => Pooling::Mean,
    };
    if let Some(sink) = sink {
        return run_jsonl(
            &io,
            sink,
            args.model.batch_size,
            |line| Ok(line.text.clone()),
            |texts: &[String]| {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                Ok(pipe
                    .run(&refs, pooling)?
                    .into_iter()
                    .map(|r| {
                        r.map_err(|e| args.truncation.explain(e))
                            .and_then(|t| row(&t, pooling))
                    })
                    .collect())
            },
        );
    }
    let mut lines = io.lines()?.shard(shard);
    let bar = progress((!io.texts.is_empty()).then_some(io.texts.len()));
    let (mut rows, mut numbers, mut failed) = (Vec::new(), Vec::new(), 0usize);
    loop {
        let read = lines.count();
        let chunk = lines.next_chunk(chunk_size(args.model.batch_size))?;
        if chunk.is_empty() {
            break;
        }
        let mut good = Vec::with_capacity(chunk.len());
        for line in &chunk {
            match line {
                Ok(l) => good.push(l),
                Err(bad) => {
                    say(format_args!(
                        "error: line {}: {}",
                        bad.number,
                        bad.message()
                    ));
                    failed += 1;
                }
            }
        }
        let texts: Vec<&str> = good.iter().map(|l| l.text.as_str()).collect();
        for (line, result) in good.iter().zip(pipe.run(&texts, pooling)?) {
            match result {
                Ok(t) => {
                    rows.push(t);
                    numbers.push(line.number as i64);
                }
                Err(e) => {
                    let e = args.truncation.explain(e);
                    say(format_args!("error: line {}: {e}", line.number));
                    failed += 1;
                }
            }
        }
        if let Some(bar) = &bar {
            bar.inc((lines.count() - read) as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut named: Vec<(String, Tensor)> =
        vec![("line_numbers".into(), Tensor::from_slice(&numbers))];
    match pooling {
        Pooling::None => {
            for (i, t) in rows.into_iter().enumerate() {
                named.push((format!("last_hidden_state.{i}"), t));
            }
        }
        _ => {
            let d = pipe.hidden_size();
            let stacked = if rows.is_empty() {
                Tensor::zeros([0, d], (tch::Kind::Float, tch::Device::Cpu))
            } else {
                Tensor::f_stack(&rows, 0).map_err(CliError::failed)?
            };
            named.push(("embeddings".into(), stacked));
        }
    }
    let sharded = shard.map(|s| (s, lines.count()));
    match output {
        Some(output) => {
            write_file(&named, output.write_path(), sharded)
                .map_err(|e| format!("cannot write {}: {e}", output_name(args)))
                .map_err(CliError::Failed)?;
            output.commit()?;
        }
        None => safetensors_to_stdout(&named, sharded)?,
    }
    match failed {
        0 => Ok(()),
        n => Err(CliError::Failed(format!(
            "{n} input line(s) failed; the others were written"
        ))),
    }
}

fn output_name(args: &EmbedArgs) -> String {
    args.file()
        .map_or_else(|| "stdout".into(), |p| p.display().to_string())
}

/// The .safetensors file: libtorch's, or for a shard (with the input lines read in all) one
/// whose metadata names the shard, for `convbert merge`.
fn write_file(
    named: &[(String, Tensor)],
    path: &Path,
    shard: Option<(Shard, usize)>,
) -> Result<(), String> {
    let Some((shard, lines)) = shard else {
        return Tensor::write_safetensors(named, path).map_err(|e| e.to_string());
    };
    let mut data = Vec::with_capacity(named.len());
    for (name, t) in named {
        // The bytes and dtype libtorch's writer would store.
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let dtype = match t.kind() {
            tch::Kind::Int64 => safetensors::Dtype::I64,
            tch::Kind::Float => safetensors::Dtype::F32,
            tch::Kind::Half => safetensors::Dtype::F16,
            tch::Kind::BFloat16 => safetensors::Dtype::BF16,
            other => return Err(format!("{name}: unexpected dtype {other:?}")),
        };
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)
            .map_err(|e| e.to_string())?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        data.push((name.clone(), dtype, shape, bytes));
    }
    let mut views = Vec::with_capacity(data.len());
    for (name, dtype, shape, bytes) in &data {
        let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| e.to_string())?;
        views.push((name.clone(), view));
    }
    let metadata = [
        ("shard", shard.index),
        ("shards", shard.count),
        ("lines", lines),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| e.to_string())
}

/// libtorch writes safetensors to a path: a temporary file, then its bytes to stdout.
fn safetensors_to_stdout(named: &[(String, Tensor)], shard: Option<(Shard, usize)>) -> CliResult {
    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| CliError::Failed(format!("cannot create a temporary file: {e}")))?;
    write_file(named, tmp.path(), shard)
        .map_err(|e| CliError::Failed(format!("cannot write stdout: {e}")))?;
    let bytes = std::fs::read(tmp.path())
        .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", tmp.path().display())))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| write_error(e, "stdout"))
}
