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
    let outputs = collect(model, data, 0..data.len(), collator, batch_size, device)?;
    Ok(finish(data, outputs))
}

/// What evaluating some examples yields, before the metrics: partial outputs of the ranks of a
/// data-parallel job are gathered and concatenated, then scored as one.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct EvalOutputs {
    loss_sum: f64,
    count: usize,
    /// Classes or choices: (predicted, gold) per example.
    classes: Vec<(i64, i64)>,
    /// Tags: (predicted, gold) label ids of the labelled tokens, per example.
    tags: Vec<(Vec<i64>, Vec<i64>)>,
    /// Answers: (start, end) logits per window.
    spans: Vec<(Vec<f32>, Vec<f32>)>,
}

/// Runs the examples of `range` through the model.
pub(crate) fn collect(
    model: &TaskModel,
    data: &Dataset,
    range: std::ops::Range<usize>,
    collator: &Collator,
    batch_size: usize,
    device: Device,
) -> Result<EvalOutputs> {
    let _guard = tch::no_grad_guard();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut o = EvalOutputs::default();
    for chunk in data.examples[range].chunks(batch_size.max(1)) {
        let refs: Vec<_> = chunk.iter().collect();
        let batch = collator.collate(&refs, &mut rng, device)?;
        let out = model.forward(&batch, false)?;
        if let Some(loss) = &out.loss {
            o.loss_sum += loss.f_double_value(&[])? * chunk.len() as f64;
            o.count += chunk.len();
        }
        match data.task {
            Task::TextClassification | Task::MultipleChoice => {
                let preds = to_i64(&out.logits[0].f_argmax(-1, false)?)?;
                o.classes
                    .extend(preds.into_iter().zip(chunk.iter().map(|e| match e.target {
                        Target::Class(c) | Target::Choice(c) => c,
                        _ => -100,
                    })));
            }
            Task::TokenClassification => {
                let argmax = out.logits[0].f_argmax(-1, false)?;
                let width = argmax.size()[1] as usize;
                let flat = to_i64(&argmax)?;
                for (row, e) in chunk.iter().enumerate() {
                    if let Target::Tags(tags) = &e.target {
                        let kept = tags.iter().enumerate().filter(|(_, t)| **t != -100);
                        o.tags
                            .push(kept.map(|(j, t)| (flat[row * width + j], *t)).unzip());
                    }
                }
            }
            Task::QuestionAnswering => {
                let width = out.logits[0].size()[1] as usize;
                let (s, e) = (to_f32(&out.logits[0])?, to_f32(&out.logits[1])?);
                for row in 0..chunk.len() {
                    let r = row * width..(row + 1) * width;
                    o.spans.push((s[r.clone()].to_vec(), e[r].to_vec()));
                }
            }
            Task::MaskedLm => {}
        }
    }
    Ok(o)
}

impl EvalOutputs {
    /// Flattens into numbers (ids and f32 logits are exact as f64), for an all-gather.
    pub(crate) fn to_f64s(&self) -> Vec<f64> {
        let mut v = vec![self.loss_sum, self.count as f64, self.classes.len() as f64];
        v.extend(self.classes.iter().flat_map(|&(p, g)| [p as f64, g as f64]));
        v.push(self.tags.len() as f64);
        for (p, g) in &self.tags {
            v.push(p.len() as f64);
            v.extend(p.iter().chain(g).map(|&x| x as f64));
        }
        v.push(self.spans.len() as f64);
        for (s, e) in &self.spans {
            v.push(s.len() as f64);
            v.extend(s.iter().chain(e).map(|&x| f64::from(x)));
        }
        v
    }

    /// Reads what [`EvalOutputs::to_f64s`] wrote; `None` when it is cut short.
    pub(crate) fn from_f64s(v: &[f64]) -> Option<Self> {
        let mut it = v.iter().copied();
        let mut next = || it.next();
        let mut o = Self {
            loss_sum: next()?,
            count: next()? as usize,
            ..Self::default()
        };
        for _ in 0..next()? as usize {
            o.classes.push((next()? as i64, next()? as i64));
        }
        for _ in 0..next()? as usize {
            let n = next()? as usize;
            let p = (0..n)
                .map(|_| next().map(|x| x as i64))
                .collect::<Option<_>>()?;
            let g = (0..n)
                .map(|_| next().map(|x| x as i64))
                .collect::<Option<_>>()?;
            o.tags.push((p, g));
        }
        for _ in 0..next()? as usize {
            let n = next()? as usize;
            let s = (0..n)
                .map(|_| next().map(|x| x as f32))
                .collect::<Option<_>>()?;
            let e = (0..n)
                .map(|_| next().map(|x| x as f32))
                .collect::<Option<_>>()?;
            o.spans.push((s, e));
        }
        Some(o)
    }

    /// Appends `other`'s examples after these.
    pub(crate) fn extend(&mut self, other: Self) {
        self.loss_sum += other.loss_sum;
        self.count += other.count;
        self.classes.extend(other.classes);
        self.tags.extend(other.tags);
        self.spans.extend(other.spans);
    }
}

/// The mean loss and the task's metrics over all of `data`'s outputs.
pub(crate) fn finish(data: &Dataset, o: EvalOutputs) -> EvalResult {
    let loss = if o.count > 0 {
        o.loss_sum / o.count as f64
    } else {
        f64::NAN
    };
    let (preds, golds): (Vec<i64>, Vec<i64>) = o.classes.into_iter().unzip();
    let name = |i: &i64| {
        data.label_names
            .get(*i as usize)
            .cloned()
            .unwrap_or_default()
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
            let (tag_preds, tag_golds): (Vec<Vec<String>>, Vec<Vec<String>>) = o
                .tags
                .iter()
                .map(|(p, g)| (p.iter().map(name).collect(), g.iter().map(name).collect()))
                .unzip();
            let s = metrics::entity_scores(&tag_preds, &tag_golds);
            m.insert("precision".into(), s.precision);
            m.insert("recall".into(), s.recall);
            m.insert("f1".into(), s.f1);
        }
        Task::QuestionAnswering => {
            let (em, f1) = squad_metrics(data, &o.spans);
            m.insert("exact_match".into(), em);
            m.insert("f1".into(), f1);
        }
        Task::MaskedLm => {
            m.insert("perplexity".into(), loss.exp());
        }
    }
    EvalResult { loss, metrics: m }
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

#[cfg(test)]
mod tests {
    use super::EvalOutputs;

    #[test]
    fn outputs_survive_the_trip_through_numbers() {
        let o = EvalOutputs {
            loss_sum: 1.25,
            count: 3,
            classes: vec![(1, 0), (2, -100)],
            tags: vec![(vec![3, 4], vec![3, 5]), (vec![], vec![])],
            spans: vec![(vec![0.1, -2.5e-8], vec![f32::MIN, 7.0])],
        };
        let v = o.to_f64s();
        assert_eq!(EvalOutputs::from_f64s(&v), Some(o));
        assert_eq!(EvalOutputs::from_f64s(&v[..v.len() - 1]), None);
    }
}
