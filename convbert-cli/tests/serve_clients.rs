//! `convbert serve` through the real Python clients: runs tests/serve_clients.py, which starts a
//! server per task and checks that `huggingface_hub.InferenceClient(base_url=...)` (feature
//! extraction, text classification, fill-mask, token classification, question answering) and
//! `openai.OpenAI(...).embeddings.create` (base64 and float) parse its answers into the values of
//! the server's own routes and of the HF pipeline goldens in fixtures/pipelines/.
//! Needs `$CONVBERT_PYTHON` with huggingface_hub and openai (`. scripts/env.sh`); skipped without.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn python_clients_parse_the_server() {
    let Some(python) = std::env::var_os("CONVBERT_PYTHON") else {
        println!("skipped: CONVBERT_PYTHON is not set (. scripts/env.sh)");
        return;
    };
    let probe = Command::new(&python)
        .args(["-c", "import huggingface_hub, openai"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("skipped: {python:?} cannot import huggingface_hub and openai");
        return;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&python)
        .arg(manifest.join("tests/serve_clients.py"))
        .arg(env!("CARGO_BIN_EXE_convbert"))
        .arg(manifest.join("../fixtures"))
        .output()
        .expect("run serve_clients.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "serve_clients.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
