//! `convbert tokenize`: one output line per input line (file, stdin or arguments), with the
//! standalone tokenizer or, with `--fast`, the `tokenizers`-backed one.

use clap::{Args, ValueEnum};
use convbert_tokenizer::{
    ConvBertTokenizer, ConvBertTokenizerFast, EncodeOptions, Encoding, TokenizerConfig,
    TruncationStrategy, Vocab,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::common::{exit_code, CliError};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Space-separated ids.
    Ids,
    /// Space-separated tokens.
    Tokens,
    /// One JSON object per line: ids, tokens, type_ids, offsets (characters).
    Json,
}

/// Truncation strategy names of Hugging Face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Truncation {
    /// Remove from the longer sequence first.
    LongestFirst,
    /// Truncate the first sequence only.
    OnlyFirst,
    /// Truncate the second sequence only.
    OnlySecond,
    /// Never truncate.
    DoNotTruncate,
}

/// Arguments of `convbert tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Texts to tokenize; without them, lines are read from --input or stdin.
    pub texts: Vec<String>,
    /// Input file, one text per line (split on "\n" only); "-" is stdin.
    #[arg(short, long, conflicts_with = "texts")]
    pub input: Option<PathBuf>,
    /// WordPiece vocabulary (vocab.txt); default: the embedded bert-base-uncased one.
    #[arg(long, conflicts_with = "tokenizer")]
    pub vocab: Option<PathBuf>,
    /// Hugging Face tokenizer.json.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Keep case and accents (do_lower_case=False) with --vocab.
    #[arg(long, requires = "vocab")]
    pub cased: bool,
    /// Use the `tokenizers`-crate pipeline (ConvBertTokenizerFast).
    #[arg(long)]
    pub fast: bool,
    /// Do not add [CLS] / [SEP].
    #[arg(long)]
    pub no_special_tokens: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Ids)]
    pub format: Format,
    /// Second sequences, one per input line.
    #[arg(long)]
    pub pair_with: Option<PathBuf>,
    /// Maximum length in tokens, special tokens included.
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Truncation strategy (default longest_first when --max-length is given).
    #[arg(long, value_enum)]
    pub truncation: Option<Truncation>,
    /// Overlap of overflowing windows (reported in json output).
    #[arg(long, default_value_t = 0)]
    pub stride: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

enum Tok {
    Slow(Box<ConvBertTokenizer>),
    Fast(Box<ConvBertTokenizerFast>),
}

impl Tok {
    fn load(args: &TokenizeArgs) -> Result<Self, String> {
        let e = |e: convbert_tokenizer::TokenizerError| e.to_string();
        if let Some(path) = &args.tokenizer {
            return Ok(if args.fast {
                Tok::Fast(Box::new(
                    ConvBertTokenizerFast::from_tokenizer_json(path).map_err(e)?,
                ))
            } else {
                Tok::Slow(Box::new(
                    ConvBertTokenizer::from_tokenizer_json(path).map_err(e)?,
                ))
            });
        }
        let vocab = match &args.vocab {
            Some(path) => Vocab::from_file(path).map_err(e)?,
            None => Vocab::bert_base_uncased().map_err(e)?,
        };
        let config = TokenizerConfig {
            do_lower_case: !args.cased,
            ..TokenizerConfig::default()
        };
        Ok(if args.fast {
            Tok::Fast(Box::new(
                ConvBertTokenizerFast::new(vocab, config).map_err(e)?,
            ))
        } else {
            Tok::Slow(Box::new(ConvBertTokenizer::new(vocab, config).map_err(e)?))
        })
    }

    fn encode(
        &self,
        texts: &[&str],
        pairs: Option<&[&str]>,
        opts: &EncodeOptions,
    ) -> Result<Vec<Encoding>, String> {
        match self {
            Tok::Slow(t) => t.encode_batch(texts, pairs, opts),
            Tok::Fast(t) => t.encode_batch(texts, pairs, opts),
        }
        .map_err(|e| e.to_string())
    }

    fn tokens(&self, ids: &[u32]) -> Vec<String> {
        match self {
            Tok::Slow(t) => t.convert_ids_to_tokens(ids, false),
            Tok::Fast(t) => t.convert_ids_to_tokens(ids),
        }
    }
}

/// Reads a file (or stdin for "-") and splits it on "\n"; a final "\n" ends the last line.
fn read_lines(path: Option<&Path>) -> Result<Vec<String>, String> {
    let mut bytes = Vec::new();
    match path {
        Some(p) if p != Path::new("-") => {
            bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        _ => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| format!("stdin: {e}"))?;
        }
    }
    let name = path.map_or("stdin".to_string(), |p| p.display().to_string());
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("{name}: invalid UTF-8 on line {line} (byte {at})")
    })?;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    Ok(if text.is_empty() {
        Vec::new()
    } else {
        body.split('\n').map(str::to_string).collect()
    })
}

