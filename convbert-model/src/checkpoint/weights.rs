//! Read-only access to the tensors of an HF checkpoint: `model.safetensors` (memory-mapped, read
//! in place), `pytorch_model.bin` (a `torch.save` zip archive, memory-mapped; storages are read in
//! place and described by the pickle), and their sharded `*.index.json` variants; TensorFlow's
//! `tf_model.h5` and TF1 checkpoints, whose names and layouts are mapped to PyTorch's as strided
//! views of the mapped files.
//! Formats: <https://github.com/huggingface/safetensors#format>,
//! <https://github.com/pytorch/pytorch/blob/v2.11.0/torch/serialization.py>.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Cursor;
use std::path::{Component, Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

use super::raw::RawTensor;
use super::tf_names::{self, Layout};
use super::{clip, pickle, read_json_file, tf_bundle, tf_h5};
use crate::error::{ConvBertError, Result};

/// Highest tensor rank accepted from a file (libtorch itself stops at 64 in places).
const MAX_RANK: usize = 64;
/// Longest tensor name quoted in an error.
const NAME_CHARS: usize = 200;

/// The weight file names `from_pretrained` looks for, in order of preference (HF's: PyTorch
/// weights win over TensorFlow ones); then a TF1 checkpoint named by a `checkpoint` file.
pub const WEIGHT_FILES: [&str; 5] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "tf_model.h5",
];

#[derive(Debug)]
struct Entry {
    file: usize,
    kind: Kind,
    /// The dtype as the file names it ("I32", "FloatStorage"), for error messages.
    dtype: String,
    shape: Vec<i64>,
    /// Byte range of the storage inside the mapped file.
    start: usize,
    len: usize,
    /// Element offset and strides inside the storage (contiguous for safetensors).
    offset: i64,
    stride: Vec<i64>,
}

/// Every tensor of a checkpoint, by name, backed by memory-mapped files (nothing copied until a
/// tensor is requested).
#[derive(Debug)]
pub struct Weights {
    files: Vec<(PathBuf, Mmap)>,
    entries: BTreeMap<String, Entry>,
    /// The file that was opened (`*.index.json`, `tf_model.h5`, a TF1 `.index`, …).
    source: PathBuf,
    /// Stored tensors that map to no PyTorch weight, by their stored names.
    skipped: Vec<String>,
}

/// Row-major strides; `None` when they overflow i64 (only possible with a zero-sized dim, since
/// the element count of a tensor with data fits its file).
fn contiguous_strides(shape: &[i64]) -> Option<Vec<i64>> {
    let mut strides = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1].checked_mul(shape[i + 1].max(1))?;
    }
    Some(strides)
}

/// One past the last storage element a strided view touches (0 for an empty view), in checked
/// arithmetic: `None` on a negative size, stride or offset, or on overflow.
fn view_extent(size: &[i64], stride: &[i64], offset: i64) -> Option<i64> {
    if size.len() != stride.len() || offset < 0 || size.iter().chain(stride).any(|&v| v < 0) {
        return None;
    }
    if size.contains(&0) {
        return Some(0);
    }
    let mut last = offset;
    for (&s, &st) in size.iter().zip(stride) {
        last = last.checked_add((s - 1).checked_mul(st)?)?;
    }
    last.checked_add(1)
}

