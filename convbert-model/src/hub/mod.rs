//! Resolution of an HF model id (`Org/Name`) to a snapshot directory of the HF cache, downloading
//! what is missing from the Hub (see [`download`]) unless offline. Cache roots: `$HF_HUB_CACHE`,
//! else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`;
//! layout `models--Org--Name/{blobs/, refs/<rev>, snapshots/<hash>/}` as written by
//! `huggingface_hub` (<https://huggingface.co/docs/huggingface_hub/guides/manage-cache>), whose
//! environment variables are read by [`HubOptions::from_env`]
//! (<https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables>).

mod download;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::checkpoint::{read_json_file, read_small_file, WEIGHT_FILES};
use crate::error::{ConvBertError, Result};

/// The Hub `HF_ENDPOINT` defaults to.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Tokenizer files fetched with a model when the repo has them (a 404 means absent).
pub const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
];

/// Where and how model ids are resolved and downloaded; [`HubOptions::from_env`] reads HF's
/// environment variables, tests build one directly (no process-global state).
#[derive(Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// Cache roots searched for a snapshot, in order; downloads go into the first.
    pub cache_roots: Vec<PathBuf>,
    /// Base URL of the Hub (`HF_ENDPOINT`), without a trailing '/'.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer <token>` (`HF_TOKEN`, else the token file).
    pub token: Option<String>,
    /// No network at all (`HF_HUB_OFFLINE=1`): only the cache is read.
    pub offline: bool,
    /// A progress bar on stderr while downloading.
    pub progress: bool,
}

impl fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("HubOptions")
            .field("cache_roots", &self.cache_roots)
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .field("progress", &self.progress)
            .finish()
    }
}

/// Largest token file read.
const MAX_TOKEN_BYTES: u64 = 4096;

impl HubOptions {
    /// Options for one cache directory, the public Hub, no token, online, no progress bar.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        HubOptions {
            cache_roots: vec![cache_dir.into()],
            endpoint: DEFAULT_ENDPOINT.to_string(),
            token: None,
            offline: false,
            progress: false,
        }
    }

    /// From the process environment; see [`HubOptions::from_vars`].
    pub fn from_env() -> Self {
        use std::io::IsTerminal;
        let mut options = Self::from_vars(|k| std::env::var_os(k));
        options.progress = std::io::stderr().is_terminal();
        options
    }

    /// From environment variables as `get` returns them (empty values count as unset):
    /// `HF_HUB_CACHE` (or `HUGGINGFACE_HUB_CACHE`), `HF_HOME`, `XDG_CACHE_HOME`, `HOME` for the
    /// cache roots; `HF_ENDPOINT`; `HF_TOKEN` (or `HUGGING_FACE_HUB_TOKEN`), else the file
    /// `$HF_TOKEN_PATH`, else `$HF_HOME/token` (HF's default home when unset);
    /// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) as HF reads booleans: 1/ON/YES/TRUE.
    /// No progress bar: [`HubOptions::from_env`] turns it on for a terminal.
    pub fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> Self {
        let env = |k: &str| get(k).filter(|v| !v.is_empty());
        let path = |k: &str| env(k).map(PathBuf::from);
        let mut roots = Vec::new();
        if let Some(p) = path("HF_HUB_CACHE").or_else(|| path("HUGGINGFACE_HUB_CACHE")) {
            roots.push(p);
        }
        if let Some(p) = path("HF_HOME") {
            roots.push(p.join("hub"));
        }
        if let Some(p) = path("XDG_CACHE_HOME") {
            roots.push(p.join("huggingface").join("hub"));
        }
        if let Some(p) = path("HOME") {
            roots.push(p.join(".cache").join("huggingface").join("hub"));
        }
        roots.dedup();
        let hf_home = path("HF_HOME")
            .or_else(|| path("XDG_CACHE_HOME").map(|p| p.join("huggingface")))
            .or_else(|| path("HOME").map(|p| p.join(".cache").join("huggingface")));
        let text = |k: &str| env(k).map(|v| v.to_string_lossy().trim().to_string());
        let token = text("HF_TOKEN")
            .or_else(|| text("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                let file = path("HF_TOKEN_PATH").or_else(|| hf_home.map(|h| h.join("token")))?;
                read_small_file(&file, MAX_TOKEN_BYTES)
                    .ok()
                    .map(|t| t.trim().to_string())
            })
            .filter(|t| !t.is_empty());
        let truthy = |k: &str| {
            text(k).is_some_and(|v| {
                ["1", "ON", "YES", "TRUE"]
                    .iter()
                    .any(|t| v.eq_ignore_ascii_case(t))
            })
        };
        HubOptions {
            cache_roots: roots,
            endpoint: text("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            token,
            offline: truthy("HF_HUB_OFFLINE") || truthy("TRANSFORMERS_OFFLINE"),
            progress: false,
        }
    }
}

