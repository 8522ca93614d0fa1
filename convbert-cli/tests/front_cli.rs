//! The front binary `convbert`: no libtorch in it, the model subcommands run by `convbert-torch`
//! (exec'd, same help, same exit codes), one clear line when that cannot start; and its streaming
//! `tokenize` over inputs of many blocks.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

const FRONT: &str = env!("CARGO_BIN_EXE_convbert");
const TORCH: &str = env!("CARGO_BIN_EXE_convbert-torch");

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .arg0("convbert")
        .args(args)
        .output()
        .expect("run")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The shared libraries the loader maps for `bin` (what `ldd` prints).
fn loaded_libraries(bin: &str) -> String {
    let out = Command::new(bin)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("trace");
    text(&out.stdout)
}

#[test]
fn front_links_no_libtorch() {
    let libs = loaded_libraries(FRONT);
    for name in ["torch", "c10", "cuda"] {
        assert!(!libs.contains(name), "{name} in:\n{libs}");
    }
    assert!(loaded_libraries(TORCH).contains("libtorch_cpu"));
}

#[test]
fn front_help_and_version_equal_the_torch_binary() {
    for args in [&["--help"][..], &["--version"], &["help"], &[]] {
        let (front, torch) = (run(FRONT, args), run(TORCH, args));
        assert_eq!(text(&front.stdout), text(&torch.stdout), "{args:?}");
        assert_eq!(text(&front.stderr), text(&torch.stderr), "{args:?}");
        assert_eq!(front.status.code(), torch.status.code(), "{args:?}");
    }
}

#[test]
fn model_subcommands_run_in_the_torch_binary() {
    for args in [
        &["fill-mask", "--help"][..],
        &["help", "fill-mask"],
        &["train", "--help"],
        &["serve", "--no-such-flag"],
        &["embed", "--dtype", "f64", "x"],
    ] {
        let (front, torch) = (run(FRONT, args), run(TORCH, args));
        assert_eq!(text(&front.stdout), text(&torch.stdout), "{args:?}");
        assert_eq!(text(&front.stderr), text(&torch.stderr), "{args:?}");
        assert_eq!(front.status.code(), torch.status.code(), "{args:?}");
    }
    let help = text(&run(FRONT, &["fill-mask", "--help"]).stdout);
    assert!(help.contains("Usage: convbert fill-mask") && help.contains("--model"));
}

#[test]
fn a_missing_torch_binary_is_one_clear_line() {
    let out = Command::new(FRONT)
        .args(["fill-mask", "[MASK]"])
        .env("CONVBERT_TORCH_BIN", "/nonexistent/convbert-torch")
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/convbert-torch not found") && err.contains("cargo build"));
    // tokenize needs no convbert-torch.
    let out = Command::new(FRONT)
        .args(["tokenize", "hi"])
        .env("CONVBERT_TORCH_BIN", "/nonexistent/convbert-torch")
        .output()
        .expect("run");
    assert_eq!(text(&out.stdout), "101 7632 102\n");
}

/// A copy of convbert-torch whose RUNPATH (the libtorch directory of the build) names a directory
/// that does not exist, so the loader cannot start it, as on a machine without that libtorch.
#[test]
fn missing_libtorch_is_one_line_with_the_fix() {
    let libs = loaded_libraries(TORCH);
    let Some(dir) = libs
        .lines()
        .filter(|l| l.contains("libtorch_cpu"))
        .find_map(|l| Path::new(l.split("=> ").nth(1)?.split(" (").next()?).parent())
        .map(Path::to_path_buf)
    else {
        panic!("no libtorch_cpu in:\n{libs}");
    };
    let dir = dir.to_string_lossy().into_owned();
    let mut bytes = std::fs::read(TORCH).expect("read");
    let fake = format!("/{}", "x".repeat(dir.len() - 1));
    let mut patched = 0;
    while let Some(at) = bytes.windows(dir.len()).position(|w| w == dir.as_bytes()) {
        bytes[at..at + dir.len()].copy_from_slice(fake.as_bytes());
        patched += 1;
    }
    assert!(patched > 0, "{dir} not in {TORCH}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("convbert-torch");
    std::fs::write(&copy, &bytes).expect("write");
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    // Run alone, the loader fails as it does without libtorch.
    let alone = Command::new(&copy)
        .arg("--help")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run");
    assert_eq!(alone.status.code(), Some(127));
    assert!(text(&alone.stderr).contains("error while loading shared libraries"));
    // Through the front: one line naming the library and the fix, before any exec.
    let out = Command::new(FRONT)
        .args(["fill-mask", "[MASK]"])
        .env("CONVBERT_TORCH_BIN", &copy)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for part in [
        "libtorch",
        "not found",
        "LD_LIBRARY_PATH",
        "LIBTORCH",
        "scripts/env.sh",
    ] {
        assert!(err.contains(part), "{part} not in {err}");
    }
}

/// An input of many blocks, a BOM, CRLF lines, a bad line and no final newline: the same output
/// with 1 and 3 threads, a row for every line, the bad one empty and reported by number.
#[test]
fn streamed_tokenize_is_in_order_for_any_thread_count() {
    let mut input = b"\xef\xbb\xbfHello, world!\r\n".to_vec();
    for i in 0..40_000 {
        input.extend_from_slice(format!("line {i}: Grüße, 東京 and naïve café {i}\n").as_bytes());
        if i == 25_000 {
            input.extend_from_slice(b"bad \xff line\n");
        }
    }
    input.extend_from_slice(b"last line");
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("in.txt");
    std::fs::write(&path, &input).expect("write");
    let tokenize = |threads: &str| {
        Command::new(FRONT)
            .args(["tokenize", "--threads", threads, "--input"])
            .arg(&path)
            .output()
            .expect("run")
    };
    let one = tokenize("1");
    assert_eq!(one.status.code(), Some(1));
    let rows: Vec<&str> = std::str::from_utf8(&one.stdout)
        .expect("utf8")
        .lines()
        .collect();
    assert_eq!(rows.len(), 40_003);
    assert_eq!(rows[0], "101 7592 1010 2088 999 102");
    assert_eq!(rows[25_002], "");
    assert_eq!(rows[40_002], "101 2197 2240 102");
    let err = text(&one.stderr);
    assert!(
        err.contains("invalid UTF-8 on line 25003 (byte 4 of the line)"),
        "{err}"
    );
    let three = tokenize("3");
    assert_eq!(three.stdout, one.stdout);
    assert_eq!(three.stderr, one.stderr);
}
