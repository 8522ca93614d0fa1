//! Training of the ConvBERT heads of `convbert-heads` with Hugging Face `Trainer` parity
//! (transformers v4.57.6, <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/trainer.py>):
//! [`AdamW`] with HF's decay groups, the [`LinearSchedule`] with warm-up, [`clip_grad_norm`],
//! gradient accumulation, and [`train`]: a loop with evaluation, checkpoints, resume, a JSONL log
//! and an SVG loss curve, over datasets read by [`data::read_dataset`].
//!
//! ```
//! use convbert_train::{LinearSchedule, Warmup};
//! // HF's get_linear_schedule_with_warmup: 0 -> peak over the warm-up, then linear decay to 0.
//! let schedule = LinearSchedule::new(1e-3, Warmup::Ratio(0.25), 8);
//! assert_eq!(schedule.warmup_steps, 2);
//! assert_eq!([schedule.lr(0), schedule.lr(1), schedule.lr(2), schedule.lr(8)], [0.0, 5e-4, 1e-3, 0.0]);
//! ```

mod adamw_update;
mod checkpoint;
mod clip;
mod collator;
mod curve;
pub mod data;
mod data_parallel;
mod error;
mod evaluate;
mod ffi;
mod foreach;
mod fused_adamw;
pub mod metrics;
mod model;
mod optimizer;
mod output_dir;
mod precision;
mod schedule;
mod step;
mod trainer;
mod validate;

pub use checkpoint::{checkpoints, LogEntry, TrainerState};
pub use clip::clip_grad_norm;
pub use collator::{Batch, Collator, MlmMasking};
pub use curve::write_curve;
pub use data_parallel::DataParallel;
pub use error::{Result, TrainError};
pub use evaluate::{evaluate, EvalResult};
pub use model::{TaskModel, TaskOutput};
pub use optimizer::{decays, AdamW, AdamWConfig};
pub use output_dir::check_output_dir;
pub use precision::{Autocast, GradScaler, MixedPrecision};
pub use schedule::{LinearSchedule, Warmup};
pub use step::{optimizer_step, optimizer_step_scaled, StepOutcome};
pub use trainer::{train, TrainOutput, TrainingArgs};
