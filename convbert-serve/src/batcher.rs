//! The batching loop: one thread owns the model; requests queue their prepared rows, and each
//! batch takes the queued rows longest first up to the token budget (`max_batch_tokens`, padded
//! cost = longest × rows) and the row limit. Rows of one request may span batches. Requests
//! whose client went away are dropped before they cost a batch; a failing batch fails only the
//! requests that had rows in it. The pipelines run in the padding-invariant mode, so a row's
//! result does not depend on what it was batched with.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use convbert_pipelines::{BatchModel, Row};
use tch::Tensor;
use tokio::sync::oneshot;

use crate::error::ApiError;

/// Which outputs a request needs: the task head's or the encoder's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Head,
    Features,
}

/// The batch limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    pub max_batch_tokens: usize,
    pub max_batch_requests: Option<usize>,
}

/// Per row its outputs, and how long the request waited and computed.
pub(crate) struct Finished {
    pub outputs: Vec<Vec<Tensor>>,
    pub queue: Duration,
    pub inference: Duration,
}

type Reply = oneshot::Sender<Result<Finished, String>>;

struct Job {
    output: Output,
    rows: Vec<Row>,
    outputs: Vec<Option<Vec<Tensor>>>,
    remaining: usize,
    reply: Reply,
    enqueued: Instant,
    started: Option<Instant>,
    inference: Duration,
}

impl Job {
    fn new(output: Output, rows: Vec<Row>, reply: Reply) -> Self {
        let n = rows.len();
        Self {
            output,
            outputs: (0..n).map(|_| None).collect(),
            remaining: n,
            rows,
            reply,
            enqueued: Instant::now(),
            started: None,
            inference: Duration::ZERO,
        }
    }
}

/// The queue's sending side and the model thread.
pub(crate) struct Batcher {
    tx: Option<mpsc::Sender<Job>>,
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
    alive: Arc<AtomicBool>,
}

impl Batcher {
    /// Starts the model thread.
    pub(crate) fn start(model: Arc<dyn BatchModel>, limits: BatchLimits) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let alive = Arc::new(AtomicBool::new(true));
        let (q, a) = (queued.clone(), alive.clone());
        let thread = std::thread::Builder::new()
            .name("convbert-model".into())
            .spawn(move || {
                // Dropped however the loop ends, a panic included, so /health turns 503.
                let _alive = Alive(a);
                run_loop(model.as_ref(), limits, &rx, &q);
            })?;
        Ok(Self {
            tx: Some(tx),
            queued,
            thread: Some(thread),
            alive,
        })
    }

    /// Queues `rows` and waits for their outputs (per row, in order).
    pub(crate) async fn run(&self, output: Output, rows: Vec<Row>) -> Result<Finished, ApiError> {
        let n = rows.len();
        if n == 0 {
            return Ok(Finished {
                outputs: Vec::new(),
                queue: Duration::ZERO,
                inference: Duration::ZERO,
            });
        }
        let (reply, done) = oneshot::channel();
        let job = Job::new(output, rows, reply);
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| ApiError::unhealthy("the server is shutting down"))?;
        self.queued.fetch_add(n, Ordering::SeqCst);
        metrics::gauge!("te_queue_size").set(self.queued.load(Ordering::SeqCst) as f64);
        tx.send(job)
            .map_err(|_| ApiError::unhealthy("the model thread has stopped"))?;
        match done.await {
            Ok(Ok(finished)) => Ok(finished),
            Ok(Err(message)) => Err(ApiError::backend(message)),
            Err(_) => Err(ApiError::unhealthy("the model thread has stopped")),
        }
    }

    /// Whether the model thread still runs.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

