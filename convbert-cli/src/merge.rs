//! `convbert merge`: the N outputs of a `--shard I/N` run (see shard.rs) back into the output of
//! one unsharded run, byte for byte. JSON Lines shards are merged as streams (one row of each in
//! memory): line L comes from shard (L-1) mod N, and a line missing, repeated or out of place, a
//! shard missing or given twice, or a shard without its footer (a run that did not finish) is an
//! error naming the file. With `-o` the file is then left as it was; to stdout, the rows merged
//! before a line found missing have gone out (the shard set is checked before any row). `embed`
//! .safetensors shards are read
//! whole and joined by their `line_numbers`; their failed lines were left out by `embed`, so
//! there the merge checks the shards and that no line comes twice, not that every line is there.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::output::{Output, OutputFile};
use crate::report::{exit_code, write_error, CliError, CliResult};
use crate::shard::{Footer, Shard};

/// Arguments of `convbert merge`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each shard's JSON Lines rows are {\"line\": L, \"result\": ROW} (or \"text\": \"ROW\" for tokenize ids and tokens), then a footer {\"shard\": I, \"shards\": N, \"lines\": M}; embed's .safetensors shards name theirs in the file metadata."
)]
pub struct MergeArgs {
    /// The outputs of the N shards of one run (--shard 0/N to N-1/N), in any order
    #[arg(required = true, value_name = "SHARD_OUTPUT")]
    pub shards: Vec<PathBuf>,
    /// Write to FILE instead of stdout (replaced whole when the merge ends; "-" = stdout)
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs the subcommand and maps the outcome to the exit code (0 ok, 2 usage, 1 other errors).
pub fn main(args: &MergeArgs) -> ExitCode {
    exit_code(run(args))
}

fn run(args: &MergeArgs) -> CliResult {
    // Before any work: an unwritable output fails first.
    let out = match &args.output {
        Some(p) if p != Path::new("-") => Output::File(BufWriter::new(OutputFile::create(p)?)),
        _ => Output::Stdout(BufWriter::new(std::io::stdout())),
    };
    let mut jsonl = Vec::new();
    for path in &args.shards {
        jsonl.push(is_jsonl(path)?);
    }
    let text = jsonl.iter().position(|&j| j);
    match (text, jsonl.iter().position(|&j| !j)) {
        (Some(_), None) => merge_jsonl(&args.shards, out),
        (None, _) => merge_safetensors(&args.shards, out),
        (Some(t), Some(b)) => Err(CliError::Usage(format!(
            "{} is not sharded JSON Lines as {} is: give the shard outputs of one run",
            args.shards[b].display(),
            args.shards[t].display()
        ))),
    }
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Failed(format!("cannot read {}: {e}", path.display()))
}

fn bad(path: &Path, what: impl std::fmt::Display) -> CliError {
    CliError::Failed(format!("{}: {what}", path.display()))
}

/// Whether `path` starts as a sharded JSON Lines output does (a .safetensors file cannot: its
/// first 8 bytes are the header length).
fn is_jsonl(path: &Path) -> CliResult<bool> {
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(9).read_to_end(&mut head))
        .map_err(|e| read_error(path, e))?;
    Ok(head.starts_with(b"{\"line\":") || head.starts_with(b"{\"shard\":"))
}

