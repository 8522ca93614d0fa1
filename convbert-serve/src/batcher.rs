//! The batching loop: one thread owns the model; requests queue their prepared rows, and each
//! batch takes the queued rows longest first up to the token budget (`max_batch_tokens`, padded
//! cost = longest × rows) and the row limit. Rows of one request may span batches. Requests
//! whose client went away are dropped before they cost a batch; a failing batch fails only the
//! requests that had rows in it. The pipelines run in the padding-invariant mode, so a row's
//! result does not depend on what it was batched with.

use std::collections::VecDeque;
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
                run_loop(model.as_ref(), limits, &rx, &q);
                a.store(false, Ordering::SeqCst);
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
        let job = Job {
            output,
            outputs: (0..n).map(|_| None).collect(),
            remaining: n,
            rows,
            reply,
            enqueued: Instant::now(),
            started: None,
            inference: Duration::ZERO,
        };
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

impl Drop for Batcher {
    /// Closes the queue and waits for the model thread to finish what it holds.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_loop(
    model: &dyn BatchModel,
    limits: BatchLimits,
    rx: &mpsc::Receiver<Job>,
    queued: &AtomicUsize,
) {
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
    let tokens = rows.iter().map(|r| r.len()).max().unwrap_or(0) * rows.len();
    metrics::histogram!("te_batch_next_size").record(rows.len() as f64);
    metrics::histogram!("te_batch_next_tokens").record(tokens as f64);
    let result = match kind {
        Output::Head => model.forward_head(&rows),
        Output::Features => model
            .forward_features(&rows)
            .map(|v| v.into_iter().map(|t| vec![t]).collect()),
    };
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
                Err(e) => format!("the model failed on this request's batch: {e}"),
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
