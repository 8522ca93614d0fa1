//! On a GPU, every pipeline gives the same results with CUDA graphs as without (fp32, within
//! 1e-5), and every batch of it replays from a graph that passed its check against eager: batches
//! padded up to a bucket (3 of 5 inputs per batch, or all 5 in one) and the server's path
//! (`BatchModel::forward_head` / `forward_features`). Runs with `CONVBERT_TEST_DEVICE=cuda` and
//! the `cuda-graphs` feature; elsewhere those tests say they are skipped. On the CPU the graph
//! counts say why every batch ran eagerly.

use std::path::PathBuf;

use convbert_pipelines::{
    AggregationStrategy, BatchModel, FeatureExtractionPipeline, FillMaskPipeline, PipelineOptions,
    Pooling, QaInput, QaOptions, QuestionAnsweringPipeline, TextClassificationPipeline, TextInput,
    TokenClassificationPipeline,
};
use convbert_testing::assert_json_close;
use serde::Serialize;

const TOL: f64 = 1e-5;

const TEXTS: [&str; 5] = [
    "paris is the [MASK] of france.",
    "the capital of france is paris , and berlin is the [MASK] of germany.",
    "John Smith lives in [MASK].",
    "a [MASK]",
    "He said: it is not that the weather was bad; it was [MASK].",
];

fn model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/pipelines/models")
        .join(name)
}

/// Options with and without graphs on the test GPU, or `None` (skipped).
fn options(batch_size: usize) -> Option<[PipelineOptions; 2]> {
    let name = std::env::var("CONVBERT_TEST_DEVICE").unwrap_or_default();
    let device = convbert_model::parse_device(&name).filter(|d| d.is_cuda());
    if device.is_none() || !cfg!(feature = "cuda-graphs") {
        eprintln!("skipped: needs CONVBERT_TEST_DEVICE=cuda and the cuda-graphs feature");
        return None;
    }
    let on = PipelineOptions {
        device: device?,
        batch_size,
        cuda_graphs: true,
        ..Default::default()
    };
    Some([
        on,
        PipelineOptions {
            cuda_graphs: false,
            ..on
        },
    ])
}

fn same<T: Serialize>(graphs: &T, eager: &T, what: &str) {
    let (a, b) = (
        serde_json::to_value(graphs).unwrap(),
        serde_json::to_value(eager).unwrap(),
    );
    let d = assert_json_close(&a, &b, TOL, what);
    eprintln!("{what}: graphs vs eager max |diff| {d:.2e}");
}

/// The pipeline with graphs replayed every batch of its run from a verified graph; the one
/// without ran every batch eagerly.
fn used_graphs<P: BatchModel>(on: &P, off: &P, what: &str) {
    let (s, e) = (
        on.cuda_graph_stats().unwrap(),
        off.cuda_graph_stats().unwrap(),
    );
    eprintln!("{what}: graphs {s:?}");
    assert_eq!(s.unavailable, None, "{what}");
    assert_eq!(s.failed_captures, 0, "{what}: {:?}", s.last_failure);
    assert!(s.captures >= 1 && s.replays >= s.captures, "{what}: {s:?}");
    assert_eq!(s.eager, 0, "{what}: {s:?}");
    assert!(e.unavailable.unwrap().contains("turned off"), "{what}");
    assert_eq!((e.replays, e.captures), (0, 0), "{what}");
    assert!(e.eager >= 1, "{what}");
}

fn ok<T>(results: Vec<convbert_pipelines::Result<T>>) -> Vec<T> {
    results.into_iter().map(|r| r.unwrap()).collect()
}

#[test]
fn on_the_cpu_every_batch_is_eager_and_the_stats_say_why() {
    let opts = PipelineOptions {
        batch_size: 3,
        ..Default::default()
    };
    let p = FillMaskPipeline::from_pretrained(model("mlm"), opts).unwrap();
    assert_eq!(p.cuda_graph_stats().unwrap().eager, 0);
    ok(p.run(&TEXTS, 1).unwrap());
    let s = p.cuda_graph_stats().unwrap();
    assert!(s.unavailable.unwrap().contains("need a CUDA device"));
    assert_eq!((s.eager, s.captures, s.replays, s.graphs), (2, 0, 0, 0));
    let off = PipelineOptions {
        cuda_graphs: false,
        ..opts
    };
    let p = FillMaskPipeline::from_pretrained(model("mlm"), off).unwrap();
    let why = p.cuda_graph_stats().unwrap().unavailable.unwrap();
    assert!(why.contains("turned off"), "{why}");
}

