//! Slow decode (`PreTrainedTokenizer._decode` + `convert_tokens_to_string` + `clean_up_tokenization`).

use crate::unicode::{self, SPACE};

/// Joins WordPiece tokens: `" ".join(tokens).replace(" ##", "").strip()`.
pub(crate) fn tokens_to_string(tokens: &[&str]) -> String {
    let joined = tokens.join(" ").replace(" ##", "");
    joined
        .trim_matches(|c| unicode::flags(c) & SPACE != 0)
        .to_string()
}

/// Python's `clean_up_tokenization`: plain replaces, in this order.
pub fn clean_up_tokenization(text: &str) -> String {
    const RULES: [(&str, &str); 10] = [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ];
    RULES
        .iter()
        .fold(text.to_string(), |s, (from, to)| s.replace(from, to))
}
