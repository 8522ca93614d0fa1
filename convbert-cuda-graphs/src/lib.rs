//! CUDA graphs for ConvBERT inference at small batches. At batch 1–8 a GPU forward is bound by
//! kernel launches; a [`GraphCache`] captures the forward once per (batch, length) bucket with
//! libtorch's `at::cuda::CUDAGraph` (through a C++ shim, the `cuda` feature) and replays it:
//! inputs are copied into the graph's static buffers, the static outputs copied out.
//!
//! Batches are padded up to a power of two rows (extra rows repeat a real one: rows never
//! influence each other) and, when the caller says outputs do not depend on padding (the model's
//! padding-invariant mode), to a length bucket. Outside the buckets ([`GraphPolicy`]), with ids
//! the model would refuse, without CUDA, and after a failed capture of a key, the forward runs
//! eagerly, so results are always those of the eager model (within float rounding of the
//! padded shapes). A new graph is kept only if its first replay matches an eager run on the same
//! inputs; one that does not counts as a failed capture. Reference: PyTorch's `torch.cuda.graphs` (v2.11) and its notes on warm-up,
//! side streams and memory pools.
//!
//! ```
//! use convbert_cuda_graphs::{GraphCache, GraphInputs, GraphPolicy, HostBatch, InputLimits};
//! use tch::{Device, Tensor};
//!
//! let limits = InputLimits { vocab_size: 100, type_vocab_size: 2, max_len: 32 };
//! let mut cache = GraphCache::new(Device::Cpu, limits, GraphPolicy::default());
//! assert!(cache.unavailable().is_some()); // CPU: eager
//! let batch = HostBatch {
//!     input_ids: &[5, 6, 7],
//!     attention_mask: &[1, 1, 1],
//!     token_type_ids: &[0, 0, 0],
//!     rows: 1,
//!     len: 3,
//!     pad_length: true,
//! };
//! let out = cache.run("sum", &batch, |x: &GraphInputs| -> Result<Vec<Tensor>, convbert_cuda_graphs::GraphError> {
//!     Ok(vec![x.input_ids.f_sum(tch::Kind::Int64)?])
//! })?;
//! assert_eq!(out[0].int64_value(&[]), 18);
//! assert_eq!(cache.stats().eager, 1);
//! # Ok::<(), convbert_cuda_graphs::GraphError>(())
//! ```

mod backend;
mod bucket;
mod cache;
mod error;
#[cfg(feature = "cuda")]
mod ffi;

pub use bucket::{batch_bucket, length_bucket, Bucket, GraphPolicy, HostBatch, InputLimits};
pub use cache::{GraphCache, GraphInputs, GraphKey, GraphStats};
pub use error::GraphError;

/// Whether this build can capture CUDA graphs at all (the `cuda` feature).
pub const BUILT_WITH_CUDA: bool = cfg!(feature = "cuda");

#[cfg(test)]
mod cache_tests;
