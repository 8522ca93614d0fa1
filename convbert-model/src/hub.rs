//! Resolution of an HF model id (`Org/Name`) to a snapshot directory of the local HF cache, with
//! no network: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`; layout `models--Org--Name/{refs/<rev>, snapshots/<hash>/}` as
//! written by `huggingface_hub` (<https://huggingface.co/docs/huggingface_hub/guides/manage-cache>).

use std::path::PathBuf;

use crate::checkpoint::read_small_file;
use crate::error::{ConvBertError, Result};

/// The cache roots to search, in HF's order of precedence (only the first existing one is used
/// by HF; we search them all and report each).
pub fn cache_roots() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut roots = Vec::new();
    if let Some(p) = env("HF_HUB_CACHE").or_else(|| env("HUGGINGFACE_HUB_CACHE")) {
        roots.push(p);
    }
    if let Some(p) = env("HF_HOME") {
        roots.push(p.join("hub"));
    }
    if let Some(p) = env("XDG_CACHE_HOME") {
        roots.push(p.join("huggingface").join("hub"));
    }
    if let Some(p) = env("HOME") {
        roots.push(p.join(".cache").join("huggingface").join("hub"));
    }
    roots.dedup();
    roots
}

/// Largest `refs/<revision>` file read (a commit hash and a newline).
const MAX_REF_BYTES: u64 = 1024;

/// A commit name as `refs/<rev>` may hold: a plain hash-like word, never a path.
fn is_commit_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The snapshot directory of `model_id` at `revision` (a ref name such as "main", or a commit
/// hash; default "main"). Errors with every path looked at. A ref file that names anything but
/// a commit, or a snapshot that resolves outside `snapshots/`, is an error.
pub fn resolve(model_id: &str, revision: Option<&str>) -> Result<PathBuf> {
    let revision = revision.unwrap_or("main");
    // Names joined under the cache root: '/'-separated plain words, never "." or "..".
    let plain = |s: &str| {
        s.split('/')
            .all(|p| !p.is_empty() && p != ".." && p != "." && !p.contains(['\\', '\0']))
    };
    let parts: Vec<&str> = model_id.split('/').collect();
    if !plain(model_id) || parts.len() > 2 {
        return Err(ConvBertError::NotFound {
            what: format!("model id {model_id:?} (expected \"Org/Name\" or \"Name\")"),
            searched: Vec::new(),
        });
    }
    if !plain(revision) {
        return Err(ConvBertError::NotFound {
            what: format!("revision {revision:?} (expected a branch name or a commit hash)"),
            searched: Vec::new(),
        });
    }
    let folder = format!("models--{}", parts.join("--"));
    let mut searched = Vec::new();
    for root in cache_roots() {
        let repo = root.join(&folder);
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
        if snapshot.join("config.json").is_file() {
            let inside = match (snapshot.canonicalize(), snapshots.canonicalize()) {
                (Ok(s), Ok(base)) => s.starts_with(&base),
                _ => false,
            };
            if !inside {
                return Err(ConvBertError::io(
                    &snapshot,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("resolves outside {}", snapshots.display()),
                    ),
                ));
            }
            return Ok(snapshot);
        }
        searched.push(snapshot);
    }
    Err(ConvBertError::NotFound {
        what: format!("{model_id} at revision {revision} in the local HF cache"),
        searched,
    })
}
