//! Evaluation metrics: accuracy and macro-F1 (classification, multiple choice), entity-level
//! precision/recall/F1 over IOB2 tags with seqeval's default (conlleval) chunking, and SQuAD's
//! exact match and F1 with the official answer normalisation (`evaluate-v2.0.py`).

use std::collections::{BTreeSet, HashMap};

/// Fraction of equal pairs (0 for no pair).
pub fn accuracy(predictions: &[i64], labels: &[i64]) -> f64 {
    let n = predictions.len().min(labels.len());
    if n == 0 {
        return 0.0;
    }
    let hits = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    hits as f64 / n as f64
}

/// Macro-averaged F1 over the classes present in labels or predictions (sklearn's `average="macro"`).
pub fn macro_f1(predictions: &[i64], labels: &[i64]) -> f64 {
    let classes: BTreeSet<i64> = predictions.iter().chain(labels).copied().collect();
    if classes.is_empty() {
        return 0.0;
    }
    let mut total = 0.0;
    for &c in &classes {
        let pairs = predictions.iter().zip(labels);
        let tp = pairs.clone().filter(|(p, l)| **p == c && **l == c).count() as f64;
        let fp = pairs.clone().filter(|(p, l)| **p == c && **l != c).count() as f64;
        let fn_ = pairs.filter(|(p, l)| **p != c && **l == c).count() as f64;
        total += if tp == 0.0 {
            0.0
        } else {
            2.0 * tp / (2.0 * tp + fp + fn_)
        };
    }
    total / classes.len() as f64
}

/// Entity-level scores (seqeval `classification_report` micro average).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntityScores {
    /// Correct entities / predicted entities.
    pub precision: f64,
    /// Correct entities / gold entities.
    pub recall: f64,
    /// Harmonic mean.
    pub f1: f64,
}

/// The (type, start, end) chunks of an IOB2 sequence, seqeval's default: `I-X` after `O` or after
/// another type starts a chunk, as `B-X` does; `E-`/`S-` prefixes are read as IOBES.
fn chunks(tags: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(String, usize)> = None;
    let split = |t: &str| -> (char, String) {
        if t == "O" || t.is_empty() {
            return ('O', String::new());
        }
        match t.split_once(['-', '_']) {
            Some((p, ty)) => (p.chars().next().unwrap_or('O'), ty.to_string()),
            None => (t.chars().next().unwrap_or('O'), String::new()),
        }
    };
    let mut prev = ('O', String::new());
    for (i, t) in tags.iter().chain(std::iter::once(&"O")).enumerate() {
        let (tag, ty) = split(t);
        let (ptag, pty) = &prev;
        let end = matches!(
            (ptag, tag),
            ('E', _)
                | ('S', _)
                | ('B', 'B')
                | ('B', 'S')
                | ('B', 'O')
                | ('I', 'B')
                | ('I', 'S')
                | ('I', 'O')
        ) || (*ptag != 'O' && *pty != ty);
        if end {
            if let Some((cty, start)) = current.take() {
                out.push((cty, start, i - 1));
            }
        }
        let start = matches!(
            (ptag, tag),
            ('E', 'E') | ('E', 'I') | ('S', 'E') | ('S', 'I') | ('O', 'E') | ('O', 'I')
        ) || matches!(tag, 'B' | 'S')
            || (tag != 'O' && *pty != ty);
        if start && tag != 'O' {
            current = Some((ty.clone(), i));
        }
        prev = (tag, ty);
    }
    out
}

/// Entity-level precision/recall/F1 of predicted against gold tag sequences.
pub fn entity_scores(predicted: &[Vec<String>], gold: &[Vec<String>]) -> EntityScores {
    let (mut correct, mut n_pred, mut n_gold) = (0usize, 0usize, 0usize);
    for (p, g) in predicted.iter().zip(gold) {
        let p: BTreeSet<_> = chunks(&p.iter().map(String::as_str).collect::<Vec<_>>())
            .into_iter()
            .collect();
        let g: BTreeSet<_> = chunks(&g.iter().map(String::as_str).collect::<Vec<_>>())
            .into_iter()
            .collect();
        correct += p.intersection(&g).count();
        n_pred += p.len();
        n_gold += g.len();
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(correct, n_pred), ratio(correct, n_gold));
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    EntityScores {
        precision,
        recall,
        f1,
    }
}

