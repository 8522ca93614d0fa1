//! `convbert tokenize`: one output line per input line (file, stdin or arguments), with the
//! standalone tokenizer or, with `--fast`, the `tokenizers`-backed one.

use clap::{Args, ValueEnum};
use convbert_tokenizer::{
    ConvBertTokenizer, ConvBertTokenizerFast, EncodeOptions, Encoding, TokenizerConfig,
    TruncationStrategy, Vocab,
};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::lines::{count_lines, BadLine, LineReader};
use crate::output::OutputFile;
use crate::report::{exit_code, progress, say, write_error, CliError};
use crate::shard::{self, Shard, ShardArgs};
use crate::tokenize_stream::{self, Job};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Space-separated ids.
    Ids,
    /// Space-separated tokens.
    Tokens,
    /// One JSON object per line: ids, tokens, type_ids, offsets (characters).
    Json,
    /// A .safetensors file (-o): int64 input_ids, attention_mask and token_type_ids, one row per
    /// line padded with [PAD] to the longest: the inputs of `convbert forward`.
    Safetensors,
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
    /// Output file of --format safetensors (written whole, or not at all).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub shard: ShardArgs,
}

/// The tokenizer of `--fast` or not.
pub enum Tok {
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

    /// One text, on the calling thread.
    pub fn encode_one(&self, text: &str, opts: &EncodeOptions) -> Result<Encoding, String> {
        match self {
            Tok::Slow(t) => t.encode(text, opts),
            Tok::Fast(t) => t.encode(text, opts),
        }
        .map_err(|e| e.to_string())
    }

    fn pad_id(&self) -> u32 {
        let ids = match self {
            Tok::Slow(t) => t.convert_tokens_to_ids(&["[PAD]"]),
            Tok::Fast(t) => t.convert_tokens_to_ids(&["[PAD]"]),
        };
        ids.first().copied().unwrap_or(0)
    }

