//! The router: routes, the body limit, the bearer-token check, the admission limit (429 at
//! once beyond `--max-concurrent-requests`), per-route metrics, request tracing (`RUST_LOG`),
//! a handler panic answered as a JSON 500, and JSON 404 / 405 answers.

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::error::{ApiError, ErrorType};
use crate::routes::{embed, inference_api, info, predict, tasks, tokenize};
use crate::state::SharedState;

/// Every route with its layers.
pub(crate) fn router(state: SharedState) -> Router {
    let inference = Router::new()
        .route("/", post(inference_api::dispatch))
        .route("/embed", post(embed::embed))
        .route("/embed_all", post(embed::embed_all))
        .route("/embeddings", post(embed::openai))
        .route("/v1/embeddings", post(embed::openai))
        .route("/predict", post(predict::predict))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/decode", post(tokenize::decode))
        .route("/fill_mask", post(tasks::fill_mask))
        .route("/ner", post(tasks::ner))
        .route("/qa", post(tasks::qa))
        .route("/info", get(info::info))
        .route_layer(middleware::from_fn_with_state(state.clone(), admit))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    let public = Router::new()
        .route("/health", get(info::health))
        .route("/metrics", get(info::metrics))
        .route("/api-doc/openapi.json", get(info::openapi));
    inference
        .merge(public)
        .route_layer(middleware::from_fn(track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.payload_limit))
        .layer(CatchPanicLayer::custom(panicked))
        // Error answers are part of the API (503 while loading, 429 when full): traced at debug.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)))
        .with_state(state)
}

/// A handler that panicked fails its own request only.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorType::Backend,
        "internal error while handling this request",
    )
    .into_response()
}

/// 401 unless the request carries `Authorization: Bearer <--api-key>`.
async fn authorize(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorType::Unauthorized,
                "missing or wrong API key (Authorization: Bearer <key>)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// 429 at once when `--max-concurrent-requests` requests are already in flight.
async fn admit(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Overloaded,
            format!(
                "model is overloaded: {} requests in flight (--max-concurrent-requests)",
                state.config.max_concurrent_requests
            ),
        )
        .into_response();
    };
    let _in_flight = InFlight::enter();
    next.run(req).await
}

/// `te_request_in_flight`: admitted requests not yet answered (a dropped request leaves too).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!("te_request_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("te_request_in_flight").decrement(1.0);
    }
}

/// Counts every request by route and outcome and times it.
async fn track(path: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let route = path.map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    metrics::counter!("te_request_count", "route" => route.clone()).increment(1);
    if status.is_success() {
        metrics::counter!("te_request_success", "route" => route.clone()).increment(1);
    } else {
        metrics::counter!("te_request_failure", "route" => route.clone(), "status" => status.as_u16().to_string())
            .increment(1);
    }
    metrics::histogram!("te_request_duration", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorType::NotFound,
        format!("no route {}", req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::NotFound,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use super::router;
    use crate::config::ServeConfig;
    use crate::state::AppState;

    /// One HTTP/1.1 request over a fresh connection; the status and the body.
    fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let body = r#"{"inputs": "a"}"#;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer[9..12].parse().unwrap();
        let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    /// The server listens before the model is loaded (so a balancer sees it): until then
    /// /health and every model route answer 503 `Unhealthy`.
    #[test]
    fn health_and_model_routes_answer_503_until_the_model_is_ready() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(Arc::new(AppState::new(ServeConfig::new("not-loaded"))));
        runtime.spawn(async move { axum::serve(listener, app).await });
        for (method, path) in [
            ("GET", "/health"),
            ("GET", "/info"),
            ("POST", "/embed"),
            ("POST", "/fill_mask"),
            ("POST", "/"),
        ] {
            let (status, body) = request(addr, method, path);
            assert_eq!(status, 503, "{method} {path}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error_type"], "Unhealthy", "{method} {path}: {body}");
            assert_eq!(v["error"], "the model is loading", "{method} {path}");
        }
        let (status, _) = request(addr, "GET", "/api-doc/openapi.json");
        assert_eq!(status, 200);
    }
}
