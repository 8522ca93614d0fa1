//! The streaming path of `convbert tokenize` (lines of a file or stdin, no `--pair-with`): a
//! reader thread cuts the input into blocks of whole lines, `--threads` workers each tokenize a
//! block and format its rows, and the calling thread writes the blocks in input order. Reading,
//! tokenizing and writing overlap, memory stays flat (a few blocks in flight), and the output is
//! byte for byte that of the line-by-line path (`keep_cr` lines, a first-line BOM dropped, a line
//! that is not UTF-8 reported alone). With `--shard`, the workers skip the other shards' lines
//! and number their rows, and the footer counts every line read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use convbert_tokenizer::EncodeOptions;

use crate::lines::BadLine;
use crate::report::{progress, say, write_error, CliError, CliResult};
use crate::shard::{self, Shard};
use crate::tokenize::{write_bad, write_line, write_row, Format, Tok};

/// Input bytes per block: large enough that the per-block hand-offs cost nothing, small enough
/// that a few blocks in flight stay in the caches, that the last block leaves no worker idle
/// for long, and that piped input streams out without waiting for much of it.
const BLOCK: usize = 64 << 10;

/// Whole lines of the input, the `index`-th block, starting at 1-based line `first_line`; or
/// the read error that ends the input there.
struct Block {
    index: usize,
    first_line: usize,
    bytes: Result<Vec<u8>, String>,
}

/// A block's formatted rows, the messages of its bad lines, its line count.
struct Rows {
    out: Vec<u8>,
    bad: Vec<BadLine>,
    lines: usize,
}

/// What tokenizing needs, shared by the workers.
pub struct Job {
    pub tok: Tok,
    pub opts: EncodeOptions,
    pub format: Format,
    pub shard: Option<Shard>,
}

/// Tokenizes the lines of `input` (stdin for `None` or `"-"`) with `threads` workers; `Ok(true)`
/// when some lines were not UTF-8 (each reported on stderr, an empty row in their place).
pub fn run(job: Job, input: Option<&Path>, threads: usize) -> CliResult<bool> {
    let (source, name): (Box<dyn Read + Send>, String) = match input {
        Some(p) if p != Path::new("-") => (
            Box::new(
                File::open(p)
                    .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", p.display())))?,
            ),
            p.display().to_string(),
        ),
        _ => (Box::new(std::io::stdin()), "stdin".to_string()),
    };
    let shard = job.shard;
    let job = Arc::new(job);
    let name = Arc::new(name);
    let (block_tx, block_rx) = mpsc::sync_channel::<Block>(2 * threads);
    let (rows_tx, rows_rx) = mpsc::sync_channel::<(usize, Result<Rows, String>)>(2 * threads);
    {
        let name = Arc::clone(&name);
        std::thread::spawn(move || read_blocks(source, &name, &block_tx));
    }
    let block_rx = Arc::new(Mutex::new(block_rx));
    for _ in 0..threads {
        let (job, name, block_rx, rows_tx) = (
            Arc::clone(&job),
            Arc::clone(&name),
            Arc::clone(&block_rx),
            rows_tx.clone(),
        );
        std::thread::spawn(move || work(&job, &name, &block_rx, &rows_tx));
    }
    drop(rows_tx);
    // The threads are not joined: they end when their channels close, also when this returns
    // early (stdout closed) while the reader still waits on its input. The tokenizer is never
    // freed: the process ends right after, and freeing its tables would cost more than a whole
    // short run's tokenizing.
    std::mem::forget(job);
    write_in_order(&rows_rx, shard)
}