/// Marks the model thread stopped when dropped.
struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Drop for Batcher {
    /// Closes the queue and waits for the model thread to finish what it holds.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Work (padded tokens × layers × hidden²) up to which a batch runs on one intra-op thread. A
/// small batch is a few hundred small ops whose per-op thread synchronisation costs more than it
/// parallelises, the more so when the HTTP and tokenizer threads share the cores. Measured on 2
/// cores: one text of ~25 tokens answers 2.8x faster on the tiny default model (hidden 128,
/// 4 layers) and 1.4x on a conv-bert-small shape; conv-bert-base batches are always above it.
const SMALL_BATCH_WORK: u64 = 1 << 25;

/// libtorch's intra-op threads for a batch of `tokens` padded tokens of a model with `layers`
/// layers of width `hidden`, `threads` being the configured count.
fn threads_for(tokens: usize, layers: i64, hidden: i64, threads: i32) -> i32 {
    let work = (tokens as u64)
        .saturating_mul(layers.max(1) as u64)
        .saturating_mul((hidden.max(1) as u64).saturating_pow(2));
    if work <= SMALL_BATCH_WORK {
        1
    } else {
        threads
    }
}

fn run_loop(
    model: &dyn BatchModel,
    limits: BatchLimits,
    rx: &mpsc::Receiver<Job>,
    queued: &AtomicUsize,
) {
    let threads = tch::get_num_threads().max(1);
    let mut current = threads;
    let mut pending: VecDeque<Job> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match rx.recv() {
                Ok(job) => pending.push_back(job),
                Err(_) => return,
            }
        }
        while let Ok(job) = rx.try_recv() {
            pending.push_back(job);
        }
        pending.retain(|job| {
            let gone = job.reply.is_closed();
            if gone {
                queued.fetch_sub(job.remaining, Ordering::SeqCst);
                metrics::counter!("te_request_dropped").increment(1);
            }
            !gone
        });
        let batch = next_batch(&pending, limits);
        if batch.is_empty() {
            continue;
        }
        queued.fetch_sub(batch.len(), Ordering::SeqCst);
        metrics::gauge!("te_queue_size").set(queued.load(Ordering::SeqCst) as f64);
        let tokens = padded_tokens(&pending, &batch);
        let config = model.config();
        let wanted = threads_for(
            tokens,
            config.num_hidden_layers,
            config.hidden_size,
            threads,
        );
        if wanted != current {
            tch::set_num_threads(wanted);
            current = wanted;
        }
        run_batch(model, &mut pending, &batch, queued);
    }
}

/// (job, row) pairs of the next batch: the oldest job's kind, longest rows first, as many as
/// the budget allows (at least one).
fn next_batch(pending: &VecDeque<Job>, limits: BatchLimits) -> Vec<(usize, usize)> {
    let Some(kind) = pending.front().map(|j| j.output) else {
        return Vec::new();
    };
    let mut candidates: Vec<(usize, usize, usize)> = pending
        .iter()
        .enumerate()
        .filter(|(_, j)| j.output == kind)
        .flat_map(|(ji, j)| {
            j.outputs
                .iter()
                .enumerate()
                .filter(|(_, o)| o.is_none())
                .map(move |(ri, _)| (ji, ri, j.rows[ri].len()))
        })
        .collect();
    // Stable: equal lengths keep arrival order.
    candidates.sort_by_key(|&(_, _, len)| std::cmp::Reverse(len));
    let longest = candidates.first().map_or(1, |c| c.2.max(1));
    let by_tokens = (limits.max_batch_tokens / longest).max(1);
    let count = limits
        .max_batch_requests
        .map_or(by_tokens, |m| m.min(by_tokens));
    candidates
        .into_iter()
        .take(count)
        .map(|(j, r, _)| (j, r))
        .collect()
}

/// Longest row × rows: what the batch costs once padded.
fn padded_tokens(pending: &VecDeque<Job>, batch: &[(usize, usize)]) -> usize {
    let longest = batch
        .iter()
        .map(|&(j, r)| pending[j].rows[r].len())
        .max()
        .unwrap_or(0);
    longest * batch.len()
}

