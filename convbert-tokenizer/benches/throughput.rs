//! Throughput: the standalone path against the `tokenizers` crate BERT pipeline, same process,
//! same multilingual text, identical ids checked first.
//!
//!     cargo bench -p convbert-tokenizer --bench throughput [-- MEGABYTES]
//!
//! The corpus (default 8 MB) is built deterministically from `benches/corpus_seed.txt` (sentences
//! in 20+ languages and scripts) recombined word by word, plus Python's LICENSE.txt prose when
//! a local Python installation has one.

use convbert_tokenizer::{ConvBertTokenizer, ConvBertTokenizerFast, EncodeOptions};
use std::str::FromStr;
use std::time::Instant;

fn local_prose() -> String {
    let Ok(dir) = std::fs::read_dir("/root/.pyenv/versions") else {
        return String::new();
    };
    let mut dirs: Vec<_> = dir.flatten().map(|d| d.path()).collect();
    dirs.sort();
    dirs.iter()
        .filter_map(|d| std::fs::read_dir(d.join("lib")).ok())
        .flat_map(|r| r.flatten().map(|e| e.path().join("LICENSE.txt")))
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

fn corpus(target: usize) -> Vec<String> {
    let prose = local_prose();
    let prose_lines: Vec<&str> = prose.lines().filter(|l| l.len() > 40).collect();
    convbert_testing::multilingual_lines(target, &prose_lines)
}

fn best_of<F: FnMut() -> usize>(runs: usize, mut f: F) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        n = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, n)
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mb: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(8.0);
    let lines = corpus((mb * 1e6) as usize);
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let ascii: Vec<&str> = refs.iter().copied().filter(|l| l.is_ascii()).collect();
    let bytes = |set: &[&str]| set.iter().map(|l| l.len() + 1).sum::<usize>() as f64 / 1e6;
    let ours = ConvBertTokenizer::bert_base_uncased()?;
    let hf = tokenizers::Tokenizer::from_str(
        &ConvBertTokenizerFast::bert_base_uncased()?.to_json_string()?,
    )?;

    let mut differing = 0;
    for l in &refs {
        if ours.tokenize_ids(l)? != hf.encode(*l, false)?.get_ids() {
            differing += 1;
        }
    }
    println!("corpus: {:.2} MB in {} lines ({:.2} MB ASCII-only lines); lines with different ids: {differing}", bytes(&refs), refs.len(), bytes(&ascii));

    let one = pool(1);
    for (name, set) in [("multilingual", &refs), ("ascii-only", &ascii)] {
        let (t_ours, n_ours) = one.install(|| {
            best_of(3, || {
                set.iter()
                    .map(|l| ours.tokenize_ids(l).map_or(0, |v| v.len()))
                    .sum()
            })
        });
        let (t_hf, n_hf) = one.install(|| {
            best_of(2, || {
                set.iter()
                    .map(|l| hf.encode(*l, false).map(|e| e.len()).unwrap_or(0))
                    .sum()
            })
        });
        let (mb_ours, mb_hf) = (bytes(set) / t_ours, bytes(set) / t_hf);
        println!(
            "{name:>12} 1 thread: standalone {mb_ours:8.1} MB/s ({n_ours} tokens) | tokenizers crate {mb_hf:6.1} MB/s ({n_hf} tokens) | ratio {:.1}x",
            mb_ours / mb_hf
        );
    }
    // encode_batch is timed alone: its 50k results are freed after the clock stops (the free
    // time, on the calling thread, is printed beside).
    let opts = EncodeOptions::default();
    let mut rates = Vec::new();
    for threads in [1, 2] {
        let p = pool(threads);
        let (mut best, mut free, mut n) = (f64::MAX, 0.0, 0);
        for _ in 0..3 {
            let t = Instant::now();
            let out = p.install(|| ours.encode_batch(&refs, None, &opts))?;
            best = best.min(t.elapsed().as_secs_f64());
            n = out.len();
            let t = Instant::now();
            drop(out);
            free = t.elapsed().as_secs_f64();
        }
        rates.push(bytes(&refs) / best);
        println!(
            "encode_batch {threads} thread(s): {:8.1} MB/s ({n} encodings; freeing them took {:.1} ms)",
            bytes(&refs) / best,
            free * 1e3
        );
    }
    println!(
        "encode_batch speed-up 2 threads / 1 thread: {:.2}x",
        rates[1] / rates[0]
    );
    Ok(())
}
