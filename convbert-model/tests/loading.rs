//! Checkpoint loading: key sets equal the Python state dicts, every file format, prefix rules,
//! precise errors for missing / unexpected / mis-shaped keys and for broken files, HF-cache ids,
//! dtype chosen by the caller, safetensors save round trip.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::fixtures;
use convbert_model::checkpoint::{self, LoadOptions, Weights};
use convbert_model::{ConvBertConfig, ConvBertError, ConvBertModel};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const CASES: &[&str] = &["base", "grouped_bin", "sharded", "sharded_bin", "prefixed"];

fn checkpoint_dir(case: &str) -> PathBuf {
    fixtures().join(case).join("checkpoint")
}

fn python_keys(case: &str) -> BTreeMap<String, Vec<i64>> {
    let text = std::fs::read_to_string(fixtures().join(case).join("keys.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("convbert-model-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn var_names_and_shapes_equal_python_state_dict() {
    for case in CASES {
        let cfg = ConvBertConfig::from_file(checkpoint_dir(case).join("config.json")).unwrap();
        let vs = VarStore::new(Device::Cpu);
        let _model = ConvBertModel::new(&vs.root(), &cfg).unwrap();
        let ours: BTreeMap<String, Vec<i64>> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.size()))
            .collect();
        assert_eq!(ours, python_keys(case), "{case}");
    }
}

#[test]
fn every_format_exposes_the_same_tensors_as_python() {
    for case in ["base", "grouped_bin", "sharded", "sharded_bin"] {
        let w = Weights::open_dir(&checkpoint_dir(case)).unwrap();
        let found: BTreeMap<String, Vec<i64>> = w
            .names()
            .map(|n| (n.to_string(), w.shape(n).unwrap().to_vec()))
            .collect();
        assert_eq!(found, python_keys(case), "{case}");
    }
}

#[test]
fn bin_and_safetensors_give_identical_values() {
    // Re-save the .bin checkpoint as safetensors and compare tensor by tensor.
    let w = Weights::open_dir(&checkpoint_dir("grouped_bin")).unwrap();
    let cfg = ConvBertConfig::from_file(checkpoint_dir("grouped_bin").join("config.json")).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let _m = ConvBertModel::new(&vs.root(), &cfg).unwrap();
    checkpoint::load_into(&vs, &w, &LoadOptions::base_model()).unwrap();
    let dir = tmp_dir("resave");
    checkpoint::save_safetensors(&vs, dir.join("model.safetensors")).unwrap();
    let w2 = Weights::open(&dir.join("model.safetensors")).unwrap();
    assert_eq!(w2.len(), w.len());
    for name in w.names() {
        let a = w.tensor(name, Kind::Float, Device::Cpu).unwrap();
        let b = w2.tensor(name, Kind::Float, Device::Cpu).unwrap();
        assert!(a.equal(&b), "{name}");
    }
    // HF's metadata {"format": "pt"} is written.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header["__metadata__"]["format"], "pt");
}

#[test]
fn caller_chooses_dtype_not_the_file() {
    for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
        let (_m, vs) =
            ConvBertModel::from_pretrained(checkpoint_dir("grouped_bin"), Device::Cpu, kind)
                .unwrap();
        for (name, t) in vs.variables() {
            assert_eq!(t.kind(), kind, "{name}");
            assert!(!t.requires_grad(), "{name} should be frozen");
        }
    }
}

#[test]
fn head_checkpoint_loads_into_base_model_and_base_into_head() {
    // Head checkpoint (convbert.* + classifier.*) into a bare model: classifier keys ignored.
    let w = Weights::open_dir(&checkpoint_dir("prefixed")).unwrap();
    assert!(w.names().any(|n| n.starts_with("classifier.")));
    let cfg = ConvBertConfig::from_file(checkpoint_dir("prefixed").join("config.json")).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let _m = ConvBertModel::new(&vs.root(), &cfg).unwrap();
    let report = checkpoint::load_into(&vs, &w, &LoadOptions::base_model()).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    assert_eq!(
        report.ignored,
        vec![
            "classifier.bias".to_string(),
            "classifier.weight".to_string()
        ]
    );

    // Base checkpoint into a store whose encoder lives under `convbert.` (as heads build it).
    let w = Weights::open_dir(&checkpoint_dir("base")).unwrap();
    let cfg = ConvBertConfig::from_file(checkpoint_dir("base").join("config.json")).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let _m = ConvBertModel::new(&(vs.root() / "convbert"), &cfg).unwrap();
    let _extra = (vs.root() / "classifier").zeros("weight", &[3, 32]);
    let err = checkpoint::load_into(&vs, &w, &LoadOptions::head_model(&[])).unwrap_err();
    match err {
        ConvBertError::Weights(r) => assert_eq!(r.missing, vec!["classifier.weight".to_string()]),
        other => panic!("unexpected error {other}"),
    }
    let report =
        checkpoint::load_into(&vs, &w, &LoadOptions::head_model(&["classifier."])).unwrap();
    assert_eq!(report.missing, vec!["classifier.weight".to_string()]);
    assert_eq!(report.loaded, w.len());
}

