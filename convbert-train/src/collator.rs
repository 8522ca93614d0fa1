//! Batching: pads examples to the longest of the batch and builds the tensors a head takes; for MLM
//! it masks as HF's `DataCollatorForLanguageModeling` (transformers v4.57.6,
//! `data/data_collator.py`, `torch_mask_tokens`): 15% of the non-special tokens are chosen, 80% of
//! those become `[MASK]`, 10% a random token, 10% stay; labels are -100 elsewhere. With whole-word
//! masking (`DataCollatorForWholeWordMask`) whole words are chosen up to 15% of the tokens.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use crate::data::{Example, Target};
use crate::error::{Result, TrainError};

const IGNORE: i64 = -100;

/// MLM masking options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlmMasking {
    /// Fraction of tokens chosen (`mlm_probability`, 0.15).
    pub probability: f64,
    /// Choose whole words (word-piece groups) instead of single tokens.
    pub whole_word: bool,
    /// `[MASK]` id.
    pub mask_id: i64,
    /// Vocabulary size (random replacements are drawn below it).
    pub vocab_size: i64,
}

/// A padded batch; `input_ids` is (B, L), or (B, C, L) for multiple choice.
#[derive(Debug)]
pub struct Batch {
    /// Token ids.
    pub input_ids: Tensor,
    /// 1 = token, 0 = padding.
    pub attention_mask: Tensor,
    /// Segment ids.
    pub token_type_ids: Tensor,
    /// Class (B,), tag or MLM (B, L), or choice (B,) labels.
    pub labels: Option<Tensor>,
    /// QA (start, end) positions, each (B,).
    pub positions: Option<(Tensor, Tensor)>,
    /// Number of examples.
    pub size: usize,
}

/// Pads and masks examples into [`Batch`]es.
#[derive(Debug, Clone)]
pub struct Collator {
    /// `[PAD]` id.
    pub pad_id: i64,
    /// MLM masking, for the masked-LM task.
    pub mlm: Option<MlmMasking>,
}

impl Collator {
    /// Builds the batch of `examples` on `device`; `rng` drives MLM masking.
    pub fn collate(
        &self,
        examples: &[&Example],
        rng: &mut ChaCha8Rng,
        device: Device,
    ) -> Result<Batch> {
        let first = examples
            .first()
            .ok_or_else(|| TrainError::argument("batch", "no example"))?;
        let choices = first.inputs.len();
        let len = examples
            .iter()
            .flat_map(|e| e.inputs.iter().map(|i| i.input_ids.len()))
            .max()
            .unwrap_or(0);
        let rows = examples.len() * choices;
        let (mut ids, mut mask, mut types) = (
            Vec::with_capacity(rows * len),
            Vec::with_capacity(rows * len),
            Vec::with_capacity(rows * len),
        );
        let mut mlm_labels = Vec::new();
        for e in examples {
            if e.inputs.len() != choices {
                return Err(TrainError::argument(
                    "batch",
                    "examples with different numbers of choices",
                ));
            }
            for enc in &e.inputs {
                let n = enc.input_ids.len();
                let mut row = enc.input_ids.clone();
                if let (Some(m), Target::Masked) = (&self.mlm, &e.target) {
                    let labels = mask_tokens(&mut row, &enc.special, &enc.word_start, m, rng);
                    mlm_labels.extend(labels);
                    mlm_labels.extend(std::iter::repeat_n(IGNORE, len - n));
                }
                ids.extend(row);
                ids.extend(std::iter::repeat_n(self.pad_id, len - n));
                mask.extend(std::iter::repeat_n(1i64, n));
                mask.extend(std::iter::repeat_n(0i64, len - n));
                types.extend(&enc.token_type_ids);
                types.extend(std::iter::repeat_n(0i64, len - n));
            }
        }
        let shape: Vec<i64> = if choices > 1 || matches!(first.target, Target::Choice(_)) {
            vec![examples.len() as i64, choices as i64, len as i64]
        } else {
            vec![examples.len() as i64, len as i64]
        };
        let tensor = |v: &[i64], shape: &[i64]| -> Result<Tensor> {
            Ok(Tensor::from_slice(v).f_view(shape)?.f_to_device(device)?)
        };
        let b = examples.len() as i64;
        let (mut labels, mut positions) = (None, None);
        match &first.target {
            Target::Class(_) | Target::Choice(_) => {
                let v: Vec<i64> = examples
                    .iter()
                    .map(|e| match e.target {
                        Target::Class(c) | Target::Choice(c) => c,
                        _ => IGNORE,
                    })
                    .collect();
                labels = Some(tensor(&v, &[b])?);
            }
            Target::Tags(_) => {
                let mut v = Vec::with_capacity(rows * len);
                for e in examples {
                    if let Target::Tags(t) = &e.target {
                        v.extend(t);
                        v.extend(std::iter::repeat_n(IGNORE, len - t.len()));
                    }
                }
                labels = Some(tensor(&v, &[b, len as i64])?);
            }
            Target::Span { .. } => {
                let (s, e): (Vec<i64>, Vec<i64>) = examples
                    .iter()
                    .map(|e| match e.target {
                        Target::Span { start, end } => (start, end),
                        _ => (0, 0),
                    })
                    .unzip();
                positions = Some((tensor(&s, &[b])?, tensor(&e, &[b])?));
            }
            Target::Masked if self.mlm.is_some() => {
                labels = Some(tensor(&mlm_labels, &[b, len as i64])?)
            }
            Target::Masked => {}
        }
        Ok(Batch {
            input_ids: tensor(&ids, &shape)?,
            attention_mask: tensor(&mask, &shape)?,
            token_type_ids: tensor(&types, &shape)?,
            labels,
            positions,
            size: examples.len(),
        })
    }
}

