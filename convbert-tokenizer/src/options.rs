//! Resolution of padding and truncation options, as `_get_padding_truncation_strategies` does.

use crate::encoding::{EncodeOptions, PaddingStrategy, TruncationStrategy};
use crate::error::{Result, TokenizerError};

/// Effective truncation and padding of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// Strategy and max length, when truncation is active.
    pub(crate) truncation: Option<(TruncationStrategy, usize)>,
    /// `None` = no padding; `Some(None)` = batch longest; `Some(Some(n))` = pad to n.
    pub(crate) padding: Option<Option<usize>>,
}

/// Applies `model_max_length` defaults; an unbounded model length disables truncation and
/// `MaxLength` padding (Python only warns). Rejects a `max_length` that is not a multiple of
/// `pad_to_multiple_of` when both truncation and padding are on (Python's `ValueError`).
pub(crate) fn resolve(opts: &EncodeOptions, model_max_length: Option<usize>) -> Result<Resolved> {
    let max_length = opts.max_length.or(model_max_length);
    let truncation = match opts.truncation {
        TruncationStrategy::DoNotTruncate => None,
        s => max_length.map(|m| (s, m)),
    };
    let padding = match opts.padding {
        PaddingStrategy::DoNotPad => None,
        PaddingStrategy::Longest => Some(None),
        PaddingStrategy::MaxLength => max_length.map(Some),
    };
    if let (Some(_), Some(_), Some(m), Some(max)) =
        (truncation, padding, opts.pad_to_multiple_of, max_length)
    {
        if m == 0 || max % m != 0 {
            return Err(TokenizerError::Options(format!(
                "Truncation and padding are both activated but truncation length ({max}) is not a multiple of pad_to_multiple_of ({m})."
            )));
        }
    }
    Ok(Resolved {
        truncation,
        padding,
    })
}
