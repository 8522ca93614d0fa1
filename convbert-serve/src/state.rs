//! What every handler shares: the options, the model once it is loaded (with its batching
//! loop), the admission semaphore, and the helpers that move work off the async threads.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use convbert_pipelines::{Prepared, TruncationSide};
use tch::Tensor;
use tokio::sync::Semaphore;

use crate::batcher::{Batcher, Output};
use crate::config::ServeConfig;
use crate::engine::Engine;
use crate::error::ApiError;

/// The model and its batching loop, once loading finished.
pub(crate) struct Ready {
    pub engine: Engine,
    pub batcher: Batcher,
}

/// The server's shared state.
pub(crate) struct AppState {
    pub config: ServeConfig,
    pub ready: OnceLock<Ready>,
    pub permits: Arc<Semaphore>,
}

pub(crate) type SharedState = Arc<AppState>;

impl AppState {
    pub(crate) fn new(config: ServeConfig) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            config,
            ready: OnceLock::new(),
        }
    }

    /// The model, or 503 while it loads (or after its thread died).
    pub(crate) fn ready(&self) -> Result<&Ready, ApiError> {
        match self.ready.get() {
            Some(r) if r.batcher.is_alive() => Ok(r),
            Some(_) => Err(ApiError::unhealthy("the model thread has stopped")),
            None => Err(ApiError::unhealthy("the model is loading")),
        }
    }

    /// The truncation a request asked for (`--auto-truncate` forces it).
    pub(crate) fn truncation(
        &self,
        truncate: Option<bool>,
        side: TruncationSide,
    ) -> Option<TruncationSide> {
        (self.config.auto_truncate || truncate.unwrap_or(false)).then_some(side)
    }

    /// Refuses an empty request and one with more than `--max-client-batch-size` inputs.
    pub(crate) fn check_count(&self, n: usize) -> Result<(), ApiError> {
        if n == 0 {
            return Err(ApiError::empty("`inputs` cannot be empty"));
        }
        let max = self.config.max_client_batch_size;
        if n > max {
            return Err(ApiError::too_large(format!(
                "batch size {n} > maximum allowed batch size {max} (--max-client-batch-size)"
            )));
        }
        Ok(())
    }
}

impl Ready {
    /// Prepares `inputs` on a worker thread with `prepare` (the error of the first bad input
    /// fails the request, naming it), runs their rows through the batching loop and hands back
    /// each input with its per-row outputs.
    pub(crate) async fn infer<I, F>(
        &self,
        output: Output,
        inputs: Vec<I>,
        prepare: F,
    ) -> Result<Vec<(Prepared, Vec<Vec<Tensor>>)>, ApiError>
    where
        I: Send + 'static,
        F: Fn(&I) -> convbert_pipelines::Result<Prepared> + Send + 'static,
    {
        let start = Instant::now();
        let single = inputs.len() == 1;
        let prepared = blocking(move || {
            inputs
                .iter()
                .enumerate()
                .map(|(i, x)| prepare(x).map_err(|e| ApiError::input((!single).then_some(i), e)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        metrics::histogram!("te_request_tokenization_duration")
            .record(start.elapsed().as_secs_f64());
        let rows: Vec<_> = prepared.iter().flat_map(|p| p.rows().to_vec()).collect();
        for p in &prepared {
            metrics::histogram!("te_request_input_length").record(p.tokens() as f64);
        }
        let finished = self.batcher.run(output, rows).await?;
        metrics::histogram!("te_request_queue_duration").record(finished.queue.as_secs_f64());
        metrics::histogram!("te_request_inference_duration")
            .record(finished.inference.as_secs_f64());
        let mut outputs = finished.outputs.into_iter();
        Ok(prepared
            .into_iter()
            .map(|p| {
                let outs = outputs.by_ref().take(p.rows().len()).collect();
                (p, outs)
            })
            .collect())
    }
}

/// The one output of a one-row input.
pub(crate) fn single_output(mut outputs: Vec<Vec<Tensor>>) -> Result<Tensor, ApiError> {
    outputs
        .pop()
        .and_then(|mut v| v.pop())
        .ok_or_else(|| ApiError::backend("the model returned no output"))
}

/// Runs `f` on tokio's blocking pool, so async threads never wait on tokenizing or libtorch.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::backend(format!("a worker thread failed: {e}")))?
}
