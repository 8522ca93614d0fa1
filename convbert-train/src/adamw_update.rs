//! AdamW's element-wise update of one parameter (`AdamWConfig::fused = Some(false)`; the default
//! is libtorch's multi-tensor kernels). On contiguous fp32 CPU tensors it runs in one pass:
//! the op-by-op form reads and writes parameter-sized tensors about ten times per step, which
//! dominates a training step once the embeddings are large. Elsewhere (CUDA, other dtypes) it
//! runs op by op as torch's single-tensor AdamW. Both do the same f32 arithmetic.

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// Per-step constants of one parameter's update.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Update {
    /// `1 - lr * weight_decay`, or `None` without decay.
    pub(crate) decay: Option<f32>,
    /// `1 - beta1`, the weight of `lerp_`.
    pub(crate) lerp_weight: f32,
    pub(crate) beta2: f32,
    /// `1 - beta2`.
    pub(crate) one_minus_beta2: f32,
    /// `sqrt(1 - beta2^step)`.
    pub(crate) bias_correction2_sqrt: f32,
    pub(crate) eps: f32,
    /// `-lr / (1 - beta1^step)`.
    pub(crate) neg_step_size: f32,
}

impl Update {
    /// Updates `param`, `exp_avg` and `exp_avg_sq` in place from `grad`; `scratch` gives two
    /// buffers of the parameter's shape for the op-by-op path.
    pub(crate) fn step(
        &self,
        param: &Tensor,
        grad: &Tensor,
        exp_avg: &Tensor,
        exp_avg_sq: &Tensor,
        scratch: impl FnOnce() -> Result<[Tensor; 2]>,
    ) -> Result<()> {
        if try_fused_step(param, grad, exp_avg, exp_avg_sq, self)? {
            return Ok(());
        }
        let [mut s1, s2] = scratch()?;
        let (mut param, mut exp_avg, mut exp_avg_sq) = (
            param.shallow_clone(),
            exp_avg.shallow_clone(),
            exp_avg_sq.shallow_clone(),
        );
        // torch's single-tensor AdamW, op by op:
        if let Some(d) = self.decay {
            let _ = param.f_mul_scalar_(f64::from(d))?;
        }
        let _ = exp_avg.f_lerp_(grad, f64::from(self.lerp_weight))?;
        // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1-beta2): (value * g) * g
        let _ = grad.f_mul_scalar_out(&s1, f64::from(self.one_minus_beta2))?;
        let _ = exp_avg_sq
            .f_mul_scalar_(f64::from(self.beta2))?
            .f_addcmul_(&s1, grad)?;
        // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        let _ = exp_avg_sq.f_sqrt_out(&s1)?;
        let _ = s1
            .f_div_scalar_(f64::from(self.bias_correction2_sqrt))?
            .f_add_scalar_(f64::from(self.eps))?;
        // param.addcdiv_(exp_avg, denom, value=-step_size): (value * m) / denom
        let _ = exp_avg.f_mul_scalar_out(&s2, f64::from(self.neg_step_size))?;
        let _ = param.f_addcdiv_(&s2, &s1)?;
        Ok(())
    }

    #[inline(always)]
    fn apply(&self, p: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        if let Some(d) = self.decay {
            *p *= d;
        }
        // torch's lerp: start + w (end - start) for w < 0.5, end - (end - start)(1 - w) else.
        let w = self.lerp_weight;
        *m = if w.abs() < 0.5 {
            *m + w * (g - *m)
        } else {
            g - (g - *m) * (1.0 - w)
        };
        // mul_(beta2).addcmul_(g, g, value=1-beta2): (value * g) * g
        *v = *v * self.beta2 + self.one_minus_beta2 * g * g;
        let denom = v.sqrt() / self.bias_correction2_sqrt + self.eps;
        // addcdiv_(m, denom, value=-step_size): (value * m) / denom
        *p += self.neg_step_size * *m / denom;
    }
}

/// Below this many elements one thread does the update.
const PARALLEL_MIN: usize = 1 << 16;

