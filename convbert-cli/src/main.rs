//! `convbert`: ConvBERT from the shell, the front binary. It links no libtorch, so `--help`,
//! `--version` and `tokenize` start in milliseconds (and work where libtorch is missing); for the
//! model subcommands it `exec`s `convbert-torch` (torch_main.rs), found next to itself, as git and
//! cargo run their subcommands: the process, its signals, stdin/stdout and exit code stay the
//! same. Every subcommand reads text from arguments, a file or stdin and writes JSON Lines (or
//! .safetensors); exit codes: 0 success, 2 usage, 1 other errors.

// Shared with convbert-torch, which uses all of them.
#[allow(dead_code)]
mod lines;
mod merge;
#[allow(dead_code)]
mod output;
#[allow(dead_code)]
mod report;
mod shard;
mod tokenize;
mod tokenize_stream;
mod torch_bin;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// ConvBERT tokenizer, task pipelines and model tools (Hugging Face parity).
#[derive(Debug, Parser)]
#[command(name = "convbert", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands in the order and with the one-line descriptions of `convbert-torch` (a test
/// checks both `--help` outputs are equal); all but `tokenize` and `merge` are run by
/// `convbert-torch`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Tokenize text lines (BERT WordPiece; embedded bert-base-uncased by default)
    Tokenize(tokenize::TokenizeArgs),
    /// Top-k tokens for every [MASK] of each input line (JSON Lines out)
    FillMask(Forwarded),
    /// Text classification of texts or text pairs (JSON Lines out)
    Classify(Forwarded),
    /// Token classification / named entities with character offsets (JSON Lines out)
    Ner(Forwarded),
    /// Extractive question answering (JSON Lines out)
    Qa(Forwarded),
    /// Encoder features, pooled or per token: JSON Lines to stdout, or a .safetensors file
    Embed(Forwarded),
    /// One forward pass: .safetensors in, every HF output field out
    Forward(Forwarded),
    /// Time the encoder forward pass
    Bench(Forwarded),
    /// Write a checkpoint (safetensors, .bin, tf_model.h5, TF1) as tf_model.h5 or model.safetensors
    Convert(Forwarded),
    /// HTTP inference server: the Text Embeddings Inference API, the HF Inference API, fill-mask, NER, QA
    Serve(Forwarded),
    /// Train a task head (HF Trainer parity): classification, NER, QA, multiple choice, MLM
    Train(Forwarded),
    /// Join the outputs of `--shard I/N` runs into the output of one unsharded run
    Merge(merge::MergeArgs),
}

/// The arguments of a model subcommand, untouched: `convbert-torch` parses them (and prints the
/// subcommand's full `--help`).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
struct Forwarded {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // `convbert help fill-mask` is the model subcommand's full help: convbert-torch's.
    if argv.get(1).is_some_and(|a| a == "help")
        && argv.get(2).is_some_and(|a| a != "tokenize" && a != "merge")
    {
        return torch_bin::exec(&argv);
    }
    match Cli::parse_from(&argv).command {
        Command::Tokenize(args) => tokenize::main(&args),
        Command::Merge(args) => merge::main(&args),
        _ => torch_bin::exec(&argv),
    }
}
