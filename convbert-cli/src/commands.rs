//! The model subcommands of `convbert` as one clap `Subcommand` enum (flattened into the binary's
//! command enum), and their dispatch with the exit-code convention: 0 success, 2 usage error,
//! 1 any other error, with one line on stderr.

use std::process::ExitCode;

use clap::Subcommand;

use crate::common::exit_code;
use crate::{bench, classify, convert, embed, fill_mask, forward, ner, qa, serve};

/// Subcommands that run a model.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Top-k tokens for every [MASK] of each input line (JSON Lines out)
    FillMask(fill_mask::FillMaskArgs),
    /// Text classification of texts or text pairs (JSON Lines out)
    Classify(classify::ClassifyArgs),
    /// Token classification / named entities with character offsets (JSON Lines out)
    Ner(ner::NerArgs),
    /// Extractive question answering (JSON Lines out)
    Qa(qa::QaArgs),
    /// Encoder features, pooled or per token: JSON Lines to stdout, or a .safetensors file
    Embed(embed::EmbedArgs),
    /// One forward pass: .safetensors in, every HF output field out
    Forward(forward::ForwardArgs),
    /// Time the encoder forward pass
    Bench(bench::BenchArgs),
    /// Write a checkpoint (safetensors, .bin, tf_model.h5, TF1) as tf_model.h5 or model.safetensors
    Convert(convert::ConvertArgs),
    /// HTTP inference server: the Text Embeddings Inference API, the HF Inference API, fill-mask, NER, QA
    Serve(Box<serve::ServeArgs>),
}

impl ModelCommand {
    /// Runs the subcommand and maps its outcome to the process exit code.
    pub fn run(&self) -> ExitCode {
        let result = match self {
            ModelCommand::FillMask(a) => fill_mask::run(a),
            ModelCommand::Classify(a) => classify::run(a),
            ModelCommand::Ner(a) => ner::run(a),
            ModelCommand::Qa(a) => qa::run(a),
            ModelCommand::Embed(a) => embed::run(a),
            ModelCommand::Forward(a) => forward::run(a),
            ModelCommand::Bench(a) => bench::run(a),
            ModelCommand::Convert(a) => convert::run(a),
            ModelCommand::Serve(a) => serve::run(a),
        };
        exit_code(result)
    }
}
