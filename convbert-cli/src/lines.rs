//! Input lines of the CLI, read one at a time as bytes from arguments, a file or stdin, so memory
//! stays flat however long the input is, and a line that is not UTF-8 fails alone (its number is
//! reported in place of its result) instead of the whole input. A UTF-8 byte order mark at the
//! start of the input is dropped.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::report::{CliError, CliResult};
use crate::shard::Shard;

/// One input with its 1-based line number (argument position for arguments).
pub struct Line {
    pub number: usize,
    pub text: String,
}

/// A line whose bytes are not UTF-8.
#[derive(Debug, Clone)]
pub struct BadLine {
    pub number: usize,
    /// The file name, or `stdin`.
    pub source: String,
    /// Offset of the first invalid byte within the line.
    pub byte: usize,
}

impl BadLine {
    /// The problem, for a message that already names the line: `stdin: invalid UTF-8 at byte 3`.
    pub fn message(&self) -> String {
        format!(
            "{}: invalid UTF-8 at byte {} of the line",
            self.source, self.byte
        )
    }
}

/// A line's text, or why it has none.
pub type LineResult = Result<Line, BadLine>;

enum Source {
    Args(std::vec::IntoIter<String>),
    Reader(Box<dyn BufRead>),
}

/// The lines of one input, in order.
pub struct LineReader {
    source: Source,
    name: String,
    number: usize,
    keep_cr: bool,
    shard: Option<Shard>,
    buf: Vec<u8>,
}

impl LineReader {
    /// Lines of `path`, or of stdin for `None` / `"-"`. Lines end at `"\n"` or `"\r\n"`; a final
    /// newline ends the last line.
    pub fn open(path: Option<&Path>) -> CliResult<Self> {
        let (reader, name): (Box<dyn BufRead>, String) = match path {
            Some(p) if p != Path::new("-") => {
                let file = File::open(p)
                    .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", p.display())))?;
                (
                    Box::new(BufReader::with_capacity(1 << 16, file)),
                    p.display().to_string(),
                )
            }
            _ => (
                Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())),
                "stdin".to_string(),
            ),
        };
        Ok(Self::new(Source::Reader(reader), name))
    }

    /// The arguments as lines 1, 2, ...
    pub fn from_args(texts: Vec<String>) -> Self {
        Self::new(Source::Args(texts.into_iter()), "arguments".to_string())
    }

    fn new(source: Source, name: String) -> Self {
        Self {
            source,
            name,
            number: 0,
            keep_cr: false,
            shard: None,
            buf: Vec::new(),
        }
    }

    /// Split on `"\n"` only: a `"\r"` before it stays in the line.
    pub fn keep_cr(mut self) -> Self {
        self.keep_cr = true;
        self
    }

    /// Only the lines of `shard` (all for `None`), still numbered as in the whole input: the
    /// others are read and counted, and never reported.
    pub fn shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// Lines read so far, the other shards' included.
    pub fn count(&self) -> usize {
        self.number
    }

    /// The next line (of the shard), `None` at the end; an error only when the input cannot be
    /// read.
    pub fn next_line(&mut self) -> CliResult<Option<LineResult>> {
        loop {
            let line = self.read_line()?;
            match (&line, self.shard) {
                (Some(_), Some(shard)) if !shard.takes(self.number) => continue,
                _ => return Ok(line),
            }
        }
    }

    fn read_line(&mut self) -> CliResult<Option<LineResult>> {
        let reader = match &mut self.source {
            Source::Args(args) => {
                return Ok(args.next().map(|text| {
                    self.number += 1;
                    Ok(Line {
                        number: self.number,
                        text,
                    })
                }))
            }
            Source::Reader(r) => r,
        };
        self.buf.clear();
        let n = reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", self.name)))?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        let mut bytes = &self.buf[..];
        if let Some(rest) = bytes.strip_suffix(b"\n") {
            bytes = rest;
            if !self.keep_cr {
                bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            }
        }
        if self.number == 1 {
            bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        }
        Ok(Some(match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Line {
                number: self.number,
                text: text.to_string(),
            }),
            Err(e) => Err(BadLine {
                number: self.number,
                source: self.name.clone(),
                byte: e.valid_up_to(),
            }),
        }))
    }

    /// Up to `n` next lines; empty at the end.
    pub fn next_chunk(&mut self, n: usize) -> CliResult<Vec<LineResult>> {
        let mut chunk = Vec::with_capacity(n.min(1 << 14));
        while chunk.len() < n {
            match self.next_line()? {
                Some(line) => chunk.push(line),
                None => break,
            }
        }
        Ok(chunk)
    }
}

/// The number of lines of a regular file, counted without holding it (`None` for stdin, a pipe or
/// an unreadable file: the count is then known only at the end).
pub fn count_lines(path: &Path) -> Option<usize> {
    if path == Path::new("-") || !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path).ok()?);
    let (mut lines, mut last) = (0, b'\n');
    loop {
        let buf = reader.fill_buf().ok()?;
        if buf.is_empty() {
            break;
        }
        lines += buf.iter().filter(|&&b| b == b'\n').count();
        last = buf[buf.len() - 1];
        let n = buf.len();
        reader.consume(n);
    }
    Some(lines + usize::from(last != b'\n'))
}
