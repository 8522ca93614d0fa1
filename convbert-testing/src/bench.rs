//! What the benchmarks share: the CPU's name for their headers, `BENCH_*` knobs, the median of
//! rounds, and the HF eager reference served by fixtures/bench_hf.py.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// `model name` of /proc/cpuinfo (every figure is reported with the CPU it ran on).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The environment variable `name` parsed; `default` when it is unset or empty, an error naming
/// it when it does not parse.
pub fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid value")),
        _ => Ok(default),
    }
}

/// The environment variable `name` parsed, or `default` (also when it does not parse).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The median of `values` (the mean of the middle two for an even count; NaN when empty).
pub fn median<T: std::borrow::Borrow<f64>>(values: impl IntoIterator<Item = T>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().map(|x| *x.borrow()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// HF's model in a Python process (`fixtures/bench_hf.py --serve`, run with `$CONVBERT_PYTHON`),
/// timed on request, so both sides are measured in the same run; killed when dropped.
pub struct HfForwardServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl HfForwardServer {
    /// Starts the server for `batch` × 128 inputs on `device` with `threads`; `None` (and a
    /// note on stderr) when Python or the script cannot run.
    pub fn start(threads: i32, batch: i64, device: &str) -> Option<Self> {
        let python = std::env::var("CONVBERT_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/bench_hf.py");
        let mut child = Command::new(&python)
            .args([script, "--serve", "--threads", &threads.to_string()])
            .args(["--batch", &batch.to_string(), "--device", device])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| eprintln!("HF side skipped: {python} {script}: {e}"))
            .ok()?;
        let stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        let mut hf = Self {
            child,
            stdin,
            stdout,
        };
        hf.read_json()
            .filter(|v| v["ready"].as_bool() == Some(true))?;
        Some(hf)
    }

    fn read_json(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        serde_json::from_str(&line).ok()
    }

    /// Tokens per second of the `kind` model (`fp32`, `bf16`, `int8`, ...) over `seconds`.
    pub fn time(&mut self, kind: &str, seconds: f64) -> Option<f64> {
        writeln!(self.stdin, "{kind} {seconds}").ok()?;
        self.stdin.flush().ok()?;
        self.read_json()?["tokens_per_s"].as_f64()
    }

    /// Median milliseconds of one `kind` forward waited for to its end, over `seconds`.
    pub fn p50_ms(&mut self, kind: &str, seconds: f64) -> Option<f64> {
        writeln!(self.stdin, "{kind} {seconds} p50").ok()?;
        self.stdin.flush().ok()?;
        self.read_json()?["p50_ms"].as_f64()
    }
}

impl Drop for HfForwardServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
