//! torch.distributed's c10d from Rust: a TCPStore rendezvous and a Gloo process group, joined
//! from the variables torchrun, Slurm and Kubeflow's PyTorchJob set, so a ConvBERT process is a
//! first-class worker of a PyTorch distributed job.
//!
//! ```no_run
//! # fn main() -> Result<(), convbert_distributed::DistError> {
//! let group = convbert_distributed::ProcessGroup::from_env()?;
//! let mut grad = tch::Tensor::ones([4], (tch::Kind::Float, tch::Device::Cpu));
//! group.all_reduce_mean(&mut grad)?;
//! # Ok(()) }
//! ```

mod env;
mod error;
mod ffi;
mod group;

pub use env::DistEnv;
pub use error::DistError;
pub use group::{ProcessGroup, DEFAULT_TIMEOUT};
