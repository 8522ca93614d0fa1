//! TensorFlow 1 checkpoints (a "tensor bundle": `<prefix>.index` + `<prefix>.data-0000i-of-0000n`),
//! as the original ConvBERT/ELECTRA code saves them.
//!
//! The `.index` file is a LevelDB-format table (TF's `core/lib/io/table.cc`, `block.cc`,
//! `format.cc`): a 48-byte footer (metaindex and index block handles, magic
//! `0xdb4775248b80fb57`), blocks of prefix-compressed entries with restart points, each block
//! followed by a compression byte (TF writes 0, none) and the masked crc32c of block + byte.
//! Key `""` holds a `BundleHeaderProto`, every other key a tensor name with a `BundleEntryProto`
//! (`core/protobuf/tensor_bundle.proto`); both are decoded by hand below. TF stores
//! `crc32c::Mask(crc)` of a tensor's bytes in the entry and compares `Unmask(entry.crc32c())`
//! on restore (`tensor_bundle.cc`, `BundleWriter::Add` / `BundleReader::GetValue`); we unmask
//! once here, so [`BundleTensor::crc32c`] is the plain crc32c that [`check_crc`] compares.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use tch::Kind;

use super::raw::RawTensor;
use super::{clip, read_small_bytes, read_small_file};
use crate::error::{ConvBertError, Result};

/// Largest `.index` file read: a BERT-large bundle's is well under 1 MiB.
const MAX_INDEX_BYTES: u64 = 256 << 20;
/// Largest `checkpoint` state file read (a few lines of text).
const MAX_STATE_BYTES: u64 = 1 << 20;
/// `kTableMagicNumber` of TF's `table/format.h`.
const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Two block handles padded to 40 bytes, then the magic.
const FOOTER_LEN: usize = 48;
/// Compression byte + masked crc32c after every block.
const TRAILER_LEN: usize = 5;
/// `kTensorBundleVersion`: the consumer version this reader stands for.
const BUNDLE_VERSION: u64 = 1;

/// A bundle's data shards (in shard order) and every tensor entry of its index; a tensor's
/// `file` is its shard's index in `shards`, `start`/`len` its byte range there.
pub(crate) struct Bundle {
    pub shards: Vec<PathBuf>,
    pub tensors: Vec<BundleTensor>,
    /// Tensors of dtypes we do not load (`DT_STRING`, complex, quantized, …), by name, for the
    /// caller to report as ignored.
    pub skipped: Vec<String>,
}

pub(crate) struct BundleTensor {
    pub raw: RawTensor,
    /// The crc32c (unmasked) of the tensor's bytes, as the index records it.
    pub crc32c: u32,
}

/// The checkpoint prefix `dir` holds: the `model_checkpoint_path` of its `checkpoint` file
/// (relative to `dir`), or None when `dir` has no `checkpoint` file (a `checkpoint` directory,
/// as HF-style fixture trees have, is not one).
///
/// A relative path may not contain `..`. TF uses an absolute path as written; checkpoints are
/// often moved, so when it names no `.index` we take the same file name inside `dir`.
pub(crate) fn prefix_in_dir(dir: &Path) -> Result<Option<PathBuf>> {
    let state = dir.join("checkpoint");
    match std::fs::metadata(&state) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConvBertError::io(&state, e)),
        Ok(m) if m.is_dir() => return Ok(None),
        Ok(_) => {}
    }
    let text = read_small_file(&state, MAX_STATE_BYTES)?;
    let named = model_checkpoint_path(&text).map_err(|r| ConvBertError::checkpoint(&state, r))?;
    let named = PathBuf::from(named);
    let mut searched = Vec::new();
    if named.is_absolute() {
        searched.push(index_path(&named));
        if is_file(&index_path(&named)) {
            return Ok(Some(named));
        }
        let Some(name) = named.file_name() else {
            return Err(ConvBertError::checkpoint(
                &state,
                "model_checkpoint_path has no file name",
            ));
        };
        let moved = dir.join(name);
        if is_file(&index_path(&moved)) {
            return Ok(Some(moved));
        }
        searched.push(index_path(&moved));
    } else {
        if named
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(ConvBertError::checkpoint(
                &state,
                format!("model_checkpoint_path {named:?} leaves the directory (`..`); refusing it"),
            ));
        }
        let prefix = dir.join(&named);
        if is_file(&index_path(&prefix)) {
            return Ok(Some(prefix));
        }
        searched.push(index_path(&prefix));
    }
    Err(ConvBertError::NotFound {
        what: format!("the TF checkpoint that {} names", state.display()),
        searched,
    })
}

/// The bundle prefix of `path`: `x.index` → `x`, `x.data-00000-of-00002` → `x` and a prefix `x`
/// → `x`, each only when `x.index` is a file; otherwise None.
pub(crate) fn prefix_of(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str();
    let stripped = name.and_then(|n| {
        n.strip_suffix(".index").or_else(|| {
            // `.data-%05d-of-%05d`: 20 ASCII bytes.
            let cut = n.len().checked_sub(20)?;
            let (stem, tail) = (n.get(..cut)?, n.get(cut..)?.as_bytes());
            let digits = |r: std::ops::Range<usize>| tail[r].iter().all(u8::is_ascii_digit);
            (tail.starts_with(b".data-")
                && digits(6..11)
                && &tail[11..15] == b"-of-"
                && digits(15..20))
            .then_some(stem)
        })
    });
    let prefix = match stripped {
        Some(stem) if !stem.is_empty() => path.with_file_name(stem),
        _ => path.to_path_buf(),
    };
    is_file(&index_path(&prefix)).then_some(prefix)
}

