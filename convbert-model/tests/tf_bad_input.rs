//! Broken TensorFlow checkpoints end in one typed error that names the file and the problem —
//! never a panic, never wrong weights: truncated `tf_model.h5`, a weight of the wrong shape or
//! dtype, a missing weight, a TF1 index or data shard whose crc32c does not match, a missing
//! data shard (fixtures/tf/bad from fixtures/gen_tf.py, the rest made here from copies).

mod common;

use std::path::{Path, PathBuf};

use common::crafted::tmp_dir;
use convbert_model::checkpoint::Weights;
use convbert_model::ConvBertModel;
use tch::{Device, Kind};

fn tf_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tf")
}

/// The error of loading `dir` as a ConvBertModel, as text.
fn load_error(dir: &Path) -> String {
    match ConvBertModel::from_pretrained(dir, Device::Cpu, Kind::Float) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn truncated_tf_model_h5_is_an_error_at_every_length() {
    let src = tf_fixtures().join("base/model/checkpoint");
    let bytes = std::fs::read(src.join("tf_model.h5")).unwrap();
    let dir = tmp_dir("h5-truncated");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let path = dir.join("tf_model.h5");
    for len in [
        0,
        7,
        8,
        96,
        512,
        2048,
        bytes.len() / 3,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = load_error(&dir);
        assert!(err.contains("tf_model.h5"), "{len}: {err}");
    }
}

#[test]
fn a_weight_of_the_wrong_shape_is_named() {
    // grouped/model's weights (num_groups 2, projected embeddings) under base/model's config.
    let dir = tmp_dir("h5-shape");
    std::fs::copy(
        tf_fixtures().join("grouped/model/checkpoint/tf_model.h5"),
        dir.join("tf_model.h5"),
    )
    .unwrap();
    std::fs::copy(
        tf_fixtures().join("base/model/checkpoint/config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains(
            "encoder.layer.0.intermediate.dense.weight: model [48, 32] vs checkpoint [2, 16, 24]"
        ),
        "{err}"
    );
}

#[test]
fn a_float_weight_stored_as_int32_is_refused() {
    let err = load_error(&tf_fixtures().join("bad/int_weight"));
    assert!(
        err.contains("LayerNorm") && err.contains("not a float dtype"),
        "{err}"
    );
}

#[test]
fn missing_weights_are_named() {
    // Listed in weight_names, absent from the file: the reader names it.
    let err = load_error(&tf_fixtures().join("bad/missing_dataset"));
    assert!(
        err.contains("tf_model.h5") && err.contains("embeddings/LayerNorm/gamma:0"),
        "{err}"
    );
    // Absent altogether: the model names the weight it lacks.
    let err = load_error(&tf_fixtures().join("bad/dropped_weight"));
    assert!(
        err.contains("encoder.layer.1.output.dense.weight") && err.contains("missing"),
        "{err}"
    );
}

fn tf1_copy(name: &str) -> PathBuf {
    let dir = tmp_dir(name);
    copy_dir(&tf_fixtures().join("tf1/checkpoint"), &dir);
    dir
}

#[test]
fn a_tf1_index_whose_checksum_fails_is_refused() {
    let dir = tf1_copy("tf1-index-crc");
    let index = dir.join("model.ckpt-7.index");
    flip_byte(&index, 40);
    let err = load_error(&dir);
    assert!(
        err.contains("model.ckpt-7.index") && err.contains("crc"),
        "{err}"
    );

    let dir = tf1_copy("tf1-index-truncated");
    let index = dir.join("model.ckpt-7.index");
    let bytes = std::fs::read(&index).unwrap();
    for len in [0, 20, 47, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&index, &bytes[..len]).unwrap();
        let err = load_error(&dir);
        assert!(err.contains("model.ckpt-7.index"), "{len}: {err}");
    }
}

#[test]
fn a_tf1_tensor_whose_data_checksum_fails_is_refused() {
    let dir = tf1_copy("tf1-data-crc");
    flip_byte(&dir.join("model.ckpt-7.data-00000-of-00002"), 100);
    let err = load_error(&dir);
    assert!(
        err.contains("model.ckpt-7.data-00000-of-00002") && err.contains("crc"),
        "{err}"
    );
}

#[test]
fn a_missing_tf1_data_shard_is_named() {
    let dir = tf1_copy("tf1-no-shard");
    std::fs::remove_file(dir.join("model.ckpt-7.data-00001-of-00002")).unwrap();
    let err = load_error(&dir);
    assert!(err.contains("model.ckpt-7.data-00001-of-00002"), "{err}");
    // The weights are not opened at all, not even partly.
    assert!(Weights::open(&dir.join("model.ckpt-7.index")).is_err());
}

#[test]
fn a_directory_with_one_tf1_checkpoint_needs_no_checkpoint_file_but_two_need_one() {
    let dir = tf1_copy("tf1-no-state-file");
    std::fs::remove_file(dir.join("checkpoint")).unwrap();
    let w = Weights::open_dir(&dir).unwrap();
    assert!(w.source().ends_with("model.ckpt-7.index"));
    for f in ["index", "data-00000-of-00002", "data-00001-of-00002"] {
        std::fs::copy(
            dir.join(format!("model.ckpt-7.{f}")),
            dir.join(format!("model.ckpt-9.{f}")),
        )
        .unwrap();
    }
    let err = load_error(&dir);
    assert!(
        err.contains("2 TF1 checkpoints") && err.contains("model.ckpt-9.index"),
        "{err}"
    );
}
