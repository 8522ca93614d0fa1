//! `POST /`: the Hugging Face Inference API route that `huggingface_hub.InferenceClient(base_url=...)`
//! calls for every task, `{"inputs": ..., "parameters": {...}}`, dispatched by the served task,
//! with the Inference API's parameter names and response shapes (text classification answers a
//! list per input, as the client expects).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use convbert_pipelines::{AggregationStrategy, QaInput, ScoreFunction, TextInput};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::embed::{embed_vectors, refuse_prompt};
use super::tasks::{
    answer_shape, fill_mask_run, mask_shape, ner_run, qa_run, QaParameters, Targets,
};
use super::{default_true, predict, InputType, OneOrMany, Texts, TruncationDirection};
use crate::config::Task;
use crate::error::{ApiError, ErrorResponse};
use crate::json::JsonBody;
use crate::state::SharedState;

/// The Inference API request (feature extraction also takes its parameters at the top level).
#[derive(Debug, Deserialize, ToSchema)]
pub struct InferenceRequest {
    #[schema(value_type = Object)]
    pub inputs: Value,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Option<Map<String, Value>>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub rest: Map<String, Value>,
}

fn parse<T: DeserializeOwned>(what: &str, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::validation(format!("invalid {what}: {e}")))
}

/// The parameters: `parameters` merged over the top-level keys.
fn parameters<T: DeserializeOwned>(req: &mut InferenceRequest) -> Result<T, ApiError> {
    let mut all = std::mem::take(&mut req.rest);
    if let Some(p) = req.parameters.take() {
        all.extend(p);
    }
    parse("parameters", Value::Object(all))
}

#[derive(Debug, Deserialize)]
struct FeatureParameters {
    #[serde(default = "default_true")]
    normalize: bool,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: TruncationDirection,
    #[serde(default)]
    prompt_name: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FunctionToApply {
    Sigmoid,
    Softmax,
    None,
}

#[derive(Debug, Deserialize)]
struct ClassificationParameters {
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    function_to_apply: Option<FunctionToApply>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: TruncationDirection,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClassificationInput {
    Pair(TextInput),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClassificationInputs {
    One(ClassificationInput),
    Many(Vec<ClassificationInput>),
}

#[derive(Debug, Deserialize)]
struct FillMaskParameters {
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    targets: Option<Targets>,
}

#[derive(Debug, Deserialize)]
struct TokenParameters {
    #[serde(default)]
    aggregation_strategy: AggregationStrategy,
    #[serde(default)]
    ignore_labels: Option<Vec<String>>,
    #[serde(default)]
    stride: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum QaInputs {
    One(QaInput),
    Many(Vec<QaInput>),
}

/// Runs the served task on `inputs` (see the module docs).
#[utoipa::path(post, path = "/", request_body = InferenceRequest,
    responses((status = 200, description = "The task's Inference API response", body = Object),
              (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(crate) async fn dispatch(
    State(state): State<SharedState>,
    JsonBody(mut req): JsonBody<InferenceRequest>,
) -> Result<Response, ApiError> {
    let task = state.ready()?.engine.task();
    let inputs = std::mem::take(&mut req.inputs);
    Ok(match task {
        Task::FeatureExtraction => {
            let p: FeatureParameters = parameters(&mut req)?;
            refuse_prompt(p.prompt_name.as_deref())?;
            let texts: Texts = parse("inputs", inputs)?;
            let inputs = texts
                .into_vec()
                .into_iter()
                .map(InputType::String)
                .collect();
            let truncate = state.truncation(p.truncate, p.truncation_direction.into());
            let (vectors, _) =
                embed_vectors(&state, inputs, truncate, p.normalize, p.dimensions).await?;
            Json(vectors).into_response()
        }
        Task::TextClassification => {
            let p: ClassificationParameters = parameters(&mut req)?;
            let inputs = match parse("inputs", inputs)? {
                ClassificationInputs::One(x) => vec![x],
                ClassificationInputs::Many(v) => v,
            };
            let inputs = inputs
                .into_iter()
                .map(|x| match x {
                    ClassificationInput::Pair(t) => t,
                    ClassificationInput::Text(text) => TextInput {
                        text,
                        text_pair: None,
                    },
                })
                .collect();
            let function = p.function_to_apply.map(|f| match f {
                FunctionToApply::Sigmoid => ScoreFunction::Sigmoid,
                FunctionToApply::Softmax => ScoreFunction::Softmax,
                FunctionToApply::None => ScoreFunction::None,
            });
            if p.top_k == Some(0) {
                return Err(ApiError::validation("top_k must be at least 1"));
            }
            let truncate = state.truncation(p.truncate, p.truncation_direction.into());
            let ranked = predict::classify(&state, inputs, truncate, p.top_k, function).await?;
            Json(ranked).into_response()
        }
        Task::FillMask => {
            let p: FillMaskParameters = parameters(&mut req)?;
            let texts: Texts = parse("inputs", inputs)?;
            let batch = texts.is_batch();
            let top_k = p.top_k.unwrap_or(5);
            let targets = p.targets.map(Targets::into_vec);
            let results = fill_mask_run(&state, "/", texts.into_vec(), top_k, targets).await?;
            let shaped: Vec<_> = results.into_iter().map(mask_shape).collect();
            Json(OneOrMany::new(shaped, batch)).into_response()
        }
        Task::TokenClassification => {
            let p: TokenParameters = parameters(&mut req)?;
            let texts: Texts = parse("inputs", inputs)?;
            let batch = texts.is_batch();
            let ignore = p.ignore_labels.unwrap_or_else(|| vec!["O".into()]);
            let results = ner_run(
                &state,
                "/",
                texts.into_vec(),
                p.aggregation_strategy,
                ignore,
                p.stride,
            )
            .await?;
            Json(OneOrMany::new(results, batch)).into_response()
        }
        Task::QuestionAnswering => {
            let p: QaParameters = parameters(&mut req)?;
            let (inputs, batch) = match parse("inputs", inputs)? {
                QaInputs::One(x) => (vec![x], false),
                QaInputs::Many(v) => (v, true),
            };
            let opts = p.options();
            let results = qa_run(&state, "/", inputs, opts).await?;
            let shaped: Vec<_> = results
                .into_iter()
                .map(|a| answer_shape(a, opts.top_k))
                .collect();
            Json(OneOrMany::new(shaped, batch)).into_response()
        }
    })
}
