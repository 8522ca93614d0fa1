//! Starting `convbert-torch`, the binary of the model subcommands, from the libtorch-free front:
//! found next to `convbert` (or at `$CONVBERT_TORCH_BIN`), checked for its libtorch libraries,
//! then `exec`ed with convbert's own argv[0], so help and error messages read as before.
//!
//! When the dynamic loader could not find libtorch it would print its own message and exit 127
//! from inside the exec'd process, where the front can no longer add how to fix it. So before
//! the exec the front reads the binary's ELF `NEEDED` and `RUNPATH` entries and looks for its
//! libtorch libraries in `LD_LIBRARY_PATH` and the runpath (a few `stat`s); only when one seems
//! missing does it ask the loader itself (`LD_TRACE_LOADED_OBJECTS=1`, what `ldd` does), and
//! with the loader's confirmation it prints one line naming the library and the fix.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::report::say;

/// The environment variable naming the libtorch binary to run instead of the sibling.
pub const BIN_ENV: &str = "CONVBERT_TORCH_BIN";
const NAME: &str = "convbert-torch";
/// The exit code of a command the shell cannot start, as the loader's own.
const CANNOT_START: u8 = 127;
const HOW_TO_FIX: &str = "set LD_LIBRARY_PATH to the lib directory of a libtorch 2.11 (such as \
    torch/lib of PyPI torch==2.11.0), or rebuild with LIBTORCH pointing at one (in the \
    repository: `. scripts/env.sh`, as scripts/convbert does)";

/// Replaces this process with `convbert-torch argv[1..]`; returns only when it cannot start.
pub fn exec(argv: &[OsString]) -> ExitCode {
    let bin = match binary() {
        Ok(bin) => bin,
        Err(message) => {
            say(format_args!("error: {message}"));
            return ExitCode::from(CANNOT_START);
        }
    };
    if let Some(missing) = missing_libraries(&bin) {
        say(format_args!(
            "error: {} cannot start: {} not found; {HOW_TO_FIX}",
            bin.display(),
            missing.join(", ")
        ));
        return ExitCode::from(CANNOT_START);
    }
    let mut command = Command::new(&bin);
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        command.env(FRONT_DIR_ENV, dir);
    }
    if let Some(arg0) = argv.first() {
        command.arg0(arg0);
    }
    let error = command.args(argv.iter().skip(1)).exec();
    say(format_args!(
        "error: cannot start {}: {error}",
        bin.display()
    ));
    ExitCode::from(CANNOT_START)
}

/// The environment variable that tells `convbert-torch` the directory of the `convbert` that
/// started it (where a copied or installed convbert keeps its `default-model/`).
pub const FRONT_DIR_ENV: &str = "CONVBERT_FRONT_DIR";

/// `$CONVBERT_TORCH_BIN`, else `convbert-torch` in the directory of this executable, else the
/// one of the build this executable comes from (a `convbert` copied alone).
fn binary() -> Result<PathBuf, String> {
    let bin = match std::env::var_os(BIN_ENV) {
        Some(path) => PathBuf::from(path),
        None => {
            let beside = std::env::current_exe()
                .map_err(|e| format!("cannot find {NAME}: the path of convbert is unknown: {e}"))?
                .with_file_name(NAME);
            let built = Path::new(env!("CONVBERT_BUILD_BIN_DIR")).join(NAME);
            if beside.is_file() || !built.is_file() {
                beside
            } else {
                built
            }
        }
    };
    if !bin.is_file() {
        return Err(format!(
            "{} not found: the model subcommands run in {NAME}, built next to convbert \
             (`cargo build --release -p convbert-cli`; scripts/convbert does it)",
            bin.display()
        ));
    }
    Ok(bin)
}

/// The libraries the loader cannot find for `bin`, `None` when all are there (or `bin` is no
/// ELF file this check understands: the exec then tells).
fn missing_libraries(bin: &Path) -> Option<Vec<String>> {
    let (needed, runpath) = dynamic_section(bin)?;
    let origin = bin.parent().unwrap_or(Path::new("."));
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    dirs.extend(
        runpath
            .split(':')
            .map(|d| PathBuf::from(d.replace("$ORIGIN", &origin.to_string_lossy()))),
    );
    dirs.retain(|d| !d.as_os_str().is_empty());
    let suspect = needed
        .iter()
        .filter(|n| n.starts_with("libtorch") || n.starts_with("libc10"))
        .any(|n| !dirs.iter().any(|d| d.join(n).exists()));
    if !suspect {
        return None;
    }
    // Maybe a system directory has them: the loader has the last word.
    let trace = Command::new(bin)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let missing: Vec<String> = String::from_utf8_lossy(&trace.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_suffix("=> not found"))
        .map(|name| name.trim().to_string())
        .collect();
    (!missing.is_empty()).then_some(missing)
}

/// The `DT_NEEDED` names and the `DT_RUNPATH` / `DT_RPATH` of a 64-bit little-endian ELF file.
fn dynamic_section(path: &Path) -> Option<(Vec<String>, String)> {
    let mut file = File::open(path).ok()?;
    let mut read_at = |offset: u64, len: u64| -> Option<Vec<u8>> {
        let mut buf = vec![0; usize::try_from(len).ok().filter(|&n| n <= 1 << 20)?];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    let u64_at = |b: &[u8], at: usize| -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
    };
    let u16_at = |b: &[u8], at: usize| u64::from(u16::from_le_bytes([b[at], b[at + 1]]));
    let header = read_at(0, 64)?;
    if !header.starts_with(b"\x7fELF\x02\x01") {
        return None;
    }
    let (entry_size, count) = (u16_at(&header, 0x36), u16_at(&header, 0x38));
    if entry_size < 56 {
        return None;
    }
    let table = read_at(u64_at(&header, 0x20), entry_size * count)?;
    // (virtual address, file offset, size) of the loaded segments, and the dynamic segment.
    let mut loads = Vec::new();
    let mut dynamic = None;
    for ph in table.chunks_exact(entry_size as usize) {
        let (offset, vaddr, size) = (u64_at(ph, 8), u64_at(ph, 16), u64_at(ph, 32));
        match u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) {
            1 => loads.push((vaddr, offset, size)),
            2 => dynamic = Some((offset, size)),
            _ => {}
        }
    }
    let (offset, size) = dynamic?;
    let entries = read_at(offset, size)?;
    let (mut strtab, mut strsz, mut needed, mut paths) = (0, 0, Vec::new(), Vec::new());
    for entry in entries.chunks_exact(16) {
        let value = u64_at(entry, 8);
        match u64_at(entry, 0) {
            0 => break,
            1 => needed.push(value),
            5 => strtab = value,
            10 => strsz = value,
            15 | 29 => paths.push(value),
            _ => {}
        }
    }
    let (vaddr, offset, _) = loads
        .iter()
        .find(|&&(vaddr, _, size)| strtab >= vaddr && strtab < vaddr + size)?;
    let strings = read_at(strtab - vaddr + offset, strsz)?;
    let string = |at: u64| -> String {
        let tail = strings.get(at as usize..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        String::from_utf8_lossy(&tail[..end]).into_owned()
    };
    let runpath: Vec<String> = paths.into_iter().map(string).collect();
    Some((needed.into_iter().map(string).collect(), runpath.join(":")))
}
