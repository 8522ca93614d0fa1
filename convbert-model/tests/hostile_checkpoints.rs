//! Hostile and malformed checkpoint files: each ends in a typed error that names the file and
//! the problem, quickly and in bounded memory — never a panic, an abort, a hang or a huge
//! message. Every file is crafted here, small.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::crafted::{f32_bytes, state_dict_pickle, tmp_dir, write_torch_zip, CraftedTensor};
use common::fixtures;
use convbert_model::checkpoint::{self, Weights};
use convbert_model::{ConvBertConfig, ConvBertError, ConvBertModel};
use tch::{Device, Kind, Tensor};

/// Runs `f` on its own thread; fails the test (instead of hanging it) after `secs`.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what}: no answer within {secs} s"))
}

/// Peak resident memory of this process (VmHWM) in KiB; None off Linux.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `Checkpoint` error of opening `path`, as text; any other outcome fails the test.
fn checkpoint_error(path: &Path) -> String {
    let p = path.to_path_buf();
    match within(10, "Weights::open", move || Weights::open(&p)) {
        Err(e @ ConvBertError::Checkpoint { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.len() < 2000, "message of {} bytes", msg.len());
            msg
        }
        Err(e) => panic!("unexpected error kind: {e:?}"),
        Ok(w) => panic!("{} opened with {} tensors", path.display(), w.len()),
    }
}

fn bin_with_pickle(name: &str, pkl: &[u8]) -> PathBuf {
    let path = tmp_dir(name).join("pytorch_model.bin");
    write_torch_zip(&path, pkl, &[]);
    path
}

#[test]
fn crafted_state_dict_reads_back() {
    // The control for every crafted .bin below: a well-formed one loads with its values.
    let path = tmp_dir("crafted-ok").join("pytorch_model.bin");
    let pkl = state_dict_pickle(&[CraftedTensor {
        name: "w",
        storage_key: "0",
        offset: 1,
        size: &[2, 2],
        stride: &[1, 2],
    }]);
    write_torch_zip(&path, &pkl, &[("0", &f32_bytes(5))]);
    let w = Weights::open(&path).unwrap();
    let t = w.tensor("w", Kind::Float, Device::Cpu).unwrap();
    let expected = Tensor::from_slice(&[1f32, 3., 2., 4.]).view([2, 2]);
    assert!(t.equal(&expected), "{t}");
}

#[test]
fn billion_laughs_pickles_fail_fast_in_bounded_memory() {
    // PROTO 2, EMPTY_LIST, 40 x (DUP, TUPLE2), STOP: 84 bytes describing 2^40 leaves.
    let mut dup = vec![0x80, 2, b']'];
    for _ in 0..40 {
        dup.extend([b'2', 0x86]);
    }
    dup.push(b'.');
    assert_eq!(dup.len(), 84);
    // The memo variant: BINPUT 0, then 40 x (BINGET 0, BINGET 0, TUPLE2, BINPUT 0).
    let mut memo = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..40 {
        memo.extend([b'h', 0, b'h', 0, 0x86, b'q', 0]);
    }
    memo.push(b'.');
    // And as the value of a state-dict entry, which the error quotes.
    let mut entry = vec![0x80, 2, b'}', b'X', 1, 0, 0, 0, b'w', b']'];
    for _ in 0..40 {
        entry.extend([b'2', 0x86]);
    }
    entry.extend([b's', b'.']);
    let before = peak_rss_kib();
    for (name, pkl, want) in [
        ("laughs-dup", dup, "does not hold a dict"),
        ("laughs-memo", memo, "does not hold a dict"),
        ("laughs-entry", entry, "entry w is not a tensor"),
    ] {
        let path = bin_with_pickle(name, &pkl);
        let start = Instant::now();
        let msg = checkpoint_error(&path);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{name}: {:?}",
            start.elapsed()
        );
        assert!(msg.contains(want) && msg.contains('…'), "{name}: {msg}");
    }
    // Other tests of this binary run alongside: the bound is loose; 2^40 nodes are not.
    if let (Some(before), Some(after)) = (before, peak_rss_kib()) {
        assert!(
            after - before < 512 * 1024,
            "peak RSS grew by {} KiB",
            after - before
        );
    }
}

