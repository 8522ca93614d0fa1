//! Every pipeline against Hugging Face `pipeline(...)` outputs on the tiny fixture checkpoints
//! (fixtures/gen_pipelines.py): HF ran each input alone; we run them batched and sorted by length
//! in the default padding-invariant mode. Scores within 1e-4; labels, spans, offsets, tokens and
//! texts exactly.

use std::path::PathBuf;

use convbert_heads::ConvBertForTokenClassification;
use convbert_pipelines::{
    AggregationStrategy, FeatureExtractionPipeline, FillMaskPipeline, PipelineOptions, Pooling,
    QaInput, QaOptions, QuestionAnsweringPipeline, ScoreFunction, TextClassificationPipeline,
    TextInput, TextTokenizer, TokenClassificationPipeline,
};
use serde_json::Value;

const SCORE_TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pipelines")
}

fn golden(name: &str) -> (PathBuf, Vec<Value>) {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let model = fixtures().join(v["model"].as_str().unwrap());
    (model, v["cases"].as_array().unwrap().clone())
}

fn options() -> PipelineOptions {
    PipelineOptions {
        batch_size: 4,
        ..Default::default()
    }
}

/// `ours` (serialised) against HF's value: scores within SCORE_TOL, the rest exactly; the largest
/// score difference.
fn compare(ours: &Value, hf: &Value, path: &str) -> f64 {
    convbert_testing::assert_json_close(ours, hf, SCORE_TOL, path)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// HF's `get_target_ids`: vocabulary tokens as they are, others by their first token (warned),
/// nothing-tokens ignored (warned), duplicates dropped, none left an error.
#[test]
fn fill_mask_targets_resolve_as_hf() {
    let (model, _) = golden("fill_mask.json");
    let pipe = FillMaskPipeline::from_pretrained(&model, options()).unwrap();
    let t = pipe.targets(&["capital", "capitals", "", "city"]).unwrap();
    let (capital, city) = (3001, 2103);
    assert_eq!(t.ids, [city, capital]);
    assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
    assert!(
        t.warnings[0].contains("`capitals`")
            && t.warnings[0].ends_with("Replacing with `capital`.")
    );
    assert!(t.warnings[1].contains("ignoring it"));
    let err = pipe.targets(&["", " "]).unwrap_err();
    assert!(err.to_string().contains("At least one target"), "{err}");
}

#[test]
fn fill_mask_matches_hf() {
    let (model, cases) = golden("fill_mask.json");
    let pipe = FillMaskPipeline::from_pretrained(&model, options()).unwrap();
    assert!(pipe.warnings().is_empty());
    let mut worst: f64 = 0.0;
    for case in &cases {
        let texts = strs(&case["inputs"]);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let k = case["args"]["top_k"].as_u64().unwrap() as usize;
        let out = match case["args"].get("targets") {
            Some(t) => {
                let targets = strs(t);
                let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
                let resolved = pipe.targets(&targets).unwrap();
                pipe.run_with_targets(&refs, k, &resolved)
            }
            None => pipe.run(&refs, k),
        };
        let out: Vec<_> = out.unwrap().into_iter().map(Result::unwrap).collect();
        worst = worst.max(compare(
            &serde_json::to_value(&out).unwrap(),
            &case["outputs"],
            "fill",
        ));
    }
    eprintln!(
        "fill-mask: {} cases, max score diff {worst:.2e}",
        cases.len()
    );
}

#[test]
fn text_classification_matches_hf() {
    let (model, cases) = golden("text_classification.json");
    let pipe = TextClassificationPipeline::from_pretrained(&model, options()).unwrap();
    let mut worst: f64 = 0.0;
    for case in &cases {
        let inputs: Vec<TextInput> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| match x {
                Value::String(s) => TextInput {
                    text: s.clone(),
                    text_pair: None,
                },
                other => serde_json::from_value(other.clone()).unwrap(),
            })
            .collect();
        let args = &case["args"];
        let top_k = args["top_k"].as_u64().map(|k| k as usize);
        let function = match args["function_to_apply"].as_str() {
            Some("sigmoid") => Some(ScoreFunction::Sigmoid),
            Some(other) => panic!("{other}"),
            None => None,
        };
        let out: Vec<_> = pipe
            .run(&inputs, top_k, function)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        worst = worst.max(compare(
            &serde_json::to_value(&out).unwrap(),
            &case["outputs"],
            "cls",
        ));
    }
    eprintln!(
        "text-classification: {} cases, max score diff {worst:.2e}",
        cases.len()
    );
}

