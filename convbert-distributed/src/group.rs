use std::ffi::{c_int, c_void, CString};
use std::ptr::NonNull;
use std::time::Duration;

use tch::{Device, Kind, Tensor};

use crate::ffi;
use crate::{Backend, DistEnv, DistError};

/// torch.distributed's default for Gloo: long enough for a slow checkpoint on rank 0, finite so
/// that a dead peer ends the job instead of hanging it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A c10d process group over a TCPStore, the one `torch.distributed.init_process_group` makes.
/// Every rank must call the same collectives in the same order.
///
/// Collectives run on tensors on [`ProcessGroup::device`]; they fail with
/// [`DistError::Collective`] when a peer dies or does not join within the timeout. Dropping the
/// group leaves it.
pub struct ProcessGroup {
    raw: NonNull<c_void>,
    backend: Backend,
    rank: usize,
    world_size: usize,
    local_rank: usize,
}

// SAFETY: the c10d group is not tied to the thread that made it; `&self` methods are not shared
// across threads because the type is not Sync.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the job described by the environment ([`DistEnv::from_env`]), with
    /// [`DEFAULT_TIMEOUT`].
    pub fn from_env() -> Result<Self, DistError> {
        Self::new(&DistEnv::from_env()?, DEFAULT_TIMEOUT)
    }

    /// Joins the Gloo group `env` describes. `timeout` bounds the rendezvous and every
    /// collective.
    pub fn new(env: &DistEnv, timeout: Duration) -> Result<Self, DistError> {
        Self::with_backend(env, Backend::Gloo, timeout)
    }

    /// Joins the group `env` describes on `backend`; NCCL binds the process to `cuda:LOCAL_RANK`.
    pub fn with_backend(
        env: &DistEnv,
        backend: Backend,
        timeout: Duration,
    ) -> Result<Self, DistError> {
        let init_error = |message: String| DistError::Init {
            addr: env.master_addr.clone(),
            port: env.master_port,
            rank: env.rank,
            world_size: env.world_size,
            timeout,
            message,
        };
        let addr = CString::new(env.master_addr.as_str())
            .map_err(|_| init_error("MASTER_ADDR contains a NUL byte".into()))?;
        let prefix = CString::new(env.agent_store_prefix.clone().unwrap_or_default())
            .map_err(|_| init_error("store prefix contains a NUL byte".into()))?;
        let rank = to_c_int(env.rank, "rank")?;
        let world_size = to_c_int(env.world_size, "world_size")?;
        let local_rank = to_c_int(env.local_rank, "local_rank")?;
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        // With an agent store (torchrun) everyone is a client; otherwise rank 0 serves.
        let is_server = c_int::from(env.agent_store_prefix.is_none() && env.rank == 0);
        let mut raw: *mut c_void = std::ptr::null_mut();
        ffi::check(|err| unsafe {
            // SAFETY: the strings outlive the call; `raw` is written only on success.
            ffi::cbd_init(
                addr.as_ptr(),
                env.master_port,
                rank,
                world_size,
                timeout_ms,
                is_server,
                prefix.as_ptr(),
                backend.shim_id(),
                local_rank,
                &mut raw,
                err,
            )
        })
        .map_err(init_error)?;
        let raw =
            NonNull::new(raw).ok_or_else(|| init_error("the shim returned no group".into()))?;
        Ok(Self {
            raw,
            backend,
            rank: env.rank,
            world_size: env.world_size,
            local_rank: env.local_rank,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the tensors given to the collectives must be: CPU for Gloo, `cuda:LOCAL_RANK` for
    /// NCCL.
    pub fn device(&self) -> Device {
        self.backend.device(self.local_rank)
    }

    /// Replaces `tensor` (dense, contiguous, floating point) by its mean over all ranks.
    pub fn all_reduce_mean(&self, tensor: &mut Tensor) -> Result<(), DistError> {
        let raw = self.raw.as_ptr();
        self.collective("all_reduce_mean", |err| unsafe {
            // SAFETY: `raw` is a live group; the tensor pointer is valid for the call.
            ffi::cbd_all_reduce_mean(raw, tensor.as_mut_ptr(), err)
        })
    }

    /// Overwrites `tensor` on every rank with its value on `root`.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<(), DistError> {
        if root >= self.world_size {
            return Err(DistError::InvalidArgument {
                op: "broadcast",
                reason: format!(
                    "root {root} is not a rank of a group of {}",
                    self.world_size
                ),
            });
        }
        let root = to_c_int(root, "root")?;
        let raw = self.raw.as_ptr();
        self.collective("broadcast", |err| unsafe {
            // SAFETY: as in all_reduce_mean.
            ffi::cbd_broadcast(raw, tensor.as_mut_ptr(), root, err)
        })
    }

    /// Every rank's `values`, indexed by rank (lengths may differ between ranks): for gathering
    /// evaluation metrics or counts.
    pub fn all_gather_f64(&self, values: &[f64]) -> Result<Vec<Vec<f64>>, DistError> {
        let len = i64::try_from(values.len()).map_err(|_| DistError::InvalidArgument {
            op: "all_gather_f64",
            reason: format!("{} values are too many", values.len()),
        })?;
        let lengths: Vec<Vec<i64>> =
            self.all_gather(&Tensor::f_from_slice(&[len])?, Kind::Int64)?;
        let lengths: Vec<usize> = lengths.iter().map(|l| l[0] as usize).collect();
        // Gloo gathers equal shapes: pad to the longest, cut back after.
        let longest = lengths.iter().copied().max().unwrap_or(0);
        if longest == 0 {
            return Ok(vec![Vec::new(); self.world_size]);
        }
        let mut padded = values.to_vec();
        padded.resize(longest, 0.0);
        let gathered = self.all_gather(&Tensor::f_from_slice(&padded)?, Kind::Double)?;
        Ok(gathered
            .into_iter()
            .zip(lengths)
            .map(|(mut row, n)| {
                row.truncate(n);
                row
            })
            .collect())
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<(), DistError> {
        let raw = self.raw.as_ptr();
        // SAFETY: `raw` is a live group.
        self.collective("barrier", |err| unsafe { ffi::cbd_barrier(raw, err) })
    }

    /// Gathers a 1-d CPU tensor of `kind` from every rank into one row per rank (through
    /// [`ProcessGroup::device`]).
    fn all_gather<T: tch::kind::Element + Copy + Default>(
        &self,
        input: &Tensor,
        kind: Kind,
    ) -> Result<Vec<Vec<T>>, DistError> {
        let n = input.size1()? as usize;
        let input = input.f_to_device(self.device())?;
        let mut output =
            Tensor::f_zeros([self.world_size as i64, n as i64], (kind, self.device()))?;
        let raw = self.raw.as_ptr();
        self.collective("all_gather", |err| unsafe {
            // SAFETY: as in all_reduce_mean; `output` is [world_size, n] like the shim expects.
            ffi::cbd_all_gather(raw, input.as_ptr(), output.as_mut_ptr(), err)
        })?;
        let output = output.f_to_device(Device::Cpu)?;
        let mut flat = vec![T::default(); self.world_size * n];
        output.f_copy_data(&mut flat, self.world_size * n)?;
        Ok(flat.chunks(n).map(<[T]>::to_vec).collect())
    }

    fn collective(
        &self,
        op: &'static str,
        call: impl FnOnce(*mut *mut std::ffi::c_char) -> c_int,
    ) -> Result<(), DistError> {
        ffi::check(call).map_err(|message| DistError::Collective {
            op,
            rank: self.rank,
            message,
        })
    }
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("backend", &self.backend)
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("local_rank", &self.local_rank)
            .finish()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: made by cbd_init, destroyed once.
        unsafe { ffi::cbd_destroy(self.raw.as_ptr()) }
    }
}

fn to_c_int(value: usize, what: &'static str) -> Result<c_int, DistError> {
    c_int::try_from(value).map_err(|_| DistError::InvalidArgument {
        op: "init",
        reason: format!("{what} {value} does not fit a C int"),
    })
}