/// The cache roots to search, in HF's order of precedence (only the first existing one is used
/// by HF; we search them all and report each).
pub fn cache_roots() -> Vec<PathBuf> {
    HubOptions::from_vars(|k| std::env::var_os(k)).cache_roots
}

/// Largest `refs/<revision>` file read (a commit hash and a newline).
const MAX_REF_BYTES: u64 = 1024;

/// A commit name as `refs/<rev>` may hold: a plain hash-like word, never a path.
fn is_commit_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// '/'-separated plain words, never "." or "..", no backslash or NUL: safe to join under a root.
fn is_plain(s: &str) -> bool {
    s.split('/')
        .all(|p| !p.is_empty() && p != ".." && p != "." && !p.contains(['\\', '\0']))
}

/// Checks `model_id` ("Org/Name" or "Name") and `revision`; returns the cache folder name.
fn repo_folder(model_id: &str, revision: &str) -> Result<String> {
    let parts: Vec<&str> = model_id.split('/').collect();
    if !is_plain(model_id) || parts.len() > 2 {
        return Err(ConvBertError::NotFound {
            what: format!("model id {model_id:?} (expected \"Org/Name\" or \"Name\")"),
            searched: Vec::new(),
        });
    }
    if !is_plain(revision) {
        return Err(ConvBertError::NotFound {
            what: format!("revision {revision:?} (expected a branch name or a commit hash)"),
            searched: Vec::new(),
        });
    }
    Ok(format!("models--{}", parts.join("--")))
}

/// The snapshot directory of `model_id` at `revision` (a ref name such as "main", or a commit
/// hash; default "main") in the local cache, with no network. Errors with every path looked at.
/// A ref file that names anything but a commit, or a snapshot that resolves outside
/// `snapshots/`, is an error.
pub fn resolve(model_id: &str, revision: Option<&str>) -> Result<PathBuf> {
    find_in_cache(&cache_roots(), model_id, revision.unwrap_or("main"))
}

/// The snapshot of `model_id` at `revision` (default "main"): from the cache when it holds
/// `config.json` and the weights, else downloaded into `options.cache_roots[0]` (config, weights
/// in [`WEIGHT_FILES`] order with every shard, and the [`TOKENIZER_FILES`] the repo has). When
/// `options.offline`, a missing file is a [`ConvBertError::NotFound`] naming it.
pub fn resolve_with(
    options: &HubOptions,
    model_id: &str,
    revision: Option<&str>,
) -> Result<PathBuf> {
    let revision = revision.unwrap_or("main");
    repo_folder(model_id, revision)?;
    let (cached, searched) = match find_in_cache(&options.cache_roots, model_id, revision) {
        Ok(snapshot) => {
            let missing = missing_files(&snapshot)?;
            if missing.is_empty() {
                return Ok(snapshot);
            }
            (Some((snapshot.clone(), missing)), vec![snapshot])
        }
        Err(ConvBertError::NotFound { searched, .. }) => (None, searched),
        Err(e) => return Err(e),
    };
    if options.offline {
        let missing = match &cached {
            Some((_, missing)) => missing.join(", "),
            None => format!(
                "config.json and the weights ({})",
                WEIGHT_FILES.join(" or ")
            ),
        };
        return Err(ConvBertError::NotFound {
            what: format!(
                "{model_id} at revision {revision}: HF_HUB_OFFLINE is set and the local HF cache \
                 lacks {missing}; fetch them with `huggingface-cli download {model_id}` \
                 (or unset HF_HUB_OFFLINE to download them)"
            ),
            searched,
        });
    }
    let in_cache = cached.is_some();
    match download::fetch(options, model_id, revision, cached.map(|c| c.0)) {
        // The model itself is unavailable: say where the cache was searched too.
        Err(ConvBertError::Download {
            model_id,
            file,
            url,
            status,
            reason,
        }) if !in_cache && file == "config.json" => Err(ConvBertError::Download {
            reason: format!("{reason}; not in the local HF cache either (looked in: {searched:?})"),
            model_id,
            file,
            url,
            status,
        }),
        other => other,
    }
}