    fn tokens(&self, ids: &[u32]) -> Vec<String> {
        match self {
            Tok::Slow(t) => t.convert_ids_to_tokens(ids, convbert_tokenizer::SpecialTokens::Keep),
            Tok::Fast(t) => t.convert_ids_to_tokens(ids, convbert_tokenizer::SpecialTokens::Keep),
        }
    }
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

/// The output row of one encoding.
pub fn write_row(
    out: &mut impl Write,
    tok: &Tok,
    enc: &Encoding,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Ids => {
            // The hot path of `convbert tokenize`: ids formatted without allocating.
            let mut digits = itoa::Buffer::new();
            let mut sep: &[u8] = b"";
            for &id in &enc.ids {
                out.write_all(sep)?;
                out.write_all(digits.format(id).as_bytes())?;
                sep = b" ";
            }
            out.write_all(b"\n")
        }
        Format::Tokens => writeln!(out, "{}", tok.tokens(&enc.ids).join(" ")),
        Format::Json => writeln!(out, "{}", json(tok, enc)),
        Format::Safetensors => Err(std::io::Error::other(
            "safetensors output is written whole, not row by row",
        )),
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

/// Lines per parallel encode call: enough to keep the threads busy, few enough that memory stays
/// flat however long the input is.
const BLOCK: usize = 8192;

fn run(args: &TokenizeArgs) -> Result<(), CliError> {
    if args.threads == Some(0) {
        return Err(CliError::Usage("--threads must be at least 1".into()));
    }
    if (args.format == Format::Safetensors) != args.output.is_some() {
        return Err(CliError::Usage(
            "--format safetensors writes a file: give it with -o/--output (and -o only with it)"
                .into(),
        ));
    }
    let shard = args.shard.shard()?;
    if shard.is_some() && args.format == Format::Safetensors {
        // Its rows are padded to the longest line of the run: shards could not be joined.
        return Err(CliError::Usage(
            "--shard does not combine with --format safetensors: tokenize sharded as ids, \
             tokens or json"
                .into(),
        ));
    }
    let tok = Tok::load(args).map_err(CliError::Failed)?;
    if let Some(path) = &args.output {
        return write_safetensors(args, &tok, path);
    }
    let from_args = !args.texts.is_empty();
    if !from_args && args.pair_with.is_none() {
        let threads = args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let job = Job {
            tok,
            opts: options(args),
            format: args.format,
            shard,
        };
        return match tokenize_stream::run(job, args.input.as_deref(), threads)? {
            // Each bad line has had its message; the others were written.
            true => Err(CliError::Reported),
            false => Ok(()),
        };
    }
    let mut lines = if from_args {
        LineReader::from_args(args.texts.clone())
    } else {
        LineReader::open(args.input.as_deref())?.keep_cr()
    }
    .shard(shard);
    let mut pairs = match &args.pair_with {
        Some(p) => {
            // When both counts are known up front, a mismatch fails before any output.
            let known = match &args.input {
                _ if from_args => Some(args.texts.len()),
                Some(input) => count_lines(input),
                None => None,
            };
            if let (Some(a), Some(b)) = (known, count_lines(p)) {
                if a != b {
                    return Err(mismatch(b, a));
                }
            }
            Some(LineReader::open(Some(p))?.keep_cr().shard(shard))
        }
        None => None,
    };
    let opts = options(args);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .map_err(|e| CliError::Failed(format!("thread pool: {e}")))?;
    let bar = progress(from_args.then_some(args.texts.len()));
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut failed = false;
    loop {
        let block = lines.next_chunk(BLOCK)?;
        let pair_block = match &mut pairs {
            Some(p) => Some(p.next_chunk(block.len().max(1))?),
            None => None,
        };
        if let Some(pb) = &pair_block {
            if pb.len() != block.len() {
                let n = pairs.as_ref().map_or(0, LineReader::count);
                return Err(mismatch(n, lines.count()));
            }
        }
        if block.is_empty() {
            // Within a shard, lines past the last taken one still count.
            if let Some(p) = &pairs {
                if p.count() != lines.count() {
                    return Err(mismatch(p.count(), lines.count()));
                }
            }
            break;
        }
        // A row encodes when its text (and its pair) is UTF-8; else its first bad line is reported.
        let rows: Vec<Result<(&str, Option<&str>), &BadLine>> = block
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let text = line.as_ref().map(|l| l.text.as_str())?;
                match &pair_block {
                    Some(pb) => Ok((text, Some(pb[i].as_ref().map(|l| l.text.as_str())?))),
                    None => Ok((text, None)),
                }
            })
            .collect();
        let texts: Vec<&str> = rows.iter().flatten().map(|r| r.0).collect();
        let pair_texts: Option<Vec<&str>> = pair_block
            .as_ref()
            .map(|_| rows.iter().flatten().filter_map(|r| r.1).collect());
        let encs = pool
            .install(|| tok.encode(&texts, pair_texts.as_deref(), &opts))
            .map_err(CliError::Failed)?;
        let mut encs = encs.iter();
        // The block's rows, then written at once.
        let mut buf = Vec::with_capacity(block.len() * 32);
        for (row, line) in rows.iter().zip(&block) {
            let number = line.as_ref().map_or_else(|bad| bad.number, |l| l.number);
            let written = match row {
                Ok(_) => match encs.next() {
                    Some(enc) => write_line(&mut buf, shard, number, args.format, |o| {
                        write_row(o, &tok, enc, args.format)
                    }),
                    None => return Err(CliError::Failed("tokenizer returned too few rows".into())),
                },
                Err(bad) => {
                    failed = true;
                    say(format_args!(
                        "error: {}: invalid UTF-8 on line {} (byte {} of the line)",
                        bad.source, bad.number, bad.byte
                    ));
                    write_line(&mut buf, shard, number, args.format, |o| {
                        write_bad(o, bad, args.format)
                    })
                }
            };
            written.map_err(|e| write_error(e, "stdout"))?;
        }
        out.write_all(&buf).map_err(|e| write_error(e, "stdout"))?;
        if let Some(bar) = &bar {
            bar.inc(block.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(s) = shard {
        shard::write_footer(&mut out, s, lines.count()).map_err(|e| write_error(e, "stdout"))?;
    }
    out.flush().map_err(|e| write_error(e, "stdout"))?;
    if failed {
        // Each bad line has had its message; the others were written.
        return Err(CliError::Reported);
    }
    Ok(())
}

/// `--format safetensors`: every line encoded, padded with [PAD] to the longest, and written as
/// one file of int64 (rows, length) tensors under the names `convbert forward` reads.
fn write_safetensors(
    args: &TokenizeArgs,
    tok: &Tok,
    path: &std::path::Path,
) -> Result<(), CliError> {
    // Before any work: an unwritable output fails first.
    let mut file = OutputFile::create(path)?;
    let read = |reader: LineReader| -> Result<Vec<String>, CliError> {
        let mut reader = reader;
        let mut texts = Vec::new();
        loop {
            let block = reader.next_chunk(BLOCK)?;
            if block.is_empty() {
                return Ok(texts);
            }
            for line in block {
                let line = line.map_err(|bad| {
                    CliError::Failed(format!(
                        "{}: invalid UTF-8 on line {} (byte {} of the line)",
                        bad.source, bad.number, bad.byte
                    ))
                })?;
                texts.push(line.text);
            }
        }
    };
    let texts = if args.texts.is_empty() {
        read(LineReader::open(args.input.as_deref())?.keep_cr())?
    } else {
        args.texts.clone()
    };
    let pairs = match &args.pair_with {
        Some(p) => Some(read(LineReader::open(Some(p))?.keep_cr())?),
        None => None,
    };
    if let Some(p) = &pairs {
        if p.len() != texts.len() {
            return Err(mismatch(p.len(), texts.len()));
        }
    }
    if texts.is_empty() {
        return Err(CliError::Usage("no text to tokenize".into()));
    }
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let pair_refs: Option<Vec<&str>> = pairs
        .as_ref()
        .map(|p| p.iter().map(String::as_str).collect());
    let encs = tok
        .encode(&text_refs, pair_refs.as_deref(), &options(args))
        .map_err(CliError::Failed)?;
    let len = encs.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let pad = i64::from(tok.pad_id());
    let mut columns: [Vec<i64>; 3] = Default::default();
    for e in &encs {
        let fill = len - e.ids.len();
        columns[0].extend(
            e.ids
                .iter()
                .map(|&i| i64::from(i))
                .chain(std::iter::repeat_n(pad, fill)),
        );
        columns[1].extend(std::iter::repeat_n(1, e.ids.len()).chain(std::iter::repeat_n(0, fill)));
        columns[2].extend(
            e.type_ids
                .iter()
                .map(|&t| i64::from(t))
                .chain(std::iter::repeat_n(0, fill)),
        );
    }
    let bytes: Vec<Vec<u8>> = columns
        .iter()
        .map(|c| c.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let shape = vec![encs.len(), len];
    let mut views = Vec::new();
    for (name, data) in ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .zip(&bytes)
    {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::I64, shape.clone(), data)
                .map_err(|e| CliError::Failed(format!("{name}: {e}")))?;
        views.push((name.to_string(), view));
    }
    let serialized = safetensors::serialize(views, None)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(&serialized)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    file.commit()
}

fn mismatch(pairs: usize, inputs: usize) -> CliError {
    CliError::Usage(format!(
        "--pair-with has {pairs} lines but the input has {inputs}"
    ))
}

/// Line `line`'s row, formatted by `row`: as is, or numbered for a shard (see shard.rs).
pub fn write_line(
    out: &mut Vec<u8>,
    shard: Option<Shard>,
    line: usize,
    format: Format,
    row: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if shard.is_none() {
        return row(out);
    }
    let mut bytes = Vec::new();
    row(&mut bytes)?;
    shard::write_row(out, line, &bytes, format == Format::Json)
}

/// The output row of a line that is not UTF-8: an `{"error", "line"}` object in JSON (as the model
/// subcommands write), an empty line otherwise, so output line N still belongs to input line N.
pub fn write_bad(out: &mut impl Write, bad: &BadLine, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::json!({"error": bad.message(), "line": bad.number})
        ),
        Format::Ids | Format::Tokens | Format::Safetensors => writeln!(out),
    }
}