#[test]
fn pickles_that_copy_a_shared_list_too_often_hit_the_work_budget() {
    // A 100k-item list, then 20k x (DUP, APPEND): each APPEND must copy the shared list, which
    // would be 2e9 item copies; the work budget (linear in the pickle's size) stops it.
    let mut pkl = vec![0x80, 2, b']', b'('];
    pkl.extend(std::iter::repeat_n(b'N', 100_000));
    pkl.push(b'e');
    for _ in 0..20_000 {
        pkl.extend([b'2', b'N', b'a']);
    }
    pkl.push(b'.');
    let path = bin_with_pickle("cow-budget", &pkl);
    let start = Instant::now();
    let msg = checkpoint_error(&path);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(msg.contains("more work"), "{msg}");
}

#[test]
fn deeply_nested_pickles_are_refused_not_a_stack_overflow() {
    // 100k EMPTY_LISTs, each APPENDed into the one below: 100k levels of nesting.
    let n = 100_000;
    let mut lists = vec![0x80, 2];
    lists.extend(std::iter::repeat_n(b']', n));
    lists.extend(std::iter::repeat_n(b'a', n - 1));
    lists.push(b'.');
    // 100k MARKs closed by 100k TUPLEs.
    let mut tuples = vec![0x80, 2];
    tuples.extend(std::iter::repeat_n(b'(', n));
    tuples.extend(std::iter::repeat_n(b't', n));
    tuples.push(b'.');
    for (name, pkl) in [("nested-lists", lists), ("nested-tuples", tuples)] {
        let msg = checkpoint_error(&bin_with_pickle(name, &pkl));
        assert!(msg.contains("nested deeper than"), "{name}: {msg}");
    }
}

#[test]
fn errors_quote_at_most_a_short_excerpt_of_the_file() {
    // An entry whose value is a 2M-item list, and a 4 MB key whose value is not a tensor.
    let mut big_list = vec![0x80, 2, b'}', b'X', 1, 0, 0, 0, b'w', b']', b'('];
    big_list.extend(std::iter::repeat_n(b'N', 2_000_000));
    big_list.extend([b'e', b's', b'.']);
    let key = "k".repeat(4 << 20);
    let mut big_key = vec![0x80, 2, b'}', b'X'];
    big_key.extend((key.len() as u32).to_le_bytes());
    big_key.extend(key.as_bytes());
    big_key.extend([b'N', b's', b'.']);
    for (name, pkl) in [("quote-list", big_list), ("quote-key", big_key)] {
        let msg = checkpoint_error(&bin_with_pickle(name, &pkl));
        assert!(
            msg.contains("is not a tensor") && msg.contains('…'),
            "{name}: {msg}"
        );
        assert!(msg.len() < 1000, "{name}: {} bytes", msg.len());
    }
}

#[test]
fn view_arithmetic_that_overflows_is_outside_the_storage() {
    let storage = f32_bytes(4);
    let cases: [(&str, i64, &[i64], &[i64]); 4] = [
        // 2 * 7266899180552247606 wraps to a negative extent in unchecked release arithmetic.
        ("stride", 0, &[3, 1], &[7266899180552247606, 1]),
        ("offset", i64::MAX, &[2], &[1]),
        ("size", 0, &[i64::MAX, 2], &[1, i64::MAX]),
        ("negative", 0, &[2], &[-1]),
    ];
    for (name, offset, size, stride) in cases {
        let path = tmp_dir(&format!("overflow-{name}")).join("pytorch_model.bin");
        let pkl = state_dict_pickle(&[CraftedTensor {
            name: "w",
            storage_key: "0",
            offset,
            size,
            stride,
        }]);
        write_torch_zip(&path, &pkl, &[("0", &storage)]);
        let msg = checkpoint_error(&path);
        assert!(
            msg.contains("tensor w: view") && msg.contains("outside its storage"),
            "{msg}"
        );
    }
}

#[test]
fn a_key_twice_in_one_bin_is_named_as_such() {
    let path = tmp_dir("dup-key").join("pytorch_model.bin");
    let t = CraftedTensor {
        name: "encoder.w",
        storage_key: "0",
        offset: 0,
        size: &[2],
        stride: &[1],
    };
    let pkl = state_dict_pickle(&[t, t]);
    write_torch_zip(&path, &pkl, &[("0", &f32_bytes(2))]);
    let msg = checkpoint_error(&path);
    assert!(
        msg.contains(&format!(
            "tensor encoder.w appears twice in {}",
            path.display()
        )),
        "{msg}"
    );
}

