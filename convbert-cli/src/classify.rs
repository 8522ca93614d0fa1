//! `convbert classify`: text classification of each input line (or text pair with --jsonl
//! `{"text": .., "text_pair": ..}`), printing the `--top-k` labels with scores, best first.

use clap::{Args, ValueEnum};
use convbert_pipelines::{ScoreFunction, TextClassificationPipeline, TextInput};

use crate::common::{parse_json, run_jsonl, warn, CliResult, IoArgs, ModelArgs, TruncationArgs};

/// `--function`: how logits become scores.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Function {
    Softmax,
    Sigmoid,
    None,
}

/// Arguments of `convbert classify`.
#[derive(Debug, Args)]
#[command(
    after_help = "With --jsonl, each input line is {\"text\": \"...\"} or a pair {\"text\": \"...\", \"text_pair\": \"...\"}."
)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub io: IoArgs,
    #[command(flatten)]
    pub truncation: TruncationArgs,
    /// Labels per input
    #[arg(long, default_value_t = 1, conflicts_with = "all")]
    pub top_k: usize,
    /// Every label
    #[arg(long)]
    pub all: bool,
    /// Score function [default: the model's: softmax, or sigmoid for multi-label / one label]
    #[arg(long, visible_alias = "function-to-apply", value_enum)]
    pub function: Option<Function>,
}

pub fn run(args: &ClassifyArgs) -> CliResult {
    let options = args.model.options()?;
    // Before the model loads: an unwritable --output fails first.
    let sink = args.io.sink()?;
    let pipe = TextClassificationPipeline::from_pretrained(args.model.model(), options)?
        .with_truncation(args.truncation.truncation())
        .map_err(TruncationArgs::refused)?;
    warn(pipe.warnings());
    let top_k = if args.all { None } else { Some(args.top_k) };
    let function = args.function.map(|f| match f {
        Function::Softmax => ScoreFunction::Softmax,
        Function::Sigmoid => ScoreFunction::Sigmoid,
        Function::None => ScoreFunction::None,
    });
    let jsonl = args.io.jsonl;
    run_jsonl(
        &args.io,
        sink,
        args.model.batch_size,
        |line| {
            if jsonl {
                parse_json::<TextInput>(line)
            } else {
                Ok(TextInput {
                    text: line.text.clone(),
                    text_pair: None,
                })
            }
        },
        |inputs: &[TextInput]| {
            let out = pipe.run(inputs, top_k, function)?;
            Ok(out
                .into_iter()
                .map(|r| r.map_err(|e| args.truncation.explain(e)))
                .collect())
        },
    )
}