/// Checks that `footers` (one per file) are the N distinct shards of one run; returns the
/// shard count, the run's line count and, for each shard, the index of its file.
fn shard_set(paths: &[PathBuf], footers: &[Footer]) -> CliResult<(usize, usize, Vec<usize>)> {
    let first = footers
        .first()
        .ok_or_else(|| CliError::Usage("no shard outputs".into()))?;
    let (count, lines) = (first.shards, first.lines);
    let mut slots: Vec<Option<usize>> = vec![None; count];
    for (i, f) in footers.iter().enumerate() {
        if f.shards != count || f.lines != lines {
            return Err(CliError::Failed(format!(
                "{} is shard {}/{} of {} lines but {} is shard {}/{} of {} lines: not the shards \
                 of one run",
                paths[0].display(),
                first.shard,
                count,
                lines,
                paths[i].display(),
                f.shard,
                f.shards,
                f.lines
            )));
        }
        let slot = slots
            .get_mut(f.shard)
            .ok_or_else(|| bad(&paths[i], format!("shard {}/{count} cannot be", f.shard)))?;
        if let Some(j) = slot {
            return Err(CliError::Failed(format!(
                "{} and {} are both shard {}/{count}",
                paths[*j].display(),
                paths[i].display(),
                f.shard
            )));
        }
        *slot = Some(i);
    }
    let missing: Vec<String> = (0..count)
        .filter(|&s| slots[s].is_none())
        .map(|s| format!("{s}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(CliError::Failed(format!(
            "shard {} missing: give the outputs of all {count} shards",
            missing.join(", ")
        )));
    }
    Ok((count, lines, slots.into_iter().flatten().collect()))
}

/// One sharded JSON Lines output, read a row at a time.
struct JsonlShard<'a> {
    path: &'a Path,
    shard: Shard,
    reader: BufReader<File>,
    buf: Vec<u8>,
    last: usize,
}

/// A row of a sharded output: its line number and the row as the unsharded run wrote it.
enum Row {
    Line(usize, Vec<u8>),
    Footer,
}

impl JsonlShard<'_> {
    fn next(&mut self) -> CliResult<Option<Row>> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| read_error(self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        if line.starts_with(b"{\"shard\":") {
            return Ok(Some(Row::Footer));
        }
        parse_row(line)
            .map(|(number, row)| Some(Row::Line(number, row)))
            .ok_or_else(|| {
                bad(
                    self.path,
                    format!("the row after line {} is not a shard row", self.last),
                )
            })
    }
}

/// `{"line":N,"result":ROW}` or `{"line":N,"text":"ROW"}`: N and ROW with its newline.
fn parse_row(line: &[u8]) -> Option<(usize, Vec<u8>)> {
    let rest = line.strip_prefix(b"{\"line\":")?.strip_suffix(b"}")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let number = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = &rest[digits..];
    let mut row = if let Some(json) = rest.strip_prefix(b",\"result\":") {
        json.to_vec()
    } else {
        let text: String = serde_json::from_slice(rest.strip_prefix(b",\"text\":")?).ok()?;
        text.into_bytes()
    };
    row.push(b'\n');
    Some((number, row))
}

/// The footer of a sharded JSON Lines file: its last line (read from the end, so the rows can
/// then stream in order).
fn read_footer(path: &Path, file: &mut File) -> CliResult<Footer> {
    let len = file.metadata().map_err(|e| read_error(path, e))?.len();
    let tail = len.min(256);
    let mut buf = vec![0; tail as usize];
    file.seek(SeekFrom::Start(len - tail))
        .and_then(|_| file.read_exact(&mut buf))
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .map_err(|e| read_error(path, e))?;
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let last = &body[body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)..];
    serde_json::from_slice::<Footer>(last).map_err(|_| {
        bad(
            path,
            "no footer {\"shard\": I, \"shards\": N, \"lines\": M} at its end: not the whole \
             output of a --shard run (did it finish?)",
        )
    })
}