/// Reads `<prefix>.index`, checking its table checksums, and finds every data shard.
pub(crate) fn read_index(prefix: &Path) -> Result<Bundle> {
    let path = index_path(prefix);
    let bytes = read_small_bytes(&path, MAX_INDEX_BYTES)?;
    let err = |reason: String| ConvBertError::checkpoint(&path, reason);
    let mut header = None;
    let mut entries = Vec::new();
    for_each_entry(&bytes, |key, value| {
        if key.is_empty() {
            header = Some(decode_header(value)?);
        } else if header.is_none() {
            return Err("the first key is not the bundle header (key \"\")".into());
        } else {
            entries.push((key_name(key)?, decode_entry(value)?));
        }
        Ok(())
    })
    .map_err(err)?;
    let num_shards = header.ok_or_else(|| err("no bundle header (key \"\")".into()))?;
    let mut shards = Vec::new();
    let mut shard_lens = Vec::new();
    for i in 0..num_shards {
        let shard = data_path(prefix, i, num_shards);
        let len = match std::fs::metadata(&shard) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                return Err(ConvBertError::checkpoint(
                    &shard,
                    "data shard is not a regular file",
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConvBertError::NotFound {
                    what: format!(
                        "data shard {i} of {num_shards} of TF checkpoint {}",
                        path.display()
                    ),
                    searched: vec![shard],
                })
            }
            Err(e) => return Err(ConvBertError::io(&shard, e)),
        };
        shards.push(shard);
        shard_lens.push(len);
    }
    let (mut tensors, mut skipped) = (Vec::new(), Vec::new());
    for (name, entry) in entries {
        let Some((kind, dtype, elem)) = dtype_kind(entry.dtype) else {
            skipped.push(name);
            continue;
        };
        let tensor = check_entry(&name, entry, (kind, dtype, elem), &shard_lens)
            .map_err(|r| err(format!("tensor `{}`: {r}", clip(&name, 200))))?;
        tensors.push(tensor);
    }
    Ok(Bundle {
        shards,
        tensors,
        skipped,
    })
}

/// Checks `bytes` (tensor `name`'s data, read from `path`) against the crc32c its index entry
/// records ([`BundleTensor::crc32c`], already unmasked).
pub(crate) fn check_crc(name: &str, bytes: &[u8], expected: u32, path: &Path) -> Result<()> {
    let actual = crc32c::crc32c(bytes);
    if actual == expected {
        return Ok(());
    }
    Err(ConvBertError::checkpoint(
        path,
        format!(
            "tensor `{}`: crc32c of its {} bytes is {actual:#010x}, the index records {expected:#010x}; \
             the data file is corrupt",
            clip(name, 200),
            bytes.len()
        ),
    ))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(prefix.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

fn index_path(prefix: &Path) -> PathBuf {
    with_suffix(prefix, ".index")
}

/// TF's `DataFilename` (`tensor_bundle/naming.cc`).
fn data_path(prefix: &Path, shard: u64, num_shards: u64) -> PathBuf {
    with_suffix(prefix, &format!(".data-{shard:05}-of-{num_shards:05}"))
}

fn is_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file())
        .unwrap_or(false)
}

/// The `model_checkpoint_path` string of a `CheckpointState` in protobuf text format.
fn model_checkpoint_path(text: &str) -> std::result::Result<String, String> {
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("model_checkpoint_path") else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix(':') else {
            continue;
        };
        let value = value.trim();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'');
        let inner = quote.and_then(|q| value[1..].strip_suffix(q));
        let inner = inner.ok_or_else(|| {
            format!(
                "model_checkpoint_path {:?} is not a quoted string",
                clip(value, 200)
            )
        })?;
        let path = unescape(inner)?;
        if path.is_empty() {
            return Err("model_checkpoint_path is empty".into());
        }
        return Ok(path);
    }
    Err("no model_checkpoint_path line".into())
}

/// Undoes protobuf text-format (C-style) escapes.
fn unescape(s: &str) -> std::result::Result<String, String> {
    let (bytes, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let bad = || format!("bad escape in model_checkpoint_path {:?}", clip(s, 200));
        let e = *bytes.get(i).ok_or_else(bad)?;
        i += 1;
        let radix_digits = |start: usize, radix: u32, max: usize| {
            let n = bytes[start..]
                .iter()
                .take(max)
                .take_while(|c| (**c as char).is_digit(radix))
                .count();
            (n, u32::from_str_radix(&s[start..start + n], radix).ok())
        };
        out.push(match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'\\' | b'"' | b'\'' | b'?' => e,
            b'0'..=b'7' => {
                let (n, v) = radix_digits(i - 1, 8, 3);
                i += n - 1;
                u8::try_from(v.ok_or_else(bad)?).map_err(|_| bad())?
            }
            b'x' => {
                let (n, v) = radix_digits(i, 16, 2);
                i += n;
                u8::try_from(v.ok_or_else(bad)?).map_err(|_| bad())?
            }
            _ => return Err(bad()),
        });
    }
    String::from_utf8(out).map_err(|_| "model_checkpoint_path is not UTF-8".into())
}

type Parse<T> = std::result::Result<T, String>;

