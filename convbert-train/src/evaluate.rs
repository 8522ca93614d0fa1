//! Evaluation of a [`TaskModel`] on a dataset, in eval mode without gradients: the mean loss and the
//! task's metrics (accuracy and macro-F1; entity P/R/F1; SQuAD EM/F1; accuracy; perplexity).

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::collator::Collator;
use crate::data::{Dataset, Target, Task};
use crate::error::Result;
use crate::metrics;
use crate::model::TaskModel;

/// Longest answer considered, in tokens (run_qa's `max_answer_length`).
const MAX_ANSWER: usize = 30;

/// Mean loss and named metrics (fractions in [0, 1], perplexity as is).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// Mean loss over the examples.
    pub loss: f64,
    /// `accuracy`, `macro_f1`, `precision`, `recall`, `f1`, `exact_match`, `perplexity`.
    pub metrics: BTreeMap<String, f64>,
}

impl EvalResult {
    /// The headline metric of the task (F1, accuracy, or perplexity for MLM).
    pub fn main_metric(&self, task: Task) -> Option<(&'static str, f64)> {
        let name = match task {
            Task::TextClassification | Task::MultipleChoice => "accuracy",
            Task::TokenClassification | Task::QuestionAnswering => "f1",
            Task::MaskedLm => "perplexity",
        };
        self.metrics.get(name).map(|v| (name, *v))
    }
}

fn to_i64(t: &Tensor) -> Result<Vec<i64>> {
    Ok(Vec::<i64>::try_from(
        &t.f_to_device(Device::Cpu)?.f_reshape([-1])?,
    )?)
}

fn to_f32(t: &Tensor) -> Result<Vec<f32>> {
    let t = t
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_reshape([-1])?;
    Ok(Vec::<f32>::try_from(&t)?)
}

/// Evaluates `model` on `data` in batches of `batch_size` (MLM masks with a fixed seed).
pub fn evaluate(
    model: &TaskModel,
    data: &Dataset,
    collator: &Collator,
    batch_size: usize,
    device: Device,
) -> Result<EvalResult> {
    let _guard = tch::no_grad_guard();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (mut loss_sum, mut count) = (0.0, 0usize);
    let (mut preds, mut golds) = (Vec::new(), Vec::new());
    let (mut tag_preds, mut tag_golds) = (Vec::new(), Vec::new());
    let mut qa_logits: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
    for chunk in data.examples.chunks(batch_size.max(1)) {
        let refs: Vec<_> = chunk.iter().collect();
        let batch = collator.collate(&refs, &mut rng, device)?;
        let out = model.forward(&batch, false)?;
        if let Some(loss) = &out.loss {
            loss_sum += loss.f_double_value(&[])? * chunk.len() as f64;
            count += chunk.len();
        }
        match data.task {
            Task::TextClassification | Task::MultipleChoice => {
                preds.extend(to_i64(&out.logits[0].f_argmax(-1, false)?)?);
                golds.extend(chunk.iter().map(|e| match e.target {
                    Target::Class(c) | Target::Choice(c) => c,
                    _ => -100,
                }));
            }
            Task::TokenClassification => {
                let argmax = out.logits[0].f_argmax(-1, false)?;
                let width = argmax.size()[1] as usize;
                let flat = to_i64(&argmax)?;
                for (row, e) in chunk.iter().enumerate() {
                    if let Target::Tags(tags) = &e.target {
                        let name = |i: i64| {
                            data.label_names
                                .get(i as usize)
                                .cloned()
                                .unwrap_or_default()
                        };
                        let kept = tags.iter().enumerate().filter(|(_, t)| **t != -100);
                        let (p, g): (Vec<_>, Vec<_>) = kept
                            .map(|(j, t)| (name(flat[row * width + j]), name(*t)))
                            .unzip();
                        tag_preds.push(p);
                        tag_golds.push(g);
                    }
                }
            }
            Task::QuestionAnswering => {
                let width = out.logits[0].size()[1] as usize;
                let (s, e) = (to_f32(&out.logits[0])?, to_f32(&out.logits[1])?);
                for row in 0..chunk.len() {
                    let r = row * width..(row + 1) * width;
                    qa_logits.push((s[r.clone()].to_vec(), e[r].to_vec()));
                }
            }
            Task::MaskedLm => {}
        }
    }
    let loss = if count > 0 {
        loss_sum / count as f64
    } else {
        f64::NAN
    };
    let mut m = BTreeMap::new();
    match data.task {
        Task::TextClassification => {
            m.insert("accuracy".into(), metrics::accuracy(&preds, &golds));
            m.insert("macro_f1".into(), metrics::macro_f1(&preds, &golds));
        }
        Task::MultipleChoice => {
            m.insert("accuracy".into(), metrics::accuracy(&preds, &golds));
        }
        Task::TokenClassification => {
            let s = metrics::entity_scores(&tag_preds, &tag_golds);
            m.insert("precision".into(), s.precision);
            m.insert("recall".into(), s.recall);
            m.insert("f1".into(), s.f1);
        }
        Task::QuestionAnswering => {
            let (em, f1) = squad_metrics(data, &qa_logits);
            m.insert("exact_match".into(), em);
            m.insert("f1".into(), f1);
        }
        Task::MaskedLm => {
            m.insert("perplexity".into(), loss.exp());
        }
    }
    Ok(EvalResult { loss, metrics: m })
}

/// Best answer per question over its windows (highest start + end logit, start <= end, inside
/// the context, at most MAX_ANSWER tokens; "" when the [CLS] score wins and SQuAD v2 questions
/// exist), then mean EM and F1.
fn squad_metrics(data: &Dataset, logits: &[(Vec<f32>, Vec<f32>)]) -> (f64, f64) {
    let v2 = data.squad.iter().any(|f| f.answers.is_empty());
    let mut best: BTreeMap<&str, (f32, String, f32, &[String])> = BTreeMap::new();
    for (f, (s, e)) in data.squad.iter().zip(logits) {
        let null = s[0] + e[0];
        let mut top = (f32::NEG_INFINITY, String::new());
        for (i, (start, s_i)) in f.offsets.iter().zip(s).enumerate() {
            let Some((cs, _)) = *start else {
                continue;
            };
            for (end, e_j) in f.offsets.iter().zip(e).skip(i).take(MAX_ANSWER) {
                let Some((_, ce)) = *end else {
                    continue;
                };
                if s_i + e_j > top.0 {
                    top = (
                        s_i + e_j,
                        f.context.chars().skip(cs).take(ce - cs).collect(),
                    );
                }
            }
        }
        let entry = best.entry(f.id.as_str()).or_insert((
            f32::NEG_INFINITY,
            String::new(),
            f32::INFINITY,
            &f.answers,
        ));
        if top.0 > entry.0 {
            entry.0 = top.0;
            entry.1 = top.1;
        }
        entry.2 = entry.2.min(null);
    }
    let n = best.len().max(1) as f64;
    let (mut em, mut f1) = (0.0, 0.0);
    for (score, text, null, answers) in best.values() {
        let prediction = if v2 && null > score {
            ""
        } else {
            text.as_str()
        };
        let (a, b) = metrics::squad_scores(prediction, answers);
        em += a;
        f1 += b;
    }
    (em / n, f1 / n)
}