/// The `base` fixture re-saved with `change` applied to its tensors.
fn base_with(name: &str, change: impl Fn(&str, Tensor) -> Tensor) -> PathBuf {
    let src = fixtures().join("base").join("checkpoint");
    let w = Weights::open_dir(&src).unwrap();
    let tensors: Vec<(String, Tensor)> = w
        .names()
        .map(|n| {
            let t = w.tensor(n, Kind::Float, Device::Cpu).unwrap();
            (n.to_string(), change(n, t))
        })
        .collect();
    let dir = tmp_dir(name);
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).unwrap();
    dir
}

#[test]
fn a_float_parameter_stored_as_int_or_bool_is_refused() {
    const KEY: &str = "embeddings.LayerNorm.weight";
    for (kind, dtype) in [
        (Kind::Int, "I32"),
        (Kind::Bool, "BOOL"),
        (Kind::Int64, "I64"),
    ] {
        let dir = base_with(&format!("int-param-{dtype}"), |n, t| {
            if n == KEY {
                t.to_kind(kind)
            } else {
                t
            }
        });
        let err = ConvBertModel::from_pretrained(&dir, Device::Cpu, Kind::Float).unwrap_err();
        let ConvBertError::Checkpoint { path, .. } = &err else {
            panic!("unexpected error {err:?}")
        };
        assert!(path.ends_with("model.safetensors"), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("tensor {KEY} is stored as {dtype}")) && msg.contains("Float"),
            "{msg}"
        );
    }
    // Every float dtype is converted to the kind the caller asks for.
    let dir = base_with("float-params", |n, t| match n.len() % 3 {
        0 => t.to_kind(Kind::Double),
        1 => t.to_kind(Kind::Half),
        _ => t.to_kind(Kind::BFloat16),
    });
    let (_m, vs) = ConvBertModel::from_pretrained(&dir, Device::Cpu, Kind::Float).unwrap();
    assert!(vs.variables().values().all(|t| t.kind() == Kind::Float));
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "mkfifo {}", path.display());
}

#[cfg(unix)]
#[test]
fn json_and_weight_files_must_be_regular_and_small() {
    let dir = tmp_dir("special-files");
    // config.json as a FIFO (no writer: opening it would block forever) and as /dev/zero.
    let fifo = dir.join("config.json");
    mkfifo(&fifo);
    let zero = dir.join("zero").join("config.json");
    std::fs::create_dir_all(zero.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    // 17 MiB (sparse): over the JSON cap.
    let big = dir.join("big").join("config.json");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    std::fs::File::create(&big)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    for (path, want) in [
        (&fifo, "not a regular file"),
        (&zero, "not a regular file"),
        (&big, "limit"),
    ] {
        let p = path.clone();
        let err = within(5, "config", move || ConvBertConfig::from_file(&p)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConvBertError::Io { .. }), "{err:?}");
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(want),
            "{msg}"
        );
    }
    // The sharded index and a weight file given by path.
    for name in [
        "model.safetensors.index.json",
        "model.safetensors",
        "pytorch_model.bin",
    ] {
        let path = dir.join(name);
        mkfifo(&path);
        let p = path.clone();
        let err = within(5, name, move || Weights::open(&p)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("regular"),
            "{msg}"
        );
    }
    let p = dir.join("model.safetensors.index.json");
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    let err = within(5, "index", move || Weights::open(&p)).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    // The shared reader caps any size.
    let small = dir.join("small.json");
    std::fs::write(&small, "{}{}").unwrap();
    assert!(checkpoint::read_small_file(&small, 3).is_err());
    assert_eq!(checkpoint::read_small_file(&small, 4).unwrap(), "{}{}");
}

