//! Where the CLI's results go: files replaced whole (a temporary file next to the target, synced
//! and renamed over it) and checked writable before any work, or stdout, whose early close by
//! its reader (`| head`) ends a command quietly.

use std::fs::File;
use std::io::{BufWriter, Stdout, Write};
use std::path::{Path, PathBuf};

use crate::report::{write_error, CliError, CliResult};

/// A file written whole or not at all: the bytes go to a temporary file next to the target,
/// which [`OutputFile::commit`] syncs and renames over it, so a crash at any point leaves the
/// old complete file (or none) or the new complete one. Creating it checks that the directory
/// is writable, so commands create it before they compute anything. Dropped without a commit,
/// the temporary file is removed. A target that exists and is not a regular file (`/dev/null`,
/// a FIFO) is written in place.
pub struct OutputFile {
    target: PathBuf,
    kind: OutputKind,
}

enum OutputKind {
    Atomic(tempfile::NamedTempFile),
    InPlace(File),
}

impl OutputFile {
    pub fn create(path: &Path) -> CliResult<Self> {
        let failed =
            |e: std::io::Error| CliError::Failed(format!("cannot write {}: {e}", path.display()));
        // Through a symlink, the file it points to is replaced, not the link.
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let existing = std::fs::metadata(&target).ok();
        if let Some(m) = existing.as_ref().filter(|m| !m.is_file()) {
            if m.is_dir() {
                return Err(CliError::Failed(format!(
                    "cannot write {}: it is a directory",
                    path.display()
                )));
            }
            let file = File::options().write(true).open(&target).map_err(failed)?;
            return Ok(Self {
                target,
                kind: OutputKind::InPlace(file),
            });
        }
        let name = target.file_name().ok_or_else(|| {
            CliError::Failed(format!("cannot write {}: not a file name", path.display()))
        })?;
        let dir = directory_of(&target);
        let prefix = format!(".{}.", name.to_string_lossy());
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // A new file gets File::create's 0o666 less the umask; a replaced one keeps its mode.
            let mode = existing.as_ref().map_or(0o666, |m| m.permissions().mode());
            builder.permissions(std::fs::Permissions::from_mode(mode));
        }
        let tmp = builder.tempfile_in(dir).map_err(failed)?;
        if let Some(m) = &existing {
            tmp.as_file()
                .set_permissions(m.permissions())
                .map_err(failed)?;
        }
        Ok(Self {
            target,
            kind: OutputKind::Atomic(tmp),
        })
    }

    /// The path writers that take a path write to (the temporary file until the commit).
    pub fn write_path(&self) -> &Path {
        match &self.kind {
            OutputKind::Atomic(t) => t.path(),
            OutputKind::InPlace(_) => &self.target,
        }
    }

    fn file(&mut self) -> &mut File {
        match &mut self.kind {
            OutputKind::Atomic(t) => t.as_file_mut(),
            OutputKind::InPlace(f) => f,
        }
    }

    /// Syncs the bytes to disk, renames the file into place and syncs the directory entry.
    pub fn commit(self) -> CliResult {
        let failed = |e: std::io::Error| {
            CliError::Failed(format!("cannot write {}: {e}", self.target.display()))
        };
        let tmp = match self.kind {
            OutputKind::InPlace(mut f) => return f.flush().map_err(failed),
            OutputKind::Atomic(tmp) => tmp,
        };
        // A writer that took the path may have written through its own handle: sync by path.
        File::open(tmp.path())
            .and_then(|f| f.sync_all())
            .map_err(failed)?;
        tmp.persist(&self.target).map_err(|e| failed(e.error))?;
        // The rename itself is durable once the directory is synced.
        File::open(directory_of(&self.target))
            .and_then(|d| d.sync_all())
            .map_err(failed)
    }
}

/// The directory holding `file` (`.` for a bare file name).
fn directory_of(file: &Path) -> &Path {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush()
    }
}

/// Where JSON Lines go: stdout, or a file replaced whole by [`Output::finish`].
pub enum Output {
    Stdout(BufWriter<Stdout>),
    File(BufWriter<OutputFile>),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::File(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File(w) => w.flush(),
        }
    }
}

impl Output {
    /// Flushes stdout, or commits the file.
    pub fn finish(self) -> CliResult {
        match self {
            Output::Stdout(mut w) => w.flush().map_err(|e| write_error(e, "stdout")),
            Output::File(w) => w
                .into_inner()
                .map_err(|e| write_error(e.into_error(), "output"))?
                .commit(),
        }
    }
}
