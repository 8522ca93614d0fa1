//! Test helpers shared by several crates' tests and benches: comparing JSON results with
//! Hugging Face's, the multilingual benchmark text, the benchmarks' common parts, and running
//! the processes of a distributed job.

pub mod bench;
mod corpus;
pub mod processes;

pub use corpus::multilingual_lines;

use serde_json::Value;

/// Asserts that `ours` equals the reference `expected`: the same keys, lengths, strings and
/// integers, and every other number within `tol`. Names the first differing place (`path`
/// prefixes it) and returns the largest numeric difference.
pub fn assert_json_close(ours: &Value, expected: &Value, tol: f64, path: &str) -> f64 {
    match (ours, expected) {
        (Value::Object(a), Value::Object(b)) => {
            let mut ka: Vec<_> = a.keys().collect();
            let mut kb: Vec<_> = b.keys().collect();
            ka.sort();
            kb.sort();
            assert_eq!(ka, kb, "{path}: keys differ");
            a.iter()
                .map(|(k, v)| assert_json_close(v, &b[k], tol, &format!("{path}.{k}")))
                .fold(0.0, f64::max)
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(
                a.len(),
                b.len(),
                "{path}: lengths differ: {ours} vs reference {expected}"
            );
            a.iter()
                .zip(b)
                .enumerate()
                .map(|(i, (x, y))| assert_json_close(x, y, tol, &format!("{path}[{i}]")))
                .fold(0.0, f64::max)
        }
        (Value::Number(x), Value::Number(y)) if !(x.is_i64() && y.is_i64()) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            let d = (x - y).abs();
            assert!(
                d <= tol,
                "{path}: {x} vs reference {y} (|diff| {d:.2e} > {tol:.0e})"
            );
            d
        }
        _ => {
            assert_eq!(ours, expected, "{path}");
            0.0
        }
    }
}
