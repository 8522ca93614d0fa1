//! End-to-end throughput and latency of `convbert serve` under concurrent load.
//!
//! Spawns the real `convbert` binary (`serve --port 0 --task feature-extraction`), waits for
//! `GET /health` to answer 200, then for each concurrency level C runs C client threads, each
//! sending one English sentence per `POST /embed` in a closed loop (send, wait for the answer,
//! send the next). After a 1 s warm-up it measures for `BENCH_SECONDS` and reports texts/s and
//! the p50 / p99 request latency, then the throughput ratio of the highest to the lowest level:
//! how much the server's dynamic batching gains from concurrent clients. Every answer must be
//! 200 with one finite vector of the model's hidden size; any failure is printed and makes the
//! bench exit non-zero. The clients run on the same machine as the server and compete with it
//! for CPU, so compare numbers from the same machine only.
//!
//! Run:
//!
//! ```text
//! . scripts/env.sh && cargo bench -p convbert-cli --bench serve
//! ```
//!
//! Environment:
//! - `BENCH_MODEL`: checkpoint directory (default: `fixtures/default-model`);
//! - `BENCH_SECONDS`: measured seconds per level (default 10);
//! - `BENCH_CONCURRENCY`: comma-separated levels (default `1,8,32`);
//! - `BENCH_SERVER_ARGS`: extra `convbert serve` arguments, whitespace-split
//!   (for example `--threads 4 --max-batch-tokens 8192`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const WARM_UP: Duration = Duration::from_secs(1);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Failure messages kept per level (all failures are counted).
const SHOWN_FAILURES: usize = 5;

type BenchResult<T> = Result<T, String>;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every level; `Ok(false)` when some request failed.
fn run() -> BenchResult<bool> {
    let model = std::env::var_os("BENCH_MODEL")
        .filter(|m| !m.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/default-model"));
    let model = model
        .canonicalize()
        .map_err(|e| format!("{}: {e}", model.display()))?;
    let seconds: f64 = convbert_testing::bench::env_parse("BENCH_SECONDS", 10.0)?;
    let levels = concurrency_levels()?;
    let extra_args: Vec<String> = std::env::var("BENCH_SERVER_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let dim = hidden_size(&model)?;
    let texts = texts();

    let server = Server::start(&model, &extra_args)?;
    println!(
        "model {} (hidden size {dim}), server args [{}], {} texts of {} words, {seconds} s per level after {} s warm-up",
        model.display(),
        extra_args.join(" "),
        texts.len(),
        word_range(&texts),
        WARM_UP.as_secs(),
    );

    let mut rows = Vec::new();
    for &c in &levels {
        let level = load_level(
            &server.base_url,
            &texts,
            dim,
            c,
            Duration::from_secs_f64(seconds),
        );
        eprintln!(
            "C={c}: {:.1} texts/s, {} failures",
            level.texts_per_second(),
            level.failures
        );
        rows.push(level);
    }
    server.stop()?;

    println!();
    println!("| concurrency | texts/s | p50 ms | p99 ms |");
    println!("| ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.2} | {:.2} |",
            r.concurrency,
            r.texts_per_second(),
            r.percentile_ms(0.50),
            r.percentile_ms(0.99)
        );
    }
    let lo = rows.iter().min_by_key(|r| r.concurrency);
    let hi = rows.iter().max_by_key(|r| r.concurrency);
    if let (Some(lo), Some(hi)) = (lo, hi) {
        println!();
        println!(
            "texts/s(C={}) / texts/s(C={}) = {:.2}; CPU: {}, nproc {}",
            hi.concurrency,
            lo.concurrency,
            hi.texts_per_second() / lo.texts_per_second(),
            convbert_testing::bench::cpu_model(),
            thread::available_parallelism().map_or(0, |n| n.get()),
        );
    }

    let failures: usize = rows.iter().map(|r| r.failures).sum();
    for r in rows.iter().filter(|r| r.failures > 0) {
        eprintln!(
            "C={}: {} failed requests, first ones:",
            r.concurrency, r.failures
        );
        for m in &r.failure_messages {
            eprintln!("  {m}");
        }
    }
    if failures > 0 {
        eprintln!("{failures} requests failed");
    }
    Ok(failures == 0)
}

fn concurrency_levels() -> BenchResult<Vec<usize>> {
    let spec = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "1,8,32".into());
    let levels = spec
        .split(',')
        .map(|s| match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "BENCH_CONCURRENCY={spec:?}: want positive integers, comma-separated"
            )),
        })
        .collect::<BenchResult<Vec<_>>>()?;
    if levels.is_empty() {
        return Err("BENCH_CONCURRENCY is empty".into());
    }
    Ok(levels)
}