fn merge_jsonl(paths: &[PathBuf], mut out: Output) -> CliResult {
    let mut files = Vec::with_capacity(paths.len());
    let mut footers = Vec::with_capacity(paths.len());
    for path in paths {
        let mut file = File::open(path).map_err(|e| read_error(path, e))?;
        footers.push(read_footer(path, &mut file)?);
        files.push(file);
    }
    let (count, lines, order) = shard_set(paths, &footers)?;
    let mut files: Vec<Option<File>> = files.into_iter().map(Some).collect();
    let mut shards = Vec::with_capacity(count);
    for (index, &i) in order.iter().enumerate() {
        let file = files[i]
            .take()
            .ok_or_else(|| CliError::Failed("a shard output taken twice".into()))?;
        shards.push(JsonlShard {
            path: &paths[i],
            shard: Shard { index, count },
            reader: BufReader::with_capacity(1 << 16, file),
            buf: Vec::new(),
            last: 0,
        });
    }
    for line in 1..=lines {
        let s = &mut shards[(line - 1) % count];
        let shard = s.shard;
        match s.next()? {
            Some(Row::Line(n, row)) if n == line => {
                out.write_all(&row).map_err(|e| write_error(e, "output"))?;
                s.last = n;
            }
            Some(Row::Line(n, _)) if !shard.takes(n) || n <= s.last => {
                return Err(bad(
                    s.path,
                    format!(
                        "line {n} after line {}: not the next line of shard {shard}",
                        s.last
                    ),
                ))
            }
            Some(Row::Line(..) | Row::Footer) | None => {
                return Err(bad(
                    s.path,
                    format!(
                        "line {line} is missing (shard {shard}, after line {})",
                        s.last
                    ),
                ))
            }
        }
    }
    for s in &mut shards {
        match s.next()? {
            Some(Row::Footer) => {}
            Some(Row::Line(n, _)) => {
                return Err(bad(
                    s.path,
                    format!("line {n}, but the run had {lines} lines"),
                ))
            }
            None => return Err(bad(s.path, "ends without its footer")),
        }
        if s.next()?.is_some() {
            return Err(bad(s.path, "rows after its footer"));
        }
    }
    out.finish()
}

/// One `embed` .safetensors shard, read whole.
struct TensorShard {
    bytes: Vec<u8>,
    footer: Footer,
}

fn read_tensor_shard(path: &Path) -> CliResult<TensorShard> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    let not_shard = || {
        bad(
            path,
            "neither the JSON Lines nor the .safetensors output of a --shard run",
        )
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|_| not_shard())?;
    let meta = header.metadata().as_ref().ok_or_else(not_shard)?;
    let field = |k: &str| -> CliResult<usize> {
        meta.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(not_shard)
    };
    let footer = Footer {
        shard: field("shard")?,
        shards: field("shards")?,
        lines: field("lines")?,
    };
    Ok(TensorShard { bytes, footer })
}

/// The rows of one shard: per line number, its row's bytes and shape.
type Rows<'a> = Vec<(usize, &'a [u8], Vec<usize>)>;

/// A shard's line numbers and rows, checked; the dtype of the rows and whether they are
/// `embeddings` rows (else one `last_hidden_state.<i>` per line).
fn tensor_rows<'a>(
    path: &Path,
    st: &SafeTensors<'a>,
    shard: Shard,
    lines: usize,
) -> CliResult<(Rows<'a>, Option<Dtype>, bool)> {
    let numbers = st
        .tensor("line_numbers")
        .map_err(|_| bad(path, "no line_numbers tensor"))?;
    if numbers.dtype() != Dtype::I64 || numbers.shape().len() != 1 {
        return Err(bad(path, "line_numbers is not an int64 vector"));
    }
    let numbers: Vec<usize> = numbers
        .data()
        .chunks_exact(8)
        .map(|b| {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            i64::from_le_bytes(le).max(0) as usize
        })
        .collect();
    let mut last = 0;
    for &n in &numbers {
        if n == 0 || n > lines || !shard.takes(n) || n <= last {
            return Err(bad(
                path,
                format!("line {n} after line {last}: not the next line of shard {shard}"),
            ));
        }
        last = n;
    }
    let mut rows = Vec::with_capacity(numbers.len());
    if let Ok(e) = st.tensor("embeddings") {
        let shape = e.shape();
        if shape.len() != 2 || shape[0] != numbers.len() {
            return Err(bad(
                path,
                "embeddings and line_numbers do not have the same rows",
            ));
        }
        let width = e.data().len() / shape[0].max(1);
        for (i, &n) in numbers.iter().enumerate() {
            rows.push((n, &e.data()[i * width..(i + 1) * width], vec![shape[1]]));
        }
        return Ok((rows, Some(e.dtype()), true));
    }
    let mut dtype = None;
    for (i, &n) in numbers.iter().enumerate() {
        let t = st
            .tensor(&format!("last_hidden_state.{i}"))
            .map_err(|_| bad(path, format!("no embeddings nor last_hidden_state.{i}")))?;
        dtype = Some(t.dtype());
        rows.push((n, t.data(), t.shape().to_vec()));
    }
    Ok((rows, dtype, false))
}