fn varint(buf: &[u8], pos: &mut usize) -> Parse<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err("varint overflows 64 bits".into());
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn varint32(buf: &[u8], pos: &mut usize) -> Parse<usize> {
    let v = varint(buf, pos)?;
    u32::try_from(v)
        .map(|v| v as usize)
        .map_err(|_| format!("varint32 {v} overflows 32 bits"))
}

fn fixed32(buf: &[u8], at: usize) -> Parse<u32> {
    let b = buf
        .get(at..at.checked_add(4).ok_or("offset overflow")?)
        .ok_or("truncated fixed32")?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A `BlockHandle`: varint64 offset and size.
fn handle(buf: &[u8], pos: &mut usize) -> Parse<(u64, u64)> {
    Ok((varint(buf, pos)?, varint(buf, pos)?))
}

/// TF's `crc32c::Unmask`.
fn unmask(masked: u32) -> u32 {
    let rot = masked.wrapping_sub(0xa282_ead8);
    rot.rotate_left(15)
}

/// Calls `f(key, value)` for every entry of every data block of the table in `file`, in order,
/// after checking the footer, every block's trailer and crc, and that keys strictly increase.
fn for_each_entry(file: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> Parse<()>) -> Parse<()> {
    let footer_at = file.len().checked_sub(FOOTER_LEN).ok_or_else(|| {
        format!(
            "{} bytes, shorter than the {FOOTER_LEN}-byte table footer",
            file.len()
        )
    })?;
    let footer = &file[footer_at..];
    let magic = u64::from_le_bytes(footer[40..].try_into().map_err(|_| "footer")?);
    if magic != TABLE_MAGIC {
        return Err(format!(
            "bad table magic {magic:#018x} (not a TF checkpoint index, or truncated)"
        ));
    }
    let mut pos = 0;
    let (_metaindex, index) = (handle(footer, &mut pos)?, handle(footer, &mut pos)?);
    if pos > 40 {
        return Err("footer block handles overrun their 40 bytes".into());
    }
    let blocks = &file[..footer_at];
    let index_block = block(blocks, index, "index block")?;
    let mut last_key: Option<Vec<u8>> = None;
    let mut n = 0usize;
    block_entries(index_block, "index block", |_, value| {
        let mut p = 0;
        let data = handle(value, &mut p)?;
        let what = format!("data block {n} (offset {})", data.0);
        n += 1;
        let data_block = block(blocks, data, &what)?;
        block_entries(data_block, &what, |key, value| {
            if last_key.as_deref().is_some_and(|last| last >= key) {
                return Err(format!("{what}: keys out of order or repeated"));
            }
            last_key = Some(key.to_vec());
            f(key, value)
        })
    })
}

/// The contents of the block at `(offset, size)`, its trailer checked (TF's `ReadBlock`).
fn block<'a>(blocks: &'a [u8], (offset, size): (u64, u64), what: &str) -> Parse<&'a [u8]> {
    let end = offset
        .checked_add(size)
        .and_then(|e| e.checked_add(TRAILER_LEN as u64));
    let range = end
        .filter(|e| *e <= blocks.len() as u64)
        .map(|e| offset as usize..e as usize)
        .ok_or_else(|| {
            format!(
                "{what} [{offset}, +{size}) lies outside the {}-byte table",
                blocks.len()
            )
        })?;
    let (contents, trailer) = blocks[range].split_at(size as usize);
    let stored = unmask(fixed32(trailer, 1)?);
    let actual = crc32c::crc32c(&blocks[offset as usize..offset as usize + size as usize + 1]);
    if stored != actual {
        return Err(format!("{what}: crc32c mismatch (stored {stored:#010x}, computed {actual:#010x}); the file is corrupt"));
    }
    match trailer[0] {
        0 => Ok(contents),
        1 => Err(format!(
            "{what} is Snappy-compressed; only uncompressed checkpoints are supported"
        )),
        t => Err(format!("{what} has unknown compression type {t}")),
    }
}

/// Calls `f(key, value)` for every entry of a block, checking the restart array: each restart
/// offset must start an entry that shares nothing with the previous key.
fn block_entries(b: &[u8], what: &str, mut f: impl FnMut(&[u8], &[u8]) -> Parse<()>) -> Parse<()> {
    let err = |r: &str| format!("{what}: {r}");
    let count_at = b
        .len()
        .checked_sub(4)
        .ok_or_else(|| err("shorter than its restart count"))?;
    let count = fixed32(b, count_at)? as usize;
    let end = (count_at / 4)
        .checked_sub(count)
        .map(|_| count_at - 4 * count)
        .ok_or_else(|| {
            err(&format!(
                "{count} restart points do not fit in {} bytes",
                b.len()
            ))
        })?;
    let restart = |i: usize| fixed32(b, end + 4 * i).map(|r| r as usize);
    let (mut pos, mut next, mut key) = (0usize, 0usize, Vec::new());
    while pos < end {
        let start = pos;
        let at_restart = next < count && restart(next)? == start;
        if next == 0 && !at_restart {
            return Err(err("the first entry is not a restart point"));
        }
        let shared = varint32(b, &mut pos).map_err(|r| err(&r))?;
        let non_shared = varint32(b, &mut pos).map_err(|r| err(&r))?;
        let value_len = varint32(b, &mut pos).map_err(|r| err(&r))?;
        if shared > key.len() || (at_restart && shared != 0) {
            return Err(err(&format!(
                "entry at {start} shares {shared} bytes with a {}-byte key",
                key.len()
            )));
        }
        next += usize::from(at_restart);
        let stop = pos
            .checked_add(non_shared)
            .and_then(|k| k.checked_add(value_len));
        let stop = stop
            .filter(|s| *s <= end)
            .ok_or_else(|| err("entry runs past the block's entries"))?;
        key.truncate(shared);
        key.extend_from_slice(&b[pos..pos + non_shared]);
        f(&key, &b[pos + non_shared..stop])?;
        pos = stop;
    }
    // An empty block still has one restart point, at 0.
    if next < count && !(end == 0 && count == 1 && restart(0)? == 0) {
        return Err(err(&format!(
            "restart point {next} ({}) is not at an entry",
            restart(next)?
        )));
    }
    Ok(())
}

