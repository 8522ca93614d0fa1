//! `/tokenize` and `/decode`, as TEI returns them: tokens with byte offsets into the input
//! (`null` for special tokens), and texts of id lists.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{default_true, Texts};
use crate::error::{ApiError, ErrorResponse};
use crate::json::JsonBody;
use crate::state::{blocking, SharedState};

/// `POST /tokenize`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenizeRequest {
    pub inputs: Texts,
    #[serde(default = "default_true")]
    pub add_special_tokens: bool,
    #[serde(default)]
    pub prompt_name: Option<String>,
}

/// One token: id, its text in the input (the token itself when special), byte span.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimpleToken {
    pub id: u32,
    pub text: String,
    pub special: bool,
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

/// The tokens of each input.
#[utoipa::path(post, path = "/tokenize", request_body = TokenizeRequest,
    responses((status = 200, description = "Tokens", body = Vec<Vec<SimpleToken>>),
              (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(crate) async fn tokenize(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<TokenizeRequest>,
) -> Result<Json<Vec<Vec<SimpleToken>>>, ApiError> {
    super::embed::refuse_prompt(req.prompt_name.as_deref())?;
    let texts = req.inputs.into_vec();
    state.check_count(texts.len())?;
    let model = state.ready()?.engine.model();
    let special = req.add_special_tokens;
    let tokens = blocking(move || {
        let single = texts.len() == 1;
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let enc = model
                    .tokenizer()
                    .encode_byte_offsets(text, special)
                    .map_err(|e| ApiError::input((!single).then_some(i), e))?;
                Ok(tokens_of(&enc, text))
            })
            .collect()
    })
    .await?;
    Ok(Json(tokens))
}

fn tokens_of(enc: &tokenizers::Encoding, text: &str) -> Vec<SimpleToken> {
    enc.get_ids()
        .iter()
        .zip(enc.get_offsets())
        .zip(enc.get_special_tokens_mask())
        .zip(enc.get_tokens())
        .map(|(((&id, &(start, stop)), &special), token)| {
            if special == 1 {
                SimpleToken {
                    id,
                    text: token.clone(),
                    special: true,
                    start: None,
                    stop: None,
                }
            } else {
                let bytes = text.as_bytes().get(start..stop).unwrap_or_default();
                SimpleToken {
                    id,
                    text: String::from_utf8_lossy(bytes).into_owned(),
                    special: false,
                    start: Some(start),
                    stop: Some(stop),
                }
            }
        })
        .collect()
}

/// Ids of one sequence, or of several.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum InputIds {
    Single(Vec<u32>),
    Batch(Vec<Vec<u32>>),
}

/// `POST /decode`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DecodeRequest {
    pub ids: InputIds,
    #[serde(default = "default_true")]
    pub skip_special_tokens: bool,
}

/// The text of each id list.
#[utoipa::path(post, path = "/decode", request_body = DecodeRequest,
    responses((status = 200, description = "Texts", body = Vec<String>),
              (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(crate) async fn decode(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<DecodeRequest>,
) -> Result<Json<Vec<String>>, ApiError> {
    let ids = match req.ids {
        InputIds::Single(v) => vec![v],
        InputIds::Batch(v) => v,
    };
    state.check_count(ids.len())?;
    let model = state.ready()?.engine.model();
    let vocab = model.config().vocab_size;
    let skip = req.skip_special_tokens;
    let texts = blocking(move || {
        ids.iter()
            .map(|seq| {
                if let Some(bad) = seq.iter().find(|&&i| i64::from(i) >= vocab) {
                    return Err(ApiError::validation(format!(
                        "token id {bad} is outside the vocabulary of {vocab} tokens"
                    )));
                }
                model
                    .tokenizer()
                    .decode(seq, skip)
                    .map_err(|e| ApiError::input(None, e))
            })
            .collect()
    })
    .await?;
    Ok(Json(texts))
}
