//! The crate's error type.

use thiserror::Error;

/// What can go wrong with a CUDA graph.
#[derive(Debug, Error)]
pub enum GraphError {
    /// Built without the `cuda` feature, no CUDA device, or a device that is not CUDA.
    #[error("CUDA graphs are unavailable: {0}")]
    Unavailable(String),
    /// The shim failed to capture (the forward itself succeeded).
    #[error("CUDA graph capture failed: {0}")]
    Capture(String),
    /// Copying inputs in or replaying failed.
    #[error("CUDA graph replay failed: {0}")]
    Replay(String),
    #[error(transparent)]
    Tch(#[from] tch::TchError),
}

/// A failed capture: the forward's own error, or the graph machinery's.
// Only the CUDA backend (and the tests' stand-in) builds them.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum CaptureError<E> {
    Forward(E),
    Graph(GraphError),
}
