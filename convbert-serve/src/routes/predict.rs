//! `/predict`: sequence classification of texts and text pairs, every label sorted by score, as
//! TEI returns it (`[{label, score}]`, a list of those for a batch).

use std::fmt;

use axum::extract::State;
use axum::Json;
use convbert_pipelines::{LabelScore, ScoreFunction, TextInput, TruncationSide};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{OneOrMany, TruncationDirection};
use crate::batcher::Output;
use crate::error::{ApiError, ErrorResponse};
use crate::json::JsonBody;
use crate::state::{blocking, single_output, SharedState};

/// TEI's predict input: `"text"`, `["a", "b"]` (one pair), or `[["a"], ["a", "b"], ...]`.
#[derive(Debug)]
pub enum PredictInput {
    Single(TextInput),
    Batch(Vec<TextInput>),
}

fn sequence<E: de::Error>(mut v: Vec<String>) -> Result<TextInput, E> {
    let text_pair = match v.len() {
        1 => None,
        2 => v.pop(),
        n => {
            return Err(E::invalid_length(
                n,
                &"a sequence of one string or a pair of strings",
            ))
        }
    };
    let text = v.pop().unwrap_or_default();
    Ok(TextInput { text, text_pair })
}

impl<'de> Deserialize<'de> for PredictInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum First {
            Text(String),
            Sequence(Vec<String>),
        }

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PredictInput;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a string, a pair of strings [string, string] or a batch of mixed strings \
                     and pairs [[string], [string, string], ...]",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PredictInput, E> {
                Ok(PredictInput::Single(TextInput {
                    text: v.to_owned(),
                    text_pair: None,
                }))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PredictInput, A::Error> {
                let first = match seq.next_element::<First>()? {
                    Some(First::Text(text)) => {
                        let pair: Option<String> = seq.next_element()?;
                        if seq.next_element::<String>()?.is_some() {
                            return Err(de::Error::invalid_length(3, &self));
                        }
                        return Ok(PredictInput::Single(TextInput {
                            text,
                            text_pair: pair,
                        }));
                    }
                    Some(First::Sequence(v)) => sequence(v)?,
                    None => return Ok(PredictInput::Batch(Vec::new())),
                };
                let mut batch = vec![first];
                while let Some(v) = seq.next_element::<Vec<String>>()? {
                    batch.push(sequence(v)?);
                }
                Ok(PredictInput::Batch(batch))
            }
        }
        d.deserialize_any(V)
    }
}

/// `POST /predict`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PredictRequest {
    #[schema(value_type = Object)]
    pub inputs: PredictInput,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    /// Logits instead of probabilities.
    #[serde(default)]
    pub raw_scores: bool,
}

/// One label and its score.
#[derive(Debug, Serialize, ToSchema)]
pub struct Prediction {
    pub score: f64,
    pub label: String,
}

/// Per input the labels, best first, cut to `top_k` (`None`: all).
pub(crate) async fn classify(
    state: &SharedState,
    inputs: Vec<TextInput>,
    truncate: Option<TruncationSide>,
    top_k: Option<usize>,
    function: Option<ScoreFunction>,
) -> Result<Vec<Vec<LabelScore>>, ApiError> {
    state.check_count(inputs.len())?;
    let ready = state.ready()?;
    let pipe = ready.engine.classifier("/predict")?;
    let model = ready.engine.model();
    let done = ready
        .infer(Output::Head, inputs, move |x| {
            model.prepare_text(&x.text, x.text_pair.as_deref(), truncate)
        })
        .await?;
    blocking(move || {
        done.into_iter()
            .map(|(_, outs)| {
                let logits = single_output(outs)?;
                pipe.finish(&logits, top_k, function)
                    .map_err(|e| ApiError::input(None, e))
            })
            .collect()
    })
    .await
}

/// Sequence classification (every label, best first).
#[utoipa::path(post, path = "/predict", request_body = PredictRequest,
    responses((status = 200, description = "Labels and scores", body = Vec<Prediction>),
              (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(crate) async fn predict(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<PredictRequest>,
) -> Result<Json<OneOrMany<Vec<Prediction>>>, ApiError> {
    let (inputs, batch) = match req.inputs {
        PredictInput::Single(x) => (vec![x], false),
        PredictInput::Batch(v) => (v, true),
    };
    let truncate = state.truncation(req.truncate, req.truncation_direction.into());
    let function = req.raw_scores.then_some(ScoreFunction::None);
    let ranked = classify(&state, inputs, truncate, None, function).await?;
    let shaped = ranked
        .into_iter()
        .map(|labels| {
            labels
                .into_iter()
                .map(|l| Prediction {
                    score: l.score,
                    label: l.label,
                })
                .collect()
        })
        .collect();
    Ok(Json(OneOrMany::new(shaped, batch)))
}