/// `hidden_size` of the checkpoint's `config.json`: the length of every `/embed` vector.
fn hidden_size(model: &Path) -> BenchResult<usize> {
    let path = model.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    config["hidden_size"]
        .as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| format!("{}: no hidden_size", path.display()))
}

/// The server process; [`Server::stop`] sends SIGTERM and waits, and so does dropping it.
struct Server {
    child: Option<Child>,
    base_url: String,
}

impl Server {
    fn start(model: &Path, extra_args: &[String]) -> BenchResult<Server> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_convbert"));
        command
            .arg("serve")
            .arg("--model")
            .arg(model)
            .args(["--port", "0", "--task", "feature-extraction"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start convbert serve: {e}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut server = Server {
            child: Some(child),
            base_url: String::new(),
        };

        // Forward the server's stderr, and hand over the address it prints first.
        let (addr_tx, addr_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = addr_tx.send(url.trim().to_owned());
                }
            }
        });
        let started = Instant::now();
        server.base_url = addr_rx
            .recv_timeout(STARTUP_TIMEOUT)
            .map_err(|_| "the server printed no `listening on` line".to_string())?;

        let client = http_client()?;
        let health = format!("{}/health", server.base_url);
        loop {
            if let Ok(r) = client.get(&health).send() {
                if r.status() == reqwest::StatusCode::OK {
                    break;
                }
            }
            if let Some(status) = server.exited()? {
                return Err(format!("the server exited before it was ready ({status})"));
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                return Err(format!(
                    "{health} not 200 after {} s",
                    STARTUP_TIMEOUT.as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn exited(&mut self) -> BenchResult<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c
                .try_wait()
                .map_err(|e| format!("cannot poll the server: {e}")),
            None => Ok(None),
        }
    }

    /// SIGTERM, then wait (SIGKILL after [`STOP_TIMEOUT`]); an error if it did not exit cleanly.
    fn stop(mut self) -> BenchResult<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> BenchResult<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("the server exited with {status}")),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the server did not stop within {} s of SIGTERM",
                        STOP_TIMEOUT.as_secs()
                    ));
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.terminate() {
            eprintln!("{e}");
        }
    }
}

fn http_client() -> BenchResult<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// What one concurrency level measured.
struct Level {
    concurrency: usize,
    seconds: f64,
    /// Latency of every request sent and answered within the measured window, sorted.
    latencies: Vec<Duration>,
    failures: usize,
    failure_messages: Vec<String>,
}

impl Level {
    fn texts_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds
    }

    /// Nearest-rank percentile, in milliseconds.
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank =
            ((p * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1].as_secs_f64() * 1e3
    }
}

