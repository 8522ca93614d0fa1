//! Parity with the pinned HF reference (fixtures/gen_heads.py): every head x encoder case of
//! fixtures/heads, logits within 1e-5 and losses within 1e-5 relative (eval mode), and the keys
//! reported as newly initialised when a base checkpoint is loaded equal HF's `missing_keys`.
//! With `CONVBERT_TEST_DEVICE=cuda` the heads run on a GPU, within 1e-4.

mod common;

use common::{heads_dir, manifest, max_diff, read_run, tol, AnyHead};
use convbert_model::ConvBertConfig;

const ATOL: f64 = 1e-5;
const RTOL_LOSS: f64 = 1e-5;

#[test]
fn logits_and_losses_match_hf() {
    let mut failures = Vec::new();
    let mut compared = 0;
    println!(
        "{:<42} {:<14} {:<14} {:>12}",
        "variant", "run", "output", "max|diff|"
    );
    for (variant, (kind, runs)) in manifest() {
        let head = AnyHead::load(&kind, &heads_dir().join(&variant).join("checkpoint"), None)
            .unwrap_or_else(|e| panic!("{variant}: {e}"));
        let report = head.report().expect("report");
        assert!(
            report.is_complete(),
            "{variant}: task checkpoint should fill every weight: {report}"
        );
        assert!(!report.base_checkpoint, "{variant}");
        assert!(report.unused.is_empty(), "{variant}: {report}");
        for run in runs {
            let golden = read_run(&variant, &run);
            let got = head
                .run(&golden)
                .unwrap_or_else(|e| panic!("{variant}/{run}: {e}"));
            let want: Vec<_> = golden
                .iter()
                .filter(|(k, _)| k.starts_with("out."))
                .collect();
            assert_eq!(
                want.len(),
                got.len(),
                "{variant}/{run}: outputs {:?}",
                got.keys().collect::<Vec<_>>()
            );
            for (name, expected) in want {
                let actual = got
                    .get(name)
                    .unwrap_or_else(|| panic!("{variant}/{run}: no {name}"));
                let (diff, at) = max_diff(actual, expected);
                let tol = tol(if name == "out.loss" {
                    RTOL_LOSS * expected.abs().max().double_value(&[]).max(1.0)
                } else {
                    ATOL
                });
                println!("{variant:<42} {run:<14} {name:<14} {diff:>12.3e}");
                compared += 1;
                if diff.is_nan() || diff > tol {
                    failures.push(format!("{variant}/{run} {name}: max |diff| {diff:.3e} at flat index {at} (tol {tol:.1e})"));
                }
            }
        }
    }
    assert!(compared >= 20, "only {compared} outputs compared");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn base_checkpoint_reports_exactly_hf_missing_keys() {
    for (variant, (kind, _)) in manifest() {
        let case = variant.split('/').next().expect("case");
        let config =
            ConvBertConfig::from_file(heads_dir().join(&variant).join("checkpoint/config.json"))
                .expect("config");
        let head = AnyHead::load(&kind, &heads_dir().join(case).join("base"), Some(config))
            .unwrap_or_else(|e| panic!("{variant}: {e}"));
        let report = head.report().expect("report");
        let info: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(heads_dir().join(&variant).join("loading_info.json"))
                .expect("loading_info"),
        )
        .expect("json");
        let hf_missing: Vec<String> = info["missing_keys"]
            .as_array()
            .expect("missing")
            .iter()
            .map(|v| v.as_str().expect("str").to_string())
            .collect();
        let hf_unexpected = info["unexpected_keys"]
            .as_array()
            .expect("unexpected")
            .len();
        assert!(report.base_checkpoint, "{variant}");
        assert!(!hf_missing.is_empty());
        assert_eq!(report.newly_initialized, hf_missing, "{variant}");
        assert_eq!(report.unused.len(), hf_unexpected, "{variant}: {report}");
        let text = report.to_string();
        assert!(
            text.contains("newly initialized") && text.contains("encoder only"),
            "{text}"
        );
        // The encoder really came from the base checkpoint: HF built the task checkpoint on the
        // same base, so every `convbert.` tensor must be identical.
        let task = AnyHead::load(&kind, &heads_dir().join(&variant).join("checkpoint"), None)
            .expect("task");
        let (ours, theirs) = (head.var_store().variables(), task.var_store().variables());
        let mut encoder_vars = 0;
        for (name, t) in ours.iter().filter(|(k, _)| k.starts_with("convbert.")) {
            assert!(
                t.equal(&theirs[name]),
                "{variant}: {name} differs from the base checkpoint"
            );
            encoder_vars += 1;
        }
        assert!(encoder_vars > 50, "{variant}: {encoder_vars}");
    }
}
