//! The tf-keras legacy `save_weights` HDF5 layout that `TFConvBert*.save_pretrained` writes as
//! `tf_model.h5`: read every weight (in place, as byte ranges of the file) and write one.
//!
//! Layout (tf-keras 2.21.0 `saving/legacy/hdf5_format.py`, `save_weights_to_hdf5_group` and
//! `load_attributes_from_hdf5_group`; read by HF v4.57.6 `modeling_tf_utils.load_tf_weights_from_h5`):
//! root attribute `layer_names`; one group per layer with attribute `weight_names` (split into
//! `weight_names0`, `weight_names1`, … past 64 KB; an empty float64 array for a weightless layer);
//! each weight a dataset at `/<layer>/<weight name>`, the name holding `/` (nested groups).
//! Parsing is `hdf5-pure` over the borrowed bytes; the data itself is never copied.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use hdf5_pure::{
    AttrValue, Datatype, DatatypeByteOrder, File, FileBuilder, FormatError, GroupBuilder, Layout,
    Source,
};
use tch::Kind;

use super::raw::RawTensor;
use crate::error::{ConvBertError, Result};

/// What `TFConvBert*.save_pretrained` records as the writing Keras (tf-keras 2.21.0).
const KERAS_VERSION: &str = "2.21.0";

/// Every weight of a `tf_model.h5`, in file order: `name` is `<layer>/<weight name>` as stored
/// (e.g. `convbert/tf_conv_bert_model/convbert/embeddings/word_embeddings/weight:0`), `start`/
/// `len` the byte range of its contiguous little-endian data inside `bytes` (the whole file).
pub(crate) fn read_weights(path: &Path, bytes: &[u8]) -> Result<Vec<RawTensor>> {
    let window = Window::new(bytes);
    let source = window.source();
    // hdf5-pure is not known to panic, but the bytes are untrusted: a panic becomes an error.
    let read = panic::catch_unwind(AssertUnwindSafe(|| read_file(path, bytes.len(), source)));
    drop(window);
    read.unwrap_or_else(|_| Err(bad(path, "the HDF5 parser panicked")))
}

/// One Keras layer of a file to write: its name and its weights (full weight name, shape, f32
/// values in row-major order), in order.
pub(crate) struct H5Layer {
    pub name: String,
    pub weights: Vec<(String, Vec<i64>, Vec<f32>)>,
}

