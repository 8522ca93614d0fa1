//! The graph cache: one captured forward per (what, device, batch bucket, length bucket), its
//! static inputs filled from the host batch before each replay and its static outputs copied
//! out after; at most `max_graphs` graphs (least recently used evicted); eager for batches
//! outside the buckets, with ids the model would refuse, when graphs are unavailable, and for a
//! key whose capture failed once.

use std::collections::HashSet;
use std::fmt::Display;

use convbert_model::ConvBertInputs;
use tch::{Device, Kind, Tensor};

use crate::backend::{Backend, CudaRunner};
use crate::bucket::{Bucket, GraphPolicy, HostBatch, InputLimits};
use crate::error::{CaptureError, GraphError};

/// The inputs a forward gets: `(B, L)` int64 each. On the host at the batch's own shape for an
/// eager run; the static device buffers at the bucket's shape for a capture.
#[derive(Debug, Clone, Copy)]
pub struct GraphInputs<'a> {
    pub input_ids: &'a Tensor,
    pub attention_mask: &'a Tensor,
    pub token_type_ids: &'a Tensor,
}

impl<'a> GraphInputs<'a> {
    /// The model's inputs: these three, the rest at their defaults.
    pub fn model_inputs(&self) -> ConvBertInputs<'a> {
        ConvBertInputs {
            input_ids: Some(self.input_ids),
            attention_mask: Some(self.attention_mask),
            token_type_ids: Some(self.token_type_ids),
            ..Default::default()
        }
    }
}

/// What identifies a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GraphKey {
    /// What was captured (e.g. a head or the encoder alone).
    pub what: &'static str,
    pub device: Device,
    pub bucket: Bucket,
}

/// Counts since the cache was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphStats {
    pub captures: u64,
    pub replays: u64,
    pub eager: u64,
    /// Captures that failed, or whose first replay did not match the eager forward.
    pub failed_captures: u64,
    /// Graphs held now.
    pub graphs: usize,
    /// Why the last capture failed.
    pub last_failure: Option<String>,
    /// Why every run is eager (graphs off, no CUDA device, a build without CUDA), or `None`.
    pub unavailable: Option<String>,
}

struct Entry<G> {
    key: GraphKey,
    graph: G,
    /// `(3, B, L)`: ids, mask, type ids.
    inputs: Tensor,
    outputs: Vec<Tensor>,
    last_used: u64,
}

/// The cache over any [`Backend`]; [`GraphCache`] is it over CUDA.
pub(crate) struct Cache<B: Backend> {
    pub(crate) backend: Result<B, String>,
    policy: GraphPolicy,
    limits: InputLimits,
    entries: Vec<Entry<B::Graph>>,
    failed: HashSet<GraphKey>,
    tick: u64,
    stats: GraphStats,
}

impl<B: Backend> Cache<B> {
    /// A cache replaying on `backend`, or only eager with the reason.
    pub(crate) fn with_backend(
        backend: Result<B, String>,
        limits: InputLimits,
        policy: GraphPolicy,
    ) -> Self {
        Self {
            backend,
            policy,
            limits,
            entries: Vec::new(),
            failed: HashSet::new(),
            tick: 0,
            stats: GraphStats::default(),
        }
    }

    pub(crate) fn unavailable(&self) -> Option<&str> {
        self.backend.as_ref().err().map(String::as_str)
    }

    pub(crate) fn stats(&self) -> GraphStats {
        GraphStats {
            graphs: self.entries.len(),
            unavailable: self.unavailable().map(str::to_string),
            ..self.stats.clone()
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.failed.clear();
    }

    /// `forward` on `batch`: replayed from a graph of its bucket (captured on first use), else
    /// eagerly. A graph's outputs have the bucket's shape cut to the batch's rows on dim 0 (a
    /// per-token output keeps the bucket's length: positions past `batch.len` are padding).
    pub(crate) fn run<F, E>(
        &mut self,
        what: &'static str,
        batch: &HostBatch,
        mut forward: F,
    ) -> Result<Vec<Tensor>, E>
    where
        F: FnMut(&GraphInputs) -> Result<Vec<Tensor>, E>,
        E: From<GraphError> + Display,
    {
        let Some(key) = self.key(what, batch) else {
            return self.eager(batch, forward);
        };
        if self.failed.contains(&key) {
            return self.eager(batch, forward);
        }
        let index = match self.entries.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => match self.capture(key, batch, &mut forward) {
                Ok(i) => i,
                Err(reason) => {
                    self.failed.insert(key);
                    self.stats.failed_captures += 1;
                    self.stats.last_failure = Some(reason);
                    return self.eager(batch, forward);
                }
            },
        };
        Ok(self.replay(index, batch)?)
    }

