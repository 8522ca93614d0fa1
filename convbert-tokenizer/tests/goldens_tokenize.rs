//! tokenize.jsonl: ids of Python's slow tokenizer vs the standalone path, and ids + char offsets
//! of Python's fast tokenizer vs the `tokenizers`-backed path, per configuration.
mod common;

use common::{pairs, read_jsonl, tokenizers, u32s, Report};
use std::collections::HashMap;

#[test]
fn tokenize_goldens() {
    let rows = read_jsonl("tokenize.jsonl");
    let mut cache = HashMap::new();
    let (mut slow_tok, mut fast_tok) = (Report::default(), Report::default());
    let (mut slow, mut fast, mut fast_off, mut slow_off) = (
        Report::default(),
        Report::default(),
        Report::default(),
        Report::default(),
    );
    for row in &rows {
        let name = row["config"].as_str().expect("config");
        let (s, f) = cache
            .entry(name.to_string())
            .or_insert_with(|| tokenizers(name));
        let text = row["text"].as_str().expect("text");
        let (ids, offs) = s.tokenize_with_offsets(text);
        let want = u32s(&row["slow_ids"]);
        slow.check(ids == want, || {
            format!("[{name}] {text:?}\n  python {want:?}\n  ours   {ids:?}")
        });
        assert_eq!(
            s.tokenize_ids(text).expect("slow"),
            ids,
            "offsets must not change ids"
        );
        let (fids, foffs) = f.tokenize_with_offsets(text).expect("fast");
        let fwant = u32s(&row["fast_ids"]);
        fast.check(fids == fwant, || {
            format!("[{name}] {text:?}\n  python {fwant:?}\n  ours   {fids:?}")
        });
        let owant = pairs(&row["fast_offsets"]);
        fast_off.check(foffs == owant, || {
            format!("[{name}] {text:?}\n  python {owant:?}\n  ours   {foffs:?}")
        });
        if want == fwant {
            // Where both references agree on ids, the standalone offsets must equal the fast ones.
            slow_off.check(offs == owant, || {
                format!("[{name}] {text:?}\n  fast {owant:?}\n  ours {offs:?}")
            });
        }
        if let Some(tokens) = row.get("slow_tokens") {
            // Python's tokens, with the out-of-vocabulary never_split ones as the [UNK] they encode to.
            let t: Vec<String> = serde_json::from_value(tokens.clone()).expect("tokens");
            let want: Vec<String> = t
                .into_iter()
                .map(|t| {
                    if s.vocab().token_to_id(&t).is_some() {
                        t
                    } else {
                        "[UNK]".to_string()
                    }
                })
                .collect();
            let ours = s.tokenize(text).expect("slow");
            slow_tok.check(ours == want, || {
                format!("[{name}] {text:?}\n  python {want:?}\n  ours   {ours:?}")
            });
            let fwant: Vec<String> =
                serde_json::from_value(row["fast_tokens"].clone()).expect("tokens");
            let fours = f.convert_ids_to_tokens(&fids, convbert_tokenizer::SpecialTokens::Keep);
            fast_tok.check(fours == fwant, || {
                format!("[{name}] {text:?}\n  python {fwant:?}\n  ours   {fours:?}")
            });
        }
    }
    slow.finish("tokenize.jsonl slow ids");
    slow_tok.finish("tokenize.jsonl slow tokens");
    fast_tok.finish("tokenize.jsonl fast tokens");
    fast.finish("tokenize.jsonl fast ids");
    fast_off.finish("tokenize.jsonl fast offsets");
    slow_off.finish("tokenize.jsonl standalone offsets (where slow ids == fast ids)");
}
