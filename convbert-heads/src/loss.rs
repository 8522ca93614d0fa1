//! Losses of the heads, as `torch.nn` computes them in
//! [modeling_convbert.py](https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py):
//! cross-entropy with an ignore index, MSE and BCE-with-logits, all mean-reduced. Labels are checked
//! here (dtype, shape, range) so that a bad label is a typed error, never a libtorch abort.

use tch::{Kind, Reduction, Tensor};

use crate::error::{ConvBertHeadError, Result};

/// The label value `CrossEntropyLoss` ignores by default (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Class-index labels as int64; int32 is accepted and widened, anything else is an error.
pub(crate) fn class_indices(labels: &Tensor, what: &'static str) -> Result<Tensor> {
    match labels.kind() {
        Kind::Int64 => Ok(labels.shallow_clone()),
        Kind::Int => Ok(labels.to_kind(Kind::Int64)),
        got => Err(ConvBertHeadError::Kind {
            what,
            expected: "int64 or int32 class indices",
            got,
        }),
    }
}

/// Float targets in the logits' dtype; integer or boolean targets are an error (as in PyTorch).
pub(crate) fn float_targets(labels: &Tensor, like: &Tensor, what: &'static str) -> Result<Tensor> {
    if labels.is_floating_point() {
        Ok(labels.to_kind(like.kind()))
    } else {
        Err(ConvBertHeadError::Kind {
            what,
            expected: "floating-point targets",
            got: labels.kind(),
        })
    }
}

/// Fails with the first value of `labels` that is neither in `0..num_classes` nor `ignore`.
pub(crate) fn check_range(
    labels: &Tensor,
    num_classes: i64,
    ignore: Option<i64>,
    what: &'static str,
) -> Result<()> {
    let mut bad = labels.lt(0).logical_or(&labels.ge(num_classes));
    if let Some(ignore) = ignore {
        bad = bad.logical_and(&labels.ne(ignore));
    }
    if bad.f_any()?.int64_value(&[]) == 0 {
        return Ok(());
    }
    let value = labels.masked_select(&bad).f_int64_value(&[0])?;
    let valid = match ignore {
        Some(i) => format!("0..{num_classes} (or {i} to ignore)"),
        None => format!("0..{num_classes}"),
    };
    Err(ConvBertHeadError::LabelOutOfRange { what, value, valid })
}

/// Mean cross-entropy of `logits` (N, C) against class indices `labels` (N,), skipping `ignore_index`.
/// Labels are validated first: int dtype, one per row, each in `0..C` or equal to `ignore_index`.
/// All positions ignored gives NaN, as in PyTorch.
pub fn cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    ignore_index: i64,
    what: &'static str,
) -> Result<Tensor> {
    let labels = class_indices(labels, what)?;
    let (rows, classes) = match logits.size()[..] {
        [n, c] => (n, c),
        _ => return Err(ConvBertHeadError::shape("logits", "(N, C)", logits)),
    };
    if labels.size() != [rows] {
        return Err(ConvBertHeadError::shape(
            what,
            format!("({rows},) after flattening"),
            &labels,
        ));
    }
    check_range(&labels, classes, Some(ignore_index), what)?;
    Ok(logits.f_cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, ignore_index, 0.0)?)
}

/// Mean squared error between `predictions` and float `targets` of the same shape.
pub fn mse(predictions: &Tensor, targets: &Tensor, what: &'static str) -> Result<Tensor> {
    let targets = float_targets(targets, predictions, what)?;
    if targets.size() != predictions.size() {
        return Err(ConvBertHeadError::shape(
            what,
            format!("{:?}", predictions.size()),
            &targets,
        ));
    }
    Ok(predictions.f_mse_loss(&targets, Reduction::Mean)?)
}

/// Mean binary cross-entropy of `logits` (B, C) against float multi-hot `targets` (B, C).
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor, what: &'static str) -> Result<Tensor> {
    let targets = float_targets(targets, logits, what)?;
    if targets.size() != logits.size() {
        return Err(ConvBertHeadError::shape(
            what,
            format!("{:?}", logits.size()),
            &targets,
        ));
    }
    Ok(logits.f_binary_cross_entropy_with_logits::<Tensor>(
        &targets,
        None,
        None,
        Reduction::Mean,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_ignores_minus_100_and_rejects_other_values() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let loss = cross_entropy(
            &logits,
            &Tensor::from_slice(&[0i64, -100]),
            IGNORE_INDEX,
            "labels",
        )
        .unwrap();
        let want = (1.0f64 + (-2.0f64).exp()).ln();
        assert!((loss.double_value(&[]) - want).abs() < 1e-6);
        let err = cross_entropy(
            &logits,
            &Tensor::from_slice(&[0i64, 2]),
            IGNORE_INDEX,
            "labels",
        )
        .unwrap_err();
        assert!(
            matches!(err, ConvBertHeadError::LabelOutOfRange { value: 2, .. }),
            "{err}"
        );
        let err = cross_entropy(
            &logits,
            &Tensor::from_slice(&[-1i64, 0]),
            IGNORE_INDEX,
            "labels",
        )
        .unwrap_err();
        assert!(
            matches!(err, ConvBertHeadError::LabelOutOfRange { value: -1, .. }),
            "{err}"
        );
        let err = cross_entropy(
            &logits,
            &Tensor::from_slice(&[0.0f32, 1.0]),
            IGNORE_INDEX,
            "labels",
        )
        .unwrap_err();
        assert!(matches!(err, ConvBertHeadError::Kind { .. }), "{err}");
        let err = cross_entropy(
            &logits,
            &Tensor::from_slice(&[0i64, 1, 1]),
            IGNORE_INDEX,
            "labels",
        )
        .unwrap_err();
        assert!(matches!(err, ConvBertHeadError::Shape { .. }), "{err}");
    }

    #[test]
    fn mse_and_bce_need_float_targets_of_the_same_shape() {
        let x = Tensor::from_slice(&[1.0f32, 3.0]);
        let loss = mse(&x, &Tensor::from_slice(&[0.0f64, 1.0]), "labels").unwrap();
        assert!((loss.double_value(&[]) - 2.5).abs() < 1e-6);
        assert!(matches!(
            mse(&x, &Tensor::from_slice(&[0i64, 1]), "labels"),
            Err(ConvBertHeadError::Kind { .. })
        ));
        let logits = Tensor::zeros([1, 2], (Kind::Float, tch::Device::Cpu));
        let loss = bce_with_logits(
            &logits,
            &Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]),
            "labels",
        )
        .unwrap();
        assert!((loss.double_value(&[]) - 2f64.ln()).abs() < 1e-6);
        let err = bce_with_logits(
            &logits,
            &Tensor::from_slice(&[1.0f32]).view([1, 1]),
            "labels",
        )
        .unwrap_err();
        assert!(matches!(err, ConvBertHeadError::Shape { .. }));
    }
}