fn run_batch(
    model: &dyn BatchModel,
    pending: &mut VecDeque<Job>,
    batch: &[(usize, usize)],
    queued: &AtomicUsize,
) {
    let start = Instant::now();
    let kind = pending[batch[0].0].output;
    for &(j, _) in batch {
        pending[j].started.get_or_insert(start);
    }
    let rows: Vec<&Row> = batch.iter().map(|&(j, r)| &pending[j].rows[r]).collect();
    let tokens = padded_tokens(pending, batch);
    metrics::histogram!("te_batch_next_size").record(rows.len() as f64);
    metrics::histogram!("te_batch_next_tokens").record(tokens as f64);
    // A panic (tch panics on some libtorch errors) fails this batch, not the model thread and
    // with it every later request.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| match kind {
        Output::Head => model.forward_head(&rows),
        Output::Features => model
            .forward_features(&rows)
            .map(|v| v.into_iter().map(|t| vec![t]).collect()),
    }))
    .map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        format!("the model failed on this request's batch: {what}")
    })
    .and_then(|r| r.map_err(|e| format!("the model failed on this request's batch: {e}")));
    let elapsed = start.elapsed();
    metrics::histogram!("te_batch_inference_duration").record(elapsed.as_secs_f64());
    match result {
        Ok(outputs) if outputs.len() == batch.len() => {
            for (&(j, r), out) in batch.iter().zip(outputs) {
                let job = &mut pending[j];
                job.outputs[r] = Some(out);
                job.remaining -= 1;
            }
        }
        other => {
            let message = match other {
                Err(message) => message,
                Ok(_) => "the model returned a wrong number of outputs".into(),
            };
            metrics::counter!("te_batch_failure").increment(1);
            let failed: std::collections::BTreeSet<usize> = batch.iter().map(|&(j, _)| j).collect();
            for &j in failed.iter().rev() {
                let in_batch = batch.iter().filter(|b| b.0 == j).count();
                if let Some(job) = pending.remove(j) {
                    queued.fetch_sub(job.remaining - in_batch, Ordering::SeqCst);
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
            return;
        }
    }
    let touched: std::collections::BTreeSet<usize> = batch.iter().map(|&(j, _)| j).collect();
    for &j in touched.iter() {
        pending[j].inference += elapsed;
    }
    for &j in touched.iter().rev() {
        if pending[j].remaining == 0 {
            if let Some(job) = pending.remove(j) {
                finish(job);
            }
        }
    }
}

fn finish(job: Job) {
    let started = job.started.unwrap_or(job.enqueued);
    let queue = started.duration_since(job.enqueued);
    let outputs: Vec<Vec<Tensor>> = job.outputs.into_iter().flatten().collect();
    let _ = job.reply.send(Ok(Finished {
        outputs,
        queue,
        inference: job.inference,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use convbert_model::ConvBertConfig;
    use convbert_pipelines::{PipelineOptions, Prepared, TextTokenizer};
    use std::path::PathBuf;

    /// A model whose head fails on any batch holding a row of `fail_len` tokens; outputs are
    /// each row's length, so results can be checked.
    struct Fake {
        tokenizer: TextTokenizer,
        config: ConvBertConfig,
        options: PipelineOptions,
        fail_len: usize,
        panic_len: usize,
        batches: std::sync::Mutex<Vec<Vec<usize>>>,
    }

    impl BatchModel for Fake {
        fn tokenizer(&self) -> &TextTokenizer {
            &self.tokenizer
        }
        fn config(&self) -> &ConvBertConfig {
            &self.config
        }
        fn options(&self) -> &PipelineOptions {
            &self.options
        }
        fn forward_head(&self, rows: &[&Row]) -> convbert_pipelines::Result<Vec<Vec<Tensor>>> {
            let lens: Vec<usize> = rows.iter().map(|r| r.len()).collect();
            self.batches.lock().unwrap().push(lens.clone());
            if lens.contains(&self.panic_len) {
                panic!("CUDA error: an illegal memory access was encountered");
            }
            if lens.contains(&self.fail_len) {
                return Err(convbert_pipelines::PipelineError::Input(
                    "out of memory".into(),
                ));
            }
            Ok(lens
                .iter()
                .map(|&l| vec![Tensor::from_slice(&[l as i64])])
                .collect())
        }
        fn forward_features(&self, rows: &[&Row]) -> convbert_pipelines::Result<Vec<Tensor>> {
            Ok(self.forward_head(rows)?.into_iter().flatten().collect())
        }
        fn cuda_graph_stats(&self) -> convbert_pipelines::Result<convbert_pipelines::GraphStats> {
            Ok(Default::default())
        }
    }

    /// Fails on rows of `fail_len` tokens, panics on rows of `panic_len` (0: never).
    fn fake_failing(fail_len: usize, panic_len: usize) -> Arc<Fake> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/default-model");
        Arc::new(Fake {
            tokenizer: TextTokenizer::from_dir(&dir).unwrap(),
            config: ConvBertConfig::from_file(dir.join("config.json")).unwrap(),
            options: PipelineOptions::default(),
            fail_len,
            panic_len,
            batches: Default::default(),
        })
    }

    fn fake(fail_len: usize) -> Arc<Fake> {
        fake_failing(fail_len, 0)
    }

    fn rows(model: &Fake, words: usize) -> Vec<Row> {
        let text = vec!["word"; words].join(" ");
        let p: Prepared = model.prepare_text(&text, None, None).unwrap();
        p.rows().to_vec()
    }

    fn job(output: Output, rows: Vec<Row>) -> (Job, oneshot::Receiver<Result<Finished, String>>) {
        let (reply, rx) = oneshot::channel();
        (Job::new(output, rows, reply), rx)
    }

    #[test]
    fn small_batches_run_on_one_thread() {
        // The tiny default model (4 x 128): one sentence on one thread, a full batch on all.
        assert_eq!(threads_for(25, 4, 128, 2), 1);
        assert_eq!(threads_for(4096, 4, 128, 2), 2);
        // conv-bert-base (12 x 768): even one short sentence is worth every thread.
        assert_eq!(threads_for(8, 12, 768, 2), 2);
    }

    #[test]
    fn batches_take_the_longest_rows_within_the_token_budget() {
        let m = fake(0);
        let mut pending = VecDeque::new();
        let mut receivers = Vec::new();
        for words in [3, 10, 5, 10] {
            let (j, rx) = job(Output::Head, rows(&m, words));
            pending.push_back(j);
            receivers.push(rx);
        }
        // Rows of 12, 12, 7 and 5 tokens; 30 padded tokens hold two rows of 12.
        let limits = BatchLimits {
            max_batch_tokens: 30,
            max_batch_requests: None,
        };
        assert_eq!(next_batch(&pending, limits), vec![(1, 0), (3, 0)]);
        let limits = BatchLimits {
            max_batch_tokens: 1000,
            max_batch_requests: Some(3),
        };
        assert_eq!(next_batch(&pending, limits), vec![(1, 0), (3, 0), (2, 0)]);
    }

    #[test]
    fn a_failing_batch_fails_only_its_requests_and_dropped_clients_cost_nothing() {
        let m = fake(7); // "word word word word word" is 7 tokens with [CLS] and [SEP]
        let limits = BatchLimits {
            max_batch_tokens: 12,
            max_batch_requests: None,
        };
        let batcher = Batcher::start(m.clone(), limits).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            // A client that went away before its job ran: its rows never reach the model.
            let (gone, rx) = job(Output::Head, rows(&m, 20));
            drop(rx);
            batcher.tx.as_ref().unwrap().send(gone).unwrap();
            let ok = batcher.run(Output::Head, rows(&m, 3)).await.unwrap();
            assert_eq!(Vec::<i64>::try_from(&ok.outputs[0][0]).unwrap(), vec![5]);
            let failed = batcher.run(Output::Head, rows(&m, 5)).await;
            match failed {
                Err(e) => assert!(e.message.contains("out of memory"), "{}", e.message),
                Ok(_) => panic!("a batch with a failing row succeeded"),
            }
            let again = batcher.run(Output::Features, rows(&m, 1)).await.unwrap();
            assert_eq!(again.outputs.len(), 1);
        });
        let batches = m.batches.lock().unwrap().clone();
        assert!(
            !batches.iter().flatten().any(|&l| l == 22),
            "dropped job ran: {batches:?}"
        );
    }

    #[test]
    fn a_panicking_batch_fails_only_its_requests_and_the_model_thread_lives_on() {
        let m = fake_failing(0, 7);
        let limits = BatchLimits {
            max_batch_tokens: 12,
            max_batch_requests: None,
        };
        let batcher = Batcher::start(m.clone(), limits).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            match batcher.run(Output::Head, rows(&m, 5)).await {
                Err(e) => {
                    assert_eq!(e.status, axum::http::StatusCode::FAILED_DEPENDENCY);
                    assert!(e.message.contains("illegal memory access"), "{}", e.message);
                }
                Ok(_) => panic!("a batch that panicked succeeded"),
            }
            assert!(batcher.is_alive(), "the model thread died with the batch");
            let ok = batcher.run(Output::Head, rows(&m, 3)).await.unwrap();
            assert_eq!(Vec::<i64>::try_from(&ok.outputs[0][0]).unwrap(), vec![5]);
        });
    }
}
