//! TensorFlow 1 checkpoints (a "tensor bundle": `<prefix>.index` + `<prefix>.data-0000i-of-0000n`),
//! as the original ConvBERT/ELECTRA code saves them.

use std::path::{Path, PathBuf};

use super::raw::RawTensor;
use crate::error::Result;

/// A bundle's data shards (in shard order) and every tensor entry of its index; a tensor's
/// `file` is its shard's index in `shards`, `start`/`len` its byte range there.
pub(crate) struct Bundle {
    pub shards: Vec<PathBuf>,
    pub tensors: Vec<BundleTensor>,
}

pub(crate) struct BundleTensor {
    pub raw: RawTensor,
    /// The crc32c (unmasked) of the tensor's bytes, as the index records it.
    pub crc32c: u32,
}

/// The checkpoint prefix `dir` holds: the `model_checkpoint_path` of its `checkpoint` file
/// (relative to `dir`), or None when `dir` has no `checkpoint` file.
pub(crate) fn prefix_in_dir(dir: &Path) -> Result<Option<PathBuf>> {
    let _ = dir;
    Ok(None)
}

/// Reads `<prefix>.index`, checking its table checksums, and finds every data shard.
pub(crate) fn read_index(prefix: &Path) -> Result<Bundle> {
    Err(crate::error::ConvBertError::checkpoint(prefix, "TF1 checkpoints are not built yet"))
}
