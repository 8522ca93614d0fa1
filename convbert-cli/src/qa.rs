//! `convbert qa`: extractive question answering. Input lines are contexts for `--question`, or
//! with --jsonl `{"question": .., "context": ..}` objects. Prints one answer object per line
//! (a list of them with --top-k > 1), HF's keys: score, start, end, answer.

use clap::Args;
use convbert_pipelines::{QaInput, QaOptions, QuestionAnsweringPipeline};

use crate::common::{
    one_or_list, parse_json, run_jsonl, warn, CliError, CliResult, IoArgs, ModelArgs,
};

/// Arguments of `convbert qa`.
#[derive(Debug, Args)]
#[command(
    after_help = "With --jsonl, each input line is {\"question\": \"...\", \"context\": \"...\"}."
)]
pub struct QaArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub io: IoArgs,
    /// The question asked of every context line (not needed with --jsonl)
    #[arg(long, short)]
    pub question: Option<String>,
    /// Answers per input
    #[arg(long, default_value_t = 1)]
    pub top_k: usize,
    /// Tokens per window of a long context [default: min(model_max_length, 384)]
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Tokens shared by consecutive windows [default: min(max_seq_len / 2, 128)]
    #[arg(long)]
    pub doc_stride: Option<usize>,
    /// Longest answer, in tokens
    #[arg(long, default_value_t = 15)]
    pub max_answer_len: usize,
    /// Also propose the empty answer
    #[arg(long)]
    pub handle_impossible_answer: bool,
}

pub fn run(args: &QaArgs) -> CliResult {
    if !args.io.jsonl && args.question.is_none() {
        return Err(CliError::Usage(
            "give --question, or --jsonl lines with question and context".into(),
        ));
    }
    let options = args.model.options()?;
    // Before the model loads: an unwritable --output fails first.
    let sink = args.io.sink()?;
    let pipe = QuestionAnsweringPipeline::from_pretrained(args.model.model(), options)?;
    warn(pipe.warnings());
    let opts = QaOptions {
        top_k: args.top_k,
        max_seq_len: args.max_seq_len,
        doc_stride: args.doc_stride,
        max_answer_len: args.max_answer_len,
        handle_impossible_answer: args.handle_impossible_answer,
        ..Default::default()
    };
    let question = args.question.clone().unwrap_or_default();
    let jsonl = args.io.jsonl;
    run_jsonl(
        &args.io,
        sink,
        args.model.batch_size,
        |line| {
            if jsonl {
                parse_json::<QaInput>(line)
            } else {
                Ok(QaInput {
                    question: question.clone(),
                    context: line.text.clone(),
                })
            }
        },
        |inputs: &[QaInput]| {
            Ok(pipe
                .run(inputs, &opts)?
                .into_iter()
                .map(|r| r.map(one_or_list))
                .collect())
        },
    )
}
