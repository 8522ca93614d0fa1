//! In the default padding-invariant mode, batching and sorting by length never change a result
//! (each equals the input run alone, unpadded, within 1e-5) nor the order of the results.

use std::path::PathBuf;

use convbert_pipelines::{
    FeatureExtractionPipeline, PipelineOptions, Pooling, QaInput, QaOptions,
    QuestionAnsweringPipeline,
};

fn model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/pipelines/models")
        .join(name)
}

const TEXTS: [&str; 5] = [
    "hi",
    "the capital of france is paris , and berlin is the capital of germany.",
    "John Smith lives in Paris.",
    "a",
    "He said: it is not that the weather was bad; it was amazing.",
];

#[test]
fn features_do_not_depend_on_batch_composition() {
    let single = FeatureExtractionPipeline::from_pretrained(
        model("mlm"),
        PipelineOptions {
            batch_size: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let batched = FeatureExtractionPipeline::from_pretrained(
        model("mlm"),
        PipelineOptions {
            batch_size: 3,
            ..Default::default()
        },
    )
    .unwrap();
    let a = single.run(&TEXTS, Pooling::None).unwrap();
    let b = batched.run(&TEXTS, Pooling::None).unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
        assert_eq!(x.size(), y.size(), "input {i} out of order");
        let d = (x - y).abs().max().double_value(&[]);
        assert!(d <= 1e-5, "input {i}: {d}");
    }
    // HF's exact padded mode does let the batch leak in (the reason for the default).
    let hf = FeatureExtractionPipeline::from_pretrained(
        model("mlm"),
        PipelineOptions {
            batch_size: 5,
            padding_invariant: false,
            ..Default::default()
        },
    )
    .unwrap();
    let c = hf.run(&TEXTS, Pooling::None).unwrap();
    let d = (a[0].as_ref().unwrap() - c[0].as_ref().unwrap())
        .abs()
        .max()
        .double_value(&[]);
    assert!(
        d > 1e-5,
        "padding did not change the padded HF-mode result ({d})"
    );
}

#[test]
fn qa_windows_batched_equal_unbatched() {
    let inputs: Vec<QaInput> = TEXTS
        .iter()
        .map(|t| QaInput {
            question: "who?".into(),
            context: t.to_string(),
        })
        .collect();
    let opts = QaOptions {
        top_k: 2,
        max_seq_len: Some(16),
        doc_stride: Some(4),
        ..Default::default()
    };
    let one = QuestionAnsweringPipeline::from_pretrained(
        model("qa"),
        PipelineOptions {
            batch_size: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let many = QuestionAnsweringPipeline::from_pretrained(
        model("qa"),
        PipelineOptions {
            batch_size: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let a = one.run(&inputs, &opts).unwrap();
    let b = many.run(&inputs, &opts).unwrap();
    for (x, y) in a.iter().zip(&b) {
        let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            assert_eq!((&p.answer, p.start, p.end), (&q.answer, q.start, q.end));
            assert!((p.score - q.score).abs() <= 1e-5);
        }
    }
}