/// C closed-loop clients for warm-up + `window`; counts the requests sent after the warm-up and
/// answered before the end (every failure counts, warm-up included).
fn load_level(
    base_url: &str,
    texts: &[String],
    dim: usize,
    concurrency: usize,
    window: Duration,
) -> Level {
    let url = format!("{base_url}/embed");
    let start = Instant::now();
    let measure_from = start + WARM_UP;
    let end = measure_from + window;
    let per_client: Vec<ClientStats> = thread::scope(|s| {
        let handles: Vec<_> = (0..concurrency)
            .map(|i| {
                let url = url.as_str();
                s.spawn(move || client_loop(url, texts, dim, i * 7919, measure_from, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread panicked"))
            .collect()
    });
    let seconds = (end - measure_from).as_secs_f64();
    let mut level = Level {
        concurrency,
        seconds,
        latencies: Vec::new(),
        failures: 0,
        failure_messages: Vec::new(),
    };
    for c in per_client {
        level.latencies.extend(c.latencies);
        level.failures += c.failures;
        let room = SHOWN_FAILURES.saturating_sub(level.failure_messages.len());
        level
            .failure_messages
            .extend(c.failure_messages.into_iter().take(room));
    }
    level.latencies.sort_unstable();
    level
}

#[derive(Default)]
struct ClientStats {
    latencies: Vec<Duration>,
    failures: usize,
    failure_messages: Vec<String>,
}

fn client_loop(
    url: &str,
    texts: &[String],
    dim: usize,
    offset: usize,
    measure_from: Instant,
    end: Instant,
) -> ClientStats {
    let mut stats = ClientStats::default();
    let client = match http_client() {
        Ok(c) => c,
        Err(e) => {
            stats.failures += 1;
            stats.failure_messages.push(e);
            return stats;
        }
    };
    let mut k = offset;
    loop {
        let sent = Instant::now();
        if sent >= end {
            return stats;
        }
        let text = &texts[k % texts.len()];
        k += 1;
        let outcome = embed_one(&client, url, text, dim);
        let answered = Instant::now();
        match outcome {
            Ok(()) if sent >= measure_from && answered <= end => {
                stats.latencies.push(answered - sent)
            }
            Ok(()) => {}
            Err(e) => {
                stats.failures += 1;
                if stats.failure_messages.len() < SHOWN_FAILURES {
                    stats.failure_messages.push(format!("{e} (text: {text:?})"));
                }
            }
        }
    }
}

/// One `POST /embed` of one text; checks the answer is 200 with one finite vector of `dim` values.
fn embed_one(
    client: &reqwest::blocking::Client,
    url: &str,
    text: &str,
    dim: usize,
) -> BenchResult<()> {
    let response = client
        .post(url)
        .json(&serde_json::json!({ "inputs": text }))
        .send()
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    let vectors: Vec<Vec<f32>> =
        serde_json::from_slice(&body).map_err(|e| format!("answer is not [[f32]]: {e}"))?;
    match vectors.as_slice() {
        [v] if v.len() == dim && v.iter().all(|x| x.is_finite()) => Ok(()),
        [v] if v.len() == dim => Err("vector has non-finite values".into()),
        [v] => Err(format!("vector of {} values, want {dim}", v.len())),
        vs => Err(format!("{} vectors for one input", vs.len())),
    }
}

fn word_range(texts: &[String]) -> String {
    let mut words: Vec<usize> = texts.iter().map(|t| t.split_whitespace().count()).collect();
    words.sort_unstable();
    match (words.first(), words.last()) {
        (Some(lo), Some(hi)) => format!("{lo}-{hi} (median {})", words[words.len() / 2]),
        _ => "no".into(),
    }
}

/// The request texts: the short labelled reviews of `docs/finetune/*.jsonl` (when present) and
/// the sentences below, alone and joined with their neighbours into passages of up to 60 words;
/// deterministically shuffled so that each client sees a mix of lengths.
fn texts() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let finetune = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/finetune");
    for name in ["train.jsonl", "eval.jsonl"] {
        let Ok(text) = std::fs::read_to_string(finetune.join(name)) else {
            continue;
        };
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(t) = v["text"].as_str() {
                    out.push(t.to_owned());
                }
            }
        }
    }
    let n = SENTENCES.len();
    for span in 1..=3 {
        for i in 0..n {
            let joined = (0..span)
                .map(|j| SENTENCES[(i + j) % n])
                .collect::<Vec<_>>()
                .join(" ");
            if joined.split_whitespace().count() <= 60 {
                out.push(joined);
            }
        }
    }
    out.retain(|t| t.split_whitespace().count() >= 5);
    out.sort();
    out.dedup();
    // Fisher-Yates with a fixed 64-bit LCG.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..out.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.swap(i, (state >> 33) as usize % (i + 1));
    }
    out
}