#[test]
fn token_classification_matches_hf() {
    let (model, cases) = golden("token_classification.json");
    let pipe = TokenClassificationPipeline::from_pretrained(&model, options()).unwrap();
    let mut worst: f64 = 0.0;
    for case in &cases {
        let texts = strs(&case["inputs"]);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let strategy = match case["args"]["aggregation_strategy"].as_str().unwrap() {
            "none" => AggregationStrategy::None,
            "simple" => AggregationStrategy::Simple,
            "first" => AggregationStrategy::First,
            "average" => AggregationStrategy::Average,
            "max" => AggregationStrategy::Max,
            other => panic!("{other}"),
        };
        let out = match case["args"].get("stride") {
            // HF pads a text's windows together and runs each alone: its exact numbers need
            // HF's padded mode, one window per forward.
            Some(stride) => {
                let max_len = case["args"]["model_max_length"].as_u64().unwrap() as usize;
                let exact = PipelineOptions {
                    batch_size: 1,
                    padding_invariant: false,
                    ..options()
                };
                let model_dir = model.clone();
                let head = ConvBertForTokenClassification::from_pretrained(
                    &model_dir,
                    exact.device,
                    exact.kind,
                )
                .unwrap();
                let tok = TextTokenizer::from_dir(&model_dir)
                    .unwrap()
                    .with_model_max_length(Some(max_len));
                let strided = TokenClassificationPipeline::new(head, tok, exact).unwrap();
                strided.run_with_stride(&refs, strategy, &["O"], stride.as_u64().unwrap() as usize)
            }
            None => pipe.run(&refs, strategy, &["O"]),
        };
        let out: Vec<_> = out.unwrap().into_iter().map(Result::unwrap).collect();
        let name = format!("ner[{strategy:?}, {}]", case["args"]);
        worst = worst.max(compare(
            &serde_json::to_value(&out).unwrap(),
            &case["outputs"],
            &name,
        ));
    }
    eprintln!(
        "token-classification: {} cases, max score diff {worst:.2e}",
        cases.len()
    );
}

#[test]
fn stride_needs_aggregation_and_a_stride_below_the_window() {
    let (model, _) = golden("token_classification.json");
    let pipe = TokenClassificationPipeline::from_pretrained(&model, options()).unwrap();
    let err = pipe
        .run_with_stride(&["a text"], AggregationStrategy::None, &["O"], 4)
        .unwrap_err();
    assert!(
        err.to_string().contains("please select another one"),
        "{err}"
    );
    // The fixture tokenizer's model_max_length is 512.
    let err = pipe
        .run_with_stride(&["a text"], AggregationStrategy::Simple, &["O"], 512)
        .unwrap_err();
    assert!(err.to_string().contains("must be less than"), "{err}");
}

#[test]
fn question_answering_matches_hf() {
    let (model, cases) = golden("question_answering.json");
    let pipe = QuestionAnsweringPipeline::from_pretrained(&model, options()).unwrap();
    let mut worst: f64 = 0.0;
    for case in &cases {
        let inputs: Vec<QaInput> = serde_json::from_value(case["inputs"].clone()).unwrap();
        let a = &case["args"];
        let opts = QaOptions {
            top_k: a["top_k"].as_u64().unwrap_or(1) as usize,
            max_seq_len: a["max_seq_len"].as_u64().map(|v| v as usize),
            doc_stride: a["doc_stride"].as_u64().map(|v| v as usize),
            max_answer_len: a["max_answer_len"].as_u64().unwrap_or(15) as usize,
            handle_impossible_answer: a["handle_impossible_answer"].as_bool().unwrap_or(false),
            ..Default::default()
        };
        let out: Vec<_> = pipe
            .run(&inputs, &opts)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let name = format!("qa{a}");
        worst = worst.max(compare(
            &serde_json::to_value(&out).unwrap(),
            &case["outputs"],
            &name,
        ));
    }
    eprintln!(
        "question-answering: {} cases, max score diff {worst:.2e}",
        cases.len()
    );
}

#[test]
fn feature_extraction_matches_hf() {
    let (model, cases) = golden("feature_extraction.json");
    let pipe = FeatureExtractionPipeline::from_pretrained(&model, options()).unwrap();
    for case in &cases {
        let texts = strs(&case["inputs"]);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let out = pipe.run(&refs, Pooling::None).unwrap();
        for (i, (ours, hf)) in out
            .into_iter()
            .zip(case["outputs"].as_array().unwrap())
            .enumerate()
        {
            let ours = ours.unwrap();
            let hf: Vec<Vec<f64>> = serde_json::from_value(hf.clone()).unwrap();
            assert_eq!(
                ours.size(),
                [hf.len() as i64, hf[0].len() as i64],
                "text {i}"
            );
            let flat = Vec::<f32>::try_from(&ours.flatten(0, -1)).unwrap();
            let worst = flat
                .iter()
                .zip(hf.iter().flatten())
                .map(|(a, b)| (f64::from(*a) - b).abs())
                .fold(0.0, f64::max);
            assert!(worst <= 1e-5, "text {i}: max diff {worst}");
        }
    }
}