/// SQuAD normalisation (`normalize_answer` of the official `evaluate-v2.0.py`): lower case, ASCII
/// punctuation removed, the articles a/an/the removed where they are whole words (`\b(a|an|the)\b`:
/// a run of word characters, so "a—b" loses its "a"), whitespace collapsed.
pub fn normalize_answer(s: &str) -> String {
    let text: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 1.0 when the normalised strings are equal.
pub fn exact_match(prediction: &str, gold: &str) -> f64 {
    f64::from(u8::from(
        normalize_answer(prediction) == normalize_answer(gold),
    ))
}

/// Token-overlap F1 of the normalised strings (both empty: 1).
pub fn squad_f1(prediction: &str, gold: &str) -> f64 {
    let (p, g) = (normalize_answer(prediction), normalize_answer(gold));
    let (p, g): (Vec<&str>, Vec<&str>) = (
        p.split_whitespace().collect(),
        g.split_whitespace().collect(),
    );
    if p.is_empty() || g.is_empty() {
        return f64::from(u8::from(p == g));
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    g.iter().for_each(|t| *counts.entry(t).or_default() += 1);
    let mut same = 0;
    for t in &p {
        if let Some(c) = counts.get_mut(t).filter(|c| **c > 0) {
            *c -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let (precision, recall) = (same as f64 / p.len() as f64, same as f64 / g.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

/// Best EM and F1 over the gold answers (an unanswerable question has the gold answer "").
pub fn squad_scores(prediction: &str, answers: &[String]) -> (f64, f64) {
    if answers.is_empty() {
        let v = exact_match(prediction, "");
        return (v, v);
    }
    let em = answers
        .iter()
        .map(|a| exact_match(prediction, a))
        .fold(0.0, f64::max);
    let f1 = answers
        .iter()
        .map(|a| squad_f1(prediction, a))
        .fold(0.0, f64::max);
    (em, f1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn seqeval_default_chunking() {
        // seqeval's README example: precision 0.5, recall 0.5.
        let gold = vec![tags("O O O B-MISC I-MISC I-MISC O"), tags("B-PER I-PER O")];
        let pred = vec![
            tags("O O B-MISC I-MISC I-MISC I-MISC O"),
            tags("B-PER I-PER O"),
        ];
        let s = entity_scores(&pred, &gold);
        assert_eq!((s.precision, s.recall, s.f1), (0.5, 0.5, 0.5));
        // I- after O starts an entity; a type change splits.
        assert_eq!(
            chunks(&["O", "I-PER", "I-PER", "I-LOC"]),
            [("PER".into(), 1, 2), ("LOC".into(), 3, 3)]
        );
    }

    #[test]
    fn squad_official_normalisation() {
        assert_eq!(normalize_answer("The  Eiffel-Tower!"), "eiffeltower");
        assert_eq!(exact_match("the Denver Broncos", "Denver Broncos"), 1.0);
        assert!((squad_f1("Denver Broncos team", "Denver Broncos") - 0.8).abs() < 1e-12);
        assert_eq!(squad_scores("", &[]), (1.0, 1.0));
    }

    #[test]
    fn classification_metrics() {
        assert_eq!(accuracy(&[0, 1, 1, 2], &[0, 1, 2, 2]), 0.75);
        // class 0: f1 1; class 1: tp1 fp1 -> 2/3; class 2: tp1 fn1 -> 2/3.
        assert!((macro_f1(&[0, 1, 1, 2], &[0, 1, 2, 2]) - (1.0 + 4.0 / 3.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn squad_scores_equal_the_official_script() {
        // (prediction, gold, EM, F1) from evaluate-v2.0.py's compute_exact / compute_f1.
        let cases = [
            ("a\u{2014}b", "\u{2014}b", 1.0, 1.0),
            ("The Cat's the_hat", "cats hat", 0.0, 0.5),
            ("an apple a day", "apple day", 1.0, 1.0),
            ("Th\u{e9} theatre", "th\u{e9}", 0.0, 2.0 / 3.0),
            ("the the the", "", 1.0, 1.0),
            ("Denver Broncos", "the Denver Broncos!", 1.0, 1.0),
            ("Broncos Denver Denver", "Denver Broncos", 0.0, 0.8),
            ("in 1842", "1842", 0.0, 2.0 / 3.0),
            ("", "an", 1.0, 1.0),
            ("\u{ab}Z\u{fc}rich\u{bb}", "z\u{fc}rich", 0.0, 0.0),
        ];
        for (p, g, em, f1) in cases {
            assert_eq!(exact_match(p, g), em, "EM {p:?} {g:?}");
            assert!((squad_f1(p, g) - f1).abs() < 1e-12, "F1 {p:?} {g:?}");
        }
        // The best over several gold answers; an unanswerable question wants "".
        let golds = ["Denver".to_string(), "Denver Broncos".to_string()];
        assert_eq!(squad_scores("Broncos", &golds), (0.0, 2.0 / 3.0));
        assert_eq!(squad_scores("Denver", &golds), (1.0, 1.0));
        assert_eq!(squad_scores("Denver", &[]), (0.0, 0.0));
    }

    #[test]
    fn seqeval_entity_counts_over_sentences() {
        // Gold entities: PER LOC | PER | LOC = 4; predicted: PER ORG | PER PER | LOC = 5; correct:
        // PER (type mismatch on LOC/ORG, a split PER matches nothing, I-LOC after O starts LOC) = 2.
        let gold = vec![
            tags("B-PER I-PER O B-LOC"),
            tags("B-PER I-PER I-PER"),
            tags("B-LOC I-LOC O"),
        ];
        let pred = vec![
            tags("B-PER I-PER O B-ORG"),
            tags("B-PER I-PER B-PER"),
            tags("I-LOC I-LOC O"),
        ];
        let s = entity_scores(&pred, &gold);
        assert_eq!((s.precision, s.recall), (0.4, 0.5));
        assert!((s.f1 - 4.0 / 9.0).abs() < 1e-12);
        // No entity anywhere: all zero, no division by zero.
        let none = vec![tags("O O")];
        let s = entity_scores(&none, &none);
        assert_eq!((s.precision, s.recall, s.f1), (0.0, 0.0, 0.0));
        // IOBES tags are read too: S- is a single, E- closes.
        assert_eq!(
            chunks(&["S-PER", "B-LOC", "E-LOC", "O"]),
            [("PER".into(), 0, 0), ("LOC".into(), 1, 2)]
        );
    }

    #[test]
    fn macro_f1_counts_classes_seen_only_in_predictions() {
        // sklearn f1_score(average="macro"): labels = union of y_true and y_pred; class 3 is only
        // predicted (F1 0), class 0: tp 1 fn 1 -> 2/3, class 1: tp 1 -> 1.
        let f1 = macro_f1(&[0, 1, 3], &[0, 1, 0]);
        assert!((f1 - (2.0 / 3.0 + 1.0 + 0.0) / 3.0).abs() < 1e-12);
        assert_eq!(accuracy(&[], &[]), 0.0);
        assert_eq!(macro_f1(&[], &[]), 0.0);
    }
}
