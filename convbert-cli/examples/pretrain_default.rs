//! Pretrains the default checkpoint of the `convbert` command (fixtures/default-model/) with masked
//! language modelling, evaluates it and exports it in float16. See fixtures/pretrain/README.md.
//!
//!     cargo run --release --example pretrain_default -- train --config C --train T --eval E --output O
//!     cargo run --release --example pretrain_default -- eval --model O --data E
//!     cargo run --release --example pretrain_default -- export --model O --output fixtures/default-model
//!
//! Masking is HF's `DataCollatorForLanguageModeling` rule in HF's own tensor formulation
//! (`torch_mask_tokens`): 15% of the non-special, non-padding tokens are chosen; of those 80% become
//! `[MASK]`, 10% a random token, 10% stay; only the chosen positions carry labels.
//!
//! `train` steps with `convbert-train`'s pieces (AdamW with HF's decay groups, the linear warm-up
//! schedule, `optimizer_step` with gradient clipping). The loss is HF `ConvBertForMaskedLM`'s
//! (mean cross-entropy over the chosen positions), computed by running the generator head on the
//! chosen positions only: the same value as the full (B, L, V) logits give (checked on the first
//! batch), for a fraction of the cost on a CPU. A wall-clock deadline ends the run, saving the
//! model; with `--decay-by-time` the learning rate decays linearly to 0 at the deadline by wall
//! time rather than by step, so a run on a machine shared with other work still ends annealed.
//! `eval` reports the token-level accuracy on the chosen positions and the perplexity
//! exp(mean cross-entropy over them), with a fixed masking seed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use convbert_heads::ConvBertForMaskedLM;
use convbert_model::{ConvBertConfig, ConvBertInputs, ForwardOptions};
use convbert_tokenizer::ConvBertTokenizer;
use convbert_train::data::{read_dataset, DataOptions, Dataset, Task};
use convbert_train::{optimizer_step, AdamW, AdamWConfig, LinearSchedule, Warmup};
use tch::{Device, Kind, Reduction, Tensor};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(about = "Pretrain, evaluate and export the default ConvBERT MLM checkpoint")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// MLM pretraining from fresh weights.
    Train {
        /// config.json of the model to train.
        #[arg(long)]
        config: PathBuf,
        /// Training text, one sequence a line.
        #[arg(long)]
        train: PathBuf,
        /// Held-out text, one sequence a line.
        #[arg(long)]
        eval: Option<PathBuf>,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = 2000)]
        max_steps: usize,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(long, default_value_t = 64)]
        max_length: usize,
        #[arg(long, default_value_t = 1e-3)]
        learning_rate: f64,
        #[arg(long, default_value_t = 200)]
        warmup_steps: usize,
        #[arg(long, default_value_t = 0.01)]
        weight_decay: f64,
        #[arg(long, default_value_t = 1.0)]
        max_grad_norm: f64,
        #[arg(long, default_value_t = 20)]
        logging_steps: usize,
        #[arg(long, default_value_t = 500)]
        eval_steps: usize,
        #[arg(long, default_value_t = 250)]
        save_steps: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Unix time (seconds) after which the run saves and stops.
        #[arg(long)]
        deadline: Option<u64>,
        /// With --deadline: after the warm-up, decay the learning rate linearly to 0 at the
        /// deadline by wall-clock time instead of by step (for a shared, busy machine).
        #[arg(long)]
        decay_by_time: bool,
    },
    /// Held-out masked-token accuracy and perplexity.
    Eval {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 64)]
        max_length: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Seed of the masking draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Writes the model in float16 (config.json + model.safetensors) into `output`.
    Export {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
}

fn data_options(max_length: usize) -> DataOptions {
    DataOptions {
        max_length,
        ..DataOptions::default()
    }
}

/// `[MASK]` and `[PAD]` ids.
fn special_ids(tokenizer: &ConvBertTokenizer) -> (i64, i64) {
    let ids = tokenizer.convert_tokens_to_ids(&["[MASK]", "[PAD]"]);
    (i64::from(ids[0]), i64::from(ids[1]))
}

/// A padded batch: token ids, attention mask and the special-or-padding mask, each (B, L).
struct Padded {
    ids: Tensor,
    attention: Tensor,
    special: Tensor,
    tokens: usize,
}