const SENTENCES: &[&str] = &[
    "The train to the coast was delayed by almost an hour this morning.",
    "She opened the window and let the cold air fill the room.",
    "Most of the old bridges in the valley were built of local stone.",
    "After the meeting, the team agreed to ship the release on Friday instead of Monday.",
    "He forgot his umbrella again.",
    "The library stays open until nine on weekdays and until five on Saturdays.",
    "Rain is expected across the north of the country for the rest of the week, with strong winds near the coast and snow on high ground.",
    "The recipe calls for two cups of flour, a pinch of salt and three eggs.",
    "Our neighbours adopted a small grey cat from the shelter last spring.",
    "The museum's new wing displays paintings that had been kept in storage for decades because there was no room to hang them.",
    "Please remember to turn off the lights when you leave.",
    "The company reported higher profits in the third quarter, mainly because of strong sales in Asia and lower shipping costs.",
    "A quiet street can feel very different at night.",
    "The children spent the whole afternoon building a sandcastle near the water.",
    "If the software update fails, restart the device and try again before calling support.",
    "The committee will publish its final report at the end of the month.",
    "Farmers in the region have struggled with two dry summers in a row, and many have started planting crops that need less water.",
    "He reads a chapter of a novel every night before going to sleep.",
    "The concert was cancelled at the last minute.",
    "Scientists measured the temperature of the lake at several depths over a full year to understand how it mixes in autumn.",
    "The bakery on the corner sells the best bread in town.",
    "Traffic was light, so we arrived earlier than planned.",
    "The new policy allows employees to work from home two days a week, as long as their manager agrees.",
    "Learning a musical instrument takes patience and regular practice.",
    "The river rose quickly after the storm and flooded several fields along its banks.",
    "She wrote the letter by hand because she thought an email would feel too impersonal.",
    "The hotel room was small but clean.",
    "Engineers are testing a lighter battery that could let electric buses travel much farther on a single charge.",
    "We watched the sun set behind the hills.",
    "The city council voted to plant a thousand new trees along the main avenues over the next three years.",
    "Nobody expected the small team to win the national championship.",
    "The professor explained the proof slowly, writing every step on the board and pausing to answer questions from the students.",
    "Fresh coffee makes the whole kitchen smell wonderful.",
    "The ferry crosses the bay every half hour during the summer season.",
    "He carefully packed the glasses in newspaper before moving them to the new flat.",
    "The airport introduced faster security checks after complaints about long queues during the holidays.",
    "A good map is still useful when the phone has no signal.",
    "The garden looked tired after weeks without rain, but a single night of heavy showers brought it back to life.",
    "Her first novel was translated into twelve languages.",
    "The shop will be closed on Monday for stocktaking.",
    "Doctors recommend at least thirty minutes of moderate exercise on most days of the week.",
    "The old clock in the hallway still keeps perfect time.",
    "When the power went out, the whole street gathered outside and shared candles and stories until the lights came back.",
    "The volunteers cleaned the beach and collected more than two hundred bags of rubbish.",
    "This road is closed to heavy vehicles.",
    "The orchestra rehearsed the symphony for three weeks before the opening night.",
    "Many people prefer to buy vegetables at the market because they are fresher and often cheaper than in the supermarket.",
    "The puppy chewed through the cable of the new lamp.",
    "Our flight was diverted to another airport because of thick fog.",
    "The report found that most accidents at the junction happened at dusk, when drivers were dazzled by the low sun.",
    "The teacher asked everyone to bring a favourite book to class.",
    "He fixed the bicycle with a borrowed spanner and a bit of wire.",
    "Mountain huts along the trail offer simple meals and a warm place to sleep for walkers crossing the range in summer.",
    "The soup needs a little more salt.",
    "The new bridge shortened the journey between the two towns by twenty minutes.",
    "After years of careful restoration, the cathedral's stained glass windows once again fill the nave with coloured light every afternoon.",
    "She learned to swim when she was already forty.",
    "The price of tickets will rise slightly next year.",
    "Researchers found that people remember lists better when they say the words out loud instead of reading them silently.",
    "The lighthouse has guided ships past the rocks for over a century.",
    "They moved to the countryside to be closer to their parents.",
    "The meeting ran late because nobody could agree on the budget.",
    "Wild strawberries grow along the edge of the forest in early summer, and the children love to pick them on the way home from school.",
    "The painter mixed the colours directly on the canvas.",
    "Please send the signed contract back before the end of the week.",
    "A long queue formed outside the theatre hours before the doors opened.",
    "The spacecraft sent back detailed images of the planet's rings, revealing structures that scientists had never seen before.",
    "My grandmother still writes her shopping list on the back of old envelopes.",
    "The storm knocked down several trees in the park.",
    "Good documentation saves everyone time, especially the people who join a project long after it started.",
    "The fishermen returned at dawn with a small catch.",
    "The exhibition traces the history of printing from wooden blocks to modern digital presses, with working machines that visitors can try.",
    "He whistled a tune as he walked to work.",
    "The school introduced a vegetable garden where pupils grow tomatoes, beans and herbs for the canteen.",
    "Snow fell silently all through the night.",
    "The negotiations lasted until the early hours of the morning, but in the end both sides signed the agreement.",
    "The cafe offers free refills on filter coffee.",
    "Birds began to sing long before the first light appeared over the fields.",
    "Every spring the town holds a festival with music, food stalls and a parade through the old streets.",
    "The translator kept a notebook of phrases that had no simple equivalent in her own language.",
];
