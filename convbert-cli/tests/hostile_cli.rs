//! Hostile or broken checkpoints through the `convbert` command as users run it: each ends in
//! exit 1 with one short line on stderr naming the file and the problem, quickly, and writes no
//! result. (Every case is also tested on the library in convbert-model/tests/hostile_checkpoints.rs.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use safetensors::tensor::{Dtype, TensorView};

fn default_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/default-model")
}

/// A copy of the default model in a fresh directory.
fn copy_model(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convbert-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(default_model()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// `convbert fill-mask --model dir`, killed after 30 s (a hang is a failure).
fn fill_mask(dir: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_convbert"))
        .args(["fill-mask", "--model"])
        .arg(dir)
        .arg("paris is the [MASK] of france.")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("convbert hung on {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Exit 1, no result, one stderr line holding every one of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "a result was written");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].len() < 500, "a long message: {stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} missing from: {stderr}");
    }
}

#[test]
fn a_fifo_config_is_refused_not_waited_on() {
    let dir = copy_model("fifo");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let made = Command::new("mkfifo")
        .arg(dir.join("config.json"))
        .status()
        .unwrap();
    assert!(made.success());
    assert_refused(&fill_mask(&dir), &["config.json", "not a regular file"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_float_weight_stored_as_int32_is_refused() {
    let dir = copy_model("int32");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let target = "convbert.embeddings.LayerNorm.weight";
    let mut names: Vec<String> = file.names().into_iter().map(str::to_owned).collect();
    names.sort();
    assert!(
        names.iter().any(|n| n == target),
        "no {target} in {names:?}"
    );
    let ints = {
        let t = file.tensor(target).unwrap();
        let n: usize = t.shape().iter().product();
        (vec![0u8; n * 4], t.shape().to_vec())
    };
    let views: Vec<(String, TensorView)> = names
        .iter()
        .map(|n| {
            let view = if n == target {
                TensorView::new(Dtype::I32, ints.1.clone(), &ints.0).unwrap()
            } else {
                let t = file.tensor(n).unwrap();
                TensorView::new(t.dtype(), t.shape().to_vec(), t.data()).unwrap()
            };
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
    assert_refused(
        &fill_mask(&dir),
        &["I32", "LayerNorm.weight", "model.safetensors"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_shard_outside_the_checkpoint_is_refused() {
    let dir = copy_model("escape");
    let outside = dir
        .parent()
        .unwrap()
        .join(format!("outside-{}.safetensors", std::process::id()));
    std::fs::rename(dir.join("model.safetensors"), &outside).unwrap();
    let shard = format!("../{}", outside.file_name().unwrap().to_str().unwrap());
    let index = serde_json::json!({"metadata": {}, "weight_map": {"convbert.embeddings.LayerNorm.weight": shard}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_refused(&fill_mask(&dir), &["outside", "not a file inside"]);
    std::fs::remove_file(&outside).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// CRC-32 (IEEE) of `bytes`, as zip members carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A torch.save-style zip holding `archive/data.pkl` = `pkl` (stored, no storages).
fn torch_zip(pkl: &[u8]) -> Vec<u8> {
    let members: [(&str, &[u8]); 2] = [("archive/data.pkl", pkl), ("archive/byteorder", b"little")];
    let (mut out, mut central) = (Vec::new(), Vec::new());
    let u16le = |v: &mut Vec<u8>, x: u16| v.extend(x.to_le_bytes());
    let u32le = |v: &mut Vec<u8>, x: u32| v.extend(x.to_le_bytes());
    for (name, data) in members {
        let (offset, crc, len) = (out.len() as u32, crc32(data), data.len() as u32);
        u32le(&mut out, 0x0403_4b50);
        for x in [20, 0, 0, 0, 0] {
            u16le(&mut out, x);
        }
        for x in [crc, len, len] {
            u32le(&mut out, x);
        }
        u16le(&mut out, name.len() as u16);
        u16le(&mut out, 0);
        out.extend(name.as_bytes());
        out.extend(data);
        u32le(&mut central, 0x0201_4b50);
        for x in [20, 20, 0, 0, 0, 0] {
            u16le(&mut central, x);
        }
        for x in [crc, len, len] {
            u32le(&mut central, x);
        }
        for x in [name.len() as u16, 0, 0, 0, 0] {
            u16le(&mut central, x);
        }
        u32le(&mut central, 0);
        u32le(&mut central, offset);
        central.extend(name.as_bytes());
    }
    let (at, size) = (out.len() as u32, central.len() as u32);
    out.extend(central);
    u32le(&mut out, 0x0605_4b50);
    for x in [0, 0, 2, 2] {
        u16le(&mut out, x);
    }
    u32le(&mut out, size);
    u32le(&mut out, at);
    u16le(&mut out, 0);
    out
}

#[test]
fn billion_laughs_and_deep_nesting_in_a_bin_are_refused_quickly() {
    // PROTO 2, EMPTY_LIST, 40 x (DUP, TUPLE2), STOP: 84 bytes describing 2^40 leaves.
    let mut dup = vec![0x80, 2, b']'];
    for _ in 0..40 {
        dup.extend([b'2', 0x86]);
    }
    dup.push(b'.');
    // The memo variant: BINPUT 0, then 40 x (BINGET 0, BINGET 0, TUPLE2, BINPUT 0).
    let mut memo = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..40 {
        memo.extend([b'h', 0, b'h', 0, 0x86, b'q', 0]);
    }
    memo.push(b'.');
    // 100k EMPTY_LISTs, each APPENDed into the one below.
    let mut nested = vec![0x80, 2];
    nested.extend(std::iter::repeat_n(b']', 100_000));
    nested.extend(std::iter::repeat_n(b'a', 99_999));
    nested.push(b'.');
    for (name, pkl, want) in [
        ("laughs-dup", dup, "does not hold a dict"),
        ("laughs-memo", memo, "does not hold a dict"),
        ("nested", nested, "nested deeper than"),
    ] {
        let dir = copy_model(name);
        std::fs::remove_file(dir.join("model.safetensors")).unwrap();
        std::fs::write(dir.join("pytorch_model.bin"), torch_zip(&pkl)).unwrap();
        let start = Instant::now();
        let out = fill_mask(&dir);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name}: {:?}",
            start.elapsed()
        );
        assert_refused(&out, &["pytorch_model.bin", want]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
