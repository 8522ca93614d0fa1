//! `convbert fill-mask`: the `--top-k` best tokens for every `[MASK]` of each input line, as HF's
//! fill-mask pipeline returns them (a list of candidates, or one list per mask when there are
//! several). Warns when the checkpoint's MLM head was newly initialised.

use clap::Args;
use convbert_pipelines::FillMaskPipeline;
use serde_json::Value;

use crate::common::{run_jsonl, warn, CliResult, IoArgs, ModelArgs};

/// Arguments of `convbert fill-mask`.
#[derive(Debug, Args)]
pub struct FillMaskArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub io: IoArgs,
    /// Candidates per mask
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Choose the candidates among these tokens only (comma-separated), as HF's `targets`
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
}

/// With --jsonl a line is `{"text": "..."}`.
pub fn run(args: &FillMaskArgs) -> CliResult {
    let pipe = FillMaskPipeline::from_pretrained(args.model.model(), args.model.options()?)?;
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
        args.model.batch_size,
        |line| {
            if jsonl {
                let v: Value = crate::common::parse_json(line)?;
                v["text"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "expected {\"text\": ...}".into())
            } else {
                Ok(line.text.clone())
            }
        },
        |texts: &[String]| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let out = match &targets {
                Some(t) => pipe.run_with_targets(&refs, args.top_k, t)?,
                None => pipe.run(&refs, args.top_k)?,
            };
            Ok(out
                .into_iter()
                .map(|r| {
                    r.map(|mut masks| {
                        if masks.len() == 1 {
                            serde_json::to_value(masks.remove(0)).unwrap_or(Value::Null)
                        } else {
                            serde_json::to_value(masks).unwrap_or(Value::Null)
                        }
                    })
                })
                .collect())
        },
    )
}