    /// The graph key of `batch`, or `None` when it runs eagerly.
    fn key(&self, what: &'static str, batch: &HostBatch) -> Option<GraphKey> {
        let device = self.backend.as_ref().ok()?.device();
        let bucket = self.policy.bucket(batch, self.limits.max_len)?;
        batch.is_valid(&self.limits).then_some(GraphKey {
            what,
            device,
            bucket,
        })
    }

    fn eager<F, E>(&mut self, batch: &HostBatch, mut forward: F) -> Result<Vec<Tensor>, E>
    where
        F: FnMut(&GraphInputs) -> Result<Vec<Tensor>, E>,
        E: From<GraphError>,
    {
        self.stats.eager += 1;
        let shape = [batch.rows as i64, batch.len as i64];
        let host = |v: &[i64]| {
            Tensor::from_slice(v)
                .f_view(shape)
                .map_err(GraphError::from)
        };
        let (ids, mask, types) = (
            host(batch.input_ids)?,
            host(batch.attention_mask)?,
            host(batch.token_type_ids)?,
        );
        forward(&GraphInputs {
            input_ids: &ids,
            attention_mask: &mask,
            token_type_ids: &types,
        })
    }

    /// Captures `forward` for `key` (evicting the least recently used graph when full); the
    /// entry's index, or why it failed.
    fn capture<F, E>(
        &mut self,
        key: GraphKey,
        batch: &HostBatch,
        forward: &mut F,
    ) -> Result<usize, String>
    where
        F: FnMut(&GraphInputs) -> Result<Vec<Tensor>, E>,
        E: Display,
    {
        let backend = self.backend.as_ref().map_err(Clone::clone)?;
        if self.entries.len() >= self.policy.max_graphs.max(1) {
            if let Some(lru) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].last_used) {
                self.entries.swap_remove(lru);
            }
        }
        let Bucket { batch: b, len: l } = key.bucket;
        let shape = [3, b as i64, l as i64];
        let mut inputs =
            Tensor::f_zeros(shape, (Kind::Int64, backend.device())).map_err(|e| e.to_string())?;
        backend
            .upload(&mut inputs, &batch.staged(key.bucket))
            .map_err(|e| e.to_string())?;
        let planes = (0..3)
            .map(|i| inputs.f_get(i))
            .collect::<Result<Vec<_>, _>>();
        let planes = planes.map_err(|e| e.to_string())?;
        let static_inputs = GraphInputs {
            input_ids: &planes[0],
            attention_mask: &planes[1],
            token_type_ids: &planes[2],
        };
        // The ids were checked on the host (`key`): the model must not read them back.
        let captured = backend.capture(self.policy.warmups, || {
            convbert_model::with_prevalidated_ids(|| forward(&static_inputs))
        });
        let (graph, outputs) = captured.map_err(|e| match e {
            CaptureError::Forward(e) => format!("the forward failed while capturing: {e}"),
            CaptureError::Graph(e) => e.to_string(),
        })?;
        // A graph is trusted only once its first replay matches an eager run on the same static
        // inputs: a forward that is not capture-safe (a host read, a CPU tensor baked in) can
        // capture without error and replay stale or wrong values.
        backend.replay(&graph).map_err(|e| e.to_string())?;
        let eager = convbert_model::with_prevalidated_ids(|| forward(&static_inputs))
            .map_err(|e| format!("the eager check after the capture failed: {e}"))?;
        verify_replay(&outputs, &eager)?;
        self.stats.captures += 1;
        self.entries.push(Entry {
            key,
            graph,
            inputs,
            outputs,
            last_used: 0,
        });
        Ok(self.entries.len() - 1)
    }

    /// Fills entry `index`'s static inputs from `batch`, replays, and copies the outputs out.
    fn replay(&mut self, index: usize, batch: &HostBatch) -> Result<Vec<Tensor>, GraphError> {
        let backend = self
            .backend
            .as_ref()
            .map_err(|e| GraphError::Unavailable(e.clone()))?;
        self.tick += 1;
        let entry = &mut self.entries[index];
        entry.last_used = self.tick;
        backend.upload(&mut entry.inputs, &batch.staged(entry.key.bucket))?;
        backend.replay(&entry.graph)?;
        self.stats.replays += 1;
        // Copies: the next replay rewrites the static outputs.
        entry
            .outputs
            .iter()
            .map(|o| Ok(o.f_narrow(0, 0, batch.rows as i64)?.f_detach_copy()?))
            .collect()
    }
}

