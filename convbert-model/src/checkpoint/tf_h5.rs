//! The tf-keras legacy `save_weights` HDF5 layout that `TFConvBert*.save_pretrained` writes as
//! `tf_model.h5`: read every weight (in place, as byte ranges of the file) and write one.

use std::path::Path;

use super::raw::RawTensor;
use crate::error::Result;

/// Every weight of a `tf_model.h5`, in file order: `name` is `<layer>/<weight name>` as stored
/// (e.g. `convbert/tf_conv_bert_model/convbert/embeddings/word_embeddings/weight:0`), `start`/
/// `len` the byte range of its contiguous little-endian data inside `bytes` (the whole file).
pub(crate) fn read_weights(path: &Path, bytes: &[u8]) -> Result<Vec<RawTensor>> {
    let _ = (path, bytes);
    Err(crate::error::ConvBertError::checkpoint(path, "tf_model.h5 reading is not built yet"))
}

/// One Keras layer of a file to write: its name and its weights (full weight name, shape, f32
/// values in row-major order), in order.
pub(crate) struct H5Layer {
    pub name: String,
    pub weights: Vec<(String, Vec<i64>, Vec<f32>)>,
}

/// Writes `layers` as a tf-keras `save_weights` HDF5 file at `path` (the caller makes it atomic).
pub(crate) fn write_weights(path: &Path, layers: &[H5Layer]) -> Result<()> {
    let _ = layers;
    Err(crate::error::ConvBertError::checkpoint(path, "tf_model.h5 writing is not built yet"))
}
