//! Inputs and per-call options of `ConvBertModel::forward_t`, and their validation at the
//! public boundary (rank, kind, ranges, device), so that bad input gives a typed error, never a
//! libtorch abort. Mirrors the arguments of HF `ConvBertModel.forward` (v4.57.6).

use std::cell::Cell;

use tch::{Device, Kind, Tensor};

use crate::config::ConvBertConfig;
use crate::error::{ConvBertError, Result};
use crate::mask;

/// The tensors of one forward call; give `input_ids` (B, L) or `inputs_embeds` (B, L, E).
#[derive(Debug, Default, Clone, Copy)]
pub struct ConvBertInputs<'a> {
    /// (B, L) integer ids in [0, vocab_size).
    pub input_ids: Option<&'a Tensor>,
    /// (B, L) with 1 = attend, 0 = padding (any integer, bool or float kind), or (B, L, L).
    pub attention_mask: Option<&'a Tensor>,
    /// (B, L) or (1, L) ids in [0, type_vocab_size); default zeros.
    pub token_type_ids: Option<&'a Tensor>,
    /// (B, L) or (1, L) ids in [0, max_position_embeddings); default 0..L.
    pub position_ids: Option<&'a Tensor>,
    /// (B, L, E) float, instead of `input_ids`; cast to the model kind.
    pub inputs_embeds: Option<&'a Tensor>,
    /// (H,) or (num_layers, H) multipliers of the attention probabilities (H = real heads).
    pub head_mask: Option<&'a Tensor>,
}

/// Per-call switches of `forward_t`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwardOptions {
    /// Return the layers + 1 hidden states (embedding output first).
    pub output_hidden_states: bool,
    /// Return the attention probabilities of every layer, (B, H, L, L).
    pub output_attentions: bool,
    /// Off by default (= HF). When on, the conv branch sees zeros at padded positions and
    /// default position ids follow the mask, so each real token gets the output of its row run
    /// alone without padding (left or right), instead of HF's padding-dependent values.
    pub padding_invariant: bool,
}

thread_local! {
    static IDS_PREVALIDATED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the range checks of id inputs (`input_ids`, `token_type_ids`, `position_ids`)
/// skipped on this thread; shapes and kinds are still checked. For a caller that checked the
/// ids on the host and may not read device values back, as during a CUDA graph capture (the
/// check's `min`/`max` read synchronises the stream, which a capture forbids). An id out of range
/// then fails in the embedding kernel instead of as `InputIdOutOfRange`.
pub fn with_prevalidated_ids<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IDS_PREVALIDATED.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(IDS_PREVALIDATED.with(|p| p.replace(true)));
    f()
}

/// Validated inputs: int64 ids, model device, resolved defaults.
pub(crate) struct Prepared {
    pub input_ids: Option<Tensor>,
    pub inputs_embeds: Option<Tensor>,
    pub attention_mask: Option<Tensor>,
    pub token_type_ids: Tensor,
    pub position_ids: Tensor,
    pub head_mask: Option<Tensor>,
}

fn is_int(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
    )
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

fn shape_err(name: &str, expected: String, t: &Tensor) -> ConvBertError {
    ConvBertError::Shape {
        name: name.into(),
        expected,
        got: t.size(),
    }
}

/// Integer ids of shape (B, L) or, with `allow_row`, (1, L); values in [0, limit).
fn ids(
    name: &str,
    t: &Tensor,
    b: i64,
    l: i64,
    allow_row: bool,
    limit: i64,
    device: Device,
) -> Result<Tensor> {
    if !is_int(t.kind()) {
        return Err(ConvBertError::Kind {
            name: name.into(),
            expected: "an integer kind".into(),
            got: t.kind(),
        });
    }
    let s = t.size();
    let ok = s.len() == 2 && s[1] == l && (s[0] == b || (allow_row && s[0] == 1));
    if !ok {
        let rows = if allow_row {
            format!("({b} or 1, {l})")
        } else {
            format!("({b}, {l})")
        };
        return Err(shape_err(name, rows, t));
    }
    let t = t.f_to_device(device)?.f_to_kind(Kind::Int64)?;
    if IDS_PREVALIDATED.with(Cell::get) {
        return Ok(t);
    }
    let (lo, hi) = (
        t.f_min()?.f_int64_value(&[])?,
        t.f_max()?.f_int64_value(&[])?,
    );
    for v in [lo, hi] {
        if !(0..limit).contains(&v) {
            return Err(ConvBertError::InputIdOutOfRange {
                name: name.into(),
                value: v,
                limit,
            });
        }
    }
    Ok(t)
}

