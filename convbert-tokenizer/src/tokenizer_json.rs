//! HF `tokenizer.json` for BERT: built exactly as `BertConverter` writes it (BertNormalizer,
//! BertPreTokenizer, WordPiece, TemplateProcessing, WordPiece decoder), and parsed back into a
//! vocabulary plus options. Anything that is not a BERT WordPiece pipeline is a typed error.

use crate::added_token::AddedToken;
use crate::config::TokenizerConfig;
use crate::error::{Result, TokenizerError};
use crate::post_processor::SpecialIds;
use crate::vocab::Vocab;
use serde_json::{json, Map, Value};

fn added_token(content: &str, id: u32) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": false, "special": true})
}

/// The `tokenizer.json` value of `vocab` + `config` (what `save_pretrained` writes).
pub(crate) fn build(vocab: &Vocab, config: &TokenizerConfig, ids: &SpecialIds) -> Value {
    let mut added: Vec<(u32, &str)> = vec![
        (ids.pad, &config.pad_token),
        (ids.unk, &config.unk_token),
        (ids.cls, &config.cls_token),
        (ids.sep, &config.sep_token),
        (ids.mask, &config.mask_token),
    ];
    added.sort_by_key(|a| a.0);
    added.dedup_by_key(|a| a.0);
    let vocab_map: Map<String, Value> = vocab
        .iter()
        .map(|(t, id)| (t.to_string(), json!(id)))
        .collect();
    let (cls, sep) = (&config.cls_token, &config.sep_token);
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added.iter().map(|&(id, t)| added_token(t, id)).collect::<Vec<_>>(),
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
                       "handle_chinese_chars": config.tokenize_chinese_chars,
                       "strip_accents": config.strip_accents, "lowercase": config.do_lower_case},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": cls, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": sep, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": cls, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": sep, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": sep, "type_id": 1}}],
            "special_tokens": {
                cls.as_str(): {"id": cls, "ids": [ids.cls], "tokens": [cls]},
                sep.as_str(): {"id": sep, "ids": [ids.sep], "tokens": [sep]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": config.unk_token, "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": config.max_input_chars_per_word, "vocab": vocab_map}
    })
}

fn special_name(piece: Option<&Value>) -> Option<&str> {
    piece
        .and_then(|p| p.pointer("/SpecialToken/id"))
        .and_then(Value::as_str)
}

fn bad(msg: impl Into<String>) -> TokenizerError {
    TokenizerError::Json(msg.into())
}

fn opt_bool(v: &Value, key: &str, default: bool) -> Result<bool> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(format!("normalizer.{key} is not a boolean"))),
    }
}

/// The `added_tokens` of a `tokenizer.json`, by id.
pub(crate) fn added_tokens(text: &str) -> Result<std::collections::BTreeMap<u32, AddedToken>> {
    let v: Value = serde_json::from_str(text)?;
    let mut out = std::collections::BTreeMap::new();
    for t in v
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = t
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| bad("added_tokens: an entry without an id"))?;
        let token: AddedToken = serde_json::from_value(t.clone())?;
        out.insert(id, token);
    }
    Ok(out)
}

/// Reads the vocabulary and options of a BERT `tokenizer.json`.
pub(crate) fn parse(text: &str) -> Result<(Vocab, TokenizerConfig)> {
    let v: Value = serde_json::from_str(text)?;
    let model = v.get("model").ok_or_else(|| bad("no model"))?;
    if model
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "WordPiece")
    {
        return Err(bad("model is not WordPiece"));
    }
    if model
        .get("continuing_subword_prefix")
        .and_then(Value::as_str)
        .is_some_and(|p| p != "##")
    {
        return Err(bad("continuing_subword_prefix must be \"##\""));
    }
    let vocab_obj = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("model.vocab is not an object"))?;
    let mut pairs = Vec::with_capacity(vocab_obj.len());
    for (token, id) in vocab_obj {
        let id = id
            .as_u64()
            .filter(|&i| i < u32::MAX as u64)
            .ok_or_else(|| bad(format!("bad id for {token:?}")))?;
        pairs.push((token.clone(), id as u32));
    }
    let vocab = Vocab::from_pairs(pairs)?;
    let mut config = TokenizerConfig::default();
    if let Some(unk) = model.get("unk_token") {
        config.unk_token = unk
            .as_str()
            .ok_or_else(|| bad("unk_token is not a string"))?
            .to_string();
    }
    if let Some(n) = model.get("max_input_chars_per_word") {
        config.max_input_chars_per_word =
            n.as_u64()
                .ok_or_else(|| bad("bad max_input_chars_per_word"))? as usize;
    }
    match v.get("normalizer") {
        None | Some(Value::Null) => {
            return Err(bad("a BertNormalizer is required"));
        }
        Some(n) if n.get("type").and_then(Value::as_str) == Some("BertNormalizer") => {
            if !opt_bool(n, "clean_text", true)? {
                return Err(bad("clean_text=false is not supported"));
            }
            config.do_lower_case = opt_bool(n, "lowercase", true)?;
            config.tokenize_chinese_chars = opt_bool(n, "handle_chinese_chars", true)?;
            config.strip_accents = match n.get("strip_accents") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => return Err(bad("normalizer.strip_accents is not a boolean")),
            };
        }
        Some(_) => return Err(bad("normalizer is not a BertNormalizer")),
    }
    if let Some(pp) = v.get("post_processor").filter(|p| !p.is_null()) {
        let (cls, sep) = match pp.get("type").and_then(Value::as_str) {
            Some("TemplateProcessing") => {
                let single = pp
                    .get("single")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("template without single"))?;
                (special_name(single.first()), special_name(single.last()))
            }
            Some("BertProcessing") => (
                pp.pointer("/cls/0").and_then(Value::as_str),
                pp.pointer("/sep/0").and_then(Value::as_str),
            ),
            _ => {
                return Err(bad(
                    "post_processor is neither TemplateProcessing nor BertProcessing",
                ))
            }
        };
        let (cls, sep) = cls
            .zip(sep)
            .ok_or_else(|| bad("post_processor lacks [CLS]/[SEP]"))?;
        config.cls_token = cls.to_string();
        config.sep_token = sep.to_string();
    }
    Ok((vocab, config))
}
