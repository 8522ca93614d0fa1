//! Slow-tokenizer truncation (`PreTrainedTokenizerBase.truncate_sequences`, v4.57.6).

use crate::encoding::{Side, TruncationStrategy};

/// Token ids of one sequence, with character offsets when they were asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seq {
    pub(crate) ids: Vec<u32>,
    pub(crate) offsets: Vec<(usize, usize)>,
}

impl Seq {
    fn remove(&mut self, n: usize, side: Side) {
        let n = n.min(self.ids.len());
        let has_offsets = !self.offsets.is_empty();
        match side {
            Side::Right => {
                self.ids.truncate(self.ids.len() - n);
                if has_offsets {
                    self.offsets.truncate(self.offsets.len() - n);
                }
            }
            Side::Left => {
                self.ids.drain(..n);
                if has_offsets {
                    self.offsets.drain(..n);
                }
            }
        }
    }

    /// Cuts `n` tokens and returns the overflow window (`n + stride` tokens at most).
    fn cut(&mut self, n: usize, stride: usize, side: Side) -> Vec<u32> {
        let window = self.ids.len().min(stride + n);
        let overflow = match side {
            Side::Right => self.ids[self.ids.len() - window..].to_vec(),
            Side::Left => self.ids[..window].to_vec(),
        };
        self.remove(n, side);
        overflow
    }
}

/// Removes `n` tokens following `strategy`; returns the overflowing ids. Where Python only logs an
/// error (the target sequence is too short), nothing is removed, as in Python.
pub(crate) fn truncate_sequences(
    a: &mut Seq,
    b: Option<&mut Seq>,
    n: usize,
    strategy: TruncationStrategy,
    stride: usize,
    side: Side,
) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    match (strategy, b) {
        (TruncationStrategy::OnlyFirst, _) | (TruncationStrategy::LongestFirst, None)
            if a.ids.len() > n =>
        {
            return a.cut(n, stride, side);
        }
        (TruncationStrategy::LongestFirst, Some(b)) => {
            // One token at a time from the longer sequence; ties go to the second one.
            for _ in 0..n {
                if a.ids.len() > b.ids.len() {
                    a.remove(1, side);
                } else {
                    b.remove(1, side);
                }
            }
        }
        (TruncationStrategy::OnlySecond, Some(b)) if b.ids.len() > n => {
            return b.cut(n, stride, side);
        }
        _ => {}
    }
    Vec::new()
}
