//! Up-front checks of [`TrainingArgs`]: a value that cannot train (a NaN or negative learning
//! rate, a zero batch size, ...) is rejected before any data is read or any weight changes.

use crate::error::{Result, TrainError};
use crate::schedule::Warmup;
use crate::trainer::TrainingArgs;

fn check(ok: bool, name: &'static str, what: &str, value: impl std::fmt::Display) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(TrainError::argument(name, format!("{value} is not {what}")))
    }
}

impl TrainingArgs {
    /// Rejects arguments that cannot work ([`TrainError::Argument`]); [`crate::train`] calls it first.
    pub fn validate(&self) -> Result<()> {
        let finite_non_negative = |v: f64| v.is_finite() && v >= 0.0;
        let lr = self.learning_rate;
        check(
            finite_non_negative(lr),
            "learning_rate",
            "a finite number >= 0",
            lr,
        )?;
        let a = &self.adam;
        for (name, v) in [("adam_beta1", a.beta1), ("adam_beta2", a.beta2)] {
            check((0.0..1.0).contains(&v), name, "in [0, 1)", v)?;
        }
        let what = "a finite number >= 0";
        check(finite_non_negative(a.eps), "adam_epsilon", what, a.eps)?;
        let wd = a.weight_decay;
        check(finite_non_negative(wd), "weight_decay", what, wd)?;
        let clip = self.max_grad_norm;
        check(finite_non_negative(clip), "max_grad_norm", what, clip)?;
        if let Warmup::Ratio(r) = self.warmup {
            check((0.0..=1.0).contains(&r), "warmup_ratio", "in [0, 1]", r)?;
        }
        for (name, v) in [
            ("train_batch_size", self.train_batch_size),
            ("eval_batch_size", self.eval_batch_size),
            (
                "gradient_accumulation_steps",
                self.gradient_accumulation_steps,
            ),
        ] {
            check(v > 0, name, "at least 1", v)?;
        }
        self.mixed_precision.validate(self.device)?;
        if self.overwrite_output_dir && self.resume_from.is_some() {
            let reason = "would remove the checkpoints that resume_from continues; give only one";
            return Err(TrainError::argument("overwrite_output_dir", reason));
        }
        if self.max_steps == Some(0) || (self.max_steps.is_none() && self.num_train_epochs == 0) {
            return Err(TrainError::argument("max_steps", "no step to take"));
        }
        Ok(())
    }
}
