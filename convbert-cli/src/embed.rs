//! `convbert embed`: encoder features of each input line written to a `.safetensors` file:
//! `embeddings` (N, D) f32 for `--pooling cls|mean`, or `last_hidden_state.<i>` (L_i, D) per line
//! for `--pooling none`; `line_numbers` (N,) int64 maps rows to input lines (bad lines are
//! reported on stderr and left out).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use convbert_pipelines::{FeatureExtractionPipeline, Pooling};
use tch::Tensor;

use crate::common::{
    chunk_size, progress, say, CliError, CliResult, IoArgs, ModelArgs, OutputFile, TruncationArgs,
};

/// `--pooling` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PoolingArg {
    None,
    Cls,
    Mean,
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
    /// The .safetensors file to write
    #[arg(long, short)]
    pub output: PathBuf,
    /// Per-token states, or one vector per text
    #[arg(long, value_enum, default_value = "mean")]
    pub pooling: PoolingArg,
}

pub fn run(args: &EmbedArgs) -> CliResult {
    let options = args.model.options()?;
    // Before the model loads and computes: an unwritable --output fails first.
    let output = OutputFile::create(&args.output)?;
    let pipe = FeatureExtractionPipeline::from_pretrained(args.model.model(), options)?
        .with_truncation(args.truncation.truncation())
        .map_err(TruncationArgs::refused)?;
    let pooling = match args.pooling {
        PoolingArg::None => Pooling::None,
        PoolingArg::Cls => Pooling::Cls,
        PoolingArg::Mean => Pooling::Mean,
    };
    let io = IoArgs {
        texts: args.texts.clone(),
        input: args.input.clone(),
        jsonl: false,
        output: None,
    };
    let mut lines = io.lines()?;
    let bar = progress((!io.texts.is_empty()).then_some(io.texts.len()));
    let (mut rows, mut numbers, mut failed) = (Vec::new(), Vec::new(), 0usize);
    loop {
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
            bar.inc(chunk.len() as u64);
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
    Tensor::write_safetensors(&named, output.write_path())
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", args.output.display())))?;
    output.commit()?;
    match failed {
        0 => Ok(()),
        n => Err(CliError::Failed(format!(
            "{n} input line(s) failed; the others were written"
        ))),
    }
}
