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
            // Python removes one token at a time from the longer sequence, ties going to the
            // second one: the longer one first loses the difference, then they alternate, the
            // second one first. Counted here in one step (one drain per side, not one per token).
            let (la, lb) = (a.ids.len(), b.ids.len());
            let (mut from_a, mut from_b) = if la > lb {
                ((la - lb).min(n), 0)
            } else {
                (0, (lb - la).min(n))
            };
            let rest = n - from_a - from_b;
            from_a += rest / 2;
            from_b += rest - rest / 2;
            a.remove(from_a, side);
            b.remove(from_b, side);
        }
        (TruncationStrategy::OnlySecond, Some(b)) if b.ids.len() > n => {
            return b.cut(n, stride, side);
        }
        _ => {}
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: usize) -> Seq {
        Seq {
            ids: (0..n as u32).collect(),
            offsets: Vec::new(),
        }
    }

    /// Python's loop, one token at a time.
    fn one_at_a_time(mut la: usize, mut lb: usize, n: usize) -> (usize, usize) {
        for _ in 0..n {
            if la > lb {
                la -= 1;
            } else {
                lb = lb.saturating_sub(1);
            }
        }
        (la, lb)
    }

    #[test]
    fn longest_first_in_one_step_equals_one_token_at_a_time() {
        for la in 0..9 {
            for lb in 0..9 {
                for n in 0..20 {
                    let (mut a, mut b) = (seq(la), seq(lb));
                    let strategy = TruncationStrategy::LongestFirst;
                    truncate_sequences(&mut a, Some(&mut b), n, strategy, 0, Side::Right);
                    let got = (a.ids.len(), b.ids.len());
                    assert_eq!(got, one_at_a_time(la, lb, n), "{la} {lb} {n}");
                }
            }
        }
    }
}