/// Applies `update` to `param` with gradient `grad` and moments `exp_avg`, `exp_avg_sq`, when all
/// four are contiguous fp32 CPU tensors of one size in disjoint memory; returns false (nothing
/// done) otherwise, for the caller's tensor-op path.
fn try_fused_step(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    update: &Update,
) -> Result<bool> {
    let all = [param, grad, exp_avg, exp_avg_sq];
    let n = param.numel();
    let eligible = all.iter().all(|t| {
        t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() && t.numel() == n
    });
    let ptrs = all.map(|t| t.data_ptr() as usize);
    let bytes = n * std::mem::size_of::<f32>();
    let disjoint = (0..4)
        .all(|i| (i + 1..4).all(|j| ptrs[i] + bytes <= ptrs[j] || ptrs[j] + bytes <= ptrs[i]));
    if !eligible || !disjoint || n == 0 {
        return Ok(false);
    }
    // SAFETY: the four tensors are contiguous fp32 CPU tensors of `n` elements in distinct
    // storages (the optimizer's parameter, its gradient and its two moment buffers), and nothing
    // else touches them while the optimizer steps under no_grad.
    let (p, g, m, v) = unsafe {
        (
            std::slice::from_raw_parts_mut(ptrs[0] as *mut f32, n),
            std::slice::from_raw_parts(ptrs[1] as *const f32, n),
            std::slice::from_raw_parts_mut(ptrs[2] as *mut f32, n),
            std::slice::from_raw_parts_mut(ptrs[3] as *mut f32, n),
        )
    };
    if n < PARALLEL_MIN {
        run(p, g, m, v, update);
    } else {
        // One coarse chunk per libtorch intra-op thread (the `threads` setting), on rayon's pool.
        let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
        let chunk = n.div_ceil(threads);
        p.par_chunks_mut(chunk)
            .zip(g.par_chunks(chunk))
            .zip(m.par_chunks_mut(chunk))
            .zip(v.par_chunks_mut(chunk))
            .for_each(|(((p, g), m), v)| run(p, g, m, v, update));
    }
    // Writes through raw memory leave autograd's version counters as they were: an in-place op
    // on an empty view bumps the counter it shares with its tensor, so a graph that saved the
    // old values refuses to back-propagate instead of using the new ones.
    for t in [param, exp_avg, exp_avg_sq] {
        let _ = t.f_view([-1])?.f_narrow(0, 0, 0)?.f_add_scalar_(0.0)?;
    }
    Ok(true)
}

fn run(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], update: &Update) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        update.apply(p, g, m, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update() -> Update {
        let (lr, beta1, beta2, step) = (1e-3f64, 0.9f64, 0.999f64, 3);
        Update {
            decay: Some((1.0 - lr * 0.01) as f32),
            lerp_weight: (1.0 - beta1) as f32,
            beta2: beta2 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            bias_correction2_sqrt: (1.0 - beta2.powi(step)).sqrt() as f32,
            eps: 1e-8,
            neg_step_size: (-lr / (1.0 - beta1.powi(step))) as f32,
        }
    }

    /// The one-pass path (contiguous) and the op-by-op path (a transposed, non-contiguous view
    /// of the same numbers) agree to f32 rounding, on a tensor large enough to run in parallel.
    /// Like torch's in-place update, the one-pass update invalidates graphs that saved the
    /// parameter.
    #[test]
    fn a_graph_that_saved_the_parameter_cannot_back_propagate_after_an_update() {
        let opts = (Kind::Float, Device::Cpu);
        let w = Tensor::ones([4], opts).set_requires_grad(true);
        let x = Tensor::ones([4], opts).set_requires_grad(true);
        let y = (&w * &x).sum(Kind::Float); // saves w to give x its gradient
        let [g, m, v] = [0.5, 0.0, 0.0].map(|f| Tensor::full([4], f, opts));
        tch::no_grad(|| update().step(&w, &g, &m, &v, || unreachable!()).unwrap());
        assert!(!w.equal(&Tensor::ones([4], opts)), "the one-pass path ran");
        let err = y.f_backward().expect_err("stale graph");
        assert!(err.to_string().contains("inplace operation"), "{err}");
    }

    #[test]
    fn one_pass_equals_op_by_op() {
        tch::manual_seed(0);
        let shape = [300, 400];
        let opts = (Kind::Float, Device::Cpu);
        let init = [
            Tensor::randn(shape, opts),
            Tensor::randn(shape, opts),
            Tensor::randn(shape, opts) * 0.1,
            Tensor::rand(shape, opts) * 0.01,
        ];
        let run = |contiguous: bool| -> Vec<Tensor> {
            let t: Vec<Tensor> = init
                .iter()
                .map(|x| {
                    if contiguous {
                        x.copy()
                    } else {
                        x.tr().contiguous().tr()
                    }
                })
                .collect();
            let scratch = || Ok([t[0].empty_like(), t[0].empty_like()]);
            update().step(&t[0], &t[1], &t[2], &t[3], scratch).unwrap();
            vec![t[0].contiguous(), t[2].contiguous(), t[3].contiguous()]
        };
        let (fused, ops) = (run(true), run(false));
        for (a, b) in fused.iter().zip(&ops) {
            let diff = (a - b).abs().max().double_value(&[]);
            let scale = b.abs().max().double_value(&[]);
            assert!(diff <= scale * 1e-6, "max |diff| {diff:e} (scale {scale})");
        }
        assert!(!fused[0].equal(&init[0]), "the parameter moved");
    }
}