/// One protobuf field: number and value (varint, fixed64, fixed32 or length-delimited bytes).
enum Wire<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

/// Calls `f(field, value)` for every field of the protobuf message `msg`.
fn fields<'a>(msg: &'a [u8], mut f: impl FnMut(u64, Wire<'a>) -> Parse<()>) -> Parse<()> {
    let mut pos = 0;
    while pos < msg.len() {
        let tag = varint(msg, &mut pos)?;
        let value = match tag & 7 {
            0 => Wire::Int(varint(msg, &mut pos)?),
            1 | 5 => {
                let n = if tag & 7 == 1 { 8 } else { 4 };
                let b = msg
                    .get(pos..pos + n)
                    .ok_or("truncated fixed-width protobuf field")?;
                pos += n;
                Wire::Int(b.iter().rev().fold(0, |v, x| (v << 8) | u64::from(*x)))
            }
            2 => {
                let n =
                    usize::try_from(varint(msg, &mut pos)?).map_err(|_| "huge protobuf length")?;
                let stop = pos
                    .checked_add(n)
                    .filter(|s| *s <= msg.len())
                    .ok_or("truncated protobuf field")?;
                let b = &msg[pos..stop];
                pos = stop;
                Wire::Bytes(b)
            }
            w => return Err(format!("unsupported protobuf wire type {w}")),
        };
        if tag >> 3 == 0 {
            return Err("protobuf field number 0".into());
        }
        f(tag >> 3, value)?;
    }
    Ok(())
}

fn int(v: Wire, field: &str) -> Parse<u64> {
    match v {
        Wire::Int(v) => Ok(v),
        Wire::Bytes(_) => Err(format!("`{field}` has the wrong protobuf wire type")),
    }
}

fn bytes<'a>(v: Wire<'a>, field: &str) -> Parse<&'a [u8]> {
    match v {
        Wire::Bytes(b) => Ok(b),
        Wire::Int(_) => Err(format!("`{field}` has the wrong protobuf wire type")),
    }
}

/// `BundleHeaderProto` → `num_shards`, refusing big-endian bundles and newer format versions.
fn decode_header(msg: &[u8]) -> Parse<u64> {
    let (mut shards, mut endianness) = (0i64, 0u64);
    fields(msg, |field, v| {
        match field {
            1 => shards = int(v, "num_shards")? as i32 as i64,
            2 => endianness = int(v, "endianness")?,
            3 => check_version(bytes(v, "version")?)?,
            _ => {}
        }
        Ok(())
    })?;
    match endianness {
        0 => {}
        1 => return Err("big-endian bundle; only little-endian checkpoints are supported".into()),
        e => return Err(format!("unknown endianness {e} in the bundle header")),
    }
    u64::try_from(shards)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("header has {shards} data shards"))
}

