//! encode.jsonl, decode.jsonl, special.jsonl and small-tokenizer.json against both references.
mod common;

use common::{fixtures, pairs, read_jsonl, tokenizers, u32s, Report};
use convbert_tokenizer::{
    EncodeOptions, Encoding, PaddingStrategy, Side, TruncationStrategy, Vocab,
};
use serde_json::{json, Value};

fn options(o: &Value) -> EncodeOptions {
    let mut opts = EncodeOptions {
        return_offsets: true,
        ..EncodeOptions::default()
    };
    if let Some(b) = o.get("add_special_tokens").and_then(Value::as_bool) {
        opts.add_special_tokens = b;
    }
    opts.truncation = match o.get("truncation") {
        Some(Value::Bool(true)) => TruncationStrategy::LongestFirst,
        Some(Value::String(s)) => match s.as_str() {
            "longest_first" => TruncationStrategy::LongestFirst,
            "only_first" => TruncationStrategy::OnlyFirst,
            "only_second" => TruncationStrategy::OnlySecond,
            _ => TruncationStrategy::DoNotTruncate,
        },
        _ => TruncationStrategy::DoNotTruncate,
    };
    opts.padding = match o.get("padding").and_then(Value::as_str) {
        Some("longest") => PaddingStrategy::Longest,
        Some("max_length") => PaddingStrategy::MaxLength,
        _ => PaddingStrategy::DoNotPad,
    };
    opts.max_length = o
        .get("max_length")
        .and_then(Value::as_u64)
        .map(|v| v as usize);
    opts.stride = o.get("stride").and_then(Value::as_u64).unwrap_or(0) as usize;
    opts.pad_to_multiple_of = o
        .get("pad_to_multiple_of")
        .and_then(Value::as_u64)
        .map(|v| v as usize);
    opts.return_overflowing_tokens = o
        .get("return_overflowing_tokens")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let side = |k: &str| {
        if o.get(k).and_then(Value::as_str) == Some("left") {
            Side::Left
        } else {
            Side::Right
        }
    };
    opts.padding_side = side("padding_side");
    opts.truncation_side = side("truncation_side");
    opts
}

fn slow_json(enc: &Encoding, overflow: bool) -> Value {
    let mut v = json!({"input_ids": enc.ids, "token_type_ids": enc.type_ids, "attention_mask": enc.attention_mask,
                       "special_tokens_mask": enc.special_tokens_mask});
    if overflow {
        v["overflowing_tokens"] = json!(enc.overflowing_tokens);
        v["num_truncated_tokens"] = json!(enc.num_truncated_tokens);
    }
    v
}

/// Python's fast layout: rows flattened with their overflow windows when overflow is asked for.
fn fast_json(encs: &[Encoding], batched: bool, overflow: bool) -> Value {
    let mut rows = Vec::new();
    let mut mapping = Vec::new();
    for (i, e) in encs.iter().enumerate() {
        rows.push(e);
        mapping.push(i);
        if overflow {
            for o in &e.overflowing {
                rows.push(o);
                mapping.push(i);
            }
        }
    }
    let col = |f: &dyn Fn(&Encoding) -> Value| -> Value {
        let vals: Vec<Value> = rows.iter().map(|e| f(e)).collect();
        if batched || overflow {
            Value::Array(vals)
        } else {
            vals.into_iter().next().unwrap_or(Value::Null)
        }
    };
    let mut v = json!({
        "input_ids": col(&|e| json!(e.ids)),
        "token_type_ids": col(&|e| json!(e.type_ids)),
        "attention_mask": col(&|e| json!(e.attention_mask)),
        "special_tokens_mask": col(&|e| json!(e.special_tokens_mask)),
        "offset_mapping": col(&|e| json!(e.offsets.iter().map(|&(a, b)| [a, b]).collect::<Vec<_>>())),
    });
    if overflow {
        v["overflow_to_sample_mapping"] = json!(mapping);
    }
    v
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("str"))
        .collect()
}

#[test]
fn encode_goldens() {
    let (slow, fast) = tokenizers("uncased");
    let (mut rs, mut rf) = (Report::default(), Report::default());
    for row in read_jsonl("encode.jsonl") {
        let opts = options(&row["options"]);
        let overflow = opts.return_overflowing_tokens;
        let kind = row["kind"].as_str().expect("kind");
        let (ours_slow, ours_fast) = if kind == "single" {
            let text = row["text"].as_str().expect("text");
            let pair = row["pair"].as_str();
            let s = match pair {
                Some(p) => slow.encode_pair(text, p, &opts),
                None => slow.encode(text, &opts),
            };
            let f = match pair {
                Some(p) => fast.encode_pair(text, p, &opts),
                None => fast.encode(text, &opts),
            };
            (
                s.map(|e| slow_json(&e, overflow)),
                f.map(|e| fast_json(&[e], false, overflow)),
            )
        } else {
            let texts = strs(&row["texts"]);
            let pairs = row.get("pairs").map(strs);
            let s = slow
                .encode_batch(&texts, pairs.as_deref(), &opts)
                .map(|encs| {
                    let rows: Vec<Value> = encs.iter().map(|e| slow_json(e, overflow)).collect();
                    let keys = [
                        "input_ids",
                        "token_type_ids",
                        "attention_mask",
                        "special_tokens_mask",
                        "overflowing_tokens",
                        "num_truncated_tokens",
                    ];
                    let mut v = json!({});
                    for k in keys.iter().filter(|k| rows[0].get(**k).is_some()) {
                        v[*k] = Value::Array(rows.iter().map(|r| r[*k].clone()).collect());
                    }
                    v
                });
            let f = fast
                .encode_batch(&texts, pairs.as_deref(), &opts)
                .map(|encs| fast_json(&encs, true, overflow));
            (s, f)
        };
        let check =
            |want: &Value, got: &Result<Value, convbert_tokenizer::TokenizerError>| match got {
                Err(_) => want.get("error").is_some(),
                Ok(v) => want
                    .as_object()
                    .expect("object")
                    .iter()
                    .all(|(k, w)| &v[k.as_str()] == w),
            };
        let describe = |want: &Value, got: &Result<Value, _>| {
            format!("{row}\n  python {want}\n  ours   {got:?}")
        };
        rs.check(check(&row["slow"], &ours_slow), || {
            describe(&row["slow"], &ours_slow)
        });
        rf.check(check(&row["fast"], &ours_fast), || {
            describe(&row["fast"], &ours_fast)
        });
    }
    rs.finish("encode.jsonl slow");
    rf.finish("encode.jsonl fast");
}

