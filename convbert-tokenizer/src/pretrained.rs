//! The files of a checkpoint directory, read as transformers 4.57.6 `from_pretrained` reads them
//! (`tokenization_utils_base.py` `_from_pretrained`) and written as `save_pretrained` writes them:
//! `tokenizer_config.json` (constructor options, special tokens, `added_tokens_decoder`),
//! `special_tokens_map.json` (overrides the special tokens), `added_tokens.json` (legacy
//! `{token: id}`, used when the config has no `added_tokens_decoder`), `vocab.txt`, `tokenizer.json`.

use crate::added_token::AddedToken;
use crate::config::TokenizerConfig;
use crate::error::{Result, TokenizerError};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// HF's `VERY_LARGE_INTEGER` (`int(1e30)`), what `model_max_length` is without a limit.
const VERY_LARGE_INTEGER: &str = "1000000000000000019884624838656";
/// Stand-in written by serde and replaced by [`VERY_LARGE_INTEGER`] in the text.
const UNBOUNDED_SENTINEL: u64 = u64::MAX;
/// JSON files above this size are refused (a FIFO or a huge file never hangs a load).
const MAX_JSON_BYTES: u64 = 1 << 30;

/// What a checkpoint directory says about its tokenizer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pretrained {
    pub(crate) config: TokenizerConfig,
    /// `added_tokens_decoder` (or `added_tokens.json`), by id.
    pub(crate) added: BTreeMap<u32, AddedToken>,
    /// The `tokenizer.json` path and text, when present.
    pub(crate) tokenizer_json: Option<(PathBuf, String)>,
    /// The `vocab.txt` path, when present.
    pub(crate) vocab_txt: Option<PathBuf>,
    /// tokenizer_config.json and special_tokens_map.json as read.
    files: Vec<(PathBuf, Map<String, Value>, bool)>,
}

impl Pretrained {
    /// The options of the config files applied over `base` (e.g. what `tokenizer.json` says):
    /// HF's constructor kwargs win over `tokenizer.json`.
    pub(crate) fn config_over(&self, mut base: TokenizerConfig) -> Result<TokenizerConfig> {
        for (path, m, full) in &self.files {
            if *full {
                apply_config(path, m, &mut base)?;
            } else {
                apply_special_tokens(path, m, &mut base)?;
            }
        }
        Ok(base)
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a regular file of at most [`MAX_JSON_BYTES`] as text; `None` when it does not exist.
pub(crate) fn read_text(path: &Path) -> Result<Option<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TokenizerError::io(path, e)),
    };
    if !meta.is_file() {
        return Err(bad(path, "not a regular file"));
    }
    if meta.len() > MAX_JSON_BYTES {
        return Err(bad(path, format!("{} bytes is too large", meta.len())));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_JSON_BYTES).read_to_string(&mut text))
        .map_err(|e| TokenizerError::io(path, e))?;
    Ok(Some(text))
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    match serde_json::from_str(&text).map_err(|e| bad(path, e.to_string()))? {
        Value::Object(m) => Ok(Some(m)),
        _ => Err(bad(path, "not a JSON object")),
    }
}

/// A special token given as a string or as a serialised `AddedToken` (`{"content": ...}`).
fn token_content(path: &Path, key: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Object(o) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(bad(
                path,
                format!("{key}: an AddedToken needs a string \"content\""),
            )),
        },
        _ => Err(bad(
            path,
            format!("{key}: expected a string or an AddedToken"),
        )),
    }
}

fn opt_bool(path: &Path, m: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(path, format!("{key}: expected a boolean"))),
    }
}

/// Applies the special tokens of a config or special-tokens map onto `config`.
fn apply_special_tokens(
    path: &Path,
    m: &Map<String, Value>,
    config: &mut TokenizerConfig,
) -> Result<()> {
    let slots: [(&str, &mut String); 5] = [
        ("unk_token", &mut config.unk_token),
        ("sep_token", &mut config.sep_token),
        ("pad_token", &mut config.pad_token),
        ("cls_token", &mut config.cls_token),
        ("mask_token", &mut config.mask_token),
    ];
    for (key, slot) in slots {
        if let Some(v) = m.get(key) {
            if let Some(s) = token_content(path, key, v)? {
                *slot = s;
            }
        }
    }
    if let Some(v) = m.get("additional_special_tokens") {
        let list = match v {
            Value::Null => Vec::new(),
            Value::Array(a) => a
                .iter()
                .map(|t| token_content(path, "additional_special_tokens", t))
                .filter_map(Result::transpose)
                .collect::<Result<Vec<_>>>()?,
            _ => return Err(bad(path, "additional_special_tokens: expected a list")),
        };
        config.additional_special_tokens = list;
    }
    Ok(())
}

