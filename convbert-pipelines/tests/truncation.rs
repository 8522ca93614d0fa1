//! HF's `truncation=True` / `max_length` against Hugging Face `pipeline(...)` outputs on the tiny
//! fixture checkpoints (fixtures/gen_pipelines.py `generate_truncation`, written to
//! fixtures/pipelines/truncation.json): texts longer than the 512 positions cut to the default
//! length, short ones to `max_length`, right and left side, text pairs; scores and features
//! within 1e-4, the rest exactly. Then the refusals: a `max_length` below the special tokens, and
//! truncation with stride windows.

use std::path::PathBuf;

use convbert_pipelines::{
    AggregationStrategy, BatchModel, FeatureExtractionPipeline, FillMaskPipeline, PipelineError,
    PipelineOptions, Pooling, TextClassificationPipeline, TextInput, TokenClassificationPipeline,
    Truncation, TruncationSide,
};
use serde_json::Value;

const TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pipelines")
}

fn options() -> PipelineOptions {
    PipelineOptions {
        batch_size: 4,
        ..Default::default()
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// The case's truncation: `max_length` (null: the default) on `side` (absent: right).
fn truncation(args: &Value) -> Option<Truncation> {
    Some(Truncation {
        max_length: args["max_length"].as_u64().map(|n| n as usize),
        side: match args["side"].as_str() {
            Some("left") => TruncationSide::Left,
            _ => TruncationSide::Right,
        },
    })
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap()
}

/// Our results (serialised) for one golden case.
fn run_case(case: &Value) -> Value {
    let model = fixtures().join(case["model"].as_str().unwrap());
    let args = &case["args"];
    let texts = match case["task"].as_str().unwrap() {
        "text-classification" => Vec::new(),
        _ => strs(&case["inputs"]),
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    match case["task"].as_str().unwrap() {
        "fill-mask" => {
            let pipe = FillMaskPipeline::from_pretrained(&model, options())
                .unwrap()
                .with_truncation(truncation(args))
                .unwrap();
            let k = args["top_k"].as_u64().unwrap() as usize;
            let out: Vec<_> = pipe.run(&refs, k).unwrap();
            to_value(out.into_iter().map(Result::unwrap).collect::<Vec<_>>())
        }
        "text-classification" => {
            let pipe = TextClassificationPipeline::from_pretrained(&model, options())
                .unwrap()
                .with_truncation(truncation(args))
                .unwrap();
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
            let out = pipe.run(&inputs, None, None).unwrap();
            to_value(out.into_iter().map(Result::unwrap).collect::<Vec<_>>())
        }
        "token-classification" => {
            let pipe = TokenClassificationPipeline::from_pretrained(&model, options())
                .unwrap()
                .with_truncation(truncation(args))
                .unwrap();
            let strategy = match args["aggregation_strategy"].as_str().unwrap() {
                "none" => AggregationStrategy::None,
                "simple" => AggregationStrategy::Simple,
                other => panic!("{other}"),
            };
            let out = pipe.run(&refs, strategy, &["O"]).unwrap();
            to_value(out.into_iter().map(Result::unwrap).collect::<Vec<_>>())
        }
        "feature-extraction" => {
            let pipe = FeatureExtractionPipeline::from_pretrained(&model, options())
                .unwrap()
                .with_truncation(truncation(args))
                .unwrap();
            let out = pipe.run(&refs, Pooling::None).unwrap();
            let rows: Vec<Vec<Vec<f32>>> = out
                .into_iter()
                .map(|t| Vec::<Vec<f32>>::try_from(&t.unwrap()).unwrap())
                .collect();
            to_value(rows)
        }
        other => panic!("unknown task {other}"),
    }
}

#[test]
fn truncation_matches_hf() {
    let text = std::fs::read_to_string(fixtures().join("truncation.json")).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    let mut worst: f64 = 0.0;
    for case in cases {
        let name = format!("{}[{}]", case["task"], case["args"]);
        let diff =
            convbert_testing::assert_json_close(&run_case(case), &case["outputs"], TOL, &name);
        worst = worst.max(diff);
    }
    assert_eq!(cases.len(), 13);
    eprintln!("truncation: {} cases, max diff {worst:.2e}", cases.len());
}

fn is_option(e: &PipelineError, option: &str) -> bool {
    matches!(e, PipelineError::Option { name, .. } if *name == option)
}

#[test]
fn without_truncation_a_long_text_is_an_input_error() {
    let model = fixtures().join("models/seqcls");
    let pipe = TextClassificationPipeline::from_pretrained(&model, options()).unwrap();
    let long = TextInput {
        text: "paris is the capital of france . ".repeat(80),
        text_pair: None,
    };
    let err = pipe.prepare(&long).unwrap_err();
    assert!(err.is_too_long(), "{err}");
    let pipe = pipe.with_truncation(Some(Truncation::default())).unwrap();
    // The default max_length: model_max_length (512) bounded by max_position_embeddings (512).
    assert_eq!(pipe.prepare(&long).unwrap().rows()[0].len(), 512);
    assert_eq!(pipe.max_input_length(), 512);
}

#[test]
fn max_length_below_the_special_tokens_is_refused() {
    let dir = |m: &str| fixtures().join("models").join(m);
    let short = |n| {
        Some(Truncation {
            max_length: Some(n),
            side: TruncationSide::Right,
        })
    };
    let fill = FillMaskPipeline::from_pretrained(dir("mlm"), options()).unwrap();
    assert!(is_option(
        &fill.with_truncation(short(1)).unwrap_err(),
        "max_length"
    ));
    let feat = FeatureExtractionPipeline::from_pretrained(dir("mlm"), options()).unwrap();
    assert!(is_option(
        &feat.with_truncation(short(0)).unwrap_err(),
        "max_length"
    ));
    let ner = TokenClassificationPipeline::from_pretrained(dir("tokcls"), options()).unwrap();
    assert!(is_option(
        &ner.with_truncation(short(1)).unwrap_err(),
        "max_length"
    ));

    // [CLS] [SEP] fit in 2; a pair needs 3 ([CLS] a [SEP] b [SEP]): refused per input.
    let cls = TextClassificationPipeline::from_pretrained(dir("seqcls"), options())
        .unwrap()
        .with_truncation(short(2))
        .unwrap();
    let single = TextInput {
        text: "paris is the capital".into(),
        text_pair: None,
    };
    assert_eq!(cls.prepare(&single).unwrap().rows()[0].len(), 2);
    let pair = TextInput {
        text_pair: Some("of france".into()),
        ..single.clone()
    };
    let out = cls.run(&[pair, single], None, None).unwrap();
    assert!(is_option(out[0].as_ref().unwrap_err(), "max_length"));
    assert!(out[1].is_ok());
}

#[test]
fn fill_mask_with_the_mask_cut_away_is_an_input_error() {
    let model = fixtures().join("models/mlm");
    let pipe = FillMaskPipeline::from_pretrained(&model, options())
        .unwrap()
        .with_truncation(Some(Truncation {
            max_length: Some(4),
            side: TruncationSide::Right,
        }))
        .unwrap();
    let out = pipe.run(&["the river is near the [MASK]."], 1).unwrap();
    assert!(matches!(&out[0], Err(PipelineError::Input(m)) if m.contains("[MASK]")));
}

#[test]
fn truncation_and_stride_are_exclusive() {
    let model = fixtures().join("models/tokcls");
    let pipe = TokenClassificationPipeline::from_pretrained(&model, options())
        .unwrap()
        .with_truncation(Some(Truncation::default()))
        .unwrap();
    let simple = AggregationStrategy::Simple;
    assert!(is_option(
        &pipe.check_stride(simple, 4).unwrap_err(),
        "stride"
    ));
    let err = pipe
        .run_with_stride(&["hi"], simple, &["O"], 4)
        .unwrap_err();
    assert!(is_option(&err, "stride"));
    assert!(is_option(
        &pipe.prepare("hi", Some(4)).unwrap_err(),
        "stride"
    ));
    let pipe = pipe.with_truncation(None).unwrap();
    assert!(pipe.run_with_stride(&["hi"], simple, &["O"], 4).is_ok());
}
