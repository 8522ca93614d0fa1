//! The model used without `--model` is found by a binary copied or installed away from the
//! repository: `default-model/` next to the binary, else `$CONVBERT_HOME/default-model`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// `binary fill-mask` on one text; stdout, after checking success.
fn fill_mask(binary: &Path, args: &[&str], envs: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(binary);
    cmd.args(["fill-mask", "--top-k", "2"])
        .args(args)
        .arg("paris is the [MASK] of france.")
        .env_remove("CONVBERT_DEFAULT_MODEL")
        .env_remove("CONVBERT_HOME");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_copied_binary_finds_its_default_model_beside_it_or_in_convbert_home() {
    let root = std::env::temp_dir().join(format!("convbert-default-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // Another model than the repository's default, so the answer shows which one was used.
    let other = fixtures().join("pipelines/models/mlm");
    let expected = fill_mask(
        Path::new(env!("CARGO_BIN_EXE_convbert")),
        &["--model", other.to_str().unwrap()],
        &[],
    );
    let repository_default = fill_mask(Path::new(env!("CARGO_BIN_EXE_convbert")), &[], &[]);
    assert_ne!(expected, repository_default);

    let beside = root.join("bin");
    std::fs::create_dir_all(&beside).unwrap();
    let binary = beside.join("convbert");
    std::fs::copy(env!("CARGO_BIN_EXE_convbert"), &binary).unwrap();
    copy_dir(&other, &beside.join("default-model"));
    assert_eq!(fill_mask(&binary, &[], &[]), expected);

    let lone = root.join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    let binary = lone.join("convbert");
    std::fs::copy(env!("CARGO_BIN_EXE_convbert"), &binary).unwrap();
    let home = root.join("home");
    copy_dir(&other, &home.join("default-model"));
    assert_eq!(
        fill_mask(&binary, &[], &[("CONVBERT_HOME", &home)]),
        expected
    );
    // Without either, the repository's model the binary was built from.
    assert_eq!(fill_mask(&binary, &[], &[]), repository_default);
    std::fs::remove_dir_all(&root).unwrap();
}
