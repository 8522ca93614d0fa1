//! Prometheus metrics with Text Embeddings Inference's `te_*` names: requests by route and
//! outcome, request / tokenization / queue / inference durations, input lengths, batch sizes and
//! tokens, queue size. One recorder per process (every server in it shares it).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use; `None` when another recorder
/// was installed first.
pub(crate) fn handle() -> Option<PrometheusHandle> {
    HANDLE.get_or_init(install).clone()
}

fn install() -> Option<PrometheusHandle> {
    // Seconds: 15 µs to about 5 min, geometric (TEI's buckets).
    let durations: Vec<f64> = (1..=35).map(|i| 0.00001 * 1.5f64.powi(i)).collect();
    let powers = |n: i32| (0..n).map(|x| 2f64.powi(x)).collect::<Vec<_>>();
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration".into()), &durations)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("te_request_input_length".into()), &powers(20))
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("te_batch_next_size".into()), &powers(13))
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("te_batch_next_tokens".into()), &powers(21))
        })
        .ok()?;
    builder.install_recorder().ok()
}
