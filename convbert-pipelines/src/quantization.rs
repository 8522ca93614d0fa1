//! [`Quantization`]: how a pipeline's model runs its GEMMs after loading; int8 is dynamic
//! quantization on the CPU (`convbert-quant`, as torch's `quantize_dynamic`).

use convbert_model::primitives::ReplaceLinears;
use tch::{Device, Kind};

use crate::error::{PipelineError, Result};

/// GEMM precision of a loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantization {
    /// The weights' own kind (`PipelineOptions::kind`).
    #[default]
    None,
    /// Every Linear (the head's included) and pointwise convolution in int8: weights per output
    /// channel, activations quantized per call (fbgemm). CPU and an f32 load only. The
    /// activation scale comes from the whole batch, so (as with torch) a result moves slightly
    /// with the other inputs of its batch, even in the padding-invariant mode.
    DynamicInt8,
}

impl Quantization {
    /// Refuses int8 on another device or dtype before anything loads.
    pub(crate) fn check(self, device: Device, kind: Kind) -> Result<()> {
        if self == Quantization::DynamicInt8 && (device != Device::Cpu || kind != Kind::Float) {
            return Err(PipelineError::option(
                "quantization",
                format!("int8 runs on cpu with f32 weights only, not {kind:?} on {device:?}"),
            ));
        }
        Ok(())
    }

    /// Quantizes `model` in place as asked.
    pub(crate) fn apply(self, model: &mut impl ReplaceLinears) -> Result<()> {
        if self == Quantization::DynamicInt8 {
            convbert_quant::quantize_dynamic_int8(model)?;
        }
        Ok(())
    }
}
