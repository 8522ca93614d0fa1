//! `convbert forward`: one forward pass over tensors read from a `.safetensors` file, every output
//! written to another under HF's field names — the interop door to and from Python. Inputs: int64
//! `input_ids` (B, L) (or (B, C, L) for multiple choice), optional `attention_mask`,
//! `token_type_ids`, `labels`, `start_positions` / `end_positions`. Outputs: `last_hidden_state`
//! (base), `logits` or `start_logits` / `end_logits` (heads), `hidden_states.<i>`,
//! `attentions.<i>`, `loss` (shape [1]).

use std::collections::HashMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use convbert_heads::{
    ConvBertForMaskedLM, ConvBertForMultipleChoice, ConvBertForQuestionAnswering,
    ConvBertForSequenceClassification, ConvBertForTokenClassification, SpanPositions,
};
use convbert_model::primitives::ReplaceLinears;
use convbert_model::{checkpoint, ConvBertConfig, ConvBertInputs, ConvBertModel, ForwardOptions};
use tch::{Device, Tensor};

use crate::common::{default_model, parse_device, CliError, CliResult, Dtype, OutputFile};

/// `--task`: which model class runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// From config.json `architectures` (ConvBertModel when absent).
    Auto,
    Base,
    MaskedLm,
    SequenceClassification,
    MultipleChoice,
    TokenClassification,
    QuestionAnswering,
}

/// Arguments of `convbert forward`.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Checkpoint directory, or HF model id (from the HF cache, downloaded from the Hub when missing) [default: the shipped checkpoint]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Input tensors (.safetensors)
    #[arg(long, short = 'i', visible_alias = "input")]
    pub inputs: PathBuf,
    /// Where to write the outputs (.safetensors)
    #[arg(long, short)]
    pub output: PathBuf,
    /// The model class
    #[arg(long, value_enum, default_value = "auto")]
    pub task: Task,
    /// Also write hidden_states.0..L
    #[arg(long)]
    pub output_hidden_states: bool,
    /// Also write attentions.0..L-1
    #[arg(long)]
    pub output_attentions: bool,
    /// Padding-invariant convolutions instead of HF's exact padded computation
    #[arg(long)]
    pub padding_invariant: bool,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weight and compute dtype
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
    /// Intra-op CPU threads
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The model class config.json's `architectures` names (ConvBertModel when absent).
pub fn task_of(config: &ConvBertConfig) -> CliResult<Task> {
    let arch = config
        .extra("architectures")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str())
        .unwrap_or("ConvBertModel");
    Ok(match arch {
        "ConvBertModel" => Task::Base,
        "ConvBertForMaskedLM" => Task::MaskedLm,
        "ConvBertForSequenceClassification" => Task::SequenceClassification,
        "ConvBertForMultipleChoice" => Task::MultipleChoice,
        "ConvBertForTokenClassification" => Task::TokenClassification,
        "ConvBertForQuestionAnswering" => Task::QuestionAnswering,
        other => {
            return Err(CliError::Usage(format!(
                "config.json architectures names {other:?}; choose a head with --task"
            )))
        }
    })
}

/// The named outputs of one forward call.
struct Outputs(Vec<(String, Tensor)>);

impl Outputs {
    fn push(&mut self, name: &str, t: Tensor) {
        self.0.push((name.to_string(), t));
    }

    fn push_opt(&mut self, name: &str, t: Option<Tensor>) -> CliResult {
        if let Some(t) = t {
            self.push(name, t.f_reshape([1]).map_err(CliError::failed)?);
        }
        Ok(())
    }

    fn push_all(&mut self, name: &str, ts: Option<Vec<Tensor>>) {
        for (i, t) in ts.into_iter().flatten().enumerate() {
            self.push(&format!("{name}.{i}"), t);
        }
    }
}

