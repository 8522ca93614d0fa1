//! `/embed` (pooled, optionally L2-normalised vectors), `/embed_all` (a vector per token) and the
//! OpenAI-shaped `/v1/embeddings`, from the encoder of any checkpoint, as TEI returns them.

use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use convbert_pipelines::{Pooling, TruncationSide};
use serde::{Deserialize, Serialize};
use tch::Tensor;
use utoipa::ToSchema;

use super::{default_true, Input, InputType, TruncationDirection};
use crate::batcher::Output;
use crate::error::{ApiError, ErrorResponse};
use crate::json::JsonBody;
use crate::state::{blocking, single_output, SharedState};

/// `POST /embed`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbedRequest {
    pub inputs: Input,
    /// Cut inputs longer than the model takes instead of refusing them.
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    /// L2-normalise each vector.
    #[serde(default = "default_true")]
    pub normalize: bool,
    /// Keep the first `dimensions` values (before normalising).
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// Prompts are a sentence-transformers feature ConvBERT checkpoints do not have.
    #[serde(default)]
    pub prompt_name: Option<String>,
}

/// `POST /embed_all`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbedAllRequest {
    pub inputs: Input,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    #[serde(default)]
    pub prompt_name: Option<String>,
}

pub(crate) fn refuse_prompt(prompt_name: Option<&str>) -> Result<(), ApiError> {
    match prompt_name {
        Some(p) => Err(ApiError::validation(format!(
            "prompt_name `{p}`: this model has no sentence-transformers prompts"
        ))),
        None => Ok(()),
    }
}

/// Per input its `(L, D)` encoder states, and the real tokens of all inputs.
async fn states(
    state: &SharedState,
    inputs: Vec<InputType>,
    truncate: Option<TruncationSide>,
) -> Result<(Vec<Tensor>, usize), ApiError> {
    state.check_count(inputs.len())?;
    let ready = state.ready()?;
    let model = ready.engine.model();
    let done = ready
        .infer(Output::Features, inputs, move |x| match x {
            InputType::String(t) => model.prepare_text(t, None, truncate),
            InputType::Ids(ids) => model.prepare_ids(ids),
        })
        .await?;
    let tokens = done.iter().map(|(p, _)| p.tokens()).sum();
    let states = done
        .into_iter()
        .map(|(_, outs)| single_output(outs))
        .collect::<Result<_, _>>()?;
    Ok((states, tokens))
}

/// Pooled vectors of `inputs` (see [`EmbedRequest`]) and the number of tokens embedded.
pub(crate) async fn embed_vectors(
    state: &SharedState,
    inputs: Vec<InputType>,
    truncate: Option<TruncationSide>,
    normalize: bool,
    dimensions: Option<usize>,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let pooling = state.config.pooling;
    let (states, tokens) = states(state, inputs, truncate).await?;
    let vectors = blocking(move || {
        states
            .iter()
            .map(|h| pool(h, pooling, normalize, dimensions))
            .collect()
    })
    .await?;
    Ok((vectors, tokens))
}

fn pool(
    states: &Tensor,
    pooling: Pooling,
    normalize: bool,
    dimensions: Option<usize>,
) -> Result<Vec<f32>, ApiError> {
    let pooled = pooling
        .apply(states)
        .map_err(|e| ApiError::backend(e.to_string()))?;
    let mut v = Vec::<f32>::try_from(&pooled).map_err(|e| ApiError::backend(e.to_string()))?;
    if let Some(d) = dimensions {
        if d == 0 || d > v.len() {
            return Err(ApiError::validation(format!(
                "dimensions must be between 1 and the model's hidden size {}",
                v.len()
            )));
        }
        v.truncate(d);
    }
    if normalize {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
    }
    Ok(v)
}

/// Pooled embeddings, one per input.
#[utoipa::path(post, path = "/embed", request_body = EmbedRequest,
    responses((status = 200, description = "Embeddings", body = Vec<Vec<f32>>),
              (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse),
              (status = 429, body = ErrorResponse), (status = 424, body = ErrorResponse)))]
pub(crate) async fn embed(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<EmbedRequest>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    refuse_prompt(req.prompt_name.as_deref())?;
    let truncate = state.truncation(req.truncate, req.truncation_direction.into());
    let (vectors, _) = embed_vectors(
        &state,
        req.inputs.into_vec(),
        truncate,
        req.normalize,
        req.dimensions,
    )
    .await?;
    Ok(Json(vectors))
}

/// Every token's last hidden state, one matrix per input.
#[utoipa::path(post, path = "/embed_all", request_body = EmbedAllRequest,
    responses((status = 200, description = "Per-token embeddings", body = Vec<Vec<Vec<f32>>>),
              (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(crate) async fn embed_all(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<EmbedAllRequest>,
) -> Result<Json<Vec<Vec<Vec<f32>>>>, ApiError> {
    refuse_prompt(req.prompt_name.as_deref())?;
    let truncate = state.truncation(req.truncate, req.truncation_direction.into());
    let (states, _) = states(&state, req.inputs.into_vec(), truncate).await?;
    let matrices = blocking(move || {
        states
            .iter()
            .map(|h| Vec::<Vec<f32>>::try_from(h).map_err(|e| ApiError::backend(e.to_string())))
            .collect()
    })
    .await?;
    Ok(Json(matrices))
}

/// `encoding_format` of the OpenAI API.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EncodingFormat {
    #[default]
    Float,
    /// Little-endian f32 bytes, base64 (what the `openai` Python client asks for).
    Base64,
}

/// `POST /v1/embeddings`, the OpenAI request (`model` and `user` are accepted and ignored: one
/// model is served).
#[derive(Debug, Deserialize, ToSchema)]
pub struct OpenAiRequest {
    pub input: Input,
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    #[serde(default)]
    pub dimensions: Option<usize>,
}

/// One embedding: floats or base64.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OpenAiVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbedding {
    pub object: &'static str,
    pub embedding: OpenAiVector,
    pub index: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// The OpenAI response.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiResponse {
    pub object: &'static str,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiUsage,
}

/// OpenAI-compatible embeddings (normalised, pooled with --pooling).
#[utoipa::path(post, path = "/v1/embeddings", request_body = OpenAiRequest,
    responses((status = 200, description = "Embeddings", body = OpenAiResponse),
              (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(crate) async fn openai(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<OpenAiRequest>,
) -> Result<Json<OpenAiResponse>, ApiError> {
    let truncate = state.truncation(None, TruncationSide::Right);
    let (vectors, tokens) =
        embed_vectors(&state, req.input.into_vec(), truncate, true, req.dimensions).await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| OpenAiEmbedding {
            object: "embedding",
            embedding: match req.encoding_format {
                EncodingFormat::Float => OpenAiVector::Float(v),
                EncodingFormat::Base64 => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    OpenAiVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            },
            index,
        })
        .collect();
    Ok(Json(OpenAiResponse {
        object: "list",
        data,
        model: state.config.model_id.clone(),
        usage: OpenAiUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}