#[test]
fn decode_goldens() {
    let (mut rs, mut rf) = (Report::default(), Report::default());
    for row in read_jsonl("decode.jsonl") {
        let (slow, fast) = tokenizers(row["config"].as_str().expect("config"));
        let ids = u32s(&row["ids"]);
        let skip = row["skip_special_tokens"].as_bool().expect("bool");
        let clean = row["clean_up_tokenization_spaces"].as_bool().expect("bool");
        let got = slow
            .decode(
                &ids,
                &convbert_tokenizer::DecodeOptions {
                    skip_special_tokens: skip,
                    clean_up_tokenization_spaces: Some(clean),
                },
            )
            .expect("decode");
        rs.check(row["slow"] == json!(got), || {
            format!("{ids:?} python {} ours {got:?}", row["slow"])
        });
        if let Some(want) = row.get("fast") {
            let got = fast
                .decode(
                    &ids,
                    &convbert_tokenizer::DecodeOptions {
                        skip_special_tokens: skip,
                        clean_up_tokenization_spaces: Some(clean),
                    },
                )
                .expect("decode");
            rf.check(want == &json!(got), || {
                format!("{ids:?} python {want} ours {got:?}")
            });
        }
        if let Some(tokens) = row.get("slow_tokens") {
            let got = slow.convert_ids_to_tokens(&ids, convbert_tokenizer::SpecialTokens::Keep);
            rs.check(tokens == &json!(got), || {
                format!("{ids:?} python {tokens} ours {got:?}")
            });
        }
    }
    rs.finish("decode.jsonl slow");
    rf.finish("decode.jsonl fast");
}

#[test]
fn special_token_goldens() -> convbert_tokenizer::Result<()> {
    let (slow, _) = tokenizers("uncased");
    let rows = read_jsonl("special.jsonl");
    let h = &rows[0];
    let (a, b) = (u32s(&h["a"]), u32s(&h["b"]));
    assert_eq!(
        slow.build_inputs_with_special_tokens(&a, None),
        u32s(&h["build_single"])
    );
    assert_eq!(
        slow.build_inputs_with_special_tokens(&a, Some(&b)),
        u32s(&h["build_pair"])
    );
    assert_eq!(
        slow.get_special_tokens_mask(&a, None, false)?,
        u32s(&h["mask_single"])
    );
    assert_eq!(
        slow.get_special_tokens_mask(&a, Some(&b), false)?,
        u32s(&h["mask_pair"])
    );
    assert_eq!(
        slow.get_special_tokens_mask(&[101, 7592, 100, 103, 0, 102], None, true)?,
        u32s(&h["mask_already"])
    );
    assert!(slow.get_special_tokens_mask(&a, Some(&b), true).is_err());
    assert_eq!(
        slow.create_token_type_ids_from_sequences(&a, None),
        u32s(&h["type_single"])
    );
    assert_eq!(
        slow.create_token_type_ids_from_sequences(&a, Some(&b)),
        u32s(&h["type_pair"])
    );

    let s = &rows[1];
    let lines = strs(&s["lines"]);
    let vocab = Vocab::from_bytes(format!("{}\n", lines.join("\n")).as_bytes())?;
    let want: std::collections::BTreeMap<String, u32> =
        serde_json::from_value(s["vocab"].clone()).expect("vocab");
    let got: std::collections::BTreeMap<String, u32> =
        vocab.iter().map(|(t, i)| (t.to_string(), i)).collect();
    assert_eq!(got, want);
    let dir = std::env::temp_dir().join(format!("convbert-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let (path, holes) = vocab.save(&dir, Some("p"))?;
    assert!(holes);
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        s["saved_name"].as_str()
    );
    assert_eq!(
        std::fs::read_to_string(&path).expect("saved"),
        s["saved"].as_str().expect("str")
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn tokenizer_json_matches_python() -> convbert_tokenizer::Result<()> {
    let (_, fast) = tokenizers("small");
    let ours: Value = serde_json::from_str(&fast.to_json_string()?)?;
    let path = fixtures().join("tokenizer/small-tokenizer.json");
    let python: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("golden"))?;
    assert_eq!(ours, python);
    // And Python's file loads into both paths with the same ids.
    let slow = convbert_tokenizer::ConvBertTokenizer::from_tokenizer_json(&path)?;
    let fast2 = convbert_tokenizer::ConvBertTokenizerFast::from_tokenizer_json(&path)?;
    let text = "Hello, world! unaffable café 中文";
    assert_eq!(slow.tokenize_ids(text)?, fast2.tokenize_ids(text)?);
    assert_eq!(pairs(&json!([[0, 1]])), vec![(0, 1)]);
    Ok(())
}