/// The files a cached snapshot lacks to be loaded: `config.json`, the weights (any of
/// [`WEIGHT_FILES`], or a TF1 checkpoint) and the shards its index names.
fn missing_files(snapshot: &Path) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    if !snapshot.join("config.json").is_file() {
        missing.push("config.json".to_string());
    }
    match WEIGHT_FILES
        .iter()
        .find(|name| snapshot.join(name).is_file())
    {
        Some(index) if index.ends_with(".index.json") => {
            for shard in shard_names(&snapshot.join(index))? {
                if !snapshot.join(&shard).is_file() {
                    missing.push(shard);
                }
            }
        }
        Some(_) => {}
        None if has_tf1_checkpoint(snapshot) => {}
        None => missing.push(format!("the weights ({})", WEIGHT_FILES.join(" or "))),
    }
    Ok(missing)
}

fn has_tf1_checkpoint(dir: &Path) -> bool {
    dir.join("checkpoint").is_file()
        || std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.path().extension().is_some_and(|x| x == "index"))
        })
}

/// The distinct shard file names of a `*.index.json` `weight_map`, in order of appearance; a
/// name that is not a plain relative path inside the snapshot (`../x`, `/abs`) is an error.
pub(crate) fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = read_json_file(index)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ConvBertError::Json {
            path: index.to_path_buf(),
            source,
        })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ConvBertError::checkpoint(index, "no \"weight_map\" object"))?;
    let mut names: Vec<String> = Vec::new();
    for value in map.values() {
        let name = value.as_str().ok_or_else(|| {
            ConvBertError::checkpoint(index, "a \"weight_map\" value is not a file name")
        })?;
        if !is_plain(name) {
            return Err(ConvBertError::checkpoint(
                index,
                format!(
                    "shard {:?} is not a file inside the model repo; refusing it",
                    crate::checkpoint::clip(name, 200)
                ),
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// The snapshot of `model_id` at `revision` in the first of `roots` that holds its config.json.
fn find_in_cache(roots: &[PathBuf], model_id: &str, revision: &str) -> Result<PathBuf> {
    let folder = repo_folder(model_id, revision)?;
    let mut searched = Vec::new();
    for root in roots {
        let repo = root.join(&folder);
        if let Some(snapshot) = snapshot_in(&repo, revision, |s| s.join("config.json").is_file())? {
            return Ok(snapshot);
        }
        searched.push(repo.join("snapshots").join(revision));
    }
    Err(ConvBertError::NotFound {
        what: format!("{model_id} at revision {revision} in the local HF cache"),
        searched,
    })
}

/// `repo/snapshots/<commit of refs/revision>` when `accept` takes it, checked to lie inside
/// `repo/snapshots/` (a ref holding a path, or a snapshot symlinked out, is an error).
fn snapshot_in(
    repo: &Path,
    revision: &str,
    accept: impl Fn(&Path) -> bool,
) -> Result<Option<PathBuf>> {
    let ref_path = repo.join("refs").join(revision);
    let commit = if std::fs::symlink_metadata(&ref_path).is_ok() {
        let text = read_small_file(&ref_path, MAX_REF_BYTES)?;
        let commit = text.trim();
        if !is_commit_name(commit) {
            return Err(ConvBertError::io(
                &ref_path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "holds {:?}, not a commit hash",
                        crate::checkpoint::clip(commit, 80)
                    ),
                ),
            ));
        }
        commit.to_string()
    } else {
        revision.to_string()
    };
    let snapshots = repo.join("snapshots");
    let snapshot = snapshots.join(&commit);
    if !accept(&snapshot) {
        return Ok(None);
    }
    check_inside(&snapshot, &snapshots)?;
    Ok(Some(snapshot))
}

/// An error unless `path` (symlinks resolved) lies inside `base`.
fn check_inside(path: &Path, base: &Path) -> Result<()> {
    match (path.canonicalize(), base.canonicalize()) {
        (Ok(p), Ok(b)) if p.starts_with(&b) => Ok(()),
        _ => Err(ConvBertError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("resolves outside {}", base.display()),
            ),
        )),
    }
}
