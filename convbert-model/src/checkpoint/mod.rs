//! Checkpoints: find a directory (path or HF-cache id), open its weights by name, check them
//! against a `VarStore` and copy them in (converted to the store's kind and device), and save
//! a `VarStore` as HF-named safetensors or as a Keras `tf_model.h5`. Mirrors the prefix rules of HF `from_pretrained`
//! (v4.57.6 `modeling_utils.py`, `base_model_prefix = "convbert"`).

mod pickle;
mod raw;
mod tf_bundle;
mod tf_export;
mod tf_h5;
mod tf_names;
mod weights;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Kind};

use crate::error::{ConvBertError, Result};
pub use tf_export::{check_tf_compatible, save_tf_h5};
pub use weights::{Weights, WEIGHT_FILES};

/// The prefix of the base model's keys inside head checkpoints.
pub const BASE_PREFIX: &str = "convbert.";

/// Largest JSON file read from a checkpoint or the HF cache (`config.json`, `*.index.json`,
/// `tokenizer_config.json`, refs): real ones are a few hundred KiB at most.
pub const MAX_JSON_BYTES: u64 = 16 << 20;

/// `s` cut to `max` characters, "…" appended when cut: what an error may quote of file content.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// The bytes of a small file (at most `max_bytes`), read only when `path` (symlinks followed) is
/// a regular file: a FIFO, a device such as `/dev/zero` or a directory is an error, not a hang.
pub(crate) fn read_small_bytes(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let refuse = |reason: String| {
        ConvBertError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| ConvBertError::io(path, e))?;
    if !meta.is_file() {
        return Err(refuse(format!(
            "not a regular file ({:?}); refusing to read it",
            meta.file_type()
        )));
    }
    let too_big = || {
        refuse(format!(
            "larger than the {max_bytes}-byte limit for this file"
        ))
    };
    if meta.len() > max_bytes {
        return Err(too_big());
    }
    let file = std::fs::File::open(path).map_err(|e| ConvBertError::io(path, e))?;
    // The file may grow (or be swapped) between the check and the read: never read past the cap.
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ConvBertError::io(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big());
    }
    Ok(bytes)
}

/// The text of a small file: [`read_small_bytes`], which must be UTF-8.
pub fn read_small_file(path: &Path, max_bytes: u64) -> Result<String> {
    String::from_utf8(read_small_bytes(path, max_bytes)?).map_err(|_| {
        ConvBertError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not UTF-8 text"),
        )
    })
}

/// [`read_small_file`] with the [`MAX_JSON_BYTES`] cap.
pub fn read_json_file(path: &Path) -> Result<String> {
    read_small_file(path, MAX_JSON_BYTES)
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double
    )
}

/// How checkpoint keys map to VarStore names and what may differ.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// True when the store's encoder vars carry [`BASE_PREFIX`] (heads), false for a bare
    /// `ConvBertModel`. The checkpoint's own form is read from its keys, once.
    pub model_prefixed: bool,
    /// Store names (or name prefixes ending in '.') allowed to be absent: they keep their init.
    pub allow_missing: Vec<String>,
    /// Checkpoint key suffixes ignored when unexpected (non-persistent buffers of old saves).
    pub ignore_unexpected: Vec<String>,
    /// When false, missing and unexpected keys are only reported; mis-shaped keys always fail.
    pub strict: bool,
}

impl LoadOptions {
    /// For a bare `ConvBertModel` store (vars `embeddings.…`, `encoder.…`).
    pub fn base_model() -> Self {
        LoadOptions {
            model_prefixed: false,
            allow_missing: Vec::new(),
            ignore_unexpected: vec![
                "embeddings.position_ids".into(),
                "embeddings.token_type_ids".into(),
            ],
            strict: true,
        }
    }

    /// For a head model whose encoder lives under `convbert.`; `allow_missing` names new layers.
    pub fn head_model(allow_missing: &[&str]) -> Self {
        LoadOptions {
            model_prefixed: true,
            allow_missing: allow_missing.iter().map(|s| s.to_string()).collect(),
            ..Self::base_model()
        }
    }

    fn may_be_missing(&self, name: &str) -> bool {
        self.allow_missing
            .iter()
            .any(|a| name == a || (a.ends_with('.') && name.starts_with(a.as_str())))
    }
}

