//! `convbert fill-mask`: the `--top-k` best tokens for every `[MASK]` of each input line, as HF's
//! fill-mask pipeline returns them (a list of candidates, or one list per mask when there are
//! several). Warns when the checkpoint's MLM head was newly initialised.

use clap::Args;
use convbert_pipelines::FillMaskPipeline;

use crate::common::{
    one_or_list, run_jsonl, text_of, warn, CliResult, IoArgs, ModelArgs, TruncationArgs,
};

/// Arguments of `convbert fill-mask`.
#[derive(Debug, Args)]
#[command(after_help = "With --jsonl, each input line is {\"text\": \"...\"}.")]
pub struct FillMaskArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub io: IoArgs,
    #[command(flatten)]
    pub truncation: TruncationArgs,
    /// Candidates per mask
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Choose the candidates among these tokens only (comma-separated), as HF's `targets`
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
}

/// With --jsonl a line is `{"text": "..."}`.
pub fn run(args: &FillMaskArgs) -> CliResult {
    let options = args.model.options()?;
    // Before the model loads: an unwritable --output fails first.
    let sink = args.io.sink()?;
    let pipe = FillMaskPipeline::from_pretrained(args.model.model(), options)?
        .with_truncation(args.truncation.truncation())
        .map_err(TruncationArgs::refused)?;
    warn(pipe.warnings());
    let targets = match &args.targets {
        Some(t) => {
            let refs: Vec<&str> = t.iter().map(String::as_str).collect();
            let resolved = pipe.targets(&refs)?;
            warn(&resolved.warnings);
            Some(resolved)
        }
        None => None,
    };
    let jsonl = args.io.jsonl;
    run_jsonl(
        &args.io,
        sink,
        args.model.batch_size,
        |line| text_of(line, jsonl),
        |texts: &[String]| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let out = match &targets {
                Some(t) => pipe.run_with_targets(&refs, args.top_k, t)?,
                None => pipe.run(&refs, args.top_k)?,
            };
            Ok(out
                .into_iter()
                .map(|r| r.map(one_or_list).map_err(|e| args.truncation.explain(e)))
                .collect())
        },
    )
}
