//! Padding of one encoded example (`PreTrainedTokenizerBase._pad`, v4.57.6): pad id, type id 0,
//! attention 0, special-tokens mask 1 and offsets `(0, 0)`, on the chosen side.

use crate::encoding::{Encoding, Side};

/// Pads `enc` to `target` (rounded up to `multiple_of`); longer encodings are left as they are.
pub(crate) fn pad(
    enc: &mut Encoding,
    target: usize,
    multiple_of: Option<usize>,
    side: Side,
    pad_id: u32,
    offsets: bool,
) {
    let target = match multiple_of {
        Some(m) if m > 0 && !target.is_multiple_of(m) => (target / m + 1) * m,
        _ => target,
    };
    let n = target.saturating_sub(enc.ids.len());
    if n == 0 {
        return;
    }
    fn fill<T: Copy>(v: &mut Vec<T>, n: usize, value: T, side: Side) {
        match side {
            Side::Right => v.extend(std::iter::repeat_n(value, n)),
            Side::Left => {
                v.splice(0..0, std::iter::repeat_n(value, n));
            }
        }
    }
    fill(&mut enc.ids, n, pad_id, side);
    fill(&mut enc.type_ids, n, 0, side);
    fill(&mut enc.attention_mask, n, 0, side);
    fill(&mut enc.special_tokens_mask, n, 1, side);
    if offsets {
        fill(&mut enc.offsets, n, (0, 0), side);
    }
}