/// Reads the options of `tokenizer_config.json` onto HF's defaults.
fn apply_config(path: &Path, m: &Map<String, Value>, c: &mut TokenizerConfig) -> Result<()> {
    if let Some(b) = opt_bool(path, m, "do_lower_case")? {
        c.do_lower_case = b;
    }
    if let Some(b) = opt_bool(path, m, "do_basic_tokenize")? {
        c.do_basic_tokenize = b;
    }
    if let Some(b) = opt_bool(path, m, "tokenize_chinese_chars")? {
        c.tokenize_chinese_chars = b;
    }
    if m.contains_key("strip_accents") {
        c.strip_accents = opt_bool(path, m, "strip_accents")?;
    }
    if let Some(b) = opt_bool(path, m, "clean_up_tokenization_spaces")? {
        c.clean_up_tokenization_spaces = b;
    }
    match m.get("never_split") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            c.never_split = a
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(path, "never_split: expected strings"))
                })
                .collect::<Result<_>>()?;
        }
        Some(_) => return Err(bad(path, "never_split: expected a list")),
    }
    match m.get("model_max_length") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => {
            // HF writes int(1e30) for "no limit"; anything beyond 1e18 is unbounded here.
            c.model_max_length = match n.as_u64() {
                Some(v) if v < 1_000_000_000_000_000_000 => Some(v as usize),
                Some(_) => None,
                None => match n.as_f64() {
                    Some(f) if (0.0..1e18).contains(&f) => Some(f as usize),
                    Some(f) if f >= 1e18 => None,
                    _ => return Err(bad(path, "model_max_length: expected a positive number")),
                },
            };
        }
        Some(_) => return Err(bad(path, "model_max_length: expected a number")),
    }
    apply_special_tokens(path, m, c)
}

/// `added_tokens_decoder` of tokenizer_config.json: `{"<id>": AddedToken}`.
fn added_tokens_decoder(path: &Path, v: &Value) -> Result<BTreeMap<u32, AddedToken>> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad(path, "added_tokens_decoder: expected an object"))?;
    obj.iter()
        .map(|(id, t)| {
            let id: u32 = id
                .parse()
                .map_err(|_| bad(path, format!("added_tokens_decoder: bad id {id:?}")))?;
            let token: AddedToken = serde_json::from_value(t.clone())
                .map_err(|e| bad(path, format!("added_tokens_decoder[{id}]: {e}")))?;
            Ok((id, token))
        })
        .collect()
}

/// Reads every tokenizer file of `dir` (none is required here; the callers decide).
pub(crate) fn read_dir(dir: &Path) -> Result<Pretrained> {
    let mut p = Pretrained::default();
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg = read_json(&cfg_path)?;
    if let Some(m) = &cfg {
        p.files.push((cfg_path.clone(), m.clone(), true));
    }
    let map_path = dir.join("special_tokens_map.json");
    if let Some(m) = read_json(&map_path)? {
        p.files.push((map_path, m, false));
    }
    p.config = p.config_over(TokenizerConfig::default())?;
    match cfg.as_ref().and_then(|m| m.get("added_tokens_decoder")) {
        Some(v) => p.added = added_tokens_decoder(&cfg_path, v)?,
        None => {
            // Legacy checkpoints: `{token: id}`; special when it is one of the special tokens.
            let path = dir.join("added_tokens.json");
            if let Some(m) = read_json(&path)? {
                let specials = p.config.all_special_tokens();
                for (content, id) in m {
                    let id = id
                        .as_u64()
                        .and_then(|i| u32::try_from(i).ok())
                        .ok_or_else(|| bad(&path, format!("{content:?}: expected an id")))?;
                    let token = if specials.contains(&content.as_str()) {
                        AddedToken::special(content)
                    } else {
                        AddedToken::new(content)
                    };
                    p.added.insert(id, token);
                }
            }
        }
    }
    let json_path = dir.join("tokenizer.json");
    if let Some(text) = read_text(&json_path)? {
        p.tokenizer_json = Some((json_path, text));
    }
    let vocab = dir.join("vocab.txt");
    if vocab.is_file() {
        p.vocab_txt = Some(vocab);
    }
    if p.tokenizer_json.is_none() && p.vocab_txt.is_none() {
        return Err(TokenizerError::MissingVocab(dir.to_path_buf()));
    }
    Ok(p)
}

