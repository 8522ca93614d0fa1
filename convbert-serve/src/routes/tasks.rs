//! The tasks TEI does not serve for ConvBERT: `/fill_mask`, `/ner` and `/qa`, with the results
//! of the HF pipelines (and of `convbert-pipelines`) in HF's JSON shapes.

use axum::extract::State;
use axum::Json;
use convbert_pipelines::{
    AggregationStrategy, Answer, Entity, FillMaskCandidate, FillMaskTargets, QaInput, QaOptions,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{OneOrMany, Texts};
use crate::batcher::Output;
use crate::error::{ApiError, ErrorResponse};
use crate::json::JsonBody;
use crate::state::{blocking, single_output, SharedState};

/// One target or several (HF's `targets=`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Targets {
    One(String),
    Many(Vec<String>),
}

impl Targets {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Targets::One(t) => vec![t],
            Targets::Many(v) => v,
        }
    }
}

fn default_top_k() -> usize {
    5
}

/// `POST /fill_mask`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FillMaskRequest {
    pub inputs: Texts,
    /// Candidates per mask.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Choose candidates among these tokens only.
    #[serde(default)]
    pub targets: Option<Targets>,
}

/// Per text, per `[MASK]`, the best candidates.
pub(crate) async fn fill_mask_run(
    state: &SharedState,
    route: &str,
    texts: Vec<String>,
    top_k: usize,
    targets: Option<Vec<String>>,
) -> Result<Vec<Vec<Vec<FillMaskCandidate>>>, ApiError> {
    state.check_count(texts.len())?;
    if top_k == 0 {
        return Err(ApiError::validation("top_k must be at least 1"));
    }
    let ready = state.ready()?;
    let pipe = ready.engine.fill_mask(route)?;
    let targets: Option<FillMaskTargets> = match targets {
        Some(t) => {
            let p = pipe.clone();
            Some(
                blocking(move || {
                    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
                    p.targets(&refs).map_err(|e| ApiError::input(None, e))
                })
                .await?,
            )
        }
        None => None,
    };
    let prep = pipe.clone();
    let done = ready
        .infer(Output::Head, texts, move |t| prep.prepare(t))
        .await?;
    blocking(move || {
        done.into_iter()
            .map(|(p, outs)| {
                let logits = single_output(outs)?;
                pipe.finish(&p, &logits, top_k, targets.as_ref())
                    .map_err(|e| ApiError::input(None, e))
            })
            .collect()
    })
    .await
}

/// HF's shape for one text: the candidates of its single mask, else a list per mask.
pub(crate) fn mask_shape(
    mut masks: Vec<Vec<FillMaskCandidate>>,
) -> OneOrMany<Vec<FillMaskCandidate>> {
    if masks.len() == 1 {
        OneOrMany::One(masks.pop().unwrap_or_default())
    } else {
        OneOrMany::Many(masks)
    }
}

