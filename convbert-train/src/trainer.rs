//! The training loop of HF `Trainer.train` (transformers v4.57.6, `_inner_training_loop`) as a
//! library call: seeded shuffling per epoch, gradient accumulation, evaluation, checkpoints every
//! `save_steps` and at the end, resume, a JSONL log, a progress bar on a terminal and an SVG curve.
//!
//! Every random draw derives from `(seed, epoch)` (shuffling) or `(seed, step)` (dropout, masking),
//! so a resumed run repeats the draws of an uninterrupted one exactly.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

use crate::checkpoint::{load_checkpoint, save_checkpoint, save_final, LogEntry, TrainerState};
use crate::collator::Collator;
use crate::curve::write_curve;
use crate::data::Dataset;
use crate::data_parallel::{shard, DataParallel};
use crate::error::{Result, TrainError};
use crate::evaluate::{evaluate, EvalResult};
use crate::model::TaskModel;
use crate::optimizer::{AdamW, AdamWConfig};
use crate::output_dir::{prepare_output_dir, write_whole};
use crate::precision::{Autocast, GradScaler, MixedPrecision};
use crate::schedule::{LinearSchedule, Warmup};
use crate::step::step_with;

/// Hyper-parameters and run options; defaults are HF `TrainingArguments`' where HF has one.
#[derive(Debug, Clone)]
pub struct TrainingArgs {
    /// Where checkpoints, the log, the curve and the final model go.
    pub output_dir: PathBuf,
    /// Peak learning rate (5e-5).
    pub learning_rate: f64,
    /// AdamW betas, epsilon and weight decay.
    pub adam: AdamWConfig,
    /// Warm-up (none).
    pub warmup: Warmup,
    /// Epochs (3), unless `max_steps` is set.
    pub num_train_epochs: usize,
    /// Total optimizer steps, overriding the epochs.
    pub max_steps: Option<usize>,
    /// Examples per micro-batch (8).
    pub train_batch_size: usize,
    /// Examples per evaluation batch (8).
    pub eval_batch_size: usize,
    /// Micro-batches per optimizer step (1).
    pub gradient_accumulation_steps: usize,
    /// Clip threshold of the total gradient norm (1.0; 0 disables).
    pub max_grad_norm: f64,
    /// Seed of shuffling, dropout and masking (42).
    pub seed: u64,
    /// Log every N steps (500).
    pub logging_steps: usize,
    /// Evaluate every N steps (and always at the end when an eval set is given).
    pub eval_steps: Option<usize>,
    /// Save a checkpoint every N steps (and always at the end).
    pub save_steps: Option<usize>,
    /// Keep only the newest K checkpoints.
    pub save_total_limit: Option<usize>,
    /// libtorch intra-op threads.
    pub threads: Option<usize>,
    /// Device of the model and batches.
    pub device: Device,
    /// Autocast of forward, backward and evaluation: bf16 (CPU or CUDA), fp16 with loss
    /// scaling (CUDA), or none.
    pub mixed_precision: MixedPrecision,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// A `checkpoint-<step>` directory to resume from (the output directory may then hold files).
    pub resume_from: Option<PathBuf>,
    /// Train as one rank of a torch.distributed job (see [`DataParallel`]): `train_batch_size`
    /// is then per process, and only rank 0 writes into `output_dir`.
    pub data_parallel: Option<DataParallel>,
    /// Let a new run use a non-empty output directory (refused otherwise): the earlier run's
    /// `checkpoint-*` directories, final model (config.json, model.safetensors), train_log.jsonl
    /// and loss_curve.svg are removed first; other files stay. Not with `resume_from`.
    pub overwrite_output_dir: bool,
}

