//! Resolution of an HF model id (`Org/Name`) to a snapshot directory of the local HF cache, with
//! no network: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`; layout `models--Org--Name/{refs/<rev>, snapshots/<hash>/}` as
//! written by `huggingface_hub` (<https://huggingface.co/docs/huggingface_hub/guides/manage-cache>).

use std::path::PathBuf;

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

/// The snapshot directory of `model_id` at `revision` (a ref name such as "main", or a commit
/// hash; default "main"). Errors with every path looked at.
pub fn resolve(model_id: &str, revision: Option<&str>) -> Result<PathBuf> {
    let revision = revision.unwrap_or("main");
    let parts: Vec<&str> = model_id.split('/').collect();
    let valid = !model_id.is_empty()
        && parts.len() <= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != ".." && *p != "." && !p.contains('\\'));
    if !valid {
        return Err(ConvBertError::NotFound {
            what: format!("model id {model_id:?} (expected \"Org/Name\" or \"Name\")"),
            searched: Vec::new(),
        });
    }
    let folder = format!("models--{}", parts.join("--"));
    let mut searched = Vec::new();
    for root in cache_roots() {
        let repo = root.join(&folder);
        let commit = std::fs::read_to_string(repo.join("refs").join(revision))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| revision.to_string());
        let snapshot = repo.join("snapshots").join(&commit);
        if snapshot.join("config.json").is_file() {
            return Ok(snapshot);
        }
        searched.push(snapshot);
    }
    Err(ConvBertError::NotFound {
        what: format!("{model_id} at revision {revision} in the local HF cache"),
        searched,
    })
}
