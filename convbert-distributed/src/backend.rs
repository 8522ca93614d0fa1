use tch::Device;

/// The c10d backend a [`crate::ProcessGroup`] runs its collectives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// CPU tensors over TCP (torch's `"gloo"`); always built.
    Gloo,
    /// CUDA tensors on `cuda:LOCAL_RANK` over NCCL (torch's `"nccl"`); the `nccl` feature.
    #[cfg(feature = "nccl")]
    Nccl,
}

impl Backend {
    /// The id src/shim.cpp knows the backend by.
    pub(crate) fn shim_id(self) -> i32 {
        match self {
            Backend::Gloo => 0,
            #[cfg(feature = "nccl")]
            Backend::Nccl => 1,
        }
    }

    /// Where this backend's tensors live for a process with `local_rank`.
    pub(crate) fn device(self, local_rank: usize) -> Device {
        match self {
            Backend::Gloo => {
                let _ = local_rank;
                Device::Cpu
            }
            #[cfg(feature = "nccl")]
            Backend::Nccl => Device::Cuda(local_rank),
        }
    }
}