/// Checks every input against `cfg`, moves it to `device` and fills HF's defaults.
pub(crate) fn prepare(
    cfg: &ConvBertConfig,
    inputs: &ConvBertInputs,
    options: &ForwardOptions,
    device: Device,
    kind: Kind,
) -> Result<Prepared> {
    let (b, l, input_ids, inputs_embeds) = match (inputs.input_ids, inputs.inputs_embeds) {
        (Some(_), Some(_)) => {
            return Err(ConvBertError::Input(
                "give input_ids or inputs_embeds, not both".into(),
            ))
        }
        (None, None) => {
            return Err(ConvBertError::Input(
                "give input_ids or inputs_embeds".into(),
            ))
        }
        (Some(t), None) => {
            if t.dim() != 2 {
                return Err(shape_err("input_ids", "(batch, seq)".into(), t));
            }
            let (b, l) = (t.size()[0], t.size()[1]);
            check_len(b, l, cfg)?;
            (
                b,
                l,
                Some(ids("input_ids", t, b, l, false, cfg.vocab_size, device)?),
                None,
            )
        }
        (None, Some(t)) => {
            if t.dim() != 3 || t.size()[2] != cfg.embedding_size {
                return Err(shape_err(
                    "inputs_embeds",
                    format!("(batch, seq, {})", cfg.embedding_size),
                    t,
                ));
            }
            if !is_float(t.kind()) {
                return Err(ConvBertError::Kind {
                    name: "inputs_embeds".into(),
                    expected: "a float kind".into(),
                    got: t.kind(),
                });
            }
            let (b, l) = (t.size()[0], t.size()[1]);
            check_len(b, l, cfg)?;
            (b, l, None, Some(t.f_to_device(device)?.f_to_kind(kind)?))
        }
    };
    let attention_mask = match inputs.attention_mask {
        None => None,
        Some(m) => {
            let s = m.size();
            if !(s == [b, l] || s == [b, l, l]) {
                return Err(shape_err(
                    "attention_mask",
                    format!("({b}, {l}) or ({b}, {l}, {l})"),
                    m,
                ));
            }
            if !(is_int(m.kind()) || is_float(m.kind()) || m.kind() == Kind::Bool) {
                return Err(ConvBertError::Kind {
                    name: "attention_mask".into(),
                    expected: "bool, integer or float".into(),
                    got: m.kind(),
                });
            }
            if options.padding_invariant && s.len() != 2 {
                return Err(ConvBertError::Input(
                    "padding_invariant needs a 2-D attention_mask".into(),
                ));
            }
            Some(m.f_to_device(device)?)
        }
    };
    let token_type_ids = match inputs.token_type_ids {
        Some(t) => ids("token_type_ids", t, b, l, true, cfg.type_vocab_size, device)?,
        None => Tensor::f_zeros([b, l], (Kind::Int64, device))?,
    };
    let position_ids = match (inputs.position_ids, &attention_mask) {
        (Some(t), _) => ids(
            "position_ids",
            t,
            b,
            l,
            true,
            cfg.max_position_embeddings,
            device,
        )?,
        (None, Some(m)) if options.padding_invariant => mask::positions_from_mask(m)?,
        (None, _) => Tensor::f_arange(l, (Kind::Int64, device))?.f_unsqueeze(0)?,
    };
    let head_mask = match inputs.head_mask {
        None => None,
        Some(hm) => {
            let heads = cfg.attention_heads();
            let s = hm.size();
            if !(s == [heads] || s == [cfg.num_hidden_layers, heads]) {
                return Err(shape_err(
                    "head_mask",
                    format!("({heads}) or ({}, {heads})", cfg.num_hidden_layers),
                    hm,
                ));
            }
            Some(hm.f_to_device(device)?)
        }
    };
    Ok(Prepared {
        input_ids,
        inputs_embeds,
        attention_mask,
        token_type_ids,
        position_ids,
        head_mask,
    })
}

fn check_len(b: i64, l: i64, cfg: &ConvBertConfig) -> Result<()> {
    if b == 0 || l == 0 {
        return Err(ConvBertError::Input(format!(
            "empty batch: shape ({b}, {l})"
        )));
    }
    if l > cfg.max_position_embeddings {
        return Err(ConvBertError::SequenceTooLong {
            len: l,
            max: cfg.max_position_embeddings,
        });
    }
    Ok(())
}
