//! Read-only access to the tensors of an HF checkpoint: `model.safetensors` (memory-mapped, read
//! in place), `pytorch_model.bin` (a `torch.save` zip archive, memory-mapped; storages are read in
//! place and described by the pickle), and their sharded `*.index.json` variants.
//! Formats: <https://github.com/huggingface/safetensors#format>,
//! <https://github.com/pytorch/pytorch/blob/v2.11.0/torch/serialization.py>.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

use super::pickle;
use crate::error::{ConvBertError, Result};

/// The weight file names `from_pretrained` looks for, in order of preference.
pub const WEIGHT_FILES: [&str; 4] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

#[derive(Debug)]
struct Entry {
    file: usize,
    kind: Kind,
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
}

fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1].max(1);
    }
    strides
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
    let file = File::open(path).map_err(|e| ConvBertError::io(path, e))?;
    // SAFETY: the map is read-only; a file truncated by another process while mapped is outside
    // what any reader can guard against (safetensors and torch make the same assumption).
    unsafe { Mmap::map(&file) }.map_err(|e| ConvBertError::io(path, e))
}

impl Weights {
    /// Opens the weights of an HF checkpoint directory (see [`WEIGHT_FILES`] for the order).
    pub fn open_dir(dir: &Path) -> Result<Self> {
        for name in WEIGHT_FILES {
            let path = dir.join(name);
            if path.is_file() {
                return Self::open(&path);
            }
        }
        Err(ConvBertError::NotFound {
            what: format!("weights ({})", WEIGHT_FILES.join(", ")),
            searched: vec![dir.to_path_buf()],
        })
    }

    /// Opens one file: `*.safetensors`, `*.bin` / `*.pt` (torch zip), or a sharded `*.index.json`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut w = Weights {
            files: Vec::new(),
            entries: BTreeMap::new(),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".index.json") {
            w.add_index(path)?;
        } else {
            w.add_file(path)?;
        }
        Ok(w)
    }

    fn add_file(&mut self, path: &Path) -> Result<()> {
        let map = map_file(path)?;
        let idx = self.files.len();
        let found = if map.starts_with(b"PK") {
            zip_entries(path, &map, idx)?
        } else if is_legacy_torch(path) {
            return Err(ConvBertError::checkpoint(
                path,
                "not a zip archive: the legacy torch.save format (torch < 1.6) is not supported",
            ));
        } else {
            safetensors_entries(path, &map, idx)?
        };
        for (name, entry) in found {
            if self.entries.insert(name.clone(), entry).is_some() {
                return Err(ConvBertError::checkpoint(
                    path,
                    format!("tensor {name} appears in two shards"),
                ));
            }
        }
        self.files.push((path.to_path_buf(), map));
        Ok(())
    }

    fn add_index(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| ConvBertError::io(path, e))?;
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
            return Err(ConvBertError::checkpoint(
                path,
                format!("index lists tensors absent from its shards: {missing:?}"),
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

fn safetensors_entries(path: &Path, map: &Mmap, file: usize) -> Result<Vec<(String, Entry)>> {
    let st = SafeTensors::deserialize(map).map_err(|e| {
        ConvBertError::checkpoint(path, format!("not a valid safetensors file: {e}"))
    })?;
    let base = map.as_ptr() as usize;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let kind = safetensors_kind(view.dtype()).ok_or_else(|| {
            ConvBertError::checkpoint(
                path,
                format!("tensor {name}: unsupported dtype {:?}", view.dtype()),
            )
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&s| s as i64).collect();
        let data = view.data();
        out.push((
            name,
            Entry {
                file,
                kind,
                stride: contiguous_strides(&shape),
                shape,
                start: data.as_ptr() as usize - base,
                len: data.len(),
                offset: 0,
            },
        ));
    }
    Ok(out)
}

fn is_legacy_torch(path: &Path) -> bool {
    // Legacy torch.save files start with a pickle (protocol 2: 0x80 0x02) of the magic number.
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    matches!(ext, "bin" | "pt" | "pth")
        && std::fs::read(path)
            .map(|b| b.starts_with(&[0x80, 0x02]))
            .unwrap_or(false)
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
        let (start, len) = (f.data_start() as usize, f.compressed_size() as usize);
        if !matches!(start.checked_add(len), Some(end) if end <= map.len()) {
            return Err(bad(format!(
                "zip member {} extends past the end of the file (truncated?)",
                f.name()
            )));
        }
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
        let kind = storage_kind(&t.storage.storage_type).ok_or_else(|| {
            bad(format!(
                "tensor {name}: unsupported storage {}",
                t.storage.storage_type
            ))
        })?;
        let member = format!("{prefix}data/{}", t.storage.key);
        let &(start, len, stored) = members
            .get(&member)
            .ok_or_else(|| bad(format!("tensor {name}: storage {member} is missing")))?;
        if !stored {
            return Err(bad(format!(
                "tensor {name}: compressed storage is not supported"
            )));
        }
        // The strided view must stay inside its storage.
        let numel = (len / kind.elt_size_in_bytes()) as i64;
        let ok_rank =
            t.size.len() == t.stride.len() && t.size.iter().all(|&s| s >= 0) && t.offset >= 0;
        let extent = if t.size.contains(&0) {
            0
        } else {
            t.offset
                + t.size
                    .iter()
                    .zip(&t.stride)
                    .map(|(&s, &st)| (s - 1) * st)
                    .sum::<i64>()
                + 1
        };
        if !ok_rank || t.stride.iter().any(|&s| s < 0) || extent > numel {
            return Err(bad(format!(
                "tensor {name}: view {:?}/{:?}+{} outside its storage of {numel}",
                t.size, t.stride, t.offset
            )));
        }
        out.push((
            name,
            Entry {
                file,
                kind,
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
