//! Downloads from a Hub: a local HTTP server on 127.0.0.1 answers `/{org}/{name}/resolve/{rev}/
//! {file}` as huggingface.co does (etag / x-linked-etag, x-repo-commit, range requests, 404 for
//! absent files, 401 without a token), serving the fixture checkpoints. No real network.

mod common;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::fixtures;
use convbert_model::hub::{resolve_with, HubOptions};
use convbert_model::{ConvBertError, ConvBertModel};
use tch::{Device, Kind, Tensor};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// What the server was asked: (path, Authorization header).
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Hub {
    addr: String,
    log: Log,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hub {
    /// Serves `files` (repo-relative name → bytes) of every repo under `/{repo}/resolve/main/`;
    /// with `token`, any request without `Authorization: Bearer <token>` gets 401.
    fn start(repo: &str, files: HashMap<String, Vec<u8>>, token: Option<&str>) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let log: Log = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let prefix = format!("/{repo}/resolve/main/");
        let token = token.map(|t| format!("Bearer {t}"));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve(stream, &prefix, &files, token.as_deref(), &log2);
                }
            }
        });
        Hub {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A plain hex word from the content (what the Hub's sha256 / git-sha1 etags look like).
fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}{:08x}", bytes.len())
}

fn serve(
    stream: TcpStream,
    prefix: &str,
    files: &HashMap<String, Vec<u8>>,
    token: Option<&str>,
    log: &Log,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let auth = headers.get("authorization").cloned();
    log.lock().unwrap().push((path.clone(), auth.clone()));
    let reply = |status: &str, extra: &[(&str, String)], body: &[u8]| {
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = stream.try_clone().unwrap();
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(body);
    };
    if token.is_some() && auth.as_deref() != token {
        let err = [("X-Error-Code", "RepoNotFound".to_string())];
        return reply("401 Unauthorized", &err, b"Invalid credentials");
    }
    let Some(bytes) = path.strip_prefix(prefix).and_then(|f| files.get(f)) else {
        let err = [("X-Error-Code", "EntryNotFound".to_string())];
        return reply("404 Not Found", &err, b"Entry not found");
    };
    let tag = etag(bytes);
    let mut extra = vec![
        ("X-Repo-Commit", COMMIT.to_string()),
        ("ETag", format!("\"{tag}\"")),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    if path.ends_with(".safetensors") {
        // LFS files: the blob is named by x-linked-etag (the sha256), the etag is the pointer's.
        extra.push(("X-Linked-Etag", format!("\"{tag}\"")));
        extra[1].1 = "\"pointer\"".into();
    }
    let total = bytes.len();
    match headers.get("range").and_then(|r| r.strip_prefix("bytes=")) {
        Some(range) => {
            let (a, b) = range.split_once('-').unwrap();
            let start: usize = a.parse().unwrap();
            let end: usize = b.parse().map_or(total - 1, |e: usize| e.min(total - 1));
            extra.push(("Content-Range", format!("bytes {start}-{end}/{total}")));
            reply("206 Partial Content", &extra, &bytes[start..=end]);
        }
        None => reply("200 OK", &extra, bytes),
    }
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convbert-hub-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn checkpoint_files(case: &str) -> HashMap<String, Vec<u8>> {
    let dir = fixtures().join(case).join("checkpoint");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn options(hub: &Hub, cache: &Path) -> HubOptions {
    HubOptions {
        endpoint: hub.addr.clone(),
        ..HubOptions::new(cache)
    }
}

fn output(dir: &Path) -> Tensor {
    let (model, _vs) = ConvBertModel::from_pretrained(dir, Device::Cpu, Kind::Float).unwrap();
    let ids = Tensor::from_slice(&[2i64, 7, 11, 5, 3, 0]).view([1, 6]);
    model.forward_ids(&ids, None).unwrap()
}

fn download_error(result: convbert_model::Result<PathBuf>) -> (Option<u16>, String) {
    match result {
        Err(e @ ConvBertError::Download { status, .. }) => (status, e.to_string()),
        other => panic!("expected a Download error, got {other:?}"),
    }
}

#[test]
fn first_load_downloads_then_the_cache_serves_it_offline() {
    let mut files = checkpoint_files("base");
    files.insert("vocab.txt".into(), b"[PAD]\n[UNK]\nhello\n".to_vec());
    let hub = Hub::start("org/tiny", files, None);
    let cache = tmp_dir("first");
    let snapshot = resolve_with(&options(&hub, &cache), "org/tiny", None).unwrap();
    let repo = cache.join("models--org--tiny");
    assert_eq!(snapshot, repo.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(repo.join("refs").join("main")).unwrap(),
        COMMIT
    );
    for f in ["config.json", "model.safetensors", "vocab.txt"] {
        let path = snapshot.join(f);
        assert!(path.is_file(), "{f}");
        // Snapshot entries point into blobs/, as huggingface_hub lays them out.
        let blob = path.canonicalize().unwrap();
        assert!(blob.starts_with(repo.join("blobs").canonicalize().unwrap()));
    }
    assert!(!snapshot.join("tokenizer.json").exists());
    // Weights in HF's order: model.safetensors was found, so no .bin was asked for.
    let asked: Vec<String> = hub.requests().into_iter().map(|r| r.0).collect();
    assert!(
        !asked.iter().any(|p| p.ends_with("pytorch_model.bin")),
        "{asked:?}"
    );
    assert!(asked
        .iter()
        .all(|p| p.starts_with("/org/tiny/resolve/main/")));
    // The same numbers as the fixture directory itself.
    let want = output(&fixtures().join("base").join("checkpoint"));
    assert!(output(&snapshot).equal(&want));

    // The server gone: the cache answers, online or offline, without a request.
    let addr = hub.addr.clone();
    drop(hub);
    let mut opts = HubOptions {
        endpoint: addr,
        ..HubOptions::new(&cache)
    };
    assert_eq!(resolve_with(&opts, "org/tiny", None).unwrap(), snapshot);
    opts.offline = true;
    assert_eq!(resolve_with(&opts, "org/tiny", None).unwrap(), snapshot);
}

#[test]
fn a_sharded_checkpoint_downloads_every_shard() {
    let hub = Hub::start("org/sharded", checkpoint_files("sharded"), None);
    let cache = tmp_dir("sharded");
    let snapshot = resolve_with(&options(&hub, &cache), "org/sharded", None).unwrap();
    for i in 1..=4 {
        assert!(snapshot
            .join(format!("model-0000{i}-of-00004.safetensors"))
            .is_file());
    }
    let want = output(&fixtures().join("sharded").join("checkpoint"));
    assert!(output(&snapshot).equal(&want));
}

#[test]
fn offline_with_an_empty_cache_names_the_missing_files_and_how_to_fetch_them() {
    let cache = tmp_dir("offline");
    let opts = HubOptions {
        offline: true,
        // Nothing listens there: offline means no request at all.
        endpoint: "http://127.0.0.1:9".into(),
        ..HubOptions::new(&cache)
    };
    match resolve_with(&opts, "org/tiny", None) {
        Err(e @ ConvBertError::NotFound { .. }) => {
            let msg = e.to_string();
            for part in [
                "config.json",
                "model.safetensors",
                "HF_HUB_OFFLINE",
                "huggingface-cli download org/tiny",
            ] {
                assert!(msg.contains(part), "{part}: {msg}");
            }
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    // A partial snapshot (config only): the weights are named.
    let snapshot = cache
        .join("models--org--tiny")
        .join("snapshots")
        .join("abc");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(snapshot.join("config.json"), "{}").unwrap();
    let err = resolve_with(&opts, "org/tiny", Some("abc")).unwrap_err();
    assert!(err.to_string().contains("lacks the weights"), "{err}");
}

#[test]
fn a_private_model_asks_for_hf_token_and_the_token_is_sent() {
    let hub = Hub::start("org/private", checkpoint_files("base"), Some("hf_secret"));
    let cache = tmp_dir("token");
    let (status, msg) = download_error(resolve_with(&options(&hub, &cache), "org/private", None));
    assert_eq!(status, Some(401));
    assert!(
        msg.contains("HF_TOKEN") && msg.contains("config.json"),
        "{msg}"
    );
    // A wrong token: refused, and said so.
    let wrong = HubOptions {
        token: Some("hf_wrong".into()),
        ..options(&hub, &cache)
    };
    let (_, msg) = download_error(resolve_with(&wrong, "org/private", None));
    assert!(msg.contains("token") && msg.contains("refused"), "{msg}");
    // The right one, sent as a bearer token on every request.
    let right = HubOptions {
        token: Some("hf_secret".into()),
        ..options(&hub, &cache)
    };
    let before = hub.requests().len();
    resolve_with(&right, "org/private", None).unwrap();
    let sent = &hub.requests()[before..];
    assert!(!sent.is_empty());
    assert!(
        sent.iter()
            .all(|(_, auth)| auth.as_deref() == Some("Bearer hf_secret")),
        "{sent:?}"
    );
}

#[test]
fn missing_models_and_weights_are_404_errors_in_plain_words() {
    let hub = Hub::start("org/tiny", checkpoint_files("base"), None);
    let cache = tmp_dir("404");
    let (status, msg) = download_error(resolve_with(&options(&hub, &cache), "org/absent", None));
    assert_eq!(status, Some(404));
    assert!(
        msg.contains("no such model or file") && msg.contains("config.json"),
        "{msg}"
    );
    // Where the cache was searched, as when the Hub cannot be reached.
    assert!(
        msg.contains("looked in") && msg.contains("models--org--absent"),
        "{msg}"
    );
    let mut config_only = HashMap::new();
    config_only.insert("config.json".to_string(), b"{}".to_vec());
    let hub = Hub::start("org/empty", config_only, None);
    let (status, msg) = download_error(resolve_with(&options(&hub, &cache), "org/empty", None));
    assert_eq!(status, Some(404));
    assert!(
        msg.contains("model.safetensors") && msg.contains("tf_model.h5"),
        "{msg}"
    );
}

#[test]
fn an_index_naming_a_shard_outside_the_repo_is_refused() {
    let cache = tmp_dir("evil");
    for evil in ["../evil.safetensors", "/etc/evil.safetensors", "a/../../x"] {
        let mut files = checkpoint_files("base");
        files.remove("model.safetensors");
        let index = format!(r#"{{"metadata": {{}}, "weight_map": {{"w": "{evil}"}}}}"#);
        files.insert("model.safetensors.index.json".into(), index.into_bytes());
        let hub = Hub::start("org/evil", files, None);
        let err = resolve_with(&options(&hub, &cache), "org/evil", None).unwrap_err();
        assert!(err.to_string().contains("refusing"), "{evil}: {err}");
        let asked = hub.requests();
        assert!(!asked
            .iter()
            .any(|(p, _)| p.contains("evil.safetensors") || p.ends_with("/x")));
    }
    assert!(!cache.join("evil.safetensors").exists());
    assert!(!cache
        .join("models--org--evil")
        .join("evil.safetensors")
        .exists());
}

#[test]
fn options_from_the_environment_follow_huggingface_hub() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    let o = HubOptions::from_vars(vars(&[("HOME", "/home/u")]));
    assert_eq!(
        o.cache_roots,
        vec![PathBuf::from("/home/u/.cache/huggingface/hub")]
    );
    assert_eq!(o.endpoint, "https://huggingface.co");
    assert!(!o.offline && o.token.is_none());
    let o = HubOptions::from_vars(vars(&[
        ("HF_HUB_CACHE", "/c"),
        ("HF_HOME", "/h"),
        ("HF_ENDPOINT", "http://mirror.local/"),
        ("HF_TOKEN", " hf_x \n"),
        ("HF_HUB_OFFLINE", "yes"),
    ]));
    assert_eq!(
        o.cache_roots[..2],
        [PathBuf::from("/c"), PathBuf::from("/h/hub")]
    );
    assert_eq!(o.endpoint, "http://mirror.local");
    assert_eq!(o.token.as_deref(), Some("hf_x"));
    assert!(o.offline);
    assert!(!format!("{o:?}").contains("hf_x"), "the token never prints");
    for off in ["0", "false", ""] {
        let o = HubOptions::from_vars(move |k| (k == "HF_HUB_OFFLINE").then(|| off.into()));
        assert!(!o.offline, "{off:?}");
    }
    // The token file of HF_HOME, as `huggingface-cli login` writes it.
    let home = tmp_dir("hf-home");
    std::fs::write(home.join("token"), "hf_from_file\n").unwrap();
    let home2 = home.clone();
    let o = HubOptions::from_vars(move |k| (k == "HF_HOME").then(|| home2.clone().into()));
    assert_eq!(o.token.as_deref(), Some("hf_from_file"));
    assert_eq!(o.cache_roots[0], home.join("hub"));
}

/// The one test of this binary that touches process environment variables: the public entry
/// point, `ConvBertModel::from_pretrained("org/tiny")`, downloads through HF_ENDPOINT into
/// HF_HUB_CACHE, then loads from the cache with HF_HUB_OFFLINE=1.
#[test]
fn from_pretrained_downloads_a_model_id_through_the_environment() {
    let hub = Hub::start("org/tiny-env", checkpoint_files("base"), Some("hf_env"));
    let cache = tmp_dir("env");
    let saved: Vec<(&str, Option<OsString>)> =
        ["HF_ENDPOINT", "HF_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE"]
            .into_iter()
            .map(|k| (k, std::env::var_os(k)))
            .collect();
    std::env::set_var("HF_ENDPOINT", &hub.addr);
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::set_var("HF_TOKEN", "hf_env");
    std::env::remove_var("HF_HUB_OFFLINE");
    let loaded = ConvBertModel::from_pretrained("org/tiny-env", Device::Cpu, Kind::Float);
    drop(hub);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let cached = ConvBertModel::from_pretrained("org/tiny-env", Device::Cpu, Kind::Float);
    let absent = ConvBertModel::from_pretrained("org/never-downloaded", Device::Cpu, Kind::Float);
    // Online with an unreachable Hub (nothing listens on the discard port): the cache was
    // searched and the Hub could not be reached, both said on one line.
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    let unreachable =
        ConvBertModel::from_pretrained("org/never-downloaded", Device::Cpu, Kind::Float);
    for (k, v) in saved {
        match v {
            Some(v) => std::env::set_var(k, v),
            None => std::env::remove_var(k),
        }
    }
    let ids = Tensor::from_slice(&[2i64, 7, 11]).view([1, 3]);
    let (a, _vs) = loaded.unwrap();
    let (b, _vs2) = cached.unwrap();
    assert!(a
        .forward_ids(&ids, None)
        .unwrap()
        .equal(&b.forward_ids(&ids, None).unwrap()));
    match absent {
        Err(e @ ConvBertError::NotFound { .. }) => {
            assert!(e.to_string().contains("huggingface-cli download"), "{e}")
        }
        other => panic!("expected NotFound, got {:?}", other.err()),
    }
    match unreachable {
        Err(e @ ConvBertError::Download { status: None, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("cannot reach the Hub"), "{msg}");
            assert!(msg.contains("looked in") && msg.contains("models--org--never-downloaded"));
            assert_eq!(msg.lines().count(), 1, "{msg}");
        }
        other => panic!("expected a Download error, got {:?}", other.err()),
    }
}
