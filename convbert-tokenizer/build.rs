//! Builds the WordPiece tries of the embedded bert-base-uncased vocabulary at compile time, so
//! constructing a tokenizer on it (the start-up of every `convbert tokenize`) only decodes them.

use std::collections::HashMap;
use std::path::PathBuf;

#[allow(dead_code)]
#[path = "src/trie.rs"]
mod trie;

const VOCAB: &str = "data/bert-base-uncased-vocab.txt";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=src/trie.rs");
    println!("cargo:rerun-if-changed={VOCAB}");
    if std::env::var_os("CARGO_FEATURE_EMBEDDED_VOCAB").is_none() {
        return Ok(());
    }
    let text = std::fs::read_to_string(VOCAB)?;
    // `Vocab::from_bytes`'s rules: Python's line ends, id = line number, a repeated token keeps
    // its last line; the tries take the tokens in id order.
    let lines: Vec<&str> = text.split_inclusive(['\n', '\r']).collect();
    let mut tokens: Vec<&str> = Vec::with_capacity(lines.len());
    let mut pending_cr = false;
    for piece in lines {
        if pending_cr && piece == "\n" {
            pending_cr = false;
            continue;
        }
        pending_cr = piece.ends_with('\r');
        tokens.push(piece.trim_end_matches(['\n', '\r']));
    }
    let last: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let in_order = || {
        tokens
            .iter()
            .enumerate()
            .filter(|(i, t)| last[*t] == *i)
            .map(|(i, t)| (*t, i as u32))
    };
    let start = trie::Trie::build(in_order().map(|(t, id)| (t.as_bytes(), id)));
    let cont = trie::Trie::build(
        in_order().filter_map(|(t, id)| t.strip_prefix("##").map(|s| (s.as_bytes(), id))),
    );
    let mut out = Vec::new();
    start.encode(&mut out);
    cont.encode(&mut out);
    let path = PathBuf::from(std::env::var("OUT_DIR")?).join("bert-base-uncased-tries.bin");
    std::fs::write(path, out)?;
    Ok(())
}