#[test]
fn every_missing_unexpected_and_misshaped_key_is_named() {
    let src = Weights::open_dir(&checkpoint_dir("base")).unwrap();
    let mut tensors: Vec<(String, Tensor)> = src
        .names()
        .map(|n| {
            (
                n.to_string(),
                src.tensor(n, Kind::Float, Device::Cpu).unwrap(),
            )
        })
        .collect();
    tensors.retain(|(n, _)| {
        n != "encoder.layer.1.attention.self.query.bias" && n != "embeddings.LayerNorm.bias"
    });
    tensors.push((
        "encoder.layer.7.output.dense.weight".into(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    ));
    tensors.push((
        "embeddings.position_ids".into(),
        Tensor::arange(64, (Kind::Int64, Device::Cpu)).view([1, 64]),
    ));
    for (n, t) in tensors.iter_mut() {
        if n == "encoder.layer.0.attention.self.key_conv_attn_layer.bias" {
            *t = Tensor::zeros([16], (Kind::Float, Device::Cpu));
        }
    }
    let dir = tmp_dir("broken-keys");
    std::fs::copy(
        checkpoint_dir("base").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).unwrap();
    let err = ConvBertModel::from_pretrained(&dir, Device::Cpu, Kind::Float).unwrap_err();
    let ConvBertError::Weights(report) = &err else {
        panic!("unexpected error {err}")
    };
    assert_eq!(
        report.missing,
        vec![
            "embeddings.LayerNorm.bias".to_string(),
            "encoder.layer.1.attention.self.query.bias".to_string()
        ]
    );
    assert_eq!(
        report.unexpected,
        vec!["encoder.layer.7.output.dense.weight".to_string()]
    );
    assert_eq!(report.mismatched.len(), 1);
    assert!(
        report.mismatched[0].contains("key_conv_attn_layer.bias: model [16, 1] vs checkpoint [16]")
    );
    assert_eq!(report.ignored, vec!["embeddings.position_ids".to_string()]);
    let msg = err.to_string();
    assert!(
        msg.contains("embeddings.LayerNorm.bias") && msg.contains("layer.7"),
        "{msg}"
    );
}

fn copy_checkpoint(case: &str, name: &str) -> PathBuf {
    let dir = tmp_dir(name);
    for entry in std::fs::read_dir(checkpoint_dir(case)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn expect_checkpoint_error(dir: &Path) -> String {
    match ConvBertModel::from_pretrained(dir, Device::Cpu, Kind::Float) {
        Err(
            e @ (ConvBertError::Checkpoint { .. }
            | ConvBertError::Json { .. }
            | ConvBertError::NotFound { .. }),
        ) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e:?}"),
        Ok(_) => panic!("broken checkpoint in {} loaded", dir.display()),
    }
}

#[test]
fn truncated_and_corrupt_files_give_typed_errors() {
    for (case, file) in [
        ("base", "model.safetensors"),
        ("grouped_bin", "pytorch_model.bin"),
    ] {
        let dir = copy_checkpoint(case, &format!("trunc-{case}"));
        let path = dir.join(file);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 30] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let msg = expect_checkpoint_error(&dir);
            assert!(msg.contains(file), "{msg}");
        }
        // Garbage of the same length.
        std::fs::write(&path, vec![0xA5u8; bytes.len()]).unwrap();
        expect_checkpoint_error(&dir);
        // Flip bytes in the middle of the pickle / header.
        let mut flipped = bytes.clone();
        for b in flipped.iter_mut().skip(40).take(60) {
            *b ^= 0x5A;
        }
        std::fs::write(&path, &flipped).unwrap();
        let _ = ConvBertModel::from_pretrained(&dir, Device::Cpu, Kind::Float); // error or not, no panic
    }
    // A shard named by the index is gone.
    let dir = copy_checkpoint("sharded", "missing-shard");
    std::fs::remove_file(dir.join("model-00002-of-00004.safetensors")).unwrap();
    assert!(expect_checkpoint_error(&dir).contains("model-00002-of-00004"));
    // config.json that is not JSON.
    let dir = copy_checkpoint("base", "bad-config");
    std::fs::write(dir.join("config.json"), "{not json").unwrap();
    match ConvBertModel::from_pretrained(&dir, Device::Cpu, Kind::Float) {
        Err(ConvBertError::Json { path, .. }) => assert!(path.ends_with("config.json")),
        other => panic!("expected a Json error, got {:?}", other.err()),
    }
    // No weights at all.
    let dir = tmp_dir("no-weights");
    std::fs::copy(
        checkpoint_dir("base").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    assert!(expect_checkpoint_error(&dir).contains("model.safetensors"));
}

#[test]
fn model_ids_resolve_from_the_local_hf_cache_only() {
    // One test owns the HF_* variables (tests in this binary run in threads).
    let root = tmp_dir("hf-cache");
    let snapshot = root
        .join("models--Org--tiny-convbert")
        .join("snapshots")
        .join("0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(root.join("models--Org--tiny-convbert").join("refs")).unwrap();
    std::fs::write(
        root.join("models--Org--tiny-convbert")
            .join("refs")
            .join("main"),
        "0123abcd\n",
    )
    .unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(checkpoint_dir("base").join(f), snapshot.join(f)).unwrap();
    }
    std::env::set_var("HF_HUB_CACHE", &root);
    // Offline: an id missing from the cache is not looked for on the Hub (tests/hub_download.rs).
    std::env::set_var("HF_HUB_OFFLINE", "1");
    assert_eq!(
        convbert_model::hub::resolve("Org/tiny-convbert", None).unwrap(),
        snapshot
    );
    let (model, _vs) =
        ConvBertModel::from_pretrained("Org/tiny-convbert", Device::Cpu, Kind::Float).unwrap();
    assert_eq!(model.config().hidden_size, 32);
    match ConvBertModel::from_pretrained("Org/absent-model", Device::Cpu, Kind::Float) {
        Err(ConvBertError::NotFound { searched, .. }) => {
            assert!(
                searched.iter().any(|p| p.starts_with(&root)),
                "{searched:?}"
            )
        }
        other => panic!("expected NotFound, got {:?}", other.err()),
    }
    std::env::remove_var("HF_HUB_CACHE");
    std::env::remove_var("HF_HUB_OFFLINE");
}