fn merge_safetensors(paths: &[PathBuf], mut out: Output) -> CliResult {
    let files = paths
        .iter()
        .map(|p| read_tensor_shard(p))
        .collect::<CliResult<Vec<_>>>()?;
    let footers: Vec<Footer> = files.iter().map(|f| f.footer).collect();
    let (count, lines, _) = shard_set(paths, &footers)?;
    let mut merged = BTreeMap::new();
    // Shards agree on the kind of rows, their dtype and width (a shard may have no rows).
    let (mut pooled, mut dtype, mut width): (Option<bool>, Option<Dtype>, Option<usize>) =
        (None, None, None);
    let tensors = files
        .iter()
        .zip(paths)
        .map(|(f, p)| SafeTensors::deserialize(&f.bytes).map_err(|e| bad(p, e)))
        .collect::<CliResult<Vec<_>>>()?;
    for ((st, f), path) in tensors.iter().zip(&files).zip(paths) {
        let shard = Shard {
            index: f.footer.shard,
            count,
        };
        let (rows, kind, is_pooled) = tensor_rows(path, st, shard, lines)?;
        let mismatch = || {
            bad(
                path,
                format!("its rows are not those of {}", paths[0].display()),
            )
        };
        // An empty shard of per-token rows has no tensor that says so: it agrees with any.
        if (is_pooled || !rows.is_empty())
            && pooled.replace(is_pooled).is_some_and(|p| p != is_pooled)
        {
            return Err(mismatch());
        }
        if let Some(k) = kind {
            if dtype.replace(k).is_some_and(|d| d != k) {
                return Err(mismatch());
            }
        }
        if is_pooled {
            // An empty shard's embeddings still have their width: (0, D).
            let d = st
                .tensor("embeddings")
                .map(|e| e.shape().get(1).copied().unwrap_or(0))
                .map_err(|_| mismatch())?;
            if width.replace(d).is_some_and(|w| w != d) {
                return Err(mismatch());
            }
        }
        for (n, data, shape) in rows {
            merged.insert(n, (data, shape));
        }
    }
    let numbers: Vec<u8> = merged
        .keys()
        .flat_map(|&n| (n as i64).to_le_bytes())
        .collect();
    let rows: Vec<(&[u8], Vec<usize>)> = merged.into_values().collect();
    let view = |dtype, shape, data| {
        TensorView::new(dtype, shape, data).map_err(|e| CliError::Failed(e.to_string()))
    };
    let mut views = vec![(
        "line_numbers".to_string(),
        view(Dtype::I64, vec![rows.len()], &numbers)?,
    )];
    let joined: Vec<u8>;
    if pooled.unwrap_or(false) {
        joined = rows
            .iter()
            .flat_map(|(data, _)| data.iter().copied())
            .collect();
        let d = width.unwrap_or(0);
        views.push((
            "embeddings".to_string(),
            view(dtype.unwrap_or(Dtype::F32), vec![rows.len(), d], &joined)?,
        ));
    } else {
        for (i, (data, shape)) in rows.iter().enumerate() {
            views.push((
                format!("last_hidden_state.{i}"),
                view(dtype.unwrap_or(Dtype::F32), shape.clone(), data)?,
            ));
        }
    }
    let bytes = safetensors::serialize(views, None).map_err(|e| CliError::Failed(e.to_string()))?;
    out.write_all(&bytes)
        .map_err(|e| write_error(e, "output"))?;
    out.finish()
}
