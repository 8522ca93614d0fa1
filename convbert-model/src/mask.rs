//! The attention-mask maths, in one place: HF's additive bias `(1 - m) * finfo(dtype).min`,
//! the optional causal mask of `is_decoder`, the 5-D head mask, and the padding helpers of the
//! padding-invariant mode. Reference: transformers v4.57.6 `modeling_utils.py`
//! (`get_extended_attention_mask`, `get_head_mask`).

use tch::{Kind, Tensor};

use crate::error::Result;

/// `torch.finfo(kind).min` for the float kinds the model runs in.
pub(crate) fn dtype_min(kind: Kind) -> f64 {
    match kind {
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.3895313892515355e38,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
    }
}

/// HF mask (1 = attend, 0 = padding), (B, L) or (B, Lq, Lk), to the additive bias added to the
/// attention scores: (B, 1, 1, L) or (B, 1, Lq, Lk), in `kind`. With `causal`, a 2-D mask is
/// first combined with a lower-triangular matrix, as v4 does for decoders.
pub(crate) fn additive_attention_mask(mask: &Tensor, kind: Kind, causal: bool) -> Result<Tensor> {
    let m = match mask.dim() {
        3 => mask.f_unsqueeze(1)?.f_to_kind(kind)?,
        _ if causal => {
            let len = mask.size()[1];
            let tri = Tensor::f_ones([len, len], (kind, mask.device()))?.f_tril(0)?;
            // (1, 1, L, L) * (B, 1, 1, L) -> (B, 1, L, L)
            tri.f_view([1, 1, len, len])? * mask.f_view([-1, 1, 1, len])?.f_to_kind(kind)?
        }
        _ => mask.f_view([mask.size()[0], 1, 1, -1])?.f_to_kind(kind)?,
    };
    Ok((m.f_neg()? + 1.0) * dtype_min(kind))
}

/// HF `get_head_mask`: (H,) or (layers, H) to one (1, H, 1, 1) multiplier per layer.
pub(crate) fn per_layer_head_mask(
    head_mask: &Tensor,
    layers: i64,
    kind: Kind,
) -> Result<Vec<Tensor>> {
    let hm = head_mask.f_to_kind(kind)?;
    (0..layers)
        .map(|i| {
            let row = if hm.dim() == 1 {
                hm.shallow_clone()
            } else {
                hm.f_get(i)?
            };
            Ok(row.f_view([1, -1, 1, 1])?)
        })
        .collect()
}

/// Padding-invariant mode: a (B, L, 1) multiplier in `kind`, 1 at real tokens, 0 at padding.
pub(crate) fn keep_mask(mask: &Tensor, kind: Kind) -> Result<Tensor> {
    Ok(mask.f_ne(0)?.f_to_kind(kind)?.f_unsqueeze(-1)?)
}

/// Padding-invariant mode: default position ids `cumsum(mask) - 1` (clamped at 0), so a
/// left-padded row gets the positions 0, 1, ... of its unpadded run. (B, L) int64.
pub(crate) fn positions_from_mask(mask: &Tensor) -> Result<Tensor> {
    let m = mask.f_ne(0)?.f_to_kind(Kind::Int64)?;
    Ok((m.f_cumsum(1, Kind::Int64)? - 1).f_clamp_min(0)?)
}
