//! int8 dynamic quantization of a ConvBERT model (the encoder or any head) on CPU, as
//! `torch.ao.quantization.quantize_dynamic` with per-channel weights does: each Linear (the
//! head's too, and the pointwise convolution, a 1x1 conv being a Linear) keeps int8 weights, one symmetric scale per
//! output channel, packed once by `quantized::linear_prepack`; at run time
//! `quantized::linear_dynamic` (fbgemm) quantizes each call's activations to uint8 with a scale
//! from their min and max (`reduce_range`, as torch on x86) and accumulates in int32.
//!
//! ```no_run
//! use convbert_model::ConvBertModel;
//! use tch::{Device, Kind};
//!
//! let (mut model, _vs) = ConvBertModel::from_pretrained("fixtures/default-model", Device::Cpu, Kind::Float)?;
//! let replaced = convbert_quant::quantize_dynamic_int8(&mut model)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ffi;

use std::ffi::{c_void, CString};
use std::ptr::NonNull;

use convbert_model::primitives::{LinearKernel, ReplaceLinears};
use convbert_model::ConvBertError;
use tch::{Device, Kind, TchError, Tensor};

/// The libtorch operators the int8 path calls.
pub const OPS: [&str; 2] = ["quantized::linear_prepack", "quantized::linear_dynamic"];

