//! `convbert ner`: token classification of each input line, per token or aggregated into
//! entities (`--aggregation`), with character offsets into the line; long lines whole in
//! overlapping windows with `--stride`.

use clap::{Args, ValueEnum};
use convbert_pipelines::{AggregationStrategy, TokenClassificationPipeline};

use crate::common::{run_jsonl, text_of, warn, CliResult, IoArgs, ModelArgs, TruncationArgs};

/// `--aggregation` values, HF's names.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Aggregation {
    None,
    Simple,
    First,
    Average,
    Max,
}

/// Arguments of `convbert ner`.
#[derive(Debug, Args)]
#[command(after_help = "With --jsonl, each input line is {\"text\": \"...\"}.")]
pub struct NerArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub io: IoArgs,
    #[command(flatten)]
    pub truncation: TruncationArgs,
    /// How tokens are merged into entities
    #[arg(
        long,
        visible_alias = "aggregation-strategy",
        value_enum,
        default_value = "none"
    )]
    pub aggregation: Aggregation,
    /// Labels left out of the output
    #[arg(long, value_delimiter = ',', default_value = "O")]
    pub ignore_labels: Vec<String>,
    /// Run long lines whole, in windows of the tokenizer's model_max_length tokens that overlap
    /// by this many tokens (needs an aggregation other than none), as HF's stride; not with
    /// --truncation
    #[arg(long, conflicts_with_all = ["truncation", "max_length"])]
    pub stride: Option<usize>,
}

pub fn run(args: &NerArgs) -> CliResult {
    let options = args.model.options()?;
    // Before the model loads: an unwritable --output fails first.
    let sink = args.io.sink()?;
    let pipe = TokenClassificationPipeline::from_pretrained(args.model.model(), options)?
        .with_truncation(args.truncation.truncation())
        .map_err(TruncationArgs::refused)?;
    warn(pipe.warnings());
    let strategy = match args.aggregation {
        Aggregation::None => AggregationStrategy::None,
        Aggregation::Simple => AggregationStrategy::Simple,
        Aggregation::First => AggregationStrategy::First,
        Aggregation::Average => AggregationStrategy::Average,
        Aggregation::Max => AggregationStrategy::Max,
    };
    let ignore: Vec<&str> = args.ignore_labels.iter().map(String::as_str).collect();
    let jsonl = args.io.jsonl;
    run_jsonl(
        &args.io,
        sink,
        args.model.batch_size,
        |line| text_of(line, jsonl),
        |texts: &[String]| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let out = match args.stride {
                Some(stride) => pipe.run_with_stride(&refs, strategy, &ignore, stride)?,
                None => pipe.run(&refs, strategy, &ignore)?,
            };
            Ok(out
                .into_iter()
                .map(|r| r.map_err(|e| args.truncation.explain(e)))
                .collect())
        },
    )
}