/// Masks `ids` in place; returns the labels (original id where chosen, -100 elsewhere).
fn mask_tokens(
    ids: &mut [i64],
    special: &[bool],
    word_start: &[bool],
    m: &MlmMasking,
    rng: &mut ChaCha8Rng,
) -> Vec<i64> {
    let n = ids.len();
    let chosen: Vec<bool> = if m.whole_word {
        // Words: runs of pieces from a word start, special tokens excluded.
        let mut words: Vec<Vec<usize>> = Vec::new();
        for i in (0..n).filter(|&i| !special[i]) {
            match words.last_mut() {
                Some(w) if !word_start[i] => w.push(i),
                _ => words.push(vec![i]),
            }
        }
        words.shuffle(rng);
        let budget = ((n as f64 * m.probability).round() as usize).max(1);
        let mut chosen = vec![false; n];
        let mut count = 0;
        for w in words {
            if count + w.len() > budget {
                continue;
            }
            count += w.len();
            w.into_iter().for_each(|i| chosen[i] = true);
        }
        chosen
    } else {
        (0..n)
            .map(|i| !special[i] && rng.random_bool(m.probability))
            .collect()
    };
    let mut labels = vec![IGNORE; n];
    for i in (0..n).filter(|&i| chosen[i]) {
        labels[i] = ids[i];
        if rng.random_bool(0.8) {
            ids[i] = m.mask_id;
        } else if rng.random_bool(0.5) {
            ids[i] = rng.random_range(0..m.vocab_size);
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mlm_masking_follows_the_80_10_10_rule() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let m = MlmMasking {
            probability: 0.15,
            whole_word: false,
            mask_id: 3,
            vocab_size: 1000,
        };
        let n = 20_000;
        let mut ids: Vec<i64> = (0..n).map(|i| 10 + (i % 900)).collect();
        let mut special = vec![false; n as usize];
        special[0] = true;
        let original = ids.clone();
        let labels = mask_tokens(&mut ids, &special, &vec![true; n as usize], &m, &mut rng);
        assert_eq!(labels[0], IGNORE);
        let chosen: Vec<usize> = (0..n as usize).filter(|&i| labels[i] != IGNORE).collect();
        let frac = chosen.len() as f64 / n as f64;
        assert!((frac - 0.15).abs() < 0.01, "{frac}");
        let masked = chosen.iter().filter(|&&i| ids[i] == 3).count() as f64 / chosen.len() as f64;
        let kept =
            chosen.iter().filter(|&&i| ids[i] == original[i]).count() as f64 / chosen.len() as f64;
        assert!((masked - 0.8).abs() < 0.03, "{masked}");
        assert!((kept - 0.1).abs() < 0.03, "{kept}");
        assert!(chosen.iter().all(|&i| labels[i] == original[i]));
    }

    #[test]
    fn whole_words_are_masked_together() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let m = MlmMasking {
            probability: 0.3,
            whole_word: true,
            mask_id: 3,
            vocab_size: 50,
        };
        let mut ids: Vec<i64> = (10..30).collect();
        let special: Vec<bool> = (0..20).map(|i| i == 0 || i == 19).collect();
        let starts: Vec<bool> = (0..20).map(|i| i % 2 == 1).collect();
        let labels = mask_tokens(&mut ids, &special, &starts, &m, &mut rng);
        assert!(labels.iter().any(|&l| l != IGNORE));
        for i in (1..18).step_by(2) {
            assert_eq!(labels[i] == IGNORE, labels[i + 1] == IGNORE, "word at {i}");
        }
    }
}