/// Writes `layers` as a tf-keras `save_weights` HDF5 file at `path` (the caller makes it atomic).
/// Names are variable-length UTF-8 strings (what h5py hands back as `str`); a layer without
/// weights gets an empty float64 `weight_names`, as Keras writes it.
pub(crate) fn write_weights(path: &Path, layers: &[H5Layer]) -> Result<()> {
    let mut file = FileBuilder::new();
    let layer_names = layers.iter().map(|l| l.name.clone()).collect();
    file.set_attr("layer_names", AttrValue::VarLenStringArray(layer_names));
    file.set_attr("backend", AttrValue::VarLenString("tensorflow".into()));
    file.set_attr(
        "keras_version",
        AttrValue::VarLenString(KERAS_VERSION.into()),
    );
    for layer in layers {
        check_link(path, &layer.name)?;
        let mut tree = Tree::default();
        for (name, shape, values) in &layer.weights {
            let dims = dims(path, name, shape, values.len())?;
            tree.insert(path, name, (dims, values))?;
        }
        let mut group = file.create_group(&layer.name);
        let names: Vec<String> = layer.weights.iter().map(|w| w.0.clone()).collect();
        group.set_attr(
            "weight_names",
            if names.is_empty() {
                AttrValue::F64Array(Vec::new())
            } else {
                AttrValue::VarLenStringArray(names)
            },
        );
        tree.build(&mut group);
        file.add_group(group.finish());
    }
    file.write(path).map_err(|e| bad_write(path, e))
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> ConvBertError {
    ConvBertError::checkpoint(path, format!("not a valid tf_model.h5: {reason}"))
}

fn bad_write(path: &Path, e: hdf5_pure::Error) -> ConvBertError {
    match e {
        hdf5_pure::Error::Io(e) => ConvBertError::io(path, e),
        e => ConvBertError::checkpoint(path, format!("cannot write tf_model.h5: {e}")),
    }
}

/// The reading half: `layer_names`, then each layer's `weight_names`, then each dataset.
fn read_file(path: &Path, file_len: usize, source: WindowSource) -> Result<Vec<RawTensor>> {
    let file = File::from_source(source).map_err(|e| bad(path, e))?;
    // libhdf5 (and so h5py and Keras) refuses a file shorter than the end its superblock
    // records: whatever was cut off, the file is not the one that was written.
    let sb = file.superblock();
    let end = sb.base_address.get().saturating_add(sb.eof_address);
    if (file_len as u64) < end {
        return Err(bad(
            path,
            format!("truncated: {file_len} bytes, its superblock records {end}"),
        ));
    }
    let root = file.root().attrs().map_err(|e| bad(path, e))?;
    let layers = string_list(&root, "layer_names").ok_or_else(|| {
        ConvBertError::checkpoint(path, "not a Keras weights file (no layer_names attribute)")
    })?;
    let layers = layers.map_err(|e| bad(path, format!("root attribute {e}")))?;
    let mut out = Vec::new();
    for layer in &layers {
        let group = file.group(layer).map_err(|e| match e {
            hdf5_pure::Error::Format(FormatError::PathNotFound(_)) => {
                ConvBertError::checkpoint(path, format!("missing layer {layer:?} (in layer_names)"))
            }
            e => bad(path, format!("layer {layer:?}: {e}")),
        })?;
        let attrs = group
            .attrs()
            .map_err(|e| bad(path, format!("layer {layer:?}: {e}")))?;
        let weights = match string_list(&attrs, "weight_names") {
            None => Vec::new(), // Keras writes nothing at all only for a layer it never saved.
            Some(names) => {
                names.map_err(|e| bad(path, format!("layer {layer:?}: attribute {e}")))?
            }
        };
        for weight in &weights {
            let missing = || {
                ConvBertError::checkpoint(
                    path,
                    format!("missing weight {weight:?} of layer {layer:?} (in weight_names)"),
                )
            };
            let dataset = group.dataset(weight).map_err(|e| match e {
                hdf5_pure::Error::Format(FormatError::PathNotFound(_)) => missing(),
                e => bad(path, format!("{layer}/{weight}: {e}")),
            })?;
            let name = format!("{layer}/{weight}");
            let fail = |e: hdf5_pure::Error| bad(path, format!("{name}: {e}"));
            let datatype = dataset.datatype().map_err(fail)?;
            let shape = dataset.shape().map_err(fail)?;
            let layout = dataset.layout().map_err(fail)?;
            let (kind, dtype, size) = element(&datatype)
                .ok_or_else(|| bad(path, format!("{name}: unsupported datatype {datatype:?}")))?;
            out.push(place(
                path, name, kind, dtype, size, &shape, &layout, file_len,
            )?);
        }
    }
    Ok(out)
}

/// The `RawTensor` of one dataset: its shape as i64 and its data's byte range, checked to be
/// contiguous, of numel × element size bytes, and inside the file.
#[allow(clippy::too_many_arguments)]
fn place(
    path: &Path,
    name: String,
    kind: Kind,
    dtype: &str,
    size: usize,
    shape: &[u64],
    layout: &Layout,
    file_len: usize,
) -> Result<RawTensor> {
    let fail = |reason: String| bad(path, format!("{name}: {reason}"));
    let mut numel: usize = 1;
    let mut dims = Vec::with_capacity(shape.len());
    for &d in shape {
        let di = i64::try_from(d).map_err(|_| fail(format!("dimension {d} too large")))?;
        numel = usize::try_from(d)
            .ok()
            .and_then(|d| numel.checked_mul(d))
            .ok_or_else(|| fail(format!("shape {shape:?} too large")))?;
        dims.push(di);
    }
    let len = numel
        .checked_mul(size)
        .ok_or_else(|| fail(format!("shape {shape:?} too large")))?;
    let start = match *layout {
        Layout::Contiguous {
            address: Some(address),
            size: stored,
        } => {
            if stored != len as u64 {
                return Err(fail(format!(
                    "{stored} data bytes stored, shape {shape:?} of {dtype} needs {len}"
                )));
            }
            let start = usize::try_from(address)
                .map_err(|_| fail(format!("data address {address} too large")))?;
            match start.checked_add(len) {
                Some(end) if end <= file_len => start,
                _ => {
                    return Err(fail(format!(
                        "data at bytes {address}..+{len} runs past the end of the file ({file_len} bytes)"
                    )))
                }
            }
        }
        // A never-written dataset with no elements has no storage: nothing to read.
        Layout::Contiguous { address: None, .. } if len == 0 => 0,
        Layout::Contiguous { address: None, .. } => return Err(fail("data never written".into())),
        ref other => {
            return Err(fail(format!(
                "not contiguous ({}): only uncompressed contiguous datasets are read in place",
                layout_name(other)
            )))
        }
    };
    Ok(RawTensor {
        name,
        kind,
        dtype: dtype.to_string(),
        shape: dims,
        file: 0,
        start,
        len,
    })
}

fn layout_name(layout: &Layout) -> &'static str {
    match layout {
        Layout::Compact { .. } => "compact",
        Layout::Chunked { .. } => "chunked",
        Layout::Virtual => "virtual",
        _ => "unknown layout",
    }
}