/// Sends the input's blocks, each ending at a line end (the last one at the end of the input);
/// stops at the end, on a read error (sent as the last item) or when nobody listens.
fn read_blocks(mut source: Box<dyn Read + Send>, name: &str, tx: &SyncSender<Block>) {
    let (mut pending, mut index, mut first_line, mut eof) = (Vec::new(), 0, 1, false);
    while !eof {
        let mut buf = std::mem::take(&mut pending);
        buf.reserve(BLOCK);
        // Appends up to a block without zeroing the spare capacity first; a pipe's block goes
        // out as soon as it is full, so results stream while the input is still open.
        match (&mut source).take(BLOCK as u64).read_to_end(&mut buf) {
            Ok(n) => eof = n < BLOCK,
            Err(e) => {
                let _ = tx.send(Block {
                    index,
                    first_line,
                    bytes: Err(format!("cannot read {name}: {e}")),
                });
                return;
            }
        }
        let cut = if eof {
            buf.len()
        } else {
            match buf.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                // One line longer than a block: read on.
                None => {
                    pending = buf;
                    continue;
                }
            }
        };
        pending = buf[cut..].to_vec();
        buf.truncate(cut);
        if buf.is_empty() {
            break;
        }
        let lines =
            buf.iter().filter(|&&b| b == b'\n').count() + usize::from(!buf.ends_with(b"\n"));
        let block = Block {
            index,
            first_line,
            bytes: Ok(buf),
        };
        if tx.send(block).is_err() {
            return;
        }
        index += 1;
        first_line += lines;
    }
}

/// Takes blocks until the input ends, sending each one's rows.
fn work(
    job: &Job,
    name: &str,
    blocks: &Mutex<Receiver<Block>>,
    tx: &SyncSender<(usize, Result<Rows, String>)>,
) {
    loop {
        let next = match blocks.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(block) = next else { return };
        // A read error ends the output after the blocks before it.
        let rows = match &block.bytes {
            Ok(bytes) => tokenize_block(job, name, block.first_line, bytes),
            Err(e) => Err(e.clone()),
        };
        if tx.send((block.index, rows)).is_err() {
            return;
        }
    }
}

fn tokenize_block(job: &Job, name: &str, first_line: usize, block: &[u8]) -> Result<Rows, String> {
    let bytes = block.strip_suffix(b"\n").unwrap_or(block);
    let mut rows = Rows {
        out: Vec::with_capacity(block.len() * 2),
        bad: Vec::new(),
        lines: 0,
    };
    for (i, mut line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = first_line + i;
        if number == 1 {
            line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
        }
        rows.lines += 1;
        if job.shard.is_some_and(|s| !s.takes(number)) {
            continue;
        }
        match std::str::from_utf8(line) {
            Ok(text) => {
                let enc = job.tok.encode_one(text, &job.opts)?;
                write_line(&mut rows.out, job.shard, number, job.format, |o| {
                    write_row(o, &job.tok, &enc, job.format)
                })
            }
            Err(e) => {
                let bad = BadLine {
                    number,
                    source: name.to_string(),
                    byte: e.valid_up_to(),
                };
                let written = write_line(&mut rows.out, job.shard, number, job.format, |o| {
                    write_bad(o, &bad, job.format)
                });
                rows.bad.push(bad);
                written
            }
        }
        .map_err(|e| e.to_string())?;
    }
    Ok(rows)
}

/// Writes the rows to stdout in block order, then a shard's footer; `Ok(true)` when some lines
/// were bad.
fn write_in_order(
    rx: &Receiver<(usize, Result<Rows, String>)>,
    shard: Option<Shard>,
) -> CliResult<bool> {
    let bar = progress(None);
    let mut out = std::io::stdout().lock();
    let mut waiting = BTreeMap::new();
    let (mut next, mut failed, mut lines) = (0, false, 0);
    for (index, rows) in rx {
        waiting.insert(index, rows);
        while let Some(rows) = waiting.remove(&next) {
            let rows = rows.map_err(CliError::Failed)?;
            for bad in &rows.bad {
                say(format_args!(
                    "error: {}: invalid UTF-8 on line {} (byte {} of the line)",
                    bad.source, bad.number, bad.byte
                ));
            }
            failed |= !rows.bad.is_empty();
            out.write_all(&rows.out)
                .map_err(|e| write_error(e, "stdout"))?;
            if let Some(bar) = &bar {
                bar.inc(rows.lines as u64);
            }
            lines += rows.lines;
            next += 1;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(s) = shard {
        shard::write_footer(&mut out, s, lines).map_err(|e| write_error(e, "stdout"))?;
    }
    out.flush().map_err(|e| write_error(e, "stdout"))?;
    Ok(failed)
}