/// Refuses a `VersionDef` (producer 1, min_consumer 2, bad_consumers 3) that excludes this
/// reader, as TF's `CheckVersions` does.
fn check_version(msg: &[u8]) -> Parse<()> {
    fields(msg, |f, v| match (f, v) {
        (2, Wire::Int(v)) if v > BUNDLE_VERSION => Err(format!(
            "bundle needs reader version {v}; we are {BUNDLE_VERSION}"
        )),
        (3, Wire::Int(v)) if v == BUNDLE_VERSION => {
            Err(format!("bundle marks reader version {v} as bad"))
        }
        // proto3 packs `repeated int32 bad_consumers`.
        (3, Wire::Bytes(packed)) => {
            let mut pos = 0;
            while pos < packed.len() {
                if varint(packed, &mut pos)? == BUNDLE_VERSION {
                    return Err(format!(
                        "bundle marks reader version {BUNDLE_VERSION} as bad"
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    })
}

/// The fields of a `BundleEntryProto` we use.
#[derive(Default)]
struct Entry {
    dtype: u64,
    shape: Vec<i64>,
    shard_id: i64,
    offset: i64,
    size: i64,
    crc32c: u32,
}

fn decode_entry(msg: &[u8]) -> Parse<Entry> {
    let mut e = Entry::default();
    fields(msg, |field, v| {
        match field {
            1 => e.dtype = int(v, "dtype")?,
            // A repeated embedded message merges: its dims append.
            2 => e.shape.extend(decode_shape(bytes(v, "shape")?)?),
            3 => e.shard_id = int(v, "shard_id")? as i32 as i64,
            4 => e.offset = int(v, "offset")? as i64,
            5 => e.size = int(v, "size")? as i64,
            6 => e.crc32c = unmask(int(v, "crc32c")? as u32),
            7 => {
                return Err(
                    "a sliced (partitioned) tensor; sliced checkpoints are not supported".into(),
                )
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(e)
}

/// `TensorShapeProto` → dims (field 2 `dim`, its field 1 `size`), refusing unknown rank.
fn decode_shape(msg: &[u8]) -> Parse<Vec<i64>> {
    let mut dims = Vec::new();
    fields(msg, |field, v| {
        match field {
            2 => {
                let mut size = 0i64;
                fields(bytes(v, "dim")?, |f, v| {
                    if f == 1 {
                        size = int(v, "dim.size")? as i64;
                    }
                    Ok(())
                })?;
                dims.push(size);
            }
            3 if int(v, "unknown_rank")? != 0 => return Err("shape of unknown rank".into()),
            _ => {}
        }
        Ok(())
    })?;
    Ok(dims)
}

fn key_name(key: &[u8]) -> Parse<String> {
    if key.first() == Some(&0) {
        // `checkpoint::EncodeTensorNameSlice` keys start with a 0 byte.
        return Err("a slice of a partitioned tensor; sliced checkpoints are not supported".into());
    }
    String::from_utf8(key.to_vec()).map_err(|_| {
        format!(
            "tensor name {:?} is not UTF-8",
            clip(&String::from_utf8_lossy(key), 200)
        )
    })
}

/// TF `DataType` → our kind, TF's name and the element size; None for dtypes we do not load.
fn dtype_kind(dtype: u64) -> Option<(Kind, &'static str, u64)> {
    Some(match dtype {
        1 => (Kind::Float, "DT_FLOAT", 4),
        2 => (Kind::Double, "DT_DOUBLE", 8),
        3 => (Kind::Int, "DT_INT32", 4),
        4 => (Kind::Uint8, "DT_UINT8", 1),
        5 => (Kind::Int16, "DT_INT16", 2),
        6 => (Kind::Int8, "DT_INT8", 1),
        9 => (Kind::Int64, "DT_INT64", 8),
        10 => (Kind::Bool, "DT_BOOL", 1),
        14 => (Kind::BFloat16, "DT_BFLOAT16", 2),
        19 => (Kind::Half, "DT_HALF", 2),
        _ => return None,
    })
}

/// The entry as a [`BundleTensor`], once its shard, byte range and size are checked.
fn check_entry(
    name: &str,
    e: Entry,
    (kind, dtype, elem): (Kind, &str, u64),
    shard_lens: &[u64],
) -> Parse<BundleTensor> {
    let shard = usize::try_from(e.shard_id)
        .ok()
        .filter(|s| *s < shard_lens.len())
        .ok_or_else(|| {
            format!(
                "shard {} outside the bundle's {} shards",
                e.shard_id,
                shard_lens.len()
            )
        })?;
    let mut numel = 1u64;
    for &d in &e.shape {
        let d =
            u64::try_from(d).map_err(|_| format!("negative dimension in shape {:?}", e.shape))?;
        numel = numel
            .checked_mul(d)
            .ok_or_else(|| format!("shape {:?} overflows", e.shape))?;
    }
    let (offset, size) = (e.offset as u64, e.size as u64);
    if e.offset < 0 || e.size < 0 || numel.checked_mul(elem) != Some(size) {
        return Err(format!(
            "{} bytes at offset {} do not hold a {dtype} tensor of shape {:?}",
            e.size, e.offset, e.shape
        ));
    }
    let end = offset
        .checked_add(size)
        .filter(|end| *end <= shard_lens[shard]);
    let end = end.ok_or_else(|| {
        format!(
            "bytes [{offset}, +{size}) lie outside data shard {shard} ({} bytes)",
            shard_lens[shard]
        )
    })?;
    let to_usize =
        |v: u64| usize::try_from(v).map_err(|_| format!("offset {v} does not fit this platform"));
    let (start, _) = (to_usize(offset)?, to_usize(end)?);
    let raw = RawTensor {
        name: name.to_string(),
        kind,
        dtype: dtype.to_string(),
        shape: e.shape,
        file: shard,
        start,
        len: size as usize,
    };
    Ok(BundleTensor {
        raw,
        crc32c: e.crc32c,
    })
}

#[cfg(test)]
mod tests {
    //! The bundle in `tests/data/tf1` was written by TensorFlow 2.21 (`generate.py` there, which
    //! also wrote `expected.json`: what TF lists and reads back); corrupt copies live in temp dirs.

    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tf1")
    }

    const PREFIX: &str = "model.ckpt-7";

    /// A fresh copy of the fixture bundle in its own temp dir.
    fn copy(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("convbert_tf_bundle_{tag}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(fixture()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        dir
    }

    fn message(r: Result<Bundle>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    /// The index's (key, value) entries, in order.
    fn entries(index: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for_each_entry(index, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    /// An IEEE half (no NaN or infinity in the fixture) as f64.
    fn f16(bits: u16) -> f64 {
        let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
        let (exp, mant) = (i32::from((bits >> 10) & 0x1f), f64::from(bits & 0x3ff));
        match exp {
            0 => sign * mant * 2f64.powi(-24),
            _ => sign * (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
        }
    }

    /// TF's `crc32c::Mask`.
    fn mask(crc: u32) -> u32 {
        crc.rotate_right(15).wrapping_add(0xa282_ead8)
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Appends a block (prefix-compressed, a restart every `interval` entries) and its trailer;
    /// returns its handle.
    fn put_block(out: &mut Vec<u8>, entries: &[(Vec<u8>, Vec<u8>)], interval: usize) -> Vec<u8> {
        let (start, mut restarts, mut last) = (out.len(), Vec::new(), Vec::<u8>::new());
        for (i, (k, v)) in entries.iter().enumerate() {
            let shared = if i % interval == 0 {
                restarts.push((out.len() - start) as u32);
                0
            } else {
                last.iter().zip(k).take_while(|(a, b)| a == b).count()
            };
            put_varint(out, shared as u64);
            put_varint(out, (k.len() - shared) as u64);
            put_varint(out, v.len() as u64);
            out.extend_from_slice(&k[shared..]);
            out.extend_from_slice(v);
            last = k.clone();
        }
        if restarts.is_empty() {
            restarts.push(0);
        }
        for r in &restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
        let size = out.len() - start;
        out.push(0);
        let crc = mask(crc32c::crc32c(&out[start..]));
        out.extend_from_slice(&crc.to_le_bytes());
        let mut h = Vec::new();
        put_varint(&mut h, start as u64);
        put_varint(&mut h, size as u64);
        h
    }

    /// A table as TF's `TableBuilder` writes one, `per_block` entries per data block.
    fn build_table(entries: &[(Vec<u8>, Vec<u8>)], per_block: usize, interval: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut index = Vec::new();
        for chunk in entries.chunks(per_block) {
            let h = put_block(&mut out, chunk, interval);
            index.push((chunk.last().unwrap().0.clone(), h));
        }
        let meta = put_block(&mut out, &[], interval);
        let idx = put_block(&mut out, &index, 1);
        let mut footer = [meta, idx].concat();
        footer.resize(40, 0);
        out.extend_from_slice(&footer);
        out.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
        out
    }

    /// (offset, size) of a table's first data block.
    fn first_data_block(table: &[u8]) -> (usize, usize) {
        let mut p = 0;
        let footer = &table[table.len() - FOOTER_LEN..];
        let (_, (index_at, index_len)) = (
            handle(footer, &mut p).unwrap(),
            handle(footer, &mut p).unwrap(),
        );
        let mut first = None;
        block_entries(
            &table[index_at as usize..][..index_len as usize],
            "index",
            |_, v| {
                first = first.or(Some(handle(v, &mut 0).unwrap()));
                Ok(())
            },
        )
        .unwrap();
        let (at, len) = first.unwrap();
        (at as usize, len as usize)
    }

    fn write_index(dir: &Path, entries: &[(Vec<u8>, Vec<u8>)]) {
        std::fs::write(
            dir.join(format!("{PREFIX}.index")),
            build_table(entries, 1000, 16),
        )
        .unwrap();
    }

    fn index_bytes(dir: &Path) -> Vec<u8> {
        std::fs::read(dir.join(format!("{PREFIX}.index"))).unwrap()
    }

    #[test]
    fn lists_what_tensorflow_lists() {
        let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
        let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
        let bundle = read_index(&fixture().join(PREFIX)).unwrap();
        assert_eq!(bundle.shards.len(), 2);
        assert!(bundle.shards[1].ends_with("model.ckpt-7.data-00001-of-00002"));
        assert_eq!(bundle.skipped, ["vocab_strings"]);
        let loaded: Vec<_> = expected["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["dtype"] != "DT_STRING")
            .collect();
        assert_eq!(bundle.tensors.len(), loaded.len());
        let shards: Vec<Vec<u8>> = bundle
            .shards
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        for (t, want) in bundle.tensors.iter().zip(loaded) {
            let raw = &t.raw;
            assert_eq!(raw.name, want["name"]);
            assert_eq!(raw.dtype, want["dtype"], "{}", raw.name);
            let shape: Vec<i64> = serde_json::from_value(want["shape"].clone()).unwrap();
            assert_eq!(raw.shape, shape, "{}", raw.name);
            let bytes = &shards[raw.file][raw.start..raw.start + raw.len];
            check_crc(&raw.name, bytes, t.crc32c, &bundle.shards[raw.file]).unwrap();
            let first: Vec<f64> = serde_json::from_value(want["first"].clone()).unwrap();
            let value = |i: usize| -> f64 {
                let b = &bytes[i * raw.kind.elt_size_in_bytes()..];
                match raw.kind {
                    Kind::Float => f32::from_le_bytes(b[..4].try_into().unwrap()) as f64,
                    Kind::Double => f64::from_le_bytes(b[..8].try_into().unwrap()),
                    Kind::Int64 => i64::from_le_bytes(b[..8].try_into().unwrap()) as f64,
                    Kind::Int => i32::from_le_bytes(b[..4].try_into().unwrap()) as f64,
                    Kind::BFloat16 => {
                        f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16) as f64
                    }
                    Kind::Int8 => b[0] as i8 as f64,
                    Kind::Uint8 | Kind::Bool => b[0] as f64,
                    Kind::Half => f16(u16::from_le_bytes([b[0], b[1]])),
                    k => panic!("unexpected kind {k:?}"),
                }
            };
            for (i, want) in first.iter().enumerate() {
                // serde_json's float parsing may be one f64 ulp off the text.
                assert!(
                    (value(i) - want).abs() <= 1e-12 * want.abs(),
                    "{}[{i}]: {} vs {want}",
                    raw.name,
                    value(i)
                );
            }
        }
        let step = bundle
            .tensors
            .iter()
            .find(|t| t.raw.name == "global_step")
            .unwrap();
        assert_eq!(
            (step.raw.kind, step.raw.shape.len(), step.raw.len),
            (Kind::Int64, 0, 8)
        );
    }

    #[test]
    fn crc_helper_rejects_a_flipped_byte() {
        let bundle = read_index(&fixture().join(PREFIX)).unwrap();
        let t = bundle
            .tensors
            .iter()
            .find(|t| t.raw.name.ends_with("word_embeddings"))
            .unwrap();
        let mut bytes =
            std::fs::read(&bundle.shards[t.raw.file]).unwrap()[t.raw.start..][..t.raw.len].to_vec();
        check_crc(&t.raw.name, &bytes, t.crc32c, &bundle.shards[t.raw.file]).unwrap();
        bytes[17] ^= 0x20;
        let e = check_crc(&t.raw.name, &bytes, t.crc32c, &bundle.shards[t.raw.file])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("word_embeddings") && e.contains("crc32c") && e.contains("data-0000"),
            "{e}"
        );
    }

    #[test]
    fn finds_the_prefix() {
        let dir = fixture();
        assert_eq!(prefix_in_dir(&dir).unwrap(), Some(dir.join(PREFIX)));
        assert_eq!(prefix_in_dir(&dir.join("no-such-dir")).unwrap(), None);
        assert_eq!(
            prefix_of(&dir.join(format!("{PREFIX}.index"))),
            Some(dir.join(PREFIX))
        );
        assert_eq!(prefix_of(&dir.join(PREFIX)), Some(dir.join(PREFIX)));
        assert_eq!(
            prefix_of(&dir.join(format!("{PREFIX}.data-00001-of-00002"))),
            Some(dir.join(PREFIX))
        );
        assert_eq!(prefix_of(&dir.join("model.ckpt-8")), None);
        assert_eq!(prefix_of(&dir.join("expected.json")), None);
    }

    /// The ELECTRA-style bundle of `fixtures/tf/tf1` (its own generator wrote `variables.json`).
    #[test]
    fn reads_the_shared_tf1_fixture() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tf/tf1");
        assert_eq!(
            prefix_in_dir(&root).unwrap(),
            None,
            "`checkpoint` is a directory there"
        );
        let prefix = prefix_in_dir(&root.join("checkpoint")).unwrap().unwrap();
        let bundle = read_index(&prefix).unwrap();
        let text = std::fs::read_to_string(root.join("variables.json")).unwrap();
        let vars: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let mut want: Vec<_> = vars
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["shape"].to_string(),
                    v["shard"].as_u64(),
                )
            })
            .collect();
        let mut got: Vec<_> = bundle
            .tensors
            .iter()
            .map(|t| {
                (
                    t.raw.name.clone(),
                    serde_json::json!(t.raw.shape).to_string(),
                    Some(t.raw.file as u64),
                )
            })
            .collect();
        got.extend(
            bundle
                .skipped
                .iter()
                .map(|n| (n.clone(), String::new(), None)),
        );
        want.sort();
        got.sort();
        let names =
            |v: &[(String, String, Option<u64>)]| v.iter().map(|t| t.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&want));
        for (g, w) in got.iter().zip(&want) {
            if g.2.is_some() {
                assert_eq!(g, w);
            }
        }
        let shards: Vec<Vec<u8>> = bundle
            .shards
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        for t in &bundle.tensors {
            let bytes = &shards[t.raw.file][t.raw.start..][..t.raw.len];
            check_crc(&t.raw.name, bytes, t.crc32c, &bundle.shards[t.raw.file]).unwrap();
        }
    }

    #[test]
    fn checkpoint_state_paths() {
        let dir = copy("state");
        let state = dir.join("checkpoint");
        // Moved checkpoint: the absolute path is gone, the same name in `dir` is used.
        std::fs::write(
            &state,
            "model_checkpoint_path: \"/gone/away/model.ckpt-7\"\n",
        )
        .unwrap();
        assert_eq!(prefix_in_dir(&dir).unwrap(), Some(dir.join(PREFIX)));
        let abs = dir.join(PREFIX);
        std::fs::write(
            &state,
            format!("model_checkpoint_path: {:?}\n", abs.to_str().unwrap()),
        )
        .unwrap();
        assert_eq!(prefix_in_dir(&dir).unwrap(), Some(abs));
        std::fs::write(
            &state,
            "all_model_checkpoint_paths: \"x\"\nmodel_checkpoint_path: \"./model.ckpt\\0557\"\n",
        )
        .unwrap();
        assert_eq!(
            prefix_in_dir(&dir).unwrap(),
            Some(dir.join("./model.ckpt-7"))
        );
        for bad in [
            "model_checkpoint_path: \"../model.ckpt-7\"",
            "model_checkpoint_path: model.ckpt-7",
            "x: 1",
            "model_checkpoint_path: \"a\\q\"",
        ] {
            let e = std::fs::write(&state, bad).map(|_| prefix_in_dir(&dir));
            assert!(
                matches!(e, Ok(Err(ConvBertError::Checkpoint { .. }))),
                "{bad}: {e:?}"
            );
        }
        std::fs::write(&state, "model_checkpoint_path: \"model.ckpt-9\"").unwrap();
        assert!(matches!(
            prefix_in_dir(&dir),
            Err(ConvBertError::NotFound { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn several_data_blocks_and_restart_points() {
        let all = entries(&std::fs::read(fixture().join(format!("{PREFIX}.index"))).unwrap());
        let want = read_index(&fixture().join(PREFIX)).unwrap();
        let dir = copy("blocks");
        for (per_block, interval) in [(1, 1), (5, 2), (7, 3), (1000, 1)] {
            std::fs::write(
                dir.join(format!("{PREFIX}.index")),
                build_table(&all, per_block, interval),
            )
            .unwrap();
            let got = read_index(&dir.join(PREFIX)).unwrap();
            let names = |b: &Bundle| {
                b.tensors
                    .iter()
                    .map(|t| (t.raw.name.clone(), t.raw.start, t.crc32c))
                    .collect::<Vec<_>>()
            };
            assert_eq!(names(&got), names(&want));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_indexes_are_errors_naming_the_file() {
        let dir = copy("corrupt");
        let prefix = dir.join(PREFIX);
        let index = dir.join(format!("{PREFIX}.index"));
        let good = index_bytes(&dir);
        let expect = |bytes: &[u8], needle: &str| {
            std::fs::write(&index, bytes).unwrap();
            let e = message(read_index(&prefix));
            assert!(
                e.contains("model.ckpt-7.index") && e.contains(needle),
                "{needle}: {e}"
            );
        };
        expect(&good[..good.len() - 1], "magic");
        expect(&good[..20], "footer");
        let mut b = good.clone();
        b[30] ^= 1;
        expect(&b, "crc32c mismatch");
        let last = b.len() - 1;
        b.clone_from(&good);
        b[last] ^= 1;
        expect(&b, "magic");
        // A nonzero compression byte, with its crc made right.
        let mut t = build_table(&entries(&good), 1000, 16);
        let (start, size) = first_data_block(&t);
        let at = start + size;
        let set_compression = |t: &mut Vec<u8>, c: u8| {
            t[at] = c;
            let crc = mask(crc32c::crc32c(&t[start..=at]));
            t[at + 1..at + 5].copy_from_slice(&crc.to_le_bytes());
        };
        set_compression(&mut t, 1);
        expect(&t, "Snappy");
        set_compression(&mut t, 7);
        expect(&t, "compression type 7");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_entries_and_shards() {
        let dir = copy("entries");
        let prefix = dir.join(PREFIX);
        let all = entries(&index_bytes(&dir));
        let shard1 = dir.join(format!("{PREFIX}.data-00001-of-00002"));
        // Offset beyond the shard: the shard is shorter than the index says.
        let data = std::fs::read(&shard1).unwrap();
        std::fs::write(&shard1, &data[..data.len() - 1]).unwrap();
        let e = message(read_index(&prefix));
        assert!(e.contains("outside data shard 1"), "{e}");
        std::fs::remove_file(&shard1).unwrap();
        let e = read_index(&prefix).err().unwrap();
        assert!(
            matches!(&e, ConvBertError::NotFound { searched, .. } if searched == std::slice::from_ref(&shard1)),
            "{e}"
        );
        std::fs::write(&shard1, &data).unwrap();
        read_index(&prefix).unwrap();

        let with = |i: usize, extra: &[u8]| {
            let mut e = all.clone();
            e[i].1.extend_from_slice(extra);
            write_index(&dir, &e);
            message(read_index(&prefix))
        };
        assert!(with(0, &[0x10, 1]).contains("big-endian"));
        assert!(with(0, &[0x08, 0]).contains("0 data shards"));
        // version { min_consumer: 2 }, then version { bad_consumers: [1] } packed and unpacked.
        assert!(with(0, &[0x1a, 2, 0x10, 2]).contains("needs reader version 2"));
        assert!(with(0, &[0x1a, 4, 0x1a, 2, 3, 1]).contains("as bad"));
        assert!(with(0, &[0x1a, 2, 0x18, 1]).contains("as bad"));
        assert!(with(1, &[0x3a, 0]).contains("sliced"));
        assert!(with(1, &[0x18, 5]).contains("shard 5 outside"));
        assert!(with(1, &[0x20, 0xff, 0x7f]).contains("outside data shard"));
        assert!(with(1, &[0x28, 0x80]).contains("truncated varint"));
        assert!(with(1, &[0x12, 4, 0x12, 2, 0x08, 3]).contains("do not hold"));
        let mut negative = vec![0x12, 13, 0x12, 11, 0x08];
        negative.extend([0xff; 9].iter().chain(&[1]));
        assert!(with(1, &negative).contains("negative dimension"));
        let huge_dim = [[0x12, 10, 0x08].as_slice(), &[0x80; 8], &[0x40]].concat();
        let huge = [[0x12, 24].as_slice(), &huge_dim, &huge_dim].concat();
        assert!(with(1, &huge).contains("overflows"));
        let mut e = all.clone();
        e.swap(1, 2);
        write_index(&dir, &e);
        assert!(message(read_index(&prefix)).contains("out of order"));
        write_index(&dir, &all[1..]);
        assert!(message(read_index(&prefix)).contains("header"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_truncation_or_flipped_byte_panics() {
        let dir = copy("fuzz");
        let prefix = dir.join(PREFIX);
        let good = index_bytes(&dir);
        let index = dir.join(format!("{PREFIX}.index"));
        for len in 0..good.len() {
            std::fs::write(&index, &good[..len]).unwrap();
            assert!(read_index(&prefix).is_err(), "truncated to {len}");
        }
        // Flips that keep every crc right are what the block parser alone must survive.
        let all = entries(&good);
        let table = build_table(&all, 7, 3);
        for i in 0..table.len() {
            for bit in [0x01, 0x80] {
                let mut b = table.clone();
                b[i] ^= bit;
                std::fs::write(&index, &b).unwrap();
                let _ = read_index(&prefix);
            }
        }
        for (k, v) in &all {
            for cut in 0..v.len() {
                let _ = decode_entry(&v[..cut]);
                let _ = decode_header(&v[..cut]);
            }
            let _ = key_name(k);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
