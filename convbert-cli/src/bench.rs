//! `convbert bench`: times the encoder forward pass (eval, no grad) on random token ids after a
//! warm-up; prints `<N> tokens/s`, latency percentiles and peak memory. A named `--shape` uses the
//! YituTech configurations (SPEC §1.2) with random weights; `--model` loads a checkpoint.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use convbert_model::{ConvBertConfig, ConvBertModel};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::common::{parse_device, write_error, CliError, CliResult};

/// `--dtype` of bench: the model dtypes, plus int8 (dynamic quantization of an fp32 model's
/// Linears, CPU only; see the convbert-quant crate).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchDtype {
    F32,
    F16,
    Bf16,
    Int8,
}

impl BenchDtype {
    /// The weight kind the model loads in (int8 quantizes an fp32 model).
    fn kind(self) -> Kind {
        match self {
            BenchDtype::F32 | BenchDtype::Int8 => Kind::Float,
            BenchDtype::F16 => Kind::Half,
            BenchDtype::Bf16 => Kind::BFloat16,
        }
    }
}

/// The public ConvBERT sizes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shape {
    Base,
    MediumSmall,
    Small,
}

impl Shape {
    fn config(self) -> CliResult<ConvBertConfig> {
        let (hidden, embedding, heads, intermediate, groups) = match self {
            Shape::Base => (768, 768, 12, 3072, 1),
            Shape::MediumSmall => (384, 128, 8, 1536, 2),
            Shape::Small => (256, 128, 4, 1024, 1),
        };
        ConvBertConfig::from_json_str(&format!(
            r#"{{"hidden_size": {hidden}, "embedding_size": {embedding}, "num_attention_heads": {heads},
                "intermediate_size": {intermediate}, "num_groups": {groups}, "num_hidden_layers": 12}}"#
        ))
        .map_err(CliError::failed)
    }
}

/// Arguments of `convbert bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Checkpoint directory or cached HF model id
    #[arg(long, conflicts_with = "shape")]
    pub model: Option<PathBuf>,
    /// A public ConvBERT size with random weights [default: base]
    #[arg(long, value_enum)]
    pub shape: Option<Shape>,
    /// Sequences per forward pass
    #[arg(long, default_value_t = 8)]
    pub batch_size: i64,
    /// Tokens per sequence
    #[arg(long, default_value_t = 128)]
    pub seq_len: i64,
    /// Weight and compute dtype (int8: dynamically quantized Linears, CPU only)
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: BenchDtype,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Intra-op CPU threads
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed iterations
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed iterations first
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
}

/// Peak resident set size of this process in KiB (`VmHWM` of /proc/self/status).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(args: &BenchArgs) -> CliResult {
    if args.batch_size < 1 || args.seq_len < 1 || args.iters == 0 {
        return Err(CliError::Usage(
            "--batch-size, --seq-len and --iters must be at least 1".into(),
        ));
    }
    if let Some(n) = args.threads.filter(|&n| n > 0) {
        tch::set_num_threads(n as i32);
    }
    let device = parse_device(&args.device)?;
    let kind = args.dtype.kind();
    if matches!(args.dtype, BenchDtype::Int8) && device != Device::Cpu {
        return Err(CliError::Usage(format!(
            "--dtype int8 runs on cpu only (fbgemm), not {}",
            args.device
        )));
    }
    let (mut model, _vs) = match &args.model {
        Some(m) => ConvBertModel::from_pretrained(m, device, kind).map_err(CliError::failed)?,
        None => {
            let config = args.shape.unwrap_or(Shape::Base).config()?;
            let mut vs = VarStore::new(device);
            let model = ConvBertModel::new(&vs.root(), &config).map_err(CliError::failed)?;
            if kind != Kind::Float {
                vs.set_kind(kind);
            }
            // Inference weights, as from_pretrained gives them: the model's no-grad fast paths apply.
            vs.freeze();
            (model, vs)
        }
    };
    if matches!(args.dtype, BenchDtype::Int8) {
        convbert_quant::quantize_dynamic_int8(&mut model).map_err(CliError::failed)?;
    }
    let config = model.config();
    if args.seq_len > config.max_position_embeddings {
        return Err(CliError::Usage(format!(
            "--seq-len {} exceeds max_position_embeddings = {}",
            args.seq_len, config.max_position_embeddings
        )));
    }
    let ids = Tensor::randint_low(
        1,
        config.vocab_size,
        [args.batch_size, args.seq_len],
        (Kind::Int64, device),
    );
    let sync = || {
        if let Device::Cuda(n) = device {
            tch::Cuda::synchronize(n as i64);
        }
    };
    let _guard = tch::no_grad_guard();
    for _ in 0..args.warmup {
        let _ = model.forward_ids(&ids, None).map_err(CliError::failed)?;
    }
    sync();
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let t = Instant::now();
        let _ = model.forward_ids(&ids, None).map_err(CliError::failed)?;
        sync();
        times.push(t.elapsed().as_secs_f64());
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let tokens = (args.batch_size * args.seq_len) as f64;
    let mut out = std::io::stdout().lock();
    let fail = |e| write_error(e, "stdout");
    writeln!(out, "{:.0} tokens/s", tokens / mean).map_err(fail)?;
    writeln!(
        out,
        "latency per batch of {}x{} ({:?}, {:?}, {} iterations): mean {:.2} ms, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        args.batch_size,
        args.seq_len,
        args.dtype,
        device,
        times.len(),
        mean * 1e3,
        percentile(&times, 0.5) * 1e3,
        percentile(&times, 0.9) * 1e3,
        percentile(&times, 0.99) * 1e3
    )
    .map_err(fail)?;
    let rss = peak_rss_kib().map_or("unknown".to_string(), |k| {
        format!("{:.1} MiB", k as f64 / 1024.0)
    });
    match device {
        Device::Cpu => writeln!(out, "peak memory: {rss} (process peak RSS, VmHWM)"),
        _ => writeln!(
            out,
            "peak memory: {rss} host RSS (VmHWM); CUDA device memory is not measured"
        ),
    }
    .map_err(fail)?;
    out.flush().map_err(fail)
}
