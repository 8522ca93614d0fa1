//! `GET /health`, `/info`, `/metrics` and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use convbert_pipelines::{GraphStats, Pooling, Quantization};
use serde::Serialize;
use serde_json::{json, Value};
use tch::{Device, Kind};
use utoipa::{OpenApi, ToSchema};

use crate::config::Task;
use crate::engine::Engine;
use crate::error::{ApiError, ErrorResponse};
use crate::state::SharedState;

/// 200 once the model is loaded and its thread runs, else 503.
#[utoipa::path(get, path = "/health",
    responses((status = 200, description = "Ready"), (status = 503, body = ErrorResponse)))]
pub(crate) async fn health(State(state): State<SharedState>) -> Result<StatusCode, ApiError> {
    state.ready().map(|_| StatusCode::OK)
}

/// What `/info` reports (TEI's fields, plus the task and the device).
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    pub model_id: String,
    pub model_sha: Option<String>,
    pub model_dtype: String,
    #[schema(value_type = Object)]
    pub model_type: Value,
    pub task: String,
    pub device: String,
    pub max_concurrent_requests: usize,
    pub max_input_length: usize,
    pub max_batch_tokens: usize,
    pub max_batch_requests: Option<usize>,
    pub max_client_batch_size: usize,
    pub auto_truncate: bool,
    pub cuda_graphs: CudaGraphsInfo,
    pub tokenization_workers: usize,
    pub version: &'static str,
    pub sha: Option<&'static str>,
    pub docker_label: Option<&'static str>,
}

/// CUDA graphs of small batches: whether they are used, and their counts since start-up (as of
/// the last finished batch).
#[derive(Debug, Serialize, ToSchema)]
pub struct CudaGraphsInfo {
    /// Why every batch runs eagerly (turned off, not a CUDA device, a build without them); null
    /// when graphs are used.
    pub unavailable: Option<String>,
    /// Graphs held now.
    pub graphs: usize,
    pub captures: u64,
    pub replays: u64,
    /// Batches run eagerly: outside the buckets, graphs unavailable or a key whose capture failed.
    pub eager: u64,
    /// Captures that failed or whose first replay did not match the eager forward.
    pub failed_captures: u64,
    pub last_failure: Option<String>,
}

impl From<GraphStats> for CudaGraphsInfo {
    fn from(s: GraphStats) -> Self {
        Self {
            unavailable: s.unavailable,
            graphs: s.graphs,
            captures: s.captures,
            replays: s.replays,
            eager: s.eager,
            failed_captures: s.failed_captures,
            last_failure: s.last_failure,
        }
    }
}

fn model_type(engine: &Engine, pooling: Pooling) -> Value {
    let labels = match engine {
        Engine::TextClassification(p) => Some(p.labels().clone()),
        Engine::TokenClassification(p) => Some(p.labels().clone()),
        _ => None,
    };
    match labels {
        Some(l) => {
            let id2label: serde_json::Map<String, Value> = l
                .id2label
                .iter()
                .map(|(i, n)| (i.to_string(), json!(n)))
                .collect();
            let label2id: serde_json::Map<String, Value> = l
                .id2label
                .iter()
                .map(|(i, n)| (n.clone(), json!(i)))
                .collect();
            json!({"classifier": {"id2label": id2label, "label2id": label2id}})
        }
        None => {
            let pooling = if pooling == Pooling::Cls {
                "cls"
            } else {
                "mean"
            };
            json!({"embedding": {"pooling": pooling}})
        }
    }
}

/// The device as `--device` names it (`cpu`, `cuda:N`).
fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The model and the server's limits.
#[utoipa::path(get, path = "/info",
    responses((status = 200, body = Info), (status = 503, body = ErrorResponse)))]
pub(crate) async fn info(State(state): State<SharedState>) -> Result<Json<Info>, ApiError> {
    let ready = state.ready()?;
    let c = &state.config;
    let dtype = match c.kind {
        _ if c.quantization == Quantization::DynamicInt8 => "int8",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        _ => "float32",
    };
    let task: Task = ready.engine.task();
    let graphs = ready.engine.model().cuda_graph_stats();
    let graphs = graphs.map_err(|e| ApiError::backend(e.to_string()))?;
    Ok(Json(Info {
        model_id: c.model_id.clone(),
        model_sha: None,
        model_dtype: dtype.into(),
        model_type: model_type(&ready.engine, c.pooling),
        task: task.name().into(),
        device: device_name(c.device),
        max_concurrent_requests: c.max_concurrent_requests,
        max_input_length: ready.engine.model().max_input_length(),
        max_batch_tokens: c.max_batch_tokens,
        max_batch_requests: c.max_batch_requests,
        max_client_batch_size: c.max_client_batch_size,
        auto_truncate: c.auto_truncate,
        cuda_graphs: graphs.into(),
        tokenization_workers: tokio::runtime::Handle::current().metrics().num_workers(),
        version: env!("CARGO_PKG_VERSION"),
        sha: None,
        docker_label: None,
    }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus metrics", body = String)))]
pub(crate) async fn metrics() -> Response {
    let body = crate::metrics::handle().map_or(String::new(), |h| h.render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "convbert serve",
        description = "ConvBERT inference: the Text Embeddings Inference API, the Hugging Face Inference API, fill-mask, NER and QA"
    ),
    paths(
        health,
        info,
        metrics,
        crate::routes::embed::embed,
        crate::routes::embed::embed_all,
        crate::routes::embed::openai,
        crate::routes::predict::predict,
        crate::routes::tokenize::tokenize,
        crate::routes::tokenize::decode,
        crate::routes::tasks::fill_mask,
        crate::routes::tasks::ner,
        crate::routes::tasks::qa,
        crate::routes::inference_api::dispatch,
    ),
    components(schemas(ErrorResponse, Info, CudaGraphsInfo))
)]
struct ApiDoc;

/// The OpenAPI document.
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_as_the_device_flag_takes_them() {
        assert_eq!(device_name(Device::Cpu), "cpu");
        assert_eq!(device_name(Device::Cuda(1)), "cuda:1");
    }
}
