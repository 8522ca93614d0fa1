//! `convbert-torch`: every `convbert` subcommand, the model ones on libtorch. The libtorch-free
//! front binary `convbert` (main.rs) runs `tokenize` itself and `exec`s this one for the others,
//! with its own argv[0], so help and errors still say `convbert`. Every subcommand reads text from
//! arguments, a file or stdin and writes JSON Lines (or .safetensors); exit codes: 0 success,
//! 2 usage, 1 other errors.

mod bench;
mod classify;
mod commands;
mod common;
mod convert;
mod embed;
mod fill_mask;
mod forward;
mod lines;
mod malloc;
mod merge;
mod ner;
mod output;
mod qa;
mod report;
mod serve;
mod shard;
mod tokenize;
mod tokenize_stream;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ConvBERT tokenizer, task pipelines and model tools (Hugging Face parity).
#[derive(Debug, Parser)]
#[command(name = "convbert", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tokenize text lines (BERT WordPiece; embedded bert-base-uncased by default)
    Tokenize(tokenize::TokenizeArgs),
    #[command(flatten)]
    Model(commands::ModelCommand),
    /// Train a task head (HF Trainer parity): classification, NER, QA, multiple choice, MLM
    Train(Box<train::TrainArgs>),
    /// Join the outputs of `--shard I/N` runs into the output of one unsharded run
    Merge(merge::MergeArgs),
}

fn main() -> ExitCode {
    malloc::tune_for_tensors();
    match Cli::parse().command {
        Command::Tokenize(args) => tokenize::main(&args),
        Command::Model(cmd) => cmd.run(),
        Command::Train(args) => train::main(&args),
        Command::Merge(args) => merge::main(&args),
    }
}