fn pad(data: &Dataset, picked: &[usize], pad_id: i64) -> Result<Padded> {
    let width = picked
        .iter()
        .map(|&i| data.examples[i].inputs[0].input_ids.len())
        .max()
        .ok_or("empty batch")?;
    let (mut ids, mut special, mut attention) = (Vec::new(), Vec::new(), Vec::new());
    let mut tokens = 0;
    for &i in picked {
        let enc = &data.examples[i].inputs[0];
        let n = enc.input_ids.len();
        tokens += n;
        ids.extend(&enc.input_ids);
        ids.extend(std::iter::repeat_n(pad_id, width - n));
        special.extend(&enc.special);
        special.extend(std::iter::repeat_n(true, width - n));
        attention.extend(std::iter::repeat_n(1i64, n));
        attention.extend(std::iter::repeat_n(0i64, width - n));
    }
    let shape = [picked.len() as i64, width as i64];
    Ok(Padded {
        ids: Tensor::from_slice(&ids).f_view(shape)?,
        attention: Tensor::from_slice(&attention).f_view(shape)?,
        special: Tensor::from_slice(&special).f_view(shape)?,
        tokens,
    })
}

/// HF `DataCollatorForLanguageModeling.torch_mask_tokens` in tensors, drawing from libtorch's
/// global generator: returns (masked input ids, labels with -100 where not chosen).
fn mask_batch(
    ids: &Tensor,
    special: &Tensor,
    mask_id: i64,
    vocab: i64,
) -> Result<(Tensor, Tensor)> {
    let full = |p: f64| Tensor::f_full(ids.size().as_slice(), p, (Kind::Float, Device::Cpu));
    let draw = |p: f64| -> Result<Tensor> { Ok(full(p)?.f_bernoulli()?.f_to_kind(Kind::Bool)?) };
    let probability = full(0.15)?.f_masked_fill(special, 0.0)?;
    let chosen = probability.f_bernoulli()?.f_to_kind(Kind::Bool)?;
    let labels = ids.f_masked_fill(&chosen.f_logical_not()?, -100)?;
    let replaced = draw(0.8)?.f_logical_and(&chosen)?;
    let inputs = ids.f_masked_fill(&replaced, mask_id)?;
    let random = draw(0.5)?
        .f_logical_and(&chosen)?
        .f_logical_and(&replaced.f_logical_not()?)?;
    let words = Tensor::f_randint(vocab, ids.size().as_slice(), (Kind::Int64, Device::Cpu))?;
    Ok((words.f_where_self(&random, &inputs)?, labels))
}

/// The generator head's parameters, looked up by their HF names.
struct Head {
    dense_w: Tensor,
    dense_b: Tensor,
    norm_w: Tensor,
    norm_b: Tensor,
    lm_b: Tensor,
    eps: f64,
}

impl Head {
    fn of(model: &ConvBertForMaskedLM) -> Result<Self> {
        let vars: HashMap<String, Tensor> = model.var_store().variables();
        let get = |name: &str| -> Result<Tensor> {
            vars.get(name)
                .map(|t| t.shallow_clone())
                .ok_or_else(|| format!("the model has no variable {name}").into())
        };
        Ok(Self {
            dense_w: get("generator_predictions.dense.weight")?,
            dense_b: get("generator_predictions.dense.bias")?,
            norm_w: get("generator_predictions.LayerNorm.weight")?,
            norm_b: get("generator_predictions.LayerNorm.bias")?,
            lm_b: get("generator_lm_head.bias")?,
            eps: model.config().layer_norm_eps,
        })
    }