fn options(args: &TokenizeArgs) -> EncodeOptions {
    let truncation = match (args.truncation, args.max_length) {
        (Some(Truncation::LongestFirst), _) | (None, Some(_)) => TruncationStrategy::LongestFirst,
        (Some(Truncation::OnlyFirst), _) => TruncationStrategy::OnlyFirst,
        (Some(Truncation::OnlySecond), _) => TruncationStrategy::OnlySecond,
        (Some(Truncation::DoNotTruncate), _) | (None, None) => TruncationStrategy::DoNotTruncate,
    };
    EncodeOptions {
        add_special_tokens: !args.no_special_tokens,
        truncation,
        max_length: args.max_length,
        stride: args.stride,
        return_offsets: args.format == Format::Json,
        return_overflowing_tokens: args.stride > 0 && args.format == Format::Json,
        ..EncodeOptions::default()
    }
}

fn write_one(
    out: &mut impl Write,
    tok: &Tok,
    enc: &Encoding,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Ids => {
            let s: Vec<String> = enc.ids.iter().map(u32::to_string).collect();
            writeln!(out, "{}", s.join(" "))
        }
        Format::Tokens => writeln!(out, "{}", tok.tokens(&enc.ids).join(" ")),
        Format::Json => writeln!(out, "{}", json(tok, enc)),
    }
}

fn json(tok: &Tok, enc: &Encoding) -> serde_json::Value {
    let mut v = serde_json::json!({
        "ids": enc.ids,
        "tokens": tok.tokens(&enc.ids),
        "type_ids": enc.type_ids,
        "offsets": enc.offsets.iter().map(|&(s, e)| [s, e]).collect::<Vec<_>>(),
    });
    if !enc.overflowing.is_empty() {
        v["overflowing"] = enc.overflowing.iter().map(|o| json(tok, o)).collect();
    }
    if !enc.overflowing_tokens.is_empty() {
        v["overflowing_tokens"] = serde_json::json!(enc.overflowing_tokens);
    }
    v
}

/// Runs the subcommand and maps the outcome to the exit code (0 ok, 2 usage, 1 other errors).
pub fn main(args: &TokenizeArgs) -> ExitCode {
    exit_code(run(args))
}

fn run(args: &TokenizeArgs) -> Result<(), CliError> {
    if args.threads == Some(0) {
        return Err(CliError::Usage("--threads must be at least 1".into()));
    }
    let tok = Tok::load(args).map_err(CliError::Failed)?;
    let lines = if !args.texts.is_empty() {
        args.texts.clone()
    } else {
        read_lines(args.input.as_deref()).map_err(CliError::Failed)?
    };
    let pairs = match &args.pair_with {
        Some(p) => {
            let pairs = read_lines(Some(p)).map_err(CliError::Failed)?;
            if pairs.len() != lines.len() {
                return Err(CliError::Usage(format!(
                    "--pair-with has {} lines but the input has {}",
                    pairs.len(),
                    lines.len()
                )));
            }
            Some(pairs)
        }
        None => None,
    };
    let opts = options(args);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .map_err(|e| CliError::Failed(format!("thread pool: {e}")))?;
    let bar = (std::io::stderr().is_terminal() && lines.len() >= 10_000).then(|| {
        let bar = ProgressBar::new(lines.len() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} lines {per_sec} eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    });
    let mut out = BufWriter::new(std::io::stdout().lock());
    const BLOCK: usize = 8192;
    for (b, block) in lines.chunks(BLOCK).enumerate() {
        let texts: Vec<&str> = block.iter().map(String::as_str).collect();
        let pair_block: Option<Vec<&str>> = pairs.as_ref().map(|p| {
            p[b * BLOCK..b * BLOCK + block.len()]
                .iter()
                .map(String::as_str)
                .collect()
        });
        let encs = pool
            .install(|| tok.encode(&texts, pair_block.as_deref(), &opts))
            .map_err(CliError::Failed)?;
        for enc in &encs {
            write_one(&mut out, &tok, enc, args.format)
                .map_err(|e| CliError::Failed(format!("stdout: {e}")))?;
        }
        if let Some(bar) = &bar {
            bar.inc(block.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    out.flush()
        .map_err(|e| CliError::Failed(format!("stdout: {e}")))
}