/// Kind, numpy name and byte size of a little-endian numeric element; `None` for anything else.
fn element(datatype: &Datatype) -> Option<(Kind, &'static str, usize)> {
    match datatype {
        Datatype::FloatingPoint {
            size,
            byte_order: DatatypeByteOrder::LittleEndian,
            ..
        } => match size {
            2 => Some((Kind::Half, "float16", 2)),
            4 => Some((Kind::Float, "float32", 4)),
            8 => Some((Kind::Double, "float64", 8)),
            _ => None,
        },
        Datatype::FixedPoint {
            size,
            byte_order: DatatypeByteOrder::LittleEndian,
            layout,
        } => match (size, layout.signed) {
            (1, true) => Some((Kind::Int8, "int8", 1)),
            (1, false) => Some((Kind::Uint8, "uint8", 1)),
            (2, true) => Some((Kind::Int16, "int16", 2)),
            (4, true) => Some((Kind::Int, "int32", 4)),
            (8, true) => Some((Kind::Int64, "int64", 8)),
            _ => None,
        },
        _ => None,
    }
}

/// The strings of attribute `name`, or of `name0`, `name1`, … in numeric order when Keras split
/// it; `None` when neither exists. An empty numeric array (Keras' `np.asarray([])`) is no names.
fn string_list(
    attrs: &HashMap<String, AttrValue>,
    name: &str,
) -> Option<std::result::Result<Vec<String>, String>> {
    let strings = |key: &str, value: &AttrValue| match value.as_strings() {
        Some(s) => Ok(s.to_vec()),
        None if value.to_f64s().is_some_and(|v| v.is_empty()) => Ok(Vec::new()),
        None => Err(format!("{key} is {}, not strings", value.type_name())),
    };
    if let Some(value) = attrs.get(name) {
        return Some(strings(name, value));
    }
    let mut out = Vec::new();
    let mut chunk = 0usize;
    while let Some(value) = attrs.get(&format!("{name}{chunk}")) {
        match strings(&format!("{name}{chunk}"), value) {
            Ok(s) => out.extend(s),
            Err(e) => return Some(Err(e)),
        }
        chunk += 1;
    }
    (chunk > 0).then_some(Ok(out))
}

