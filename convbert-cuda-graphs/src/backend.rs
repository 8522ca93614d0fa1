//! What the cache needs from a graph implementation: copy host inputs into a static buffer,
//! capture a forward, replay it. [`CudaRunner`] is libtorch's CUDA graphs through the shim (the
//! `cuda` feature); without the feature it cannot be built and says why.

use tch::{Device, Tensor};

use crate::error::{CaptureError, GraphError};

/// Copies, captures and replays for the cache (a fake stands in for it in the unit tests).
pub(crate) trait Backend {
    type Graph;

    /// Where the static buffers live.
    fn device(&self) -> Device;

    /// `data` into the contiguous int64 `dst` on the device, in stream order.
    fn upload(&self, dst: &mut Tensor, data: &[i64]) -> Result<(), GraphError>;

    /// `forward` run `warmups` times, then captured; the graph and its static outputs.
    fn capture<F, E>(
        &self,
        warmups: u32,
        forward: F,
    ) -> Result<(Self::Graph, Vec<Tensor>), CaptureError<E>>
    where
        F: FnMut() -> Result<Vec<Tensor>, E>;

    /// Reruns a captured graph: its static outputs are rewritten from its static inputs.
    fn replay(&self, graph: &Self::Graph) -> Result<(), GraphError>;
}

#[cfg(feature = "cuda")]
pub(crate) use cuda::CudaRunner;

#[cfg(not(feature = "cuda"))]
pub(crate) use stub::CudaRunner;

#[cfg(feature = "cuda")]
mod cuda {
    use std::any::Any;
    use std::ffi::{c_int, c_void};
    use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
    use std::ptr::NonNull;

    use tch::{Device, Tensor};

    use super::Backend;
    use crate::error::{CaptureError, GraphError};
    use crate::ffi;

    /// The shim's runner of one device: its side stream and memory pool.
    pub(crate) struct CudaRunner(NonNull<c_void>, usize);

    // SAFETY: the runner is plain data (a stream handle and a pool id) that the shim reads
    // under the cache's `&mut self`; CUDA streams may be used from any thread.
    unsafe impl Send for CudaRunner {}

    /// A captured, instantiated graph.
    pub(crate) struct CudaGraph(NonNull<c_void>);

    // SAFETY: owned by one cache entry, replayed under the cache's `&mut self`.
    unsafe impl Send for CudaGraph {}

    impl CudaRunner {
        pub(crate) fn new(device: usize) -> Result<Self, GraphError> {
            // SAFETY: no arguments; 0 without a driver.
            let count = unsafe { ffi::cbg_device_count() };
            if device >= usize::try_from(count).unwrap_or(0) {
                return Err(GraphError::Unavailable(format!(
                    "no CUDA device {device} ({count} visible)"
                )));
            }
            let mut out: *mut c_void = std::ptr::null_mut();
            // SAFETY: `out` receives a runner the shim allocated.
            ffi::check(|err| unsafe { ffi::cbg_runner_new(device as c_int, &mut out, err) })
                .map_err(GraphError::Unavailable)?;
            NonNull::new(out)
                .map(|runner| Self(runner, device))
                .ok_or_else(|| GraphError::Unavailable("the shim returned no runner".into()))
        }
    }

    impl Drop for CudaRunner {
        fn drop(&mut self) {
            // SAFETY: made by cbg_runner_new, freed once.
            unsafe { ffi::cbg_runner_free(self.0.as_ptr()) }
        }
    }

    impl Drop for CudaGraph {
        fn drop(&mut self) {
            // SAFETY: made by cbg_capture, freed once.
            unsafe { ffi::cbg_graph_free(self.0.as_ptr()) }
        }
    }

    /// The state the shim's callback works on.
    struct Ctx<F, E> {
        forward: F,
        outputs: Option<Vec<Tensor>>,
        error: Option<E>,
        panic: Option<Box<dyn Any + Send>>,
    }

    /// The shim's callback: runs the forward, keeps its outputs when `keep`, and never unwinds
    /// into C++ (a panic is carried back and resumed after the shim returns).
    extern "C" fn trampoline<F, E>(ctx: *mut c_void, keep: c_int) -> c_int
    where
        F: FnMut() -> Result<Vec<Tensor>, E>,
    {
        // SAFETY: `ctx` is the `Ctx<F, E>` that `capture` lent the shim for this call.
        let ctx = unsafe { &mut *ctx.cast::<Ctx<F, E>>() };
        match catch_unwind(AssertUnwindSafe(|| (ctx.forward)())) {
            Ok(Ok(outputs)) => {
                // Warm-up outputs are dropped here, before the capture begins.
                if keep != 0 {
                    ctx.outputs = Some(outputs);
                }
                0
            }
            Ok(Err(e)) => {
                ctx.error = Some(e);
                1
            }
            Err(panic) => {
                ctx.panic = Some(panic);
                1
            }
        }
    }

