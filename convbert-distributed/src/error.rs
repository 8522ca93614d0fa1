use std::time::Duration;

/// What went wrong joining or using a process group.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("environment variable {name} is not set (launch with torchrun, srun, or set MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE)")]
    MissingEnv { name: &'static str },
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    BadEnv {
        name: &'static str,
        value: String,
        reason: String,
    },
    /// The rendezvous failed: the store did not answer, or not all ranks joined, within the timeout.
    #[error("rank {rank} of {world_size} could not join the process group at {addr}:{port} (timeout {timeout:?}): {message}")]
    Init {
        addr: String,
        port: u16,
        rank: usize,
        world_size: usize,
        timeout: Duration,
        message: String,
    },
    /// A collective failed, typically because a peer died or did not take part in time.
    #[error("{op} failed on rank {rank} (a peer exited, timed out or called another collective): {message}")]
    Collective {
        op: &'static str,
        rank: usize,
        message: String,
    },
    #[error("{op}: {reason}")]
    InvalidArgument { op: &'static str, reason: String },
    #[error(transparent)]
    Tensor(#[from] tch::TchError),
}