impl Default for TrainingArgs {
    fn default() -> Self {
        Self {
            output_dir: PathBuf::from("output"),
            learning_rate: 5e-5,
            adam: AdamWConfig::default(),
            warmup: Warmup::default(),
            num_train_epochs: 3,
            max_steps: None,
            train_batch_size: 8,
            eval_batch_size: 8,
            gradient_accumulation_steps: 1,
            max_grad_norm: 1.0,
            seed: 42,
            logging_steps: 500,
            eval_steps: None,
            save_steps: None,
            save_total_limit: None,
            threads: None,
            device: Device::Cpu,
            mixed_precision: MixedPrecision::No,
            progress: true,
            resume_from: None,
            data_parallel: None,
            overwrite_output_dir: false,
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainOutput {
    /// Optimizer steps done.
    pub global_step: usize,
    /// Mean training loss over the steps of this call.
    pub train_loss: f64,
    /// Training examples per second (forward, backward and update; no evaluation, no saving).
    pub examples_per_second: f64,
    /// The final evaluation, when an eval set was given.
    pub eval: Option<EvalResult>,
    /// Every log entry of the run.
    pub log_history: Vec<LogEntry>,
}

fn mix(seed: u64, salt: u64) -> u64 {
    // SplitMix64 finaliser: distinct, well-spread seeds per (seed, salt).
    let mut z = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Trains `model` on `train`, evaluating on `eval`; writes checkpoints, `train_log.jsonl`,
/// `loss_curve.svg` and the final model (config.json + model.safetensors) into `output_dir`,
/// which must be empty unless the run resumes or overwrites ([`crate::check_output_dir`]).
/// Dropout draws from libtorch's global generator, seeded per step: one run per process at a time.
pub fn train(
    model: &TaskModel,
    train: &Dataset,
    eval: Option<&Dataset>,
    collator: &Collator,
    args: &TrainingArgs,
) -> Result<TrainOutput> {
    let arg = TrainError::argument;
    if train.is_empty() {
        return Err(arg("train", "the training set is empty"));
    }
    args.validate()?;
    if let Some(t) = args.threads {
        tch::set_num_threads(t as i32);
    }
    let out_dir = &args.output_dir;
    let dp = args.data_parallel.as_ref();
    let (rank, world) = dp.map_or((0, 1), |d| (d.rank(), d.world_size()));
    let main = rank == 0;
    if let Some(dp) = dp {
        dp.check_same("train", train.len() as f64)?;
        dp.check_same("max_steps", args.max_steps.map_or(-1.0, |n| n as f64))?;
        let prepared = if main {
            prepare_output_dir(args)
        } else {
            Ok(())
        };
        dp.all_ok(prepared)?;
        dp.broadcast_parameters(model.var_store())?;
    } else {
        prepare_output_dir(args)?;
    }
    let accum = args.gradient_accumulation_steps;
    // Micro-batches per epoch of this rank's DistributedSampler shard.
    let per_epoch = train.len().div_ceil(world).div_ceil(args.train_batch_size);
    let max_steps = args
        .max_steps
        .unwrap_or(args.num_train_epochs * (per_epoch / accum).max(1));
    if max_steps == 0 {
        return Err(arg("max_steps", "no step to take"));
    }
    let schedule = LinearSchedule::new(args.learning_rate, args.warmup, max_steps);
    let mut optimizer = AdamW::new(model.var_store(), args.adam)?;
    let mut state = TrainerState {
        global_step: 0,
        max_steps,
        seed: args.seed,
        log_history: Vec::new(),
        unlogged_losses: Vec::new(),
        grad_scaler: (args.mixed_precision == MixedPrecision::Fp16).then(GradScaler::default),
        world_size: world,
    };
    if let Some(dir) = &args.resume_from {
        let saved = load_checkpoint(dir, model, &mut optimizer)?;
        if saved.max_steps != max_steps || saved.seed != args.seed {
            let reason = format!(
                "it was saved by a run of {} steps with seed {}, this one has {max_steps} steps and seed {}",
                saved.max_steps, saved.seed, args.seed
            );
            return Err(TrainError::Resume {
                path: dir.clone(),
                reason,
            });
        }
        if saved.world_size != world {
            return Err(TrainError::Resume {
                path: dir.clone(),
                reason: format!(
                    "it was saved by a run of {} process(es), this one has {world}: each process's share of the data would differ; resume with WORLD_SIZE={}",
                    saved.world_size, saved.world_size
                ),
            });
        }
        state = saved;
        if args.mixed_precision == MixedPrecision::Fp16 && state.grad_scaler.is_none() {
            state.grad_scaler = Some(GradScaler::default());
        }
    }
    let log_path = out_dir.join("train_log.jsonl");
    // The lines so far (a resumed run's history) replace the log whole, so a run killed here
    // leaves the earlier log; each later line is appended in one write, never half a line.
    let mut history = String::new();
    for entry in &state.log_history {
        history.push_str(&serde_json::to_string(entry)?);
        history.push('\n');
    }
    let mut log_file = if main {
        write_whole(&log_path, history.as_bytes())?;
        Some(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .map_err(|e| TrainError::io(&log_path, e))?,
        )
    } else {
        None
    };
    let bar = (main && args.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(max_steps as u64).with_position(state.global_step as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}<{eta}] {msg}")
        {
            bar.set_style(style);
        }
        bar
    });
    let metric_key = |r: &EvalResult| {
        eval.and_then(|d| r.main_metric(d.task))
            .map(|(n, _)| format!("eval_{n}"))
    };
    let (mut epoch_cache, mut order): (Option<usize>, Vec<usize>) = (None, Vec::new());
    let (mut window_examples, mut window_time) = (0usize, 0.0f64);
    let (mut all_losses, mut total_examples, mut total_time) = (Vec::new(), 0usize, 0.0f64);
    let mut last_eval = None;
    let start_step = state.global_step;
    for step in start_step..max_steps {
        let started = Instant::now();
        tch::manual_seed(mix(args.seed, step as u64) as i64);
        let mut examples = 0;
        // Steps skipped for fp16 overflow do not advance the schedule (HF Trainer).
        let skipped = state.grad_scaler.map_or(0, |s| s.skipped_steps);
        let lr = schedule.lr(step - skipped);
        let loss_of = |micro: usize| {
            let k = step * accum + micro;
            let epoch = k / per_epoch;
            if epoch_cache != Some(epoch) {
                let mut all: Vec<usize> = (0..train.len()).collect();
                all.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
                    args.seed,
                    1 << 40 | epoch as u64,
                )));
                order = shard(&all, rank, world);
                epoch_cache = Some(epoch);
            }
            let i = k % per_epoch * args.train_batch_size;
            let picked: Vec<_> = order[i..(i + args.train_batch_size).min(order.len())]
                .iter()
                .map(|&j| &train.examples[j])
                .collect();
            examples += picked.len();
            let mut rng = ChaCha8Rng::seed_from_u64(mix(args.seed, 2 << 40 | k as u64));
            let batch = collator.collate(&picked, &mut rng, args.device)?;
            model
                .forward(&batch, true)?
                .loss
                .ok_or_else(|| arg("labels", "the batch has no labels"))
        };
        let autocast = Autocast::enter(args.mixed_precision, args.device)?;
        let outcome = step_with(
            &mut optimizer,
            lr,
            accum,
            args.max_grad_norm,
            step,
            state.grad_scaler.as_mut(),
            dp,
            loss_of,
        )?;
        drop(autocast);
        let secs = started.elapsed().as_secs_f64();
        // Every rank takes as many examples (the sampler pads its shard).
        let examples = examples * world;
        state.global_step = step + 1;
        state.unlogged_losses.push(outcome.loss);
        all_losses.push(outcome.loss);
        (window_examples, window_time) = (window_examples + examples, window_time + secs);
        (total_examples, total_time) = (total_examples + examples, total_time + secs);
        let done = state.global_step;
        let last = done == max_steps;
        let epoch = (done * accum) as f64 / per_epoch as f64;
        let mut entry = None;
        if done.is_multiple_of(args.logging_steps.max(1)) || last {
            let unlogged = &state.unlogged_losses;
            entry = Some(LogEntry {
                step: done,
                epoch,
                loss: Some(unlogged.iter().sum::<f64>() / unlogged.len() as f64),
                learning_rate: Some(outcome.lr),
                grad_norm: Some(outcome.grad_norm).filter(|g| g.is_finite()),
                examples_per_second: Some(window_examples as f64 / window_time.max(1e-9)),
                eval: Default::default(),
            });
            state.unlogged_losses.clear();
            (window_examples, window_time) = (0, 0.0);
        }
        if let Some(data) = eval.filter(|_| {
            last || args
                .eval_steps
                .is_some_and(|n| n > 0 && done.is_multiple_of(n))
        }) {
            let result = {
                let _autocast = Autocast::enter(args.mixed_precision, args.device)?;
                match dp {
                    Some(dp) => {
                        dp.evaluate(model, data, collator, args.eval_batch_size, args.device)?
                    }
                    None => evaluate(model, data, collator, args.eval_batch_size, args.device)?,
                }
            };
            let e = entry.get_or_insert_with(|| LogEntry {
                step: done,
                epoch,
                loss: None,
                learning_rate: None,
                grad_norm: None,
                examples_per_second: None,
                eval: Default::default(),
            });
            e.eval.insert("eval_loss".into(), result.loss);
            e.eval.extend(
                result
                    .metrics
                    .iter()
                    .map(|(k, v)| (format!("eval_{k}"), *v)),
            );
            last_eval = Some(result);
        }
        if let Some(e) = entry {
            if let Some(file) = log_file.as_mut() {
                let line = serde_json::to_string(&e)? + "\n";
                file.write_all(line.as_bytes())
                    .map_err(|err| TrainError::io(&log_path, err))?;
            }
            if let Some(bar) = &bar {
                bar.set_message(format!(
                    "loss {:.4} lr {:.2e} {:.1} ex/s",
                    e.loss.unwrap_or(f64::NAN),
                    outcome.lr,
                    e.examples_per_second.unwrap_or(0.0)
                ));
            }
            state.log_history.push(e);
        }
        if main
            && (last
                || args
                    .save_steps
                    .is_some_and(|n| n > 0 && done.is_multiple_of(n)))
        {
            save_checkpoint(out_dir, model, &optimizer, &state, args.save_total_limit)?;
        }
        if let Some(bar) = &bar {
            bar.set_position(done as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    let key = last_eval.as_ref().and_then(metric_key);
    let saved = if main {
        save_final(out_dir, model).and_then(|()| {
            write_curve(
                &out_dir.join("loss_curve.svg"),
                &state.log_history,
                key.as_deref(),
            )
        })
    } else {
        Ok(())
    };
    // Every rank returns once the final model is on disk (or with rank 0's failure).
    match dp {
        Some(dp) => dp.all_ok(saved)?,
        None => saved?,
    }
    Ok(TrainOutput {
        global_step: state.global_step,
        train_loss: all_losses.iter().sum::<f64>() / all_losses.len().max(1) as f64,
        examples_per_second: total_examples as f64 / total_time.max(1e-9),
        eval: last_eval,
        log_history: state.log_history,
    })
}
