//! Training of the ConvBERT heads of `convbert-heads` with Hugging Face `Trainer` parity
//! (transformers v4.57.6, <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/trainer.py>):
//! [`AdamW`] with HF's decay groups, the [`LinearSchedule`] with warm-up, [`clip_grad_norm`],
//! gradient accumulation, and a training loop with evaluation, checkpoints and resume.

mod clip;
mod error;
mod optimizer;
mod schedule;
mod step;

pub use clip::clip_grad_norm;
pub use error::{Result, TrainError};
pub use optimizer::{decays, AdamW, AdamWConfig};
pub use schedule::{LinearSchedule, Warmup};
pub use step::{optimizer_step, StepOutcome};