pub fn run(args: &ForwardArgs) -> CliResult {
    if let Some(n) = args.threads.filter(|&n| n > 0) {
        tch::set_num_threads(n as i32);
    }
    args.dtype.check_device(&args.device)?;
    let device: Device = parse_device(&args.device)?;
    let kind = args.dtype.kind();
    // Before the model loads and runs: an unwritable --output fails first.
    let output = OutputFile::create(&args.output)?;
    let source = args.model.clone().unwrap_or_else(default_model);
    let dir = checkpoint::locate(&source).map_err(CliError::failed)?;
    let config = ConvBertConfig::from_file(dir.join("config.json")).map_err(CliError::failed)?;
    let task = match args.task {
        Task::Auto => task_of(&config)?,
        t => t,
    };
    // The file's own error first, in plain words (libtorch's wraps it in Rust debug syntax).
    std::fs::File::open(&args.inputs)
        .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", args.inputs.display())))?;
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&args.inputs)
        .map_err(|e| {
            CliError::Failed(format!(
                "cannot read {}: not a valid .safetensors file ({e})",
                args.inputs.display()
            ))
        })?
        .into_iter()
        .collect();
    for name in tensors.keys() {
        let known = [
            "input_ids",
            "attention_mask",
            "token_type_ids",
            "labels",
            "start_positions",
            "end_positions",
        ];
        if !known.contains(&name.as_str()) {
            return Err(CliError::Usage(format!(
                "{}: unknown tensor {name:?}; expected {known:?}",
                args.inputs.display()
            )));
        }
    }
    let input_ids = tensors
        .get("input_ids")
        .ok_or_else(|| CliError::Usage(format!("{} has no input_ids", args.inputs.display())))?;
    let inputs = ConvBertInputs {
        input_ids: Some(input_ids),
        attention_mask: tensors.get("attention_mask"),
        token_type_ids: tensors.get("token_type_ids"),
        ..Default::default()
    };
    let options = ForwardOptions {
        output_hidden_states: args.output_hidden_states,
        output_attentions: args.output_attentions,
        padding_invariant: args.padding_invariant,
    };
    let labels = tensors.get("labels");
    let _guard = tch::no_grad_guard();
    let mut out = Outputs(Vec::new());
    // The four heads whose outputs are logits (+ loss): load, run, collect under HF's names.
    macro_rules! logits_head {
        ($head:ty) => {{
            let mut m = <$head>::from_pretrained(&dir, device, kind).map_err(CliError::failed)?;
            quantize(&mut m, args.dtype)?;
            let o = m
                .forward_t(&inputs, labels, &options, false)
                .map_err(CliError::failed)?;
            out.push("logits", o.logits);
            out.push_opt("loss", o.loss)?;
            out.push_all("hidden_states", o.hidden_states);
            out.push_all("attentions", o.attentions);
        }};
    }
    match task {
        Task::Base | Task::Auto => {
            let (mut model, _vs) =
                ConvBertModel::from_pretrained(&dir, device, kind).map_err(CliError::failed)?;
            quantize(&mut model, args.dtype)?;
            let o = model
                .forward_t(&inputs, &options, false)
                .map_err(CliError::failed)?;
            out.push("last_hidden_state", o.last_hidden_state);
            out.push_all("hidden_states", o.hidden_states);
            out.push_all("attentions", o.attentions);
        }
        Task::MaskedLm => logits_head!(ConvBertForMaskedLM),
        Task::SequenceClassification => logits_head!(ConvBertForSequenceClassification),
        Task::MultipleChoice => logits_head!(ConvBertForMultipleChoice),
        Task::TokenClassification => logits_head!(ConvBertForTokenClassification),
        Task::QuestionAnswering => {
            let mut m = ConvBertForQuestionAnswering::from_pretrained(&dir, device, kind)
                .map_err(CliError::failed)?;
            quantize(&mut m, args.dtype)?;
            let positions = match (tensors.get("start_positions"), tensors.get("end_positions")) {
                (Some(s), Some(e)) => Some(SpanPositions {
                    start_positions: s,
                    end_positions: e,
                }),
                (None, None) => None,
                _ => {
                    return Err(CliError::Usage(
                        "give both start_positions and end_positions".into(),
                    ))
                }
            };
            let o = m
                .forward_t(&inputs, positions, &options, false)
                .map_err(CliError::failed)?;
            out.push("start_logits", o.start_logits);
            out.push("end_logits", o.end_logits);
            out.push_opt("loss", o.loss)?;
            out.push_all("hidden_states", o.hidden_states);
            out.push_all("attentions", o.attentions);
        }
    }
    let cpu: Vec<(String, Tensor)> = out
        .0
        .into_iter()
        .map(|(n, t)| {
            Ok((
                n,
                t.f_to_device(Device::Cpu)
                    .map_err(CliError::failed)?
                    .f_contiguous()
                    .map_err(CliError::failed)?,
            ))
        })
        .collect::<CliResult<_>>()?;
    Tensor::write_safetensors(&cpu, output.write_path())
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", args.output.display())))?;
    output.commit()
}

/// `--dtype int8`: every Linear of the loaded model (its head's too) in int8.
fn quantize(model: &mut impl ReplaceLinears, dtype: Dtype) -> CliResult<()> {
    if dtype == Dtype::Int8 {
        convbert_quant::quantize_dynamic_int8(model).map_err(CliError::failed)?;
    }
    Ok(())
}