/// `shape` as HDF5 dimensions, checked against the number of values.
fn dims(path: &Path, name: &str, shape: &[i64], values: usize) -> Result<Vec<u64>> {
    let dims: Option<Vec<u64>> = shape.iter().map(|&d| u64::try_from(d).ok()).collect();
    let numel = dims
        .as_ref()
        .and_then(|d| d.iter().try_fold(1u64, |n, &d| n.checked_mul(d)));
    match (dims, numel) {
        (Some(dims), Some(n)) if n == values as u64 => Ok(dims),
        _ => Err(ConvBertError::checkpoint(
            path,
            format!("weight {name:?}: shape {shape:?} does not hold {values} values"),
        )),
    }
}

/// HDF5 link names: not empty, not `.`, no `/` (hdf5-pure would fail the write, less clearly).
fn check_link(path: &Path, component: &str) -> Result<()> {
    if component.is_empty() || component == "." || component.contains('/') {
        return Err(ConvBertError::checkpoint(
            path,
            format!("{component:?} cannot be an HDF5 group or dataset name"),
        ));
    }
    Ok(())
}

/// A layer's weights as nested groups: the `/`-separated parts of each weight name.
#[derive(Default)]
struct Tree<'a> {
    groups: BTreeMap<&'a str, Tree<'a>>,
    datasets: BTreeMap<&'a str, (Vec<u64>, &'a [f32])>,
}

impl<'a> Tree<'a> {
    fn insert(&mut self, path: &Path, name: &'a str, data: (Vec<u64>, &'a [f32])) -> Result<()> {
        let clash = || {
            ConvBertError::checkpoint(path, format!("weight {name:?} clashes with another weight"))
        };
        let mut node = self;
        let mut parts = name.split('/').peekable();
        while let Some(part) = parts.next() {
            check_link(path, part)?;
            if parts.peek().is_none() {
                if node.groups.contains_key(part) || node.datasets.insert(part, data).is_some() {
                    return Err(clash());
                }
                return Ok(());
            }
            if node.datasets.contains_key(part) {
                return Err(clash());
            }
            node = node.groups.entry(part).or_default();
        }
        Ok(())
    }

    fn build(&self, group: &mut GroupBuilder) {
        for (name, sub) in &self.groups {
            let mut child = group.create_group(name);
            sub.build(&mut child);
            group.add_group(child.finish());
        }
        for (name, (dims, values)) in &self.datasets {
            group
                .create_dataset(name)
                .with_f32_data(values)
                .with_shape(dims);
        }
    }
}

/// The borrowed file as an hdf5-pure [`Source`], which must be `'static`: the source reads
/// through a pointer that this guard withdraws (under the write lock) before the borrow ends,
/// so no read can outlive `bytes` even if the parser kept a copy of the source.
struct Window<'a> {
    shared: Arc<RwLock<Option<(usize, usize)>>>,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> Window<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let span = (bytes.as_ptr() as usize, bytes.len());
        Window {
            shared: Arc::new(RwLock::new(Some(span))),
            _bytes: PhantomData,
        }
    }

    fn source(&self) -> WindowSource {
        WindowSource(Arc::clone(&self.shared))
    }
}