#[test]
fn index_shards_must_lie_inside_the_checkpoint_directory() {
    let root = tmp_dir("index-escape");
    let dir = root.join("checkpoint");
    std::fs::create_dir_all(&dir).unwrap();
    // A real shard just outside the directory: reading it would succeed, so it must be refused.
    let src = fixtures().join("sharded").join("checkpoint");
    std::fs::copy(
        src.join("model-00001-of-00004.safetensors"),
        root.join("outside.safetensors"),
    )
    .unwrap();
    let outside_abs = root.join("outside.safetensors").display().to_string();
    for shard in [
        "../outside.safetensors",
        outside_abs.as_str(),
        "sub/../../outside.safetensors",
    ] {
        let index = serde_json::json!({ "metadata": {}, "weight_map": { "w": shard } });
        let path = dir.join("model.safetensors.index.json");
        std::fs::write(&path, index.to_string()).unwrap();
        let msg = checkpoint_error(&path);
        assert!(msg.contains("is not a file inside"), "{shard}: {msg}");
    }
}

#[test]
fn hub_refs_must_name_a_commit_inside_the_cache() {
    // The only test of this binary that sets HF_HUB_CACHE.
    let root = tmp_dir("hub-refs");
    let repo = root.join("models--Org--evil");
    let snapshot = repo.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::copy(
        fixtures()
            .join("base")
            .join("checkpoint")
            .join("config.json"),
        snapshot.join("config.json"),
    )
    .unwrap();
    // A directory with a config.json two levels up from snapshots/: "../.." would reach it.
    std::fs::copy(snapshot.join("config.json"), repo.join("config.json")).unwrap();
    std::env::set_var("HF_HUB_CACHE", &root);
    let refs = repo.join("refs").join("main");
    for bad in ["../..", "..", "/etc", "0123abcd/../../..", ""] {
        std::fs::write(&refs, format!("{bad}\n")).unwrap();
        let err = convbert_model::hub::resolve("Org/evil", None).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ConvBertError::Io { .. }) && msg.contains("not a commit hash"),
            "{bad:?}: {msg}"
        );
        assert!(msg.contains(&refs.display().to_string()), "{msg}");
    }
    std::fs::write(&refs, "0123abcd\n").unwrap();
    assert_eq!(
        convbert_model::hub::resolve("Org/evil", None).unwrap(),
        snapshot
    );
    // A revision argument is a name, not a path.
    for rev in ["../..", "main/../..", "/abs"] {
        let err = convbert_model::hub::resolve("Org/evil", Some(rev)).unwrap_err();
        assert!(err.to_string().contains("revision"), "{rev}: {err}");
    }
    // A snapshot directory that is a symlink out of snapshots/.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&repo, repo.join("snapshots").join("cafe")).unwrap();
        std::fs::write(&refs, "cafe").unwrap();
        let err = convbert_model::hub::resolve("Org/evil", None).unwrap_err();
        assert!(err.to_string().contains("resolves outside"), "{err}");
        // refs/main as a FIFO: an error, not a hang.
        std::fs::remove_file(&refs).unwrap();
        mkfifo(&refs);
        let err = within(5, "refs fifo", || {
            convbert_model::hub::resolve("Org/evil", None)
        })
        .unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
    std::env::remove_var("HF_HUB_CACHE");
}

#[test]
fn a_load_report_quotes_a_bounded_number_of_bounded_names() {
    // 100 unexpected keys, one of them 1 MB long: the report keeps them all, its message not.
    let long_name = "x".repeat(1 << 20);
    let src = fixtures().join("base").join("checkpoint");
    let w = Weights::open_dir(&src).unwrap();
    let mut tensors: Vec<(String, Tensor)> = w
        .names()
        .map(|n| {
            (
                n.to_string(),
                w.tensor(n, Kind::Float, Device::Cpu).unwrap(),
            )
        })
        .collect();
    for i in 0..99 {
        tensors.push((
            format!("extra.{i}"),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        ));
    }
    tensors.push((long_name, Tensor::zeros([1], (Kind::Float, Device::Cpu))));
    let dir = tmp_dir("long-report");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).unwrap();
    let err = ConvBertModel::from_pretrained(&dir, Device::Cpu, Kind::Float).unwrap_err();
    let ConvBertError::Weights(report) = &err else {
        panic!("unexpected error {err:?}")
    };
    assert_eq!(report.unexpected.len(), 100);
    let msg = err.to_string();
    assert!(
        msg.contains("and 50 more") && msg.len() < 4000,
        "{} bytes",
        msg.len()
    );
}
