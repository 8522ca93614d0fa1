//! The learning-rate schedule of HF Trainer's default `lr_scheduler_type="linear"`:
//! `get_linear_schedule_with_warmup` (transformers v4.57.6, `optimization.py`,
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/optimization.py#L102>),
//! with warm-up given in steps or as a ratio (`TrainingArguments.get_warmup_steps`).

/// Warm-up length: a step count, or a fraction of the total steps (rounded up, as HF does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Warmup {
    /// `warmup_steps`.
    Steps(usize),
    /// `warmup_ratio`: `ceil(ratio * total_steps)` steps.
    Ratio(f64),
}

impl Default for Warmup {
    fn default() -> Self {
        Warmup::Steps(0)
    }
}

/// Linear warm-up from 0 to `base_lr`, then linear decay to 0 at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    /// The peak learning rate (`learning_rate`).
    pub base_lr: f64,
    /// Warm-up steps.
    pub warmup_steps: usize,
    /// Total optimizer steps (`num_training_steps`).
    pub total_steps: usize,
}

impl LinearSchedule {
    /// The schedule of a run of `total_steps` optimizer steps.
    pub fn new(base_lr: f64, warmup: Warmup, total_steps: usize) -> Self {
        let warmup_steps = match warmup {
            Warmup::Steps(n) => n,
            Warmup::Ratio(r) => (r * total_steps as f64).ceil() as usize,
        };
        Self {
            base_lr,
            warmup_steps,
            total_steps,
        }
    }

    /// The learning rate of optimizer step `step` (0-based; `LambdaLR` before its `step()`).
    pub fn lr(&self, step: usize) -> f64 {
        let factor = if step < self.warmup_steps {
            step as f64 / self.warmup_steps.max(1) as f64
        } else {
            let left = self.total_steps as f64 - step as f64;
            let span = (self.total_steps.saturating_sub(self.warmup_steps)).max(1) as f64;
            (left / span).max(0.0)
        };
        self.base_lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_linear_decay() {
        let s = LinearSchedule::new(1.0, Warmup::Steps(2), 6);
        let lrs: Vec<f64> = (0..7).map(|i| s.lr(i)).collect();
        assert_eq!(lrs, [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]);
        assert_eq!(
            LinearSchedule::new(1.0, Warmup::Ratio(0.1), 15).warmup_steps,
            2
        );
        assert_eq!(LinearSchedule::new(2.0, Warmup::default(), 4).lr(0), 2.0);
    }
}