impl Drop for Window<'_> {
    fn drop(&mut self) {
        *self.shared.write().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

struct WindowSource(Arc<RwLock<Option<(usize, usize)>>>);

impl Source for WindowSource {
    fn len(&self) -> u64 {
        let span = *self.0.read().unwrap_or_else(PoisonError::into_inner);
        span.map_or(0, |(_, len)| len as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), FormatError> {
        let guard = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let Some((ptr, len)) = *guard else {
            return Err(FormatError::Source(
                "the file's bytes are no longer borrowed".into(),
            ));
        };
        // SAFETY: `ptr..ptr + len` is the `&'a [u8]` a live `Window<'a>` was made from: the
        // window clears the span under the write lock before `'a` ends, and this read lock is
        // held until the copy below is done.
        let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        let eof = FormatError::UnexpectedEof {
            expected: usize::MAX,
            available: len,
        };
        let start = usize::try_from(offset).map_err(|_| eof.clone())?;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= len)
            .ok_or(eof)?;
        buf.copy_from_slice(&bytes[start..end]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn data(name: &str) -> (PathBuf, Vec<u8>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/h5")
            .join(name);
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    fn fnv1a64(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("convbert-tf-h5-{}-{tag}.h5", std::process::id()))
    }

    fn error(result: Result<Vec<RawTensor>>) -> String {
        result.expect_err("expected an error").to_string()
    }

    #[test]
    fn reads_a_save_pretrained_file_in_place() {
        let (path, bytes) = data("tf_model.h5");
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap())
                .unwrap();
        let expected = expected["weights"].as_array().unwrap();
        let got = read_weights(&path, &bytes).unwrap();
        assert_eq!(got.len(), expected.len());
        for (t, e) in got.iter().zip(expected) {
            assert_eq!(t.name, e["name"].as_str().unwrap());
            assert_eq!(
                (t.kind, t.dtype.as_str(), t.file),
                (Kind::Float, "float32", 0)
            );
            let shape: Vec<i64> = e["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            assert_eq!(t.shape, shape, "{}", t.name);
            assert_eq!(
                t.len,
                4 * shape.iter().product::<i64>() as usize,
                "{}",
                t.name
            );
            assert_eq!(
                fnv1a64(&bytes[t.start..t.start + t.len]),
                e["fnv1a64"].as_u64().unwrap(),
                "{}",
                t.name
            );
        }
        assert!(got[0]
            .name
            .starts_with("convbert/tf_conv_bert_for_sequence_classification/convbert/"));
        assert!(got.last().unwrap().name.starts_with("classifier/"));
    }

    #[test]
    fn reads_split_fixed_length_names_empty_layers_and_other_dtypes() {
        let (path, bytes) = data("odd.h5");
        let got = read_weights(&path, &bytes).unwrap();
        let summary: Vec<_> = got
            .iter()
            .map(|t| (t.name.as_str(), t.kind, t.dtype.as_str(), t.shape.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "split/m/split/a/kernel:0",
                    Kind::Half,
                    "float16",
                    vec![2, 3]
                ),
                ("split/m/split/b:0", Kind::Double, "float64", vec![4]),
                ("split/m/split/c:0", Kind::Int, "int32", vec![3]),
            ]
        );
        let ints: Vec<i32> = bytes[got[2].start..got[2].start + got[2].len]
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(ints, [0, 1, 2]);
        assert_eq!(got[0].len, 12);
    }

    #[test]
    fn a_chunked_dataset_is_an_error_naming_it() {
        let (path, bytes) = data("chunked.h5");
        let e = error(read_weights(&path, &bytes));
        assert!(
            e.contains("dense/m/dense/kernel:0") && e.contains("not contiguous"),
            "{e}"
        );
    }

    #[test]
    fn missing_attributes_layers_and_weights_are_named() {
        let build = |f: &dyn Fn(&mut FileBuilder)| {
            let mut b = FileBuilder::new();
            f(&mut b);
            b.finish().unwrap()
        };
        let path = Path::new("x.h5");
        let none = build(&|b| b.set_attr("backend", AttrValue::VarLenString("tensorflow".into())));
        assert!(error(read_weights(path, &none)).contains("no layer_names attribute"));
        let layer = build(&|b| {
            b.set_attr(
                "layer_names",
                AttrValue::VarLenStringArray(vec!["dense".into()]),
            )
        });
        assert!(error(read_weights(path, &layer)).contains("missing layer \"dense\""));
        let weight = build(&|b| {
            b.set_attr(
                "layer_names",
                AttrValue::VarLenStringArray(vec!["dense".into()]),
            );
            let mut g = b.create_group("dense");
            g.set_attr(
                "weight_names",
                AttrValue::VarLenStringArray(vec!["m/dense/kernel:0".into()]),
            );
            b.add_group(g.finish());
        });
        let e = error(read_weights(path, &weight));
        assert!(
            e.contains("missing weight \"m/dense/kernel:0\" of layer \"dense\""),
            "{e}"
        );
    }

    #[test]
    fn written_files_read_back_equal() {
        let (path, bytes) = data("tf_model.h5");
        let read = read_weights(&path, &bytes).unwrap();
        let mut layers: Vec<H5Layer> = Vec::new();
        for t in &read {
            let (layer, weight) = t.name.split_once('/').unwrap();
            let values = bytes[t.start..t.start + t.len]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            if layers.last().is_none_or(|l| l.name != layer) {
                layers.push(H5Layer {
                    name: layer.to_string(),
                    weights: Vec::new(),
                });
            }
            layers
                .last_mut()
                .unwrap()
                .weights
                .push((weight.to_string(), t.shape.clone(), values));
        }
        layers.push(H5Layer {
            name: "dropout".into(),
            weights: Vec::new(),
        });
        let out = temp_path("roundtrip");
        write_weights(&out, &layers).unwrap();
        let written = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        let again = read_weights(&out, &written).unwrap();
        assert_eq!(again.len(), read.len());
        for (a, b) in again.iter().zip(&read) {
            assert_eq!((&a.name, &a.shape, a.kind), (&b.name, &b.shape, b.kind));
            assert_eq!(
                written[a.start..a.start + a.len],
                bytes[b.start..b.start + b.len],
                "{}",
                a.name
            );
        }
        let file = File::from_bytes(written).unwrap();
        let root = file.root().attrs().unwrap();
        assert_eq!(root["backend"].as_str(), Some("tensorflow"));
        assert_eq!(root["keras_version"].as_str(), Some(KERAS_VERSION));
    }

    #[test]
    fn bad_shapes_and_names_are_refused_on_write() {
        let out = temp_path("refused");
        let write = |name: &str, shape: Vec<i64>, n: usize| {
            let layer = H5Layer {
                name: "dense".into(),
                weights: vec![(name.into(), shape, vec![0.0; n])],
            };
            write_weights(&out, &[layer])
                .expect_err("expected an error")
                .to_string()
        };
        assert!(write("m/k:0", vec![2, 3], 5).contains("does not hold 5 values"));
        assert!(write("m/k:0", vec![-1], 1).contains("does not hold"));
        assert!(write("m//k:0", vec![1], 1).contains("cannot be an HDF5"));
        assert!(!out.exists());
    }

    /// Truncations and byte flips of a real file: every outcome is `Ok` (with ranges inside the
    /// bytes) or `Err`, never a panic, in the parser or here.
    #[test]
    fn corrupt_files_never_panic() {
        let (path, bytes) = data("tf_model.h5");
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        let mut cut = 0;
        while cut < bytes.len() {
            inputs.push(bytes[..cut].to_vec());
            cut += 1 + cut / 8;
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..400 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 8 {
                // Most flips land in the metadata of the first 10 KB, where they matter.
                let at = (next()
                    % if next() % 2 == 0 {
                        10_000
                    } else {
                        b.len() as u64
                    }) as usize;
                b[at] ^= 1 << (next() % 8);
            }
            inputs.push(b);
        }
        let mut panics = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let window = Window::new(input);
            let source = window.source();
            let inner =
                panic::catch_unwind(AssertUnwindSafe(|| read_file(&path, input.len(), source)));
            drop(window);
            match inner {
                Err(_) => panics.push(i),
                Ok(Ok(tensors)) => assert!(tensors.iter().all(|t| t.start + t.len <= input.len())),
                Ok(Err(_)) => {}
            }
            let _ = read_weights(&path, input);
        }
        assert!(
            panics.is_empty(),
            "the parser panicked on inputs {panics:?}"
        );
    }
}
