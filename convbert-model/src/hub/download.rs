//! Downloads a model's files from the Hub into the HF cache layout through `hf-hub`'s blocking
//! (ureq, rustls) API: `GET {endpoint}/{Org/Name}/resolve/{revision}/{file}`, with the
//! `etag`/`x-linked-etag` and `x-repo-commit` headers naming the blob and the snapshot.

use std::path::PathBuf;

use hf_hub::api::sync::{Api, ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use indicatif::ProgressBar;

use super::{
    check_inside, is_commit_name, is_plain, repo_folder, shard_names, snapshot_in, HubOptions,
    TOKENIZER_FILES,
};
use crate::checkpoint::WEIGHT_FILES;
use crate::error::{ConvBertError, Result};

/// One model repo being fetched into one cache root.
struct Fetcher<'a> {
    options: &'a HubOptions,
    model_id: &'a str,
    api: Api,
    repo: ApiRepo,
    /// `<root>/models--Org--Name`.
    repo_dir: PathBuf,
    /// A partial snapshot of the same repo in the same root: its files are not fetched again.
    cached: Option<PathBuf>,
}

/// Downloads `config.json`, the weights (first of [`WEIGHT_FILES`] the repo has, with every
/// shard of an index) and the tokenizer files the repo has into `options.cache_roots[0]`;
/// returns the snapshot directory. Files already in `cached` are not fetched again.
pub(super) fn fetch(
    options: &HubOptions,
    model_id: &str,
    revision: &str,
    cached: Option<PathBuf>,
) -> Result<PathBuf> {
    let root = options
        .cache_roots
        .first()
        .ok_or_else(|| ConvBertError::NotFound {
            what: "a cache directory to download into (set HF_HUB_CACHE or HF_HOME)".into(),
            searched: Vec::new(),
        })?;
    let repo_dir = root.join(repo_folder(model_id, revision)?);
    let api = ApiBuilder::from_cache(Cache::new(root.clone()))
        .with_endpoint(options.endpoint.clone())
        .with_token(options.token.clone())
        .with_progress(false)
        .with_user_agent("convbert", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| ConvBertError::Download {
            model_id: model_id.to_string(),
            file: String::new(),
            url: options.endpoint.clone(),
            status: None,
            reason: e.to_string(),
        })?;
    let repo = api.repo(Repo::with_revision(
        model_id.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let fetcher = Fetcher {
        options,
        model_id,
        api,
        repo,
        cached: cached.filter(|c| c.starts_with(&repo_dir)),
        repo_dir,
    };
    fetcher.get("config.json", true)?;
    let mut has_weights = false;
    for name in WEIGHT_FILES {
        if let Some(path) = fetcher.get(name, false)? {
            if name.ends_with(".index.json") {
                for shard in shard_names(&path)? {
                    fetcher.get(&shard, true)?;
                }
            }
            has_weights = true;
            break;
        }
    }
    if !has_weights {
        return Err(ConvBertError::Download {
            model_id: model_id.to_string(),
            file: "weights".into(),
            url: fetcher.repo.url(WEIGHT_FILES[0]),
            status: Some(404),
            reason: format!("the repo has none of {}", WEIGHT_FILES.join(", ")),
        });
    }
    for name in TOKENIZER_FILES {
        fetcher.get(name, false)?;
    }
    snapshot_in(&fetcher.repo_dir, revision, |s| {
        s.join("config.json").is_file()
    })?
    .ok_or_else(|| ConvBertError::NotFound {
        what: format!("{model_id} at revision {revision} after downloading it"),
        searched: vec![fetcher.repo_dir.join("refs").join(revision)],
    })
}

impl Fetcher<'_> {
    /// The cached path of `file`, downloaded when missing; `None` when the Hub answers 404 and
    /// the file is not `required`.
    fn get(&self, file: &str, required: bool) -> Result<Option<PathBuf>> {
        let url = self.repo.url(file);
        if !is_plain(file) {
            return Err(self.refuse(file, &url, "the file name is not a path inside the repo"));
        }
        if let Some(path) = self.cached.as_ref().map(|dir| dir.join(file)) {
            if path.is_file() {
                return Ok(Some(path));
            }
        }
        // hf-hub joins the etag and the commit under the cache unchecked: look at them first.
        let meta = match self.api.metadata(&url) {
            Ok(meta) => meta,
            Err(e) => {
                let err = self.error(file, &url, e);
                let absent = matches!(
                    err,
                    ConvBertError::Download {
                        status: Some(404),
                        ..
                    }
                );
                return if absent && !required {
                    Ok(None)
                } else {
                    Err(err)
                };
            }
        };
        if !is_commit_name(meta.commit_hash()) || !is_plain(meta.etag()) {
            return Err(self.refuse(
                file,
                &url,
                "the server's x-repo-commit or etag header is not a plain hash",
            ));
        }
        let downloaded = if self.options.progress {
            self.repo.download_with_progress(file, ProgressBar::new(0))
        } else {
            self.repo.download_with_progress(file, ())
        };
        let path = downloaded.map_err(|e| self.error(file, &url, e))?;
        check_inside(&path, &self.repo_dir)?;
        let len = std::fs::metadata(&path)
            .map_err(|e| ConvBertError::io(&path, e))?
            .len();
        if len != meta.size() as u64 {
            return Err(self.refuse(
                file,
                &url,
                &format!("got {len} bytes, the server announced {}", meta.size()),
            ));
        }
        Ok(Some(path))
    }

    fn refuse(&self, file: &str, url: &str, reason: &str) -> ConvBertError {
        ConvBertError::Download {
            model_id: self.model_id.to_string(),
            file: file.to_string(),
            url: url.to_string(),
            status: None,
            reason: format!("{reason}; refusing it"),
        }
    }

    /// A typed error in plain words: the HTTP status and what it means here.
    fn error(&self, file: &str, url: &str, e: ApiError) -> ConvBertError {
        let (status, reason) = match e {
            ApiError::RequestError(e) => match *e {
                ureq::Error::StatusCode(s @ (401 | 403)) if self.options.token.is_some() => (
                    Some(s),
                    format!(
                        "HTTP {s}: the token (HF_TOKEN or the token file) was refused; the model \
                         is private or gated and needs a token with access to it"
                    ),
                ),
                ureq::Error::StatusCode(s @ (401 | 403)) => (
                    Some(s),
                    format!(
                        "HTTP {s}: the model is private or gated (or does not exist) and needs a \
                         token: set HF_TOKEN (or run `huggingface-cli login`)"
                    ),
                ),
                ureq::Error::StatusCode(404) => {
                    (Some(404), "HTTP 404: no such model or file".to_string())
                }
                ureq::Error::StatusCode(s) => (Some(s), format!("HTTP {s}")),
                other => (
                    None,
                    format!(
                        "cannot reach the Hub ({other}); with the files in the cache, \
                         HF_HUB_OFFLINE=1 uses them without network"
                    ),
                ),
            },
            ApiError::MissingHeader(h) => (
                None,
                format!("the answer lacks the `{h}` header the Hub sends (is HF_ENDPOINT a Hub?)"),
            ),
            other => (None, other.to_string()),
        };
        ConvBertError::Download {
            model_id: self.model_id.to_string(),
            file: file.to_string(),
            url: url.to_string(),
            status,
            reason,
        }
    }
}