/// Why quantization cannot run.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// The model or tensor is not fp32 on the CPU.
    #[error("int8 dynamic quantization runs on CPU fp32 models only: {0}")]
    Unsupported(String),
    /// libtorch lacks an operator (built without fbgemm, or the op was removed).
    #[error("this libtorch has no `{0}` operator (int8 needs a build with fbgemm)")]
    MissingOp(&'static str),
    #[error(transparent)]
    Model(#[from] ConvBertError),
    #[error(transparent)]
    Tch(#[from] TchError),
}

/// Whether libtorch registers the operator `name` (e.g. "quantized::linear_dynamic").
pub fn has_op(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated string the call only reads.
    unsafe { ffi::cbq_has_op(c.as_ptr()) != 0 }
}

/// Ok when every operator in [`OPS`] is registered.
pub fn check_ops() -> Result<(), QuantError> {
    match OPS.into_iter().find(|op| !has_op(op)) {
        Some(missing) => Err(QuantError::MissingOp(missing)),
        None => Ok(()),
    }
}

/// y = x Wᵀ + b with W int8 per output channel (packed for fbgemm) and x quantized per call.
#[derive(Debug)]
pub struct Int8Linear {
    packed: NonNull<c_void>,
    out_features: i64,
}

// SAFETY: the packed params are immutable once made (linear_dynamic only reads them, as torch's
// inference threads share one packed weight) and their reference count is atomic; nothing ties
// them to the thread that packed them.
unsafe impl Send for Int8Linear {}
unsafe impl Sync for Int8Linear {}

impl Int8Linear {
    /// Quantizes `weight` (out, in) as torch's `default_per_channel_weight_observer` does
    /// (qint8, symmetric: scale = max|w_row| / 127.5, at least f32 epsilon; zero point 0), then
    /// packs it with the fp32 `bias` (out,).
    pub fn new(weight: &Tensor, bias: &Tensor) -> Result<Self, QuantError> {
        for (name, t) in [("weight", weight), ("bias", bias)] {
            if t.device() != Device::Cpu || t.kind() != Kind::Float {
                return Err(QuantError::Unsupported(format!(
                    "{name} is {:?} on {:?}",
                    t.kind(),
                    t.device()
                )));
            }
        }
        check_ops()?;
        let _guard = tch::no_grad_guard();
        let weight = weight.f_detach()?.f_contiguous()?;
        let out_features = weight.size()[0];
        // The observer works in fp32; quantize_per_channel takes double scales.
        let scales = weight
            .f_abs()?
            .f_amax([1], false)?
            .f_div_scalar(127.5)?
            .f_clamp_min(f64::from(f32::EPSILON))?
            .f_to_kind(Kind::Double)?;
        let zero_points = Tensor::f_zeros([out_features], (Kind::Int64, Device::Cpu))?;
        let qweight = weight.f_quantize_per_channel(&scales, &zero_points, 0, Kind::QInt8)?;
        let bias = bias.f_detach()?.f_contiguous()?;
        let mut packed: *mut c_void = std::ptr::null_mut();
        ffi::check(|err| {
            // SAFETY: both tensors outlive the call; the shim writes `packed` on success.
            unsafe { ffi::cbq_linear_prepack(qweight.as_ptr(), bias.as_ptr(), &mut packed, err) }
        })
        .map_err(TchError::Torch)?;
        let packed = NonNull::new(packed)
            .ok_or_else(|| TchError::Torch("linear_prepack returned no handle".into()))?;
        Ok(Int8Linear {
            packed,
            out_features,
        })
    }

    /// Output width.
    pub fn out_features(&self) -> i64 {
        self.out_features
    }

    /// fp32 x (..., in) -> fp32 (..., out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, QuantError> {
        if x.device() != Device::Cpu || x.kind() != Kind::Float {
            return Err(QuantError::Unsupported(format!(
                "input is {:?} on {:?}",
                x.kind(),
                x.device()
            )));
        }
        // fbgemm reads the rows in place: a narrowed or transposed view must be packed first.
        let x = x.f_contiguous()?;
        let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
        ffi::check(|err| {
            // SAFETY: x and the packed handle outlive the call; the shim writes `out` on success.
            unsafe { ffi::cbq_linear_dynamic(x.as_ptr(), self.packed.as_ptr(), 1, &mut out, err) }
        })
        .map_err(TchError::Torch)?;
        if out.is_null() {
            return Err(TchError::Torch("linear_dynamic returned no tensor".into()).into());
        }
        // SAFETY: `out` is a fresh heap at::Tensor the Tensor now owns.
        Ok(unsafe { Tensor::from_ptr(out) })
    }
}

impl Drop for Int8Linear {
    fn drop(&mut self) {
        // SAFETY: the handle came from cbq_linear_prepack and is freed once.
        unsafe { ffi::cbq_free_packed(self.packed.as_ptr()) }
    }
}

impl LinearKernel for Int8Linear {
    fn forward(&self, x: &Tensor) -> convbert_model::Result<Tensor> {
        Int8Linear::forward(self, x).map_err(|e| match e {
            QuantError::Model(e) => e,
            QuantError::Tch(e) => ConvBertError::Tch(e),
            other => ConvBertError::Input(other.to_string()),
        })
    }
}

/// Quantizes every Linear and pointwise convolution of `model` (fp32 on CPU; the encoder or any
/// head, whose own Linears are quantized too, the MLM's vocabulary projection included) to int8
/// with dynamic activations; LayerNorms, embeddings, attention and GroupedLinear (a batched
/// matmul, which quantize_dynamic leaves too) stay fp32. Returns how many GEMMs now run in int8.
pub fn quantize_dynamic_int8(model: &mut impl ReplaceLinears) -> Result<usize, QuantError> {
    let (kind, device) = model.kind_and_device();
    if device != Device::Cpu || kind != Kind::Float {
        return Err(QuantError::Unsupported(format!(
            "the model is {kind:?} on {device:?}; load it as f32 on cpu"
        )));
    }
    check_ops()?;
    let mut make = |w: &Tensor, b: &Tensor| -> convbert_model::Result<Box<dyn LinearKernel>> {
        let l = Int8Linear::new(w, b).map_err(|e| match e {
            QuantError::Model(e) => e,
            QuantError::Tch(e) => ConvBertError::Tch(e),
            other => ConvBertError::Input(other.to_string()),
        })?;
        Ok(Box::new(l))
    };
    Ok(model.replace_linears(&mut make)?)
}