/// Ok when a graph's outputs after a replay equal `eager`'s (same shapes and kinds; floats
/// within [`replay_tolerance`]), else which output differs and by how much.
pub(crate) fn verify_replay(replayed: &[Tensor], eager: &[Tensor]) -> Result<(), String> {
    if replayed.len() != eager.len() {
        return Err(format!(
            "the replay gave {} outputs, the eager forward {}",
            replayed.len(),
            eager.len()
        ));
    }
    for (i, (r, e)) in replayed.iter().zip(eager).enumerate() {
        if r.size() != e.size() || r.kind() != e.kind() {
            return Err(format!(
                "output {i}: the replay gave {:?} {:?}, the eager forward {:?} {:?}",
                r.size(),
                r.kind(),
                e.size(),
                e.kind()
            ));
        }
        if let Some(worst) = difference(r, e).map_err(|err| format!("output {i}: {err}"))? {
            return Err(format!(
                "output {i} of the replay differs from the eager forward (max |Δ| {worst:e})"
            ));
        }
    }
    Ok(())
}

/// `None` when `r` equals `e` within [`replay_tolerance`] everywhere (NaNs at the same places),
/// else the largest |r - e|.
fn difference(r: &Tensor, e: &Tensor) -> Result<Option<f64>, tch::TchError> {
    let close = match replay_tolerance(e.kind()) {
        Some((rtol, atol)) => r.f_isclose(e, rtol, atol, true)?,
        None => r.f_eq_tensor(e)?,
    };
    if close.f_all()?.f_int64_value(&[])? != 0 {
        return Ok(None);
    }
    let worst = r
        .f_to_kind(Kind::Double)?
        .f_sub(&e.f_to_kind(Kind::Double)?)?
        .f_abs()?
        .f_nan_to_num(0.0, None, None)?
        .f_max()?
        .f_double_value(&[])?;
    Ok(Some(worst))
}

/// `(rtol, atol)` for comparing a replay with eager in `kind`, `None` for exact kinds. The same
/// kernels run on the same inputs, so the two normally agree bit for bit; the slack absorbs
/// cuBLAS picking another reduction order on another stream, and is far below what a stale
/// or misplaced buffer produces.
fn replay_tolerance(kind: Kind) -> Option<(f64, f64)> {
    match kind {
        Kind::Float | Kind::Double => Some((1e-4, 1e-5)),
        Kind::Half | Kind::BFloat16 => Some((1e-2, 1e-2)),
        _ => None,
    }
}

/// CUDA graphs of a model's forward on one device (see the crate docs). Not `Sync`: keep it
/// next to the model, behind the same lock.
pub struct GraphCache(Cache<CudaRunner>);

impl std::fmt::Debug for GraphCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphCache")
            .field("unavailable", &self.unavailable())
            .field("stats", &self.stats())
            .finish()
    }
}

impl GraphCache {
    /// A cache for a model on `device` whose inputs obey `limits`. On the CPU, without a CUDA
    /// device or without the `cuda` feature every run is eager, and
    /// [`unavailable`](Self::unavailable) says why.
    pub fn new(device: Device, limits: InputLimits, policy: GraphPolicy) -> Self {
        let backend = match device {
            Device::Cuda(i) => CudaRunner::new(i).map_err(|e| e.to_string()),
            other => Err(format!("CUDA graphs need a CUDA device, not {other:?}")),
        };
        Self(Cache::with_backend(backend, limits, policy))
    }

    /// A cache that runs everything eagerly (graphs turned off by the caller).
    pub fn disabled(limits: InputLimits) -> Self {
        let off = Err("CUDA graphs are turned off".to_string());
        Self(Cache::with_backend(off, limits, GraphPolicy::default()))
    }

    /// Why every run is eager, or `None` when graphs are used.
    pub fn unavailable(&self) -> Option<&str> {
        self.0.unavailable()
    }

    /// Captures, replays and eager runs so far.
    pub fn stats(&self) -> GraphStats {
        self.0.stats()
    }

    /// Drops every graph (e.g. after the weights moved) and forgets failed captures.
    pub fn clear(&mut self) {
        self.0.clear()
    }

    /// `forward` on `batch`: from the graph of `what` for its bucket (captured on first use:
    /// warm-up runs, then one captured run, trusted once its first replay matches an eager run;
    /// the model's id checks are done here on the host), else eagerly with the batch as host
    /// tensors. `forward` must be a pure function of its inputs (the same ops for the same
    /// shapes), and one `what` must always name the same computation: a replay reruns what was
    /// captured, not the closure given. Graph outputs are cut to the batch's rows on dim 0;
    /// per-token outputs keep the bucket's length (positions past `batch.len` are padding).
    pub fn run<F, E>(
        &mut self,
        what: &'static str,
        batch: &HostBatch,
        forward: F,
    ) -> Result<Vec<Tensor>, E>
    where
        F: FnMut(&GraphInputs) -> Result<Vec<Tensor>, E>,
        E: From<GraphError> + Display,
    {
        self.0.run(what, batch, forward)
    }
}
