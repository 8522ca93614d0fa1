//! A tensor as a foreign file stores it, before names and layouts are mapped to PyTorch's.

use tch::Kind;

/// One stored tensor: its name in the file, element kind (and the file's own name for the dtype,
/// for messages), shape in the file's layout, and where its contiguous row-major little-endian
/// bytes lie.
#[derive(Debug, Clone)]
pub(crate) struct RawTensor {
    pub name: String,
    pub kind: Kind,
    pub dtype: String,
    pub shape: Vec<i64>,
    /// Index of the file holding the bytes (0 for single-file formats).
    pub file: usize,
    pub start: usize,
    pub len: usize,
}
