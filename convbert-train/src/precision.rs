//! Mixed precision as HF Trainer's `--bf16` and `--fp16` run it: fp32 master weights, forward and
//! backward under libtorch's autocast (matmuls and convolutions in the low dtype, softmax, norms
//! and losses in fp32), and for fp16 dynamic loss scaling with `torch.amp.GradScaler`'s rules.

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::error::{Result, TrainError};

/// The compute dtype of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixedPrecision {
    /// fp32 throughout.
    #[default]
    No,
    /// fp16 autocast with loss scaling (CUDA only, as in HF).
    Fp16,
    /// bf16 autocast (CUDA, or CPU with bf16 support), no loss scaling needed.
    Bf16,
}

impl MixedPrecision {
    /// Checks that `device` supports this precision.
    pub fn validate(self, device: Device) -> Result<()> {
        match (self, device) {
            (MixedPrecision::Fp16, Device::Cpu) => Err(TrainError::argument(
                "mixed_precision",
                "fp16 mixed precision needs a CUDA device; use bf16 on CPU",
            )),
            (MixedPrecision::Fp16 | MixedPrecision::Bf16, Device::Mps | Device::Vulkan) => {
                Err(TrainError::argument(
                    "mixed_precision",
                    "mixed precision runs on CPU (bf16) or CUDA only",
                ))
            }
            _ => Ok(()),
        }
    }
}

// at::autocast (ATen/autocast_mode.h) is exported by libtorch_cpu; tch binds only the
// CUDA-and-fp16 form, so the device- and dtype-aware functions are declared here.
// c10::DeviceType and c10::ScalarType are `enum class : int8_t`, passed like a C `int8_t`.
mod ffi {
    extern "C" {
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device_type: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device_type: i8) -> bool;
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device_type: i8, dtype: i8);
        #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
        pub fn get_autocast_dtype(device_type: i8) -> i8;
        #[link_name = "_ZN2at8autocast17increment_nestingEv"]
        pub fn increment_nesting() -> i32;
        #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
        pub fn decrement_nesting() -> i32;
        #[link_name = "_ZN2at8autocast11clear_cacheEv"]
        pub fn clear_cache();
    }
}

// c10/core/DeviceType.h and c10/core/ScalarType.h.
const DEVICE_CPU: i8 = 0;
const DEVICE_CUDA: i8 = 1;
const SCALAR_HALF: i8 = 5;
const SCALAR_BFLOAT16: i8 = 15;

/// Autocast enabled on one device type for the guard's lifetime, as `with torch.autocast(...)`:
/// the previous state is restored and the cast cache cleared on drop.
pub struct Autocast {
    device_type: i8,
    was_enabled: bool,
    old_dtype: i8,
}

impl Autocast {
    /// `None` when `precision` is [`MixedPrecision::No`].
    pub fn enter(precision: MixedPrecision, device: Device) -> Result<Option<Autocast>> {
        precision.validate(device)?;
        let dtype = match precision {
            MixedPrecision::No => return Ok(None),
            MixedPrecision::Fp16 => SCALAR_HALF,
            MixedPrecision::Bf16 => SCALAR_BFLOAT16,
        };
        let device_type = if device.is_cuda() {
            DEVICE_CUDA
        } else {
            DEVICE_CPU
        };
        // SAFETY: plain setters of thread-local state; CPU and CUDA are autocast devices, for
        // which none of these functions throws.
        unsafe {
            let guard = Autocast {
                device_type,
                was_enabled: ffi::is_autocast_enabled(device_type),
                old_dtype: ffi::get_autocast_dtype(device_type),
            };
            ffi::set_autocast_dtype(device_type, dtype);
            ffi::set_autocast_enabled(device_type, true);
            ffi::increment_nesting();
            Ok(Some(guard))
        }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe {
            if ffi::decrement_nesting() == 0 {
                ffi::clear_cache();
            }
            ffi::set_autocast_enabled(self.device_type, self.was_enabled);
            ffi::set_autocast_dtype(self.device_type, self.old_dtype);
        }
    }
}

/// Dynamic loss scaling for fp16, with `torch.amp.GradScaler`'s defaults: the loss is multiplied
/// by `scale` before backward and the gradients divided by it; a step whose gradients overflow
/// is skipped and halves the scale, and 2000 clean steps in a row double it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradScaler {
    /// Current loss scale (65536 at start).
    pub scale: f64,
    /// Clean steps since the scale last changed.
    pub growth_tracker: usize,
    /// Steps skipped for overflow so far: as in HF Trainer, the learning-rate schedule does not
    /// advance on them.
    #[serde(default)]
    pub skipped_steps: usize,
}

impl Default for GradScaler {
    fn default() -> Self {
        Self {
            scale: 65536.0,
            growth_tracker: 0,
            skipped_steps: 0,
        }
    }
}

impl GradScaler {
    const GROWTH_FACTOR: f64 = 2.0;
    const BACKOFF_FACTOR: f64 = 0.5;
    const GROWTH_INTERVAL: usize = 2000;

    /// Records one step's outcome, as `GradScaler.update`.
    pub fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= Self::BACKOFF_FACTOR;
            self.growth_tracker = 0;
            self.skipped_steps += 1;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == Self::GROWTH_INTERVAL {
                self.scale *= Self::GROWTH_FACTOR;
                self.growth_tracker = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn bf16_autocast_on_cpu_casts_matmuls_and_restores_state() {
        let a = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        {
            let _guard = Autocast::enter(MixedPrecision::Bf16, Device::Cpu).unwrap();
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
        }
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        assert!(Autocast::enter(MixedPrecision::No, Device::Cpu)
            .unwrap()
            .is_none());
    }

    #[test]
    fn fp16_needs_cuda() {
        let err = Autocast::enter(MixedPrecision::Fp16, Device::Cpu)
            .err()
            .unwrap();
        assert!(err.to_string().contains("CUDA"), "{err}");
    }

    #[test]
    fn scaler_backs_off_on_overflow_and_grows_after_2000_clean_steps() {
        let mut s = GradScaler::default();
        s.update(true);
        assert_eq!((s.scale, s.skipped_steps), (32768.0, 1));
        for _ in 0..1999 {
            s.update(false);
        }
        assert_eq!((s.scale, s.growth_tracker), (32768.0, 1999));
        s.update(false);
        assert_eq!((s.scale, s.growth_tracker), (65536.0, 0));
    }
}