#[test]
fn fill_mask_and_token_classification() {
    for batch_size in [3, 32] {
        let Some(opts) = options(batch_size) else {
            return;
        };
        let [a, b] = opts.map(|o| FillMaskPipeline::from_pretrained(model("mlm"), o).unwrap());
        same(
            &ok(a.run(&TEXTS, 5).unwrap()),
            &ok(b.run(&TEXTS, 5).unwrap()),
            "fill-mask",
        );
        used_graphs(&a, &b, "fill-mask");
        let [a, b] =
            opts.map(|o| TokenClassificationPipeline::from_pretrained(model("tokcls"), o).unwrap());
        let run = |p: &TokenClassificationPipeline| {
            ok(p.run(&TEXTS, AggregationStrategy::None, &[]).unwrap())
        };
        same(&run(&a), &run(&b), "token classification");
        used_graphs(&a, &b, "token classification");
    }
}

#[test]
fn text_classification_and_question_answering() {
    let Some(opts) = options(3) else { return };
    let [a, b] =
        opts.map(|o| TextClassificationPipeline::from_pretrained(model("seqcls"), o).unwrap());
    let inputs: Vec<TextInput> = TEXTS
        .iter()
        .map(|t| TextInput {
            text: t.to_string(),
            text_pair: None,
        })
        .collect();
    let run = |p: &TextClassificationPipeline| ok(p.run(&inputs, None, None).unwrap());
    same(&run(&a), &run(&b), "text classification");
    used_graphs(&a, &b, "text classification");
    let [a, b] = opts.map(|o| QuestionAnsweringPipeline::from_pretrained(model("qa"), o).unwrap());
    let inputs: Vec<QaInput> = TEXTS
        .iter()
        .map(|t| QaInput {
            question: "where does he live?".into(),
            context: t.to_string(),
        })
        .collect();
    let run = |p: &QuestionAnsweringPipeline| ok(p.run(&inputs, &QaOptions::default()).unwrap());
    same(&run(&a), &run(&b), "question answering");
    used_graphs(&a, &b, "question answering");
}

#[test]
fn features_and_the_servers_batches() {
    let Some(opts) = options(3) else { return };
    let [a, b] = opts.map(|o| FeatureExtractionPipeline::from_pretrained(model("mlm"), o).unwrap());
    for (x, y) in ok(a.run(&TEXTS, Pooling::None).unwrap())
        .iter()
        .zip(ok(b.run(&TEXTS, Pooling::None).unwrap()))
    {
        assert_eq!(x.size(), y.size());
        let d = (x - y).abs().max().double_value(&[]);
        assert!(d <= TOL, "features: {d:.2e}");
    }
    used_graphs(&a, &b, "feature extraction");
    // The server's path: rows of several inputs packed into one batch.
    let [a, b] = opts.map(|o| FillMaskPipeline::from_pretrained(model("mlm"), o).unwrap());
    let prepared: Vec<_> = TEXTS
        .iter()
        .map(|t| a.prepare_text(t, None, None).unwrap())
        .collect();
    let rows: Vec<_> = prepared.iter().flat_map(|p| p.rows()).collect();
    for (x, y) in a
        .forward_head(&rows)
        .unwrap()
        .iter()
        .zip(b.forward_head(&rows).unwrap())
    {
        let d = (&x[0] - &y[0]).abs().max().double_value(&[]);
        assert!(d <= TOL, "forward_head: {d:.2e}");
    }
    for (x, y) in a
        .forward_features(&rows)
        .unwrap()
        .iter()
        .zip(b.forward_features(&rows).unwrap())
    {
        let d = (x - &y).abs().max().double_value(&[]);
        assert!(d <= TOL, "forward_features: {d:.2e}");
    }
    used_graphs(&a, &b, "the server's batches");
}
