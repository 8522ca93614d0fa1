//! Small hand-made checkpoint files for the hostile-input tests: a `torch.save`-style zip
//! (stored members under `archive/`) and a pickle writer for plain tensor state dicts.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A fresh, empty temporary directory unique to this process and `name`.
pub fn tmp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("convbert-model-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bytes of a torch zip archive: `archive/data.pkl`, `archive/byteorder` and one
/// `archive/data/<key>` member per storage, all stored uncompressed.
pub fn torch_zip(pkl: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut member = |name: &str, bytes: &[u8]| {
        zip.start_file(format!("archive/{name}"), options).unwrap();
        zip.write_all(bytes).unwrap();
    };
    member("data.pkl", pkl);
    member("byteorder", b"little");
    for (key, bytes) in storages {
        member(&format!("data/{key}"), bytes);
    }
    zip.finish().unwrap().into_inner()
}

/// Writes [`torch_zip`] to `path`.
pub fn write_torch_zip(path: &Path, pkl: &[u8], storages: &[(&str, &[u8])]) {
    std::fs::write(path, torch_zip(pkl, storages)).unwrap();
}

/// One state-dict entry: a `FloatStorage` view, as `torch._utils._rebuild_tensor_v2` takes it.
#[derive(Clone, Copy)]
pub struct CraftedTensor<'a> {
    pub name: &'a str,
    pub storage_key: &'a str,
    pub offset: i64,
    pub size: &'a [i64],
    pub stride: &'a [i64],
}

fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn long(out: &mut Vec<u8>, v: i64) {
    out.extend([0x8a, 8]);
    out.extend(v.to_le_bytes());
}

fn int_tuple(out: &mut Vec<u8>, values: &[i64]) {
    out.push(b'(');
    for &v in values {
        long(out, v);
    }
    out.push(b't');
}

/// A protocol-2 pickle of a dict of tensors, the opcodes `torch.save` uses (keys may repeat).
pub fn state_dict_pickle(tensors: &[CraftedTensor<'_>]) -> Vec<u8> {
    let mut out = vec![0x80, 2, b'}'];
    for t in tensors {
        unicode(&mut out, t.name);
        out.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        // Persistent id ('storage', FloatStorage, key, 'cpu', numel).
        out.push(b'(');
        unicode(&mut out, "storage");
        out.extend(b"ctorch\nFloatStorage\n");
        unicode(&mut out, t.storage_key);
        unicode(&mut out, "cpu");
        long(&mut out, 0);
        out.extend(b"tQ");
        long(&mut out, t.offset);
        int_tuple(&mut out, t.size);
        int_tuple(&mut out, t.stride);
        // requires_grad, backward hooks (an empty OrderedDict).
        out.push(0x89);
        out.extend(b"ccollections\nOrderedDict\n)R");
        out.extend(b"tRs");
    }
    out.push(b'.');
    out
}

/// `n` little-endian f32 values 0, 1, 2, ...
pub fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}