/// `value` with every object's keys sorted (Python's `json.dumps(sort_keys=True)`).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(m) => {
            let sorted: BTreeMap<String, Value> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        v => v,
    }
}

/// A top-level entry of a written file: a JSON value, or `added_tokens_decoder`, whose keys
/// Python sorts as the integers they were (`"4"` before `"16"`).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Entry {
    Value(Value),
    ById(BTreeMap<u32, Value>),
}

/// Writes `value` as `json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"`.
fn write_json(path: &Path, value: Value) -> Result<PathBuf> {
    write_entries(path, value, None)
}

/// [`write_json`] with an `added_tokens_decoder` entry in id order.
fn write_entries(
    path: &Path,
    value: Value,
    by_id: Option<(&str, BTreeMap<u32, Value>)>,
) -> Result<PathBuf> {
    let Value::Object(m) = sorted(value) else {
        return Err(bad(path, "not an object"));
    };
    let mut entries: BTreeMap<String, Entry> =
        m.into_iter().map(|(k, v)| (k, Entry::Value(v))).collect();
    if let Some((key, map)) = by_id {
        entries.insert(key.to_string(), Entry::ById(map));
    }
    let mut text = serde_json::to_string_pretty(&entries)?;
    text = text.replace(
        &format!("\"model_max_length\": {UNBOUNDED_SENTINEL}"),
        &format!("\"model_max_length\": {VERY_LARGE_INTEGER}"),
    );
    text.push('\n');
    std::fs::write(path, text).map_err(|e| TokenizerError::io(path, e))?;
    Ok(path.to_path_buf())
}

fn token_dict(t: &AddedToken) -> Value {
    json!({"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
           "rstrip": t.rstrip, "single_word": t.single_word})
}

/// Writes `tokenizer_config.json`, `special_tokens_map.json` and, when there are added tokens
/// beyond the vocabulary, `added_tokens.json`, as `save_pretrained` does. Returns the paths.
pub(crate) fn write_configs(
    dir: &Path,
    config: &TokenizerConfig,
    added: &BTreeMap<u32, AddedToken>,
    vocab_size: usize,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| TokenizerError::io(dir, e))?;
    let decoder: BTreeMap<u32, Value> = added
        .iter()
        .map(|(&id, t)| {
            let mut v = token_dict(t);
            v["special"] = json!(t.special);
            (id, sorted(v))
        })
        .collect();
    let by_content: BTreeMap<&str, &AddedToken> =
        added.values().map(|t| (t.content.as_str(), t)).collect();
    let mut cfg = json!({
        "clean_up_tokenization_spaces": config.clean_up_tokenization_spaces,
        "cls_token": config.cls_token,
        "do_basic_tokenize": config.do_basic_tokenize,
        "do_lower_case": config.do_lower_case,
        "extra_special_tokens": {},
        "mask_token": config.mask_token,
        "model_max_length": config.model_max_length.map_or(UNBOUNDED_SENTINEL, |n| n as u64),
        "never_split": if config.never_split.is_empty() { Value::Null } else { json!(config.never_split) },
        "pad_token": config.pad_token,
        "sep_token": config.sep_token,
        "strip_accents": config.strip_accents,
        "tokenize_chinese_chars": config.tokenize_chinese_chars,
        "tokenizer_class": "ConvBertTokenizer",
        "unk_token": config.unk_token,
    });
    let mut map = json!({
        "cls_token": config.cls_token, "mask_token": config.mask_token, "pad_token": config.pad_token,
        "sep_token": config.sep_token, "unk_token": config.unk_token,
    });
    if !config.additional_special_tokens.is_empty() {
        cfg["additional_special_tokens"] = json!(config.additional_special_tokens);
        map["additional_special_tokens"] = config
            .additional_special_tokens
            .iter()
            .map(|c| {
                by_content.get(c.as_str()).map_or_else(
                    || token_dict(&AddedToken::special(c.clone())),
                    |t| token_dict(t),
                )
            })
            .collect();
    }
    let mut out = vec![
        write_entries(
            &dir.join("tokenizer_config.json"),
            cfg,
            Some(("added_tokens_decoder", decoder)),
        )?,
        write_json(&dir.join("special_tokens_map.json"), map)?,
    ];
    let beyond: Map<String, Value> = added
        .iter()
        .filter(|(&id, _)| id as usize >= vocab_size)
        .map(|(id, t)| (t.content.clone(), json!(id)))
        .collect();
    if !beyond.is_empty() {
        out.push(write_json(
            &dir.join("added_tokens.json"),
            Value::Object(beyond),
        )?);
    }
    Ok(out)
}