    impl Backend for CudaRunner {
        type Graph = CudaGraph;

        fn device(&self) -> Device {
            Device::Cuda(self.1)
        }

        fn upload(&self, dst: &mut Tensor, data: &[i64]) -> Result<(), GraphError> {
            let n = i64::try_from(data.len())
                .map_err(|_| GraphError::Replay("too many inputs".into()))?;
            // SAFETY: `dst` is a live tensor, `data` is `n` readable values; the shim checks
            // the destination's device, kind, layout and size.
            ffi::check(|err| unsafe { ffi::cbg_upload(dst.as_mut_ptr(), data.as_ptr(), n, err) })
                .map_err(GraphError::Replay)
        }

        fn capture<F, E>(
            &self,
            warmups: u32,
            forward: F,
        ) -> Result<(CudaGraph, Vec<Tensor>), CaptureError<E>>
        where
            F: FnMut() -> Result<Vec<Tensor>, E>,
        {
            let mut ctx = Ctx {
                forward,
                outputs: None,
                error: None,
                panic: None,
            };
            let mut graph: *mut c_void = std::ptr::null_mut();
            let mut err = std::ptr::null_mut();
            // SAFETY: `ctx` outlives the call and matches the trampoline's type parameters.
            let rc = unsafe {
                ffi::cbg_capture(
                    self.0.as_ptr(),
                    c_int::try_from(warmups).unwrap_or(c_int::MAX),
                    trampoline::<F, E>,
                    (&mut ctx as *mut Ctx<F, E>).cast(),
                    &mut graph,
                    &mut err,
                )
            };
            if let Some(panic) = ctx.panic {
                if let Some(graph) = NonNull::new(graph) {
                    drop(CudaGraph(graph));
                }
                resume_unwind(panic);
            }
            match (rc, NonNull::new(graph), ctx.outputs, ctx.error) {
                (0, Some(graph), Some(outputs), _) => Ok((CudaGraph(graph), outputs)),
                (2, _, _, Some(e)) => Err(CaptureError::Forward(e)),
                (1, ..) => {
                    // SAFETY: on 1 the shim left its message (or null) in `err`, freed only here.
                    let message = unsafe { ffi::take_error(err) };
                    Err(CaptureError::Graph(GraphError::Capture(message)))
                }
                _ => Err(CaptureError::Graph(GraphError::Capture(format!(
                    "the shim returned {rc} without a graph or an error"
                )))),
            }
        }

        fn replay(&self, graph: &CudaGraph) -> Result<(), GraphError> {
            // SAFETY: a graph this runner captured, alive.
            ffi::check(|err| unsafe { ffi::cbg_replay(graph.0.as_ptr(), err) })
                .map_err(GraphError::Replay)
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod stub {
    use std::convert::Infallible;

    use tch::{Device, Tensor};

    use super::Backend;
    use crate::error::{CaptureError, GraphError};

    /// Never built: this build has no CUDA graph shim.
    pub(crate) struct CudaRunner(Infallible);

    /// Never built.
    pub(crate) struct CudaGraph(Infallible);

    impl CudaRunner {
        pub(crate) fn new(_device: usize) -> Result<Self, GraphError> {
            Err(GraphError::Unavailable(
                "convbert-cuda-graphs was built without its `cuda` feature".into(),
            ))
        }
    }

    impl Backend for CudaRunner {
        type Graph = CudaGraph;

        fn device(&self) -> Device {
            match self.0 {}
        }

        fn upload(&self, _dst: &mut Tensor, _data: &[i64]) -> Result<(), GraphError> {
            match self.0 {}
        }

        fn capture<F, E>(&self, _: u32, _: F) -> Result<(CudaGraph, Vec<Tensor>), CaptureError<E>>
        where
            F: FnMut() -> Result<Vec<Tensor>, E>,
        {
            match self.0 {}
        }

        fn replay(&self, graph: &CudaGraph) -> Result<(), GraphError> {
            match graph.0 {}
        }
    }
}