/// What a load found; every list holds store names (mapped from checkpoint keys).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Store vars the checkpoint lacks.
    pub missing: Vec<String>,
    /// Checkpoint keys with no store var.
    pub unexpected: Vec<String>,
    /// `name: store [..] vs checkpoint [..]`.
    pub mismatched: Vec<String>,
    /// Checkpoint keys deliberately skipped (buffers, head weights when loading a base model;
    /// TF1 optimizer slots, `global_step` and generator weights, by their TensorFlow names).
    pub ignored: Vec<String>,
    /// The weights file that was read.
    pub source: PathBuf,
    /// Number of vars filled from the checkpoint.
    pub loaded: usize,
}

/// Names shown per list by [`LoadReport`]'s `Display` (the fields keep them all).
const REPORT_NAMES: usize = 50;

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names come from the file: bounded in number and length, so a hostile header cannot
        // turn one error into megabytes of text.
        let list = |names: &[String]| {
            let shown: Vec<String> = names
                .iter()
                .take(REPORT_NAMES)
                .map(|n| clip(n, 200))
                .collect();
            match names.len() - shown.len() {
                0 => format!("{shown:?}"),
                more => format!("{shown:?} and {more} more"),
            }
        };
        write!(
            f,
            "missing {}; unexpected {}; mis-shaped {}",
            list(&self.missing),
            list(&self.unexpected),
            list(&self.mismatched)
        )
    }
}

/// Maps a checkpoint key to the store's naming, or None when it is deliberately skipped.
fn map_key(key: &str, ckpt_prefixed: bool, model_prefixed: bool) -> Option<String> {
    match (ckpt_prefixed, model_prefixed) {
        (false, true) => Some(format!("{BASE_PREFIX}{key}")),
        // A head checkpoint loaded into a bare model: its non-encoder keys belong to the head.
        (true, false) => key.strip_prefix(BASE_PREFIX).map(str::to_string),
        _ => Some(key.to_string()),
    }
}

/// Checks `weights` against every var of `vs`, then copies them in (kind/device of the store).
/// Errors with [`ConvBertError::Weights`] naming all problems before anything is copied.
pub fn load_into(vs: &VarStore, weights: &Weights, options: &LoadOptions) -> Result<LoadReport> {
    let vars = vs.variables();
    let ckpt_prefixed = weights.names().any(|k| k.starts_with(BASE_PREFIX));
    let mut report = LoadReport {
        source: weights.source().to_path_buf(),
        ignored: weights.skipped().to_vec(),
        ..LoadReport::default()
    };
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for key in weights.names() {
        match map_key(key, ckpt_prefixed, options.model_prefixed) {
            Some(name) if vars.contains_key(&name) => {
                sources.insert(name, key.to_string());
            }
            Some(name)
                if options
                    .ignore_unexpected
                    .iter()
                    .any(|s| name.ends_with(s.as_str())) =>
            {
                report.ignored.push(key.to_string())
            }
            Some(name) => report.unexpected.push(name),
            None => report.ignored.push(key.to_string()),
        }
    }
    // A float parameter only takes a float tensor (HF refuses e.g. an int32 weight too); the
    // float format may differ (F16/BF16/F32/F64 are converted to the store's kind).
    for (name, key) in &sources {
        let (want, got) = (vars[name].kind(), weights.kind(key));
        if is_float(want) && !got.is_some_and(is_float) {
            return Err(ConvBertError::checkpoint(
                weights.file(key).unwrap_or(Path::new("")),
                format!(
                    "tensor {} is stored as {}, not a float dtype, but parameter {name} is {want:?}",
                    clip(key, 200),
                    weights.stored_dtype(key).unwrap_or("?")
                ),
            ));
        }
    }
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        match sources.get(name) {
            None => report.missing.push(name.clone()),
            Some(key) => {
                let want = vars[name].size();
                let got = weights.shape(key).unwrap_or_default();
                if want != got {
                    report
                        .mismatched
                        .push(format!("{name}: model {want:?} vs checkpoint {got:?}"));
                }
            }
        }
    }
    let fatal_missing = report.missing.iter().any(|n| !options.may_be_missing(n));
    if !report.mismatched.is_empty()
        || (options.strict && (fatal_missing || !report.unexpected.is_empty()))
    {
        return Err(ConvBertError::Weights(Box::new(report)));
    }
    for (name, key) in &sources {
        let mut var = vars[name].shallow_clone();
        weights.copy_into(key, &mut var)?;
        report.loaded += 1;
    }
    Ok(report)
}

/// The weights file a checkpoint is saved as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightsFormat {
    /// `model.safetensors`, what HF PyTorch models save.
    #[default]
    Safetensors,
    /// `tf_model.h5`, what HF's `TFConvBert*` classes load.
    TensorFlow,
}

