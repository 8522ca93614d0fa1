//! What every `convbert` command reports, with or without libtorch: the error type and its exit
//! codes (2 usage, 1 anything else), one-line messages on stderr, the progress bar.

use std::io::{ErrorKind, IsTerminal, Write};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

/// A failure of a subcommand; `Usage` exits with 2, `Failed` with 1.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments or option values.
    Usage(String),
    /// Anything else (I/O, model, some bad input lines).
    Failed(String),
    /// Some input lines failed, each already reported on stderr: exit 1 with nothing more.
    Reported,
    /// The reader of stdout went away (`| head`): stop quietly, exit 0.
    Closed,
}

impl CliError {
    pub fn failed(e: impl std::fmt::Display) -> Self {
        CliError::Failed(e.to_string())
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// The process exit code of a finished subcommand: 0 (also when stdout was closed early); 2 for
/// a usage error, 1 for any other, each with its one line on stderr.
pub fn exit_code(result: CliResult) -> ExitCode {
    let (code, message) = match result {
        Ok(()) | Err(CliError::Closed) => return ExitCode::SUCCESS,
        Err(CliError::Reported) => return ExitCode::from(1),
        Err(CliError::Usage(m)) => (2, m),
        Err(CliError::Failed(m)) => (1, m),
    };
    say(format_args!("error: {message}"));
    ExitCode::from(code)
}

/// One line on stderr; a closed stderr (`2>&1 | head`) is ignored instead of a panic.
pub fn say(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A write error: the reader of stdout went away ([`CliError::Closed`]), or a failure.
pub fn write_error(e: std::io::Error, what: &str) -> CliError {
    if e.kind() == ErrorKind::BrokenPipe {
        CliError::Closed
    } else {
        CliError::Failed(format!("cannot write {what}: {e}"))
    }
}

/// A progress bar with throughput on stderr, only when stderr is a terminal; its length is the
/// number of inputs when known (arguments), else it counts up.
pub fn progress(total: Option<usize>) -> Option<ProgressBar> {
    if total.is_some_and(|n| n < 64) || !std::io::stderr().is_terminal() {
        return None;
    }
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::new(n as u64),
            "{bar:40} {pos}/{len} inputs  {per_sec}  eta {eta}",
        ),
        None => (ProgressBar::no_length(), "{pos} inputs  {per_sec}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}