    /// (loss, logits (N, V), gold (N,)) over the chosen positions of `labels`.
    fn loss(
        &self,
        model: &ConvBertForMaskedLM,
        inputs: &ConvBertInputs,
        labels: &Tensor,
        train: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let h = model
            .convbert()
            .forward_t(inputs, &ForwardOptions::default(), train)?
            .last_hidden_state;
        let chosen = labels.f_ne(-100)?;
        let h = h.f_index(&[Some(&chosen)])?; // (N, D)
        let gold = labels.f_masked_select(&chosen)?;
        let x = h
            .f_linear(&self.dense_w, Some(&self.dense_b))?
            .f_gelu("none")?;
        let e = self.norm_w.size()[0];
        let x = x.f_layer_norm([e], Some(&self.norm_w), Some(&self.norm_b), self.eps, false)?;
        let logits = x.f_linear(model.lm_head_weight(), Some(&self.lm_b))?;
        let loss =
            logits.f_cross_entropy_loss::<Tensor>(&gold, None, Reduction::Mean, -100, 0.0)?;
        Ok((loss, logits, gold))
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Masked accuracy and mean loss over `data`, masking with `seed`.
fn evaluate(
    model: &ConvBertForMaskedLM,
    head: &Head,
    data: &Dataset,
    batch_size: usize,
    seed: u64,
    mask_id: i64,
    pad_id: i64,
) -> Result<serde_json::Value> {
    let _guard = tch::no_grad_guard();
    tch::manual_seed(seed as i64);
    let vocab = model.config().vocab_size;
    let (mut nll, mut correct, mut count, mut tokens) = (0.0f64, 0i64, 0i64, 0usize);
    let started = Instant::now();
    let all: Vec<usize> = (0..data.len()).collect();
    for picked in all.chunks(batch_size.max(1)) {
        let b = pad(data, picked, pad_id)?;
        tokens += b.tokens;
        let (input_ids, labels) = mask_batch(&b.ids, &b.special, mask_id, vocab)?;
        let token_type_ids = b.ids.f_zeros_like()?;
        let inputs = ConvBertInputs {
            input_ids: Some(&input_ids),
            attention_mask: Some(&b.attention),
            token_type_ids: Some(&token_type_ids),
            ..Default::default()
        };
        let (loss, logits, gold) = head.loss(model, &inputs, &labels, false)?;
        let n = gold.size()[0];
        nll += loss.f_double_value(&[])? * n as f64;
        let hits = logits.f_argmax(-1, false)?.f_eq_tensor(&gold)?;
        correct += hits.f_sum(Kind::Int64)?.f_int64_value(&[])?;
        count += n;
    }
    let mean = nll / count.max(1) as f64;
    Ok(serde_json::json!({
        "sequences": data.len(),
        "tokens": tokens,
        "masked_positions": count,
        "masked_accuracy": correct as f64 / count.max(1) as f64,
        "mean_loss": mean,
        "perplexity": mean.exp(),
        "seed": seed,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

struct TrainOptions {
    max_steps: usize,
    batch_size: usize,
    learning_rate: f64,
    warmup_steps: usize,
    weight_decay: f64,
    max_grad_norm: f64,
    logging_steps: usize,
    eval_steps: usize,
    save_steps: usize,
    seed: u64,
    deadline: Option<u64>,
    decay_by_time: bool,
}

fn run_train(
    config: &Path,
    train: &Path,
    eval: Option<&Path>,
    output: &Path,
    max_length: usize,
    o: &TrainOptions,
) -> Result<()> {
    std::fs::create_dir_all(output)?;
    let config = ConvBertConfig::from_file(config)?;
    let tokenizer = ConvBertTokenizer::bert_base_uncased()?;
    let (mask_id, pad_id) = special_ids(&tokenizer);
    let options = data_options(max_length);
    let started = Instant::now();
    let train_set = read_dataset(Task::MaskedLm, train, &tokenizer, &options)?;
    let eval_set = match eval {
        Some(p) => Some(read_dataset(Task::MaskedLm, p, &tokenizer, &options)?),
        None => None,
    };
    eprintln!(
        "{} training and {} held-out sequences tokenized in {:.1}s",
        train_set.len(),
        eval_set.as_ref().map_or(0, |d| d.len()),
        started.elapsed().as_secs_f64()
    );
    let vocab = config.vocab_size;
    tch::manual_seed(o.seed as i64);
    let model = ConvBertForMaskedLM::from_config(config, Device::Cpu, Kind::Float)?;
    let head = Head::of(&model)?;
    let n_params: i64 = model
        .var_store()
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    eprintln!("{n_params} trainable parameters");

    // The positions-only loss equals the full-logits loss of ConvBertForMaskedLM::forward_t.
    {
        let _guard = tch::no_grad_guard();
        let picked: Vec<usize> = (0..o.batch_size.min(train_set.len())).collect();
        let b = pad(&train_set, &picked, pad_id)?;
        let (input_ids, labels) = mask_batch(&b.ids, &b.special, mask_id, vocab)?;
        let tt = b.ids.f_zeros_like()?;
        let inputs = ConvBertInputs {
            input_ids: Some(&input_ids),
            attention_mask: Some(&b.attention),
            token_type_ids: Some(&tt),
            ..Default::default()
        };
        let full = model
            .forward_t(&inputs, Some(&labels), &ForwardOptions::default(), false)?
            .loss
            .ok_or("no loss")?
            .f_double_value(&[])?;
        let (sparse, _, _) = head.loss(&model, &inputs, &labels, false)?;
        let sparse = sparse.f_double_value(&[])?;
        eprintln!("loss check: full logits {full:.6}, chosen positions {sparse:.6}");
        if (full - sparse).abs() > 1e-4 * full.abs().max(1.0) {
            return Err(format!("positions-only loss {sparse} differs from {full}").into());
        }
    }

    let mut optimizer = AdamW::new(
        model.var_store(),
        AdamWConfig {
            weight_decay: o.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let schedule = LinearSchedule::new(o.learning_rate, Warmup::Steps(o.warmup_steps), o.max_steps);
    let log_path = output.join("train_log.jsonl");
    let mut log = std::fs::File::create(&log_path)?;
    let per_epoch = train_set.len() / o.batch_size;
    let mut order: Vec<i64> = Vec::new();
    let (mut window_loss, mut window_steps, mut window_examples, mut window_secs) =
        (0.0, 0usize, 0usize, 0.0f64);
    let (mut total_examples, mut total_tokens, mut step_secs) = (0usize, 0usize, 0.0f64);
    let run_started = Instant::now();
    let mut done = 0;
    let mut stopped_by_deadline = false;
    let mut last_loss = f64::NAN;
    let mut decay_from: Option<(f64, Instant)> = None;
    for step in 0..o.max_steps {
        if o.deadline.is_some_and(|d| now_unix() >= d) {
            stopped_by_deadline = true;
            break;
        }
        let t0 = Instant::now();
        let epoch = step / per_epoch.max(1);
        if step % per_epoch.max(1) == 0 {
            tch::manual_seed((o.seed as i64) * 1_000_003 + epoch as i64);
            order = Vec::<i64>::try_from(&Tensor::f_randperm(
                train_set.len() as i64,
                (Kind::Int64, Device::Cpu),
            )?)?;
        }
        tch::manual_seed((o.seed as i64) * 7_919 + step as i64 + 1);
        let start = (step % per_epoch.max(1)) * o.batch_size;
        let picked: Vec<usize> = order[start..start + o.batch_size]
            .iter()
            .map(|&i| i as usize)
            .collect();
        let b = pad(&train_set, &picked, pad_id)?;
        let (input_ids, labels) = mask_batch(&b.ids, &b.special, mask_id, vocab)?;
        let tt = b.ids.f_zeros_like()?;
        let lr = match o.deadline.filter(|_| o.decay_by_time) {
            Some(deadline) if step >= o.warmup_steps => {
                // Linear decay from the peak to 0 over the wall-clock time left after the warm-up.
                let (span, since) = *decay_from.get_or_insert_with(|| {
                    (deadline.saturating_sub(now_unix()) as f64, Instant::now())
                });
                o.learning_rate * (1.0 - since.elapsed().as_secs_f64() / span.max(1.0)).max(0.0)
            }
            _ => schedule.lr(step),
        };
        let outcome = optimizer_step(&mut optimizer, lr, 1, o.max_grad_norm, step, |_| {
            let inputs = ConvBertInputs {
                input_ids: Some(&input_ids),
                attention_mask: Some(&b.attention),
                token_type_ids: Some(&tt),
                ..Default::default()
            };
            head.loss(&model, &inputs, &labels, true)
                .map(|(loss, _, _)| loss)
                .map_err(|e| convbert_train::TrainError::Argument {
                    name: "loss",
                    reason: e.to_string(),
                })
        })?;
        let secs = t0.elapsed().as_secs_f64();
        done = step + 1;
        last_loss = outcome.loss;
        window_loss += outcome.loss;
        window_steps += 1;
        window_examples += picked.len();
        window_secs += secs;
        total_examples += picked.len();
        total_tokens += b.tokens;
        step_secs += secs;
        let mut entry = None;
        if done % o.logging_steps.max(1) == 0 || done == o.max_steps {
            entry = Some(serde_json::json!({
                "step": done,
                "epoch": done as f64 / per_epoch.max(1) as f64,
                "loss": window_loss / window_steps as f64,
                "learning_rate": outcome.lr,
                "grad_norm": outcome.grad_norm,
                "examples_per_second": window_examples as f64 / window_secs.max(1e-9),
                "elapsed_seconds": run_started.elapsed().as_secs_f64(),
            }));
            (window_loss, window_steps, window_examples, window_secs) = (0.0, 0, 0, 0.0);
        }
        if let Some(data) = eval_set
            .as_ref()
            .filter(|_| o.eval_steps > 0 && done % o.eval_steps == 0)
        {
            let r = evaluate(&model, &head, data, 64, 0, mask_id, pad_id)?;
            let e = entry.get_or_insert_with(|| serde_json::json!({"step": done}));
            e["eval"] = r;
        }
        if let Some(e) = entry {
            writeln!(log, "{e}")?;
            log.flush()?;
        }
        if o.save_steps > 0 && done % o.save_steps == 0 {
            model.save_pretrained(output.join(format!("checkpoint-{done}")))?;
            let old = done.checked_sub(2 * o.save_steps).filter(|&s| s > 0);
            if let Some(old) = old {
                let stale = output.join(format!("checkpoint-{old}"));
                if stale.exists() {
                    std::fs::remove_dir_all(&stale)?;
                }
            }
        }
    }
    model.save_pretrained(output)?;
    let eval = match &eval_set {
        Some(data) => Some(evaluate(&model, &head, data, 64, 0, mask_id, pad_id)?),
        None => None,
    };
    let summary = serde_json::json!({
        "global_step": done,
        "max_steps": o.max_steps,
        "stopped_by_deadline": stopped_by_deadline,
        "decay_by_time": o.decay_by_time,
        "last_step_loss": last_loss,
        "training_examples": total_examples,
        "training_tokens": total_tokens,
        "examples_per_second": total_examples as f64 / step_secs.max(1e-9),
        "tokens_per_second": total_tokens as f64 / step_secs.max(1e-9),
        "wall_seconds": run_started.elapsed().as_secs_f64(),
        "train_sequences": train_set.len(),
        "parameters": n_params,
        "final_eval": eval,
    });
    writeln!(log, "{}", serde_json::json!({"summary": summary}))?;
    std::fs::write(
        output.join("train_summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!("{summary}");
    Ok(())
}

fn run_eval(
    model: &Path,
    data: &Path,
    max_length: usize,
    batch_size: usize,
    seed: u64,
) -> Result<()> {
    let model = ConvBertForMaskedLM::from_pretrained(model, Device::Cpu, Kind::Float)?;
    let head = Head::of(&model)?;
    let tokenizer = ConvBertTokenizer::bert_base_uncased()?;
    let (mask_id, pad_id) = special_ids(&tokenizer);
    let data = read_dataset(Task::MaskedLm, data, &tokenizer, &data_options(max_length))?;
    let report = evaluate(&model, &head, &data, batch_size, seed, mask_id, pad_id)?;
    println!("{report}");
    Ok(())
}

fn run_export(model: &Path, output: &Path) -> Result<()> {
    let m = ConvBertForMaskedLM::from_pretrained(model, Device::Cpu, Kind::Half)?;
    m.save_pretrained(output)?;
    // HF's save_pretrained records the dtype of the weights; keep the key in step with the file.
    let path = output.join("config.json");
    let mut config = ConvBertConfig::from_file(&path)?;
    config
        .extra
        .insert("dtype".into(), serde_json::Value::String("float16".into()));
    config.to_file(&path)?;
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Train {
            config,
            train,
            eval,
            output,
            max_steps,
            batch_size,
            max_length,
            learning_rate,
            warmup_steps,
            weight_decay,
            max_grad_norm,
            logging_steps,
            eval_steps,
            save_steps,
            seed,
            threads,
            deadline,
            decay_by_time,
        } => {
            tch::set_num_threads(threads as i32);
            let o = TrainOptions {
                max_steps,
                batch_size,
                learning_rate,
                warmup_steps,
                weight_decay,
                max_grad_norm,
                logging_steps,
                eval_steps,
                save_steps,
                seed,
                deadline,
                decay_by_time,
            };
            run_train(&config, &train, eval.as_deref(), &output, max_length, &o)
        }
        Command::Eval {
            model,
            data,
            max_length,
            batch_size,
            seed,
            threads,
        } => {
            tch::set_num_threads(threads as i32);
            run_eval(&model, &data, max_length, batch_size, seed)
        }
        Command::Export { model, output } => run_export(&model, &output),
    }
}