impl WeightsFormat {
    /// The file name HF gives weights of this format.
    pub fn file_name(self) -> &'static str {
        match self {
            WeightsFormat::Safetensors => "model.safetensors",
            WeightsFormat::TensorFlow => "tf_model.h5",
        }
    }
}

/// The Keras instance name of the TF twin of an HF PyTorch class: `ConvBertForMaskedLM` →
/// `tf_conv_bert_for_masked_lm` (what `TFConvBertForMaskedLM` names its weights' scope).
pub fn keras_scope(class: &str) -> String {
    let mut out = String::from("tf");
    let mut prev_lower = true;
    for c in class.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = true;
        }
    }
    out
}

/// Writes the weights of `vs` into `dir` as `format` names them (see [`save_safetensors`],
/// [`save_tf_h5`]); `class` is the HF PyTorch class (`ConvBertModel`, `ConvBertForMaskedLM`, …).
pub fn save_weights(
    vs: &VarStore,
    config: &crate::ConvBertConfig,
    dir: &Path,
    format: WeightsFormat,
    class: &str,
) -> Result<PathBuf> {
    let path = dir.join(format.file_name());
    match format {
        WeightsFormat::Safetensors => save_safetensors(vs, &path)?,
        WeightsFormat::TensorFlow => save_tf_h5(vs, config, &path, &keras_scope(class))?,
    }
    Ok(path)
}

/// Writes every var of `vs` to `path` as safetensors (HF key names, metadata `{"format": "pt"}`).
pub fn save_safetensors(vs: &VarStore, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
    let mut buffers: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut vars: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in vars {
        let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
        let dtype = match t.kind() {
            Kind::Float => safetensors::Dtype::F32,
            Kind::Half => safetensors::Dtype::F16,
            Kind::BFloat16 => safetensors::Dtype::BF16,
            Kind::Double => safetensors::Dtype::F64,
            Kind::Int64 => safetensors::Dtype::I64,
            Kind::Int => safetensors::Dtype::I32,
            k => {
                return Err(ConvBertError::checkpoint(
                    path,
                    format!("{name}: cannot save kind {k:?}"),
                ))
            }
        };
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)?;
        let shape = t.size().iter().map(|&s| s as usize).collect();
        buffers.push((name, dtype, shape, bytes));
    }
    for (name, dtype, shape, bytes) in &buffers {
        let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| ConvBertError::checkpoint(path, format!("{name}: {e}")))?;
        tensors.push((name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors, Some(metadata), path)
        .map_err(|e| ConvBertError::checkpoint(path, format!("cannot write: {e}")))
}

/// A checkpoint directory: `name_or_dir` itself when it is a directory, the directory of a
/// weights file (`model.safetensors`, `tf_model.h5`, a TF1 `.index` or prefix, …), else an HF
/// model id (`Org/Name`) resolved in the local HF cache, downloaded from the Hub when missing
/// there (see [`crate::hub::resolve_with`]; HF's environment variables, `HF_HUB_OFFLINE` too).
pub fn locate(name_or_dir: &Path) -> Result<PathBuf> {
    if name_or_dir.is_dir() {
        return Ok(name_or_dir.to_path_buf());
    }
    if is_weights_file(name_or_dir) {
        return Ok(match name_or_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        });
    }
    let id = name_or_dir.to_string_lossy();
    let options = crate::hub::HubOptions::from_env();
    crate::hub::resolve_with(&options, &id, None).map_err(|e| match e {
        ConvBertError::NotFound { what, mut searched } => {
            searched.insert(0, name_or_dir.to_path_buf());
            ConvBertError::NotFound {
                what: format!("{what} (nor a directory {id:?})"),
                searched,
            }
        }
        ConvBertError::Download {
            model_id,
            file,
            url,
            status,
            reason,
        } => ConvBertError::Download {
            reason: format!("{reason} (nor is {id:?} a local directory)"),
            model_id,
            file,
            url,
            status,
        },
        other => other,
    })
}

fn is_weights_file(path: &Path) -> bool {
    path.is_file() || tf_bundle::prefix_of(path).is_some()
}

/// The weights `source` names: that file when it is one (see [`locate`]), else what its
/// checkpoint directory `dir` holds, in [`WEIGHT_FILES`] order.
pub fn open_weights(source: &Path, dir: &Path) -> Result<Weights> {
    if is_weights_file(source) {
        Weights::open(source)
    } else {
        Weights::open_dir(dir)
    }
}