fn safetensors_kind(d: Dtype) -> Option<Kind> {
    Some(match d {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

fn map_file(path: &Path) -> Result<Mmap> {
    // Opening a FIFO blocks and a device maps endless bytes: only regular files are read.
    let meta = std::fs::metadata(path).map_err(|e| ConvBertError::io(path, e))?;
    if !meta.is_file() {
        return Err(ConvBertError::checkpoint(
            path,
            format!("not a regular file ({:?})", meta.file_type()),
        ));
    }
    let file = File::open(path).map_err(|e| ConvBertError::io(path, e))?;
    // SAFETY: the map is read-only; a file truncated by another process while mapped is outside
    // what any reader can guard against (safetensors and torch make the same assumption).
    unsafe { Mmap::map(&file) }.map_err(|e| ConvBertError::io(path, e))
}

impl Weights {
    /// Opens the weights of an HF checkpoint directory (see [`WEIGHT_FILES`] for the order),
    /// else the TF1 checkpoint its `checkpoint` file names, else its one TF1 `.index`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        for name in WEIGHT_FILES {
            let path = dir.join(name);
            if path.is_file() {
                return Self::open(&path);
            }
        }
        if let Some(prefix) = tf_bundle::prefix_in_dir(dir)? {
            return Self::open_tf1(&prefix);
        }
        // Without a `checkpoint` file, a directory holding one TF1 checkpoint is unambiguous.
        let mut indexes: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| ConvBertError::io(dir, e))?
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "index") && p.is_file())
            .collect();
        indexes.sort();
        match indexes.as_slice() {
            [one] => return Self::open(one),
            [] => {}
            many => {
                let names: Vec<String> = many
                    .iter()
                    .take(10)
                    .map(|p| p.display().to_string())
                    .collect();
                return Err(ConvBertError::checkpoint(
                    dir,
                    format!("{} TF1 checkpoints and no `checkpoint` file naming one: name its .index file ({})", many.len(), names.join(", ")),
                ));
            }
        }
        Err(ConvBertError::NotFound {
            what: format!(
                "weights ({}, or a TF1 checkpoint named by a `checkpoint` file)",
                WEIGHT_FILES.join(", ")
            ),
            searched: vec![dir.to_path_buf()],
        })
    }

    /// Opens one file: `*.safetensors`, `*.bin` / `*.pt` (torch zip), a sharded `*.index.json`,
    /// a Keras `*.h5`, or a TF1 checkpoint (its `.index` file or its prefix).
    pub fn open(path: &Path) -> Result<Self> {
        let mut w = Weights {
            files: Vec::new(),
            entries: BTreeMap::new(),
            source: path.to_path_buf(),
            skipped: Vec::new(),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".index.json") {
            w.add_index(path)?;
        } else if name.ends_with(".h5") {
            w.add_h5(path)?;
        } else if let Some(prefix) = tf_bundle::prefix_of(path) {
            return Self::open_tf1(&prefix);
        } else {
            w.add_file(path)?;
        }
        Ok(w)
    }

    /// Opens the TF1 checkpoint `prefix` (`<prefix>.index` and its data shards), checking the
    /// crc32c of every tensor the model uses.
    fn open_tf1(prefix: &Path) -> Result<Self> {
        let bundle = tf_bundle::read_index(prefix)?;
        let mut index = prefix.as_os_str().to_owned();
        index.push(".index");
        let mut w = Weights {
            files: Vec::new(),
            entries: BTreeMap::new(),
            source: PathBuf::from(index),
            skipped: bundle.skipped,
        };
        for shard in &bundle.shards {
            w.files.push((shard.clone(), map_file(shard)?));
        }
        for t in bundle.tensors {
            let Some((key, layout)) = tf_names::tf1_to_pt(&t.raw.name, t.raw.shape.len()) else {
                w.skipped.push(t.raw.name);
                continue;
            };
            let (path, map) = w.files.get(t.raw.file).ok_or_else(|| {
                ConvBertError::checkpoint(
                    prefix,
                    format!("{}: no shard {}", t.raw.name, t.raw.file),
                )
            })?;
            let bytes = map
                .get(t.raw.start..t.raw.start.saturating_add(t.raw.len))
                .ok_or_else(|| {
                    ConvBertError::checkpoint(
                        path,
                        format!("{} lies past the end of the file", t.raw.name),
                    )
                })?;
            tf_bundle::check_crc(&t.raw.name, bytes, t.crc32c, path)?;
            let entry = mapped_entry(&w.source, t.raw, &layout)?;
            w.insert_mapped(key, entry);
        }
        Ok(w)
    }

    /// Adds a Keras `tf_model.h5`: each weight under its PyTorch key and layout.
    fn add_h5(&mut self, path: &Path) -> Result<()> {
        let map = map_file(path)?;
        let raws = tf_h5::read_weights(path, &map)?;
        let file = self.files.len();
        for mut raw in raws {
            raw.file = file;
            // Stored as `<layer>/<weight name>`; HF maps the weight name alone.
            let weight_name = raw
                .name
                .split_once('/')
                .map_or(raw.name.as_str(), |(_, w)| w);
            match tf_names::keras_to_pt(weight_name, raw.shape.len()) {
                Some((key, layout)) => {
                    let entry = mapped_entry(path, raw.clone(), &layout)?;
                    if !self.insert_mapped(key, entry) {
                        // The MLM head stores the embeddings it shares a second time.
                        self.skipped.push(raw.name);
                    }
                }
                None => self.skipped.push(raw.name),
            }
        }
        self.files.push((path.to_path_buf(), map));
        Ok(())
    }

    /// Inserts a mapped tensor unless its key is taken (HF keeps one tensor per key too).
    fn insert_mapped(&mut self, key: String, entry: Entry) -> bool {
        if self.entries.contains_key(&key) {
            return false;
        }
        self.entries.insert(key, entry);
        true
    }

    fn add_file(&mut self, path: &Path) -> Result<()> {
        let map = map_file(path)?;
        let idx = self.files.len();
        let found = if map.starts_with(b"PK") {
            zip_entries(path, &map, idx)?
        } else if is_legacy_torch(path, &map) {
            return Err(ConvBertError::checkpoint(
                path,
                "not a zip archive: the legacy torch.save format (torch < 1.6) is not supported",
            ));
        } else {
            safetensors_entries(path, &map, idx)?
        };
        let mut seen = HashSet::new();
        for (name, _) in &found {
            if !seen.insert(name.as_str()) {
                return Err(ConvBertError::checkpoint(
                    path,
                    format!(
                        "tensor {} appears twice in {}",
                        clip(name, NAME_CHARS),
                        path.display()
                    ),
                ));
            }
        }
        for (name, entry) in found {
            if let Some(old) = self.entries.insert(name.clone(), entry) {
                return Err(ConvBertError::checkpoint(
                    path,
                    format!(
                        "tensor {} appears in two shards: {} and {}",
                        clip(&name, NAME_CHARS),
                        self.files[old.file].0.display(),
                        path.display()
                    ),
                ));
            }
        }
        self.files.push((path.to_path_buf(), map));
        Ok(())
    }

    fn add_index(&mut self, path: &Path) -> Result<()> {
        let text = read_json_file(path)?;
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let index: Index = serde_json::from_str(&text).map_err(|source| ConvBertError::Json {
            path: path.into(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<&String> = index.weight_map.values().collect();
        shards.sort();
        shards.dedup();
        for shard in shards {
            // A shard is a file of the checkpoint directory, named relative to it. The check is
            // on the name, not the canonical path: HF-cache snapshots hold symlinks into blobs/.
            let plain = Path::new(shard)
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if !plain || shard.is_empty() || shard.contains('\\') {
                return Err(ConvBertError::checkpoint(
                    path,
                    format!(
                        "shard {:?} is not a file inside {}",
                        clip(shard, NAME_CHARS),
                        dir.display()
                    ),
                ));
            }
            let shard_path = dir.join(shard);
            if !shard_path.is_file() {
                return Err(ConvBertError::NotFound {
                    what: format!("shard {shard} of {}", path.display()),
                    searched: vec![shard_path],
                });
            }
            self.add_file(&shard_path)?;
        }
        let missing: Vec<&String> = index
            .weight_map
            .keys()
            .filter(|k| !self.entries.contains_key(*k))
            .collect();
        if !missing.is_empty() {
            let shown: Vec<String> = missing
                .iter()
                .take(10)
                .map(|k| clip(k, NAME_CHARS))
                .collect();
            return Err(ConvBertError::checkpoint(
                path,
                format!(
                    "index lists {} tensors absent from its shards: {shown:?}{}",
                    missing.len(),
                    if missing.len() > shown.len() {
                        " …"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(())
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the checkpoint holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Shape of a tensor as stored.
    pub fn shape(&self, name: &str) -> Option<&[i64]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Element kind of a tensor as stored.
    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.entries.get(name).map(|e| e.kind)
    }

    /// An owned copy of a tensor, converted to `kind` on `device`.
    pub fn tensor(&self, name: &str, kind: Kind, device: Device) -> Result<Tensor> {
        let view = self.view(name)?;
        Ok(view.f_to_device_(device, kind, false, true)?)
    }

    /// Copies a tensor into `dst` (same shape), converting to `dst`'s kind and device.
    pub fn copy_into(&self, name: &str, dst: &mut Tensor) -> Result<()> {
        let view = self.view(name)?;
        tch::no_grad(|| dst.f_copy_(&view))?;
        Ok(())
    }

    /// The file that was opened: a weights file, a shard index, or a TF1 `.index`.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Stored tensors that no PyTorch weight reads (TF1 optimizer slots, `global_step`, the
    /// generator; the MLM head's second copy of the embeddings), by their stored names.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The file a tensor is read from.
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.entries
            .get(name)
            .map(|e| self.files[e.file].0.as_path())
    }

    /// The dtype of a tensor as its file names it (`"I32"`, `"FloatStorage"`).
    pub(crate) fn stored_dtype(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|e| e.dtype.as_str())
    }

    /// A CPU tensor aliasing the mapped bytes (or an aligned copy); never escapes `self`.
    fn view(&self, name: &str) -> Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| {
            ConvBertError::checkpoint(
                self.files.first().map(|f| f.0.clone()).unwrap_or_default(),
                format!("no tensor {name}"),
            )
        })?;
        let bytes = &self.files[e.file].1[e.start..e.start + e.len];
        let elt = e.kind.elt_size_in_bytes();
        let numel = (e.len / elt) as i64;
        let storage = if bytes.as_ptr().align_offset(elt) == 0 && numel > 0 {
            // SAFETY: `bytes` lies inside a live read-only map owned by `self`; the tensor is only
            // read (copied from) before this function's caller returns.
            unsafe { Tensor::f_from_blob(bytes.as_ptr(), &[numel], &[], e.kind, Device::Cpu)? }
        } else {
            Tensor::f_from_data_size(bytes, &[numel], e.kind)?
        };
        Ok(storage.f_as_strided(e.shape.as_slice(), e.stride.as_slice(), e.offset)?)
    }
}

/// The entry of a TensorFlow tensor seen in PyTorch's layout: a permuted view of its contiguous
/// stored bytes, checked against the byte range.
fn mapped_entry(path: &Path, raw: RawTensor, layout: &Layout) -> Result<Entry> {
    let bad = |what: &str| {
        ConvBertError::checkpoint(path, format!("{}: {what}", clip(&raw.name, NAME_CHARS)))
    };
    if raw.shape.len() > MAX_RANK || raw.shape.iter().any(|&d| d < 0) {
        return Err(bad(&format!("invalid shape {:?}", raw.shape)));
    }
    let numel = raw
        .shape
        .iter()
        .try_fold(1i64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad("shape overflows"))?;
    let bytes = usize::try_from(numel)
        .ok()
        .and_then(|n| n.checked_mul(raw.kind.elt_size_in_bytes()));
    if bytes != Some(raw.len) {
        return Err(bad(&format!(
            "shape {:?} of {} needs {} bytes, the file holds {}",
            raw.shape,
            raw.dtype,
            bytes.map_or("too many".into(), |b| b.to_string()),
            raw.len
        )));
    }
    let strides = contiguous_strides(&raw.shape).ok_or_else(|| bad("shape overflows"))?;
    if layout.perm.len() != raw.shape.len() {
        return Err(bad(&format!("unexpected rank {}", raw.shape.len())));
    }
    let (shape, stride) = layout.apply(&raw.shape, &strides);
    Ok(Entry {
        file: raw.file,
        kind: raw.kind,
        dtype: raw.dtype,
        shape,
        start: raw.start,
        len: raw.len,
        offset: 0,
        stride,
    })
}

fn safetensors_entries(path: &Path, map: &Mmap, file: usize) -> Result<Vec<(String, Entry)>> {
    let st = SafeTensors::deserialize(map).map_err(|e| {
        ConvBertError::checkpoint(path, format!("not a valid safetensors file: {e}"))
    })?;
    let base = map.as_ptr() as usize;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let bad = |reason: &str| {
            ConvBertError::checkpoint(
                path,
                format!("tensor {}: {reason}", clip(&name, NAME_CHARS)),
            )
        };
        let kind = safetensors_kind(view.dtype())
            .ok_or_else(|| bad(&format!("unsupported dtype {:?}", view.dtype())))?;
        if view.shape().len() > MAX_RANK {
            return Err(bad(&format!(
                "rank {} exceeds {MAX_RANK}",
                view.shape().len()
            )));
        }
        let shape: Vec<i64> = view
            .shape()
            .iter()
            .map(|&s| i64::try_from(s))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("a dimension exceeds i64"))?;
        let stride = contiguous_strides(&shape).ok_or_else(|| bad("strides overflow i64"))?;
        let data = view.data();
        out.push((
            name.clone(),
            Entry {
                file,
                kind,
                dtype: format!("{:?}", view.dtype()),
                stride,
                shape,
                start: data.as_ptr() as usize - base,
                len: data.len(),
                offset: 0,
            },
        ));
    }
    Ok(out)
}

fn is_legacy_torch(path: &Path, map: &Mmap) -> bool {
    // Legacy torch.save files start with a pickle (protocol 2: 0x80 0x02) of the magic number.
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    matches!(ext, "bin" | "pt" | "pth") && map.starts_with(&[0x80, 0x02])
}

fn zip_entries(path: &Path, map: &Mmap, file: usize) -> Result<Vec<(String, Entry)>> {
    let bad = |reason: String| ConvBertError::checkpoint(path, reason);
    let mut archive = zip::ZipArchive::new(Cursor::new(&map[..]))
        .map_err(|e| bad(format!("corrupt zip archive: {e}")))?;
    // Stored (uncompressed) members, by name: byte range inside the map.
    let mut members = BTreeMap::new();
    for i in 0..archive.len() {
        let f = archive
            .by_index_raw(i)
            .map_err(|e| bad(format!("corrupt zip member {i}: {e}")))?;
        let range = usize::try_from(f.data_start())
            .ok()
            .zip(usize::try_from(f.compressed_size()).ok());
        let Some((start, len)) =
            range.filter(|&(s, l)| matches!(s.checked_add(l), Some(end) if end <= map.len()))
        else {
            return Err(bad(format!(
                "zip member {} extends past the end of the file (truncated?)",
                clip(f.name(), NAME_CHARS)
            )));
        };
        let stored = f.compression() == zip::CompressionMethod::Stored;
        members.insert(f.name().to_string(), (start, len, stored));
    }
    let pkl = members
        .keys()
        .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
        .cloned()
        .ok_or_else(|| bad("zip archive without data.pkl: not a torch.save file".into()))?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if let Some(&(s, l, true)) = members.get(&format!("{prefix}byteorder")) {
        if &map[s..s + l] != b"little" {
            return Err(bad("big-endian torch archives are not supported".into()));
        }
    }
    let &(s, l, stored) = &members[&pkl];
    if !stored {
        return Err(bad("compressed data.pkl is not supported".into()));
    }
    let dict =
        pickle::read_state_dict(&map[s..s + l]).map_err(|e| bad(format!("data.pkl: {e}")))?;
    let mut out = Vec::with_capacity(dict.len());
    for (name, t) in dict {
        let bad_tensor =
            |reason: String| bad(format!("tensor {}: {reason}", clip(&name, NAME_CHARS)));
        let kind = storage_kind(&t.storage.storage_type).ok_or_else(|| {
            bad_tensor(format!(
                "unsupported storage {}",
                clip(&t.storage.storage_type, NAME_CHARS)
            ))
        })?;
        let member = format!("{prefix}data/{}", t.storage.key);
        let &(start, len, stored) = members.get(&member).ok_or_else(|| {
            bad_tensor(format!("storage {} is missing", clip(&member, NAME_CHARS)))
        })?;
        if !stored {
            return Err(bad_tensor("compressed storage is not supported".into()));
        }
        if t.size.len() > MAX_RANK {
            return Err(bad_tensor(format!(
                "rank {} exceeds {MAX_RANK}",
                t.size.len()
            )));
        }
        // The strided view must stay inside its storage; overflow counts as outside.
        let numel = (len / kind.elt_size_in_bytes()) as i64;
        let inside = matches!(view_extent(&t.size, &t.stride, t.offset), Some(end) if end <= numel);
        if !inside {
            return Err(bad_tensor(format!(
                "view {:?}/{:?}+{} outside its storage of {numel} elements",
                t.size, t.stride, t.offset
            )));
        }
        out.push((
            name,
            Entry {
                file,
                kind,
                dtype: t.storage.storage_type.clone(),
                shape: t.size,
                start,
                len,
                offset: t.offset,
                stride: t.stride,
            },
        ));
    }
    Ok(out)
}
