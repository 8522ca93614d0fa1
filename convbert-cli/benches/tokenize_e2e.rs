//! End to end `convbert tokenize` (the real binary: a file on stdin, ids to /dev/null) against the
//! same loop on the `tokenizers` crate's BERT pipeline (bert-base-uncased tokenizer.json; read
//! stdin, encode with special tokens, write the ids, one thread), on a multilingual corpus; ids
//! compared first. Also the start-up time of `echo hi | convbert tokenize`.
//!
//!     cargo bench -p convbert-cli --bench tokenize_e2e [-- MEGABYTES]
//!     cargo test --release -p convbert-cli --bench tokenize_e2e -- [MEGABYTES]   (no bench profile build)
//!
//! The baseline is this program itself, run as `tokenize_e2e --tokenizers-baseline TOKENIZER_JSON`.
//! The corpus (default 8 MB) is the one of convbert-tokenizer/benches/throughput.rs: sentences in
//! 20+ languages and scripts from its `corpus_seed.txt` recombined word by word.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use convbert_tokenizer::ConvBertTokenizerFast;

const CONVBERT: &str = env!("CARGO_BIN_EXE_convbert");

/// The tokenizer throughput bench's text (without its optional local prose), one line each.
fn corpus(target: usize) -> String {
    let mut text = convbert_testing::multilingual_lines(target, &[]).join("\n");
    text.push('\n');
    text
}

/// The baseline: stdin lines through the `tokenizers` crate, ids to stdout.
fn baseline(tokenizer_json: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tokenizer = tokenizers::Tokenizer::from_file(tokenizer_json)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let encoding = tokenizer.encode(line?, true)?;
        let ids = encoding.get_ids();
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                out.write_all(b" ")?;
            }
            write!(out, "{id}")?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Seconds of the best of `runs` runs of `command` with `input` on stdin, stdout to `output`.
fn time(runs: usize, input: &Path, output: &Path, command: &mut dyn FnMut() -> Command) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            let status = command()
                .stdin(std::fs::File::open(input).expect("corpus"))
                .stdout(std::fs::File::create(output).expect("output"))
                .status()
                .expect("run");
            assert!(status.success(), "{status}");
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--tokenizers-baseline") {
        return baseline(&args[i + 1]);
    }
    let mb: f64 = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(8.0);
    let dir = tempfile::tempdir()?;
    let (input, json) = (
        dir.path().join("corpus.txt"),
        dir.path().join("tokenizer.json"),
    );
    let text = corpus((mb * 1e6) as usize);
    std::fs::write(&input, &text)?;
    std::fs::write(
        &json,
        ConvBertTokenizerFast::bert_base_uncased()?.to_json_string()?,
    )?;
    let json = json.to_str().ok_or("temp path")?.to_string();
    let me = std::env::current_exe()?;
    let mut hf = || {
        let mut c = Command::new(&me);
        c.args(["--tokenizers-baseline", &json]);
        c
    };
    let ours = |threads: usize| {
        move || {
            let mut c = Command::new(CONVBERT);
            c.args(["tokenize", "--threads", &threads.to_string()]);
            c
        }
    };
    let (ids_hf, ids_ours) = (dir.path().join("hf.txt"), dir.path().join("ours.txt"));
    time(1, &input, &ids_hf, &mut hf);
    time(1, &input, &ids_ours, &mut ours(1));
    let (a, b) = (
        std::fs::read_to_string(&ids_hf)?,
        std::fs::read_to_string(&ids_ours)?,
    );
    let differing = a.lines().zip(b.lines()).filter(|(x, y)| x != y).count();
    let lines = text.lines().count();
    println!("cpu: {}", convbert_testing::bench::cpu_model());
    println!(
        "corpus: {:.2} MB in {lines} lines; output lines {} / {}; lines with different ids: {differing}",
        text.len() as f64 / 1e6,
        a.lines().count(),
        b.lines().count()
    );
    let null = Path::new("/dev/null");
    let t_hf = time(3, &input, null, &mut hf);
    let mb_s = |t: f64| text.len() as f64 / 1e6 / t;
    println!("tokenizers crate, 1 thread: {:7.1} MB/s", mb_s(t_hf));
    let mut one = 0.0;
    for threads in [1, 2] {
        let t = time(5, &input, null, &mut ours(threads));
        one = if threads == 1 { t } else { one };
        println!(
            "convbert tokenize --threads {threads}: {:7.1} MB/s | ratio to tokenizers {:.1}x | speed-up over 1 thread {:.2}x",
            mb_s(t),
            t_hf / t,
            one / t
        );
    }
    let mut startup: Vec<f64> = (0..31)
        .map(|_| {
            let t = Instant::now();
            let mut child = Command::new(CONVBERT)
                .arg("tokenize")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("convbert");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"hi\n")
                .expect("write");
            assert!(child.wait().expect("wait").success());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    startup.sort_by(f64::total_cmp);
    println!(
        "start-up, echo hi | convbert tokenize: median {:.2} ms (min {:.2}, max {:.2}; 31 runs)",
        startup[15], startup[0], startup[30]
    );
    Ok(())
}
