//! torch.distributed's c10d from Rust: a TCPStore rendezvous and a Gloo process group, joined
//! from the variables torchrun, Slurm and Kubeflow's PyTorchJob set, so a ConvBERT process is a
//! first-class worker of a PyTorch distributed job.
//!
//! Gloo (CPU) is always built. The `nccl` feature adds `Backend::Nccl` (CUDA tensors); it
//! needs the CUDA runtime headers, including `crt/` and CCCL's `nv/`, and `nccl.h` at build time:
//! `CONVBERT_CUDA_INCLUDE` (a path list), `CUDA_HOME`, or the nvidia-* wheels beside a PyPI torch
//! (add `nvidia-cuda-crt` and `nvidia-cuda-cccl` of the wheel's CUDA version, e.g. 13.0.88 and
//! 13.0.85 for torch 2.11.0+cu130).
//!
//! ```no_run
//! # fn main() -> Result<(), convbert_distributed::DistError> {
//! let group = convbert_distributed::ProcessGroup::from_env()?;
//! let mut grad = tch::Tensor::ones([4], (tch::Kind::Float, tch::Device::Cpu));
//! group.all_reduce_mean(&mut grad)?;
//! # Ok(()) }
//! ```

mod backend;
mod env;
mod error;
mod ffi;
mod group;

pub use backend::Backend;
pub use env::DistEnv;
pub use error::DistError;
pub use group::{ProcessGroup, DEFAULT_TIMEOUT};