/// The `top_k` most likely tokens for every `[MASK]` (HF fill-mask pipeline).
#[utoipa::path(post, path = "/fill_mask", request_body = FillMaskRequest,
    responses((status = 200, description = "Candidates per mask: [{score, token, token_str, sequence}]", body = Object),
              (status = 400, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(crate) async fn fill_mask(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<FillMaskRequest>,
) -> Result<Json<OneOrMany<OneOrMany<Vec<FillMaskCandidate>>>>, ApiError> {
    let batch = req.inputs.is_batch();
    let targets = req.targets.map(Targets::into_vec);
    let results = fill_mask_run(
        &state,
        "/fill_mask",
        req.inputs.into_vec(),
        req.top_k,
        targets,
    )
    .await?;
    let shaped = results.into_iter().map(mask_shape).collect();
    Ok(Json(OneOrMany::new(shaped, batch)))
}

fn default_ignore() -> Vec<String> {
    vec!["O".into()]
}

/// `POST /ner`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NerRequest {
    pub inputs: Texts,
    /// none (default), simple, first, average or max.
    #[serde(default)]
    #[schema(value_type = String)]
    pub aggregation_strategy: AggregationStrategy,
    /// Labels left out (default `["O"]`).
    #[serde(default = "default_ignore")]
    pub ignore_labels: Vec<String>,
    /// Long texts whole, in windows overlapping by this many tokens.
    #[serde(default)]
    pub stride: Option<usize>,
}

/// Per text its entities.
pub(crate) async fn ner_run(
    state: &SharedState,
    route: &str,
    texts: Vec<String>,
    strategy: AggregationStrategy,
    ignore_labels: Vec<String>,
    stride: Option<usize>,
) -> Result<Vec<Vec<Entity>>, ApiError> {
    state.check_count(texts.len())?;
    let ready = state.ready()?;
    let pipe = ready.engine.tagger(route)?;
    if let Some(s) = stride {
        pipe.check_stride(strategy, s)
            .map_err(|e| ApiError::input(None, e))?;
    }
    let prep = pipe.clone();
    let done = ready
        .infer(Output::Head, texts.clone(), move |t| {
            prep.prepare(t, stride)
        })
        .await?;
    blocking(move || {
        let ignore: Vec<&str> = ignore_labels.iter().map(String::as_str).collect();
        done.into_iter()
            .zip(&texts)
            .map(|((p, outs), text)| {
                pipe.finish(text, &p, outs, strategy, &ignore)
                    .map_err(|e| ApiError::input(None, e))
            })
            .collect()
    })
    .await
}

/// Token classification with HF's aggregation strategies and character offsets.
#[utoipa::path(post, path = "/ner", request_body = NerRequest,
    responses((status = 200, description = "Entities: [{entity_group | entity, score, word, start, end}]", body = Object),
              (status = 400, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(crate) async fn ner(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<NerRequest>,
) -> Result<Json<OneOrMany<Vec<Entity>>>, ApiError> {
    let batch = req.inputs.is_batch();
    let results = ner_run(
        &state,
        "/ner",
        req.inputs.into_vec(),
        req.aggregation_strategy,
        req.ignore_labels,
        req.stride,
    )
    .await?;
    Ok(Json(OneOrMany::new(results, batch)))
}

/// QA options with HF's names (`max_question_len` is accepted and ignored, as HF's
/// fast-tokenizer path ignores it).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct QaParameters {
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub max_answer_len: Option<usize>,
    #[serde(default)]
    pub doc_stride: Option<usize>,
    #[serde(default)]
    pub max_seq_len: Option<usize>,
    #[serde(default)]
    pub handle_impossible_answer: Option<bool>,
    #[serde(default)]
    pub align_to_words: Option<bool>,
}

impl QaParameters {
    pub(crate) fn options(&self) -> QaOptions {
        let d = QaOptions::default();
        QaOptions {
            top_k: self.top_k.unwrap_or(d.top_k),
            max_seq_len: self.max_seq_len,
            doc_stride: self.doc_stride,
            max_answer_len: self.max_answer_len.unwrap_or(d.max_answer_len),
            handle_impossible_answer: self
                .handle_impossible_answer
                .unwrap_or(d.handle_impossible_answer),
            align_to_words: self.align_to_words.unwrap_or(d.align_to_words),
        }
    }
}

/// `POST /qa`: one question over one context or several.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QaRequest {
    pub question: String,
    pub context: Texts,
    #[serde(flatten)]
    pub parameters: QaParameters,
}

/// Per input its answers, best first.
pub(crate) async fn qa_run(
    state: &SharedState,
    route: &str,
    inputs: Vec<QaInput>,
    opts: QaOptions,
) -> Result<Vec<Vec<Answer>>, ApiError> {
    state.check_count(inputs.len())?;
    opts.check().map_err(|e| ApiError::input(None, e))?;
    let ready = state.ready()?;
    let pipe = ready.engine.reader(route)?;
    let prep = pipe.clone();
    let done = ready
        .infer(Output::Head, inputs.clone(), move |x| {
            prep.prepare(x, &opts)
        })
        .await?;
    blocking(move || {
        done.into_iter()
            .zip(&inputs)
            .map(|((p, outs), x)| {
                pipe.finish(x, &p, outs, &opts)
                    .map_err(|e| ApiError::input(None, e))
            })
            .collect()
    })
    .await
}

/// HF's shape for one input: the answer itself when `top_k` is 1, else the list.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Answers {
    Best(Answer),
    List(Vec<Answer>),
}

pub(crate) fn answer_shape(mut answers: Vec<Answer>, top_k: usize) -> Answers {
    match answers.pop() {
        Some(a) if top_k == 1 && answers.is_empty() => Answers::Best(a),
        Some(a) => {
            answers.push(a);
            Answers::List(answers)
        }
        None => Answers::List(answers),
    }
}

/// Extractive question answering (HF question-answering pipeline).
#[utoipa::path(post, path = "/qa", request_body = QaRequest,
    responses((status = 200, description = "{answer, score, start, end}, a list when top_k > 1 or for several contexts", body = Object),
              (status = 400, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(crate) async fn qa(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<QaRequest>,
) -> Result<Json<OneOrMany<Answers>>, ApiError> {
    let batch = req.context.is_batch();
    let opts = req.parameters.options();
    let inputs = req
        .context
        .into_vec()
        .into_iter()
        .map(|context| QaInput {
            question: req.question.clone(),
            context,
        })
        .collect();
    let results = qa_run(&state, "/qa", inputs, opts).await?;
    let shaped = results
        .into_iter()
        .map(|a| answer_shape(a, opts.top_k))
        .collect();
    Ok(Json(OneOrMany::new(shaped, batch)))
}
