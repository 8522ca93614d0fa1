//! Bad labels, bad inputs and checkpoints that do not fit the head give typed errors, never panics.

mod common;

use common::{heads_dir, read_run};
use convbert_heads::{
    ConvBertForMaskedLM, ConvBertForMultipleChoice, ConvBertForQuestionAnswering,
    ConvBertForSequenceClassification, ConvBertForTokenClassification, ConvBertHeadError, Labels,
    SpanPositions,
};
use convbert_model::{ConvBertConfig, ConvBertError, ConvBertInputs, ForwardOptions};
use tch::{Device, Kind, Tensor};

const CPU: Device = Device::Cpu;

fn ckpt(variant: &str) -> std::path::PathBuf {
    heads_dir().join(variant).join("checkpoint")
}

fn ids_inputs(ids: &Tensor) -> ConvBertInputs<'_> {
    ConvBertInputs {
        input_ids: Some(ids),
        ..Default::default()
    }
}

#[test]
fn masked_lm_rejects_bad_labels() {
    let model = ConvBertForMaskedLM::from_pretrained(ckpt("base/mlm"), CPU, Kind::Float).unwrap();
    let ids = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10]).view([2, 3]);
    let opts = ForwardOptions::default();
    let run = |labels: &Tensor| {
        model
            .forward_t(&ids_inputs(&ids), Some(labels), &opts, false)
            .map(|_| ())
    };
    let vocab = model.config().vocab_size;
    let out_of_range = Tensor::from_slice(&[1i64, -100, vocab, 3, 4, 5]).view([2, 3]);
    assert!(
        matches!(run(&out_of_range), Err(ConvBertHeadError::LabelOutOfRange { value, .. }) if value == vocab)
    );
    let negative = Tensor::from_slice(&[1i64, -1, 2, 3, 4, 5]).view([2, 3]);
    assert!(matches!(
        run(&negative),
        Err(ConvBertHeadError::LabelOutOfRange { value: -1, .. })
    ));
    assert!(matches!(
        run(&Tensor::zeros([2, 4], (Kind::Int64, CPU))),
        Err(ConvBertHeadError::Shape { .. })
    ));
    assert!(matches!(
        run(&Tensor::zeros([2, 3], (Kind::Float, CPU))),
        Err(ConvBertHeadError::Kind { .. })
    ));
    // All labels -100: NaN loss, as in PyTorch, not an error.
    let ignored = Tensor::full([2, 3], -100, (Kind::Int64, CPU));
    let out = model
        .forward_t(&ids_inputs(&ids), Some(&ignored), &opts, false)
        .unwrap();
    assert!(out.loss.unwrap().double_value(&[]).is_nan());
}

#[test]
fn sequence_classification_checks_labels_per_problem_type() {
    let model =
        ConvBertForSequenceClassification::from_pretrained(ckpt("base/seqcls"), CPU, Kind::Float)
            .unwrap();
    assert_eq!(model.labels().num_labels, 3);
    assert_eq!(model.labels().id2label[&2], "positive");
    assert_eq!(model.labels().label2id["neutral"], 1);
    let ids = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10]).view([2, 3]);
    let opts = ForwardOptions::default();
    let run = |labels: &Tensor| {
        model
            .forward_t(&ids_inputs(&ids), Some(labels), &opts, false)
            .map(|_| ())
    };
    assert!(matches!(
        run(&Tensor::from_slice(&[0i64, 3])),
        Err(ConvBertHeadError::LabelOutOfRange { value: 3, .. })
    ));
    assert!(matches!(
        run(&Tensor::from_slice(&[0i64, 1, 2])),
        Err(ConvBertHeadError::Shape { .. })
    ));
    // Float labels select multi-label BCE, which needs (batch, num_labels).
    assert!(matches!(
        run(&Tensor::from_slice(&[0.0f32, 1.0])),
        Err(ConvBertHeadError::Shape { .. })
    ));
    assert!(matches!(
        run(&Tensor::from_slice(&[true, false])),
        Err(ConvBertHeadError::Kind { .. })
    ));
    assert!(
        run(&Tensor::from_slice(&[0i32, 2])).is_ok(),
        "int32 class indices are accepted"
    );

    let regression = ConvBertForSequenceClassification::from_pretrained(
        ckpt("base/seqcls_regression"),
        CPU,
        Kind::Float,
    )
    .unwrap();
    let run = |labels: &Tensor| {
        regression
            .forward_t(&ids_inputs(&ids), Some(labels), &opts, false)
            .map(|_| ())
    };
    assert!(matches!(
        run(&Tensor::from_slice(&[0i64, 1])),
        Err(ConvBertHeadError::Kind { .. })
    ));
    assert!(matches!(
        run(&Tensor::from_slice(&[0.5f32, 1.0, 2.0])),
        Err(ConvBertHeadError::Shape { .. })
    ));
    assert!(run(&Tensor::from_slice(&[0.5f32, 1.0]).view([2, 1])).is_ok());
}

#[test]
fn token_classification_and_qa_check_labels() {
    let model =
        ConvBertForTokenClassification::from_pretrained(ckpt("base/tokcls"), CPU, Kind::Float)
            .unwrap();
    let ids = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10]).view([2, 3]);
    let opts = ForwardOptions::default();
    let labels = Tensor::from_slice(&[0i64, 5, -100, 1, 2, 3]).view([2, 3]);
    let err = model
        .forward_t(&ids_inputs(&ids), Some(&labels), &opts, false)
        .unwrap_err();
    assert!(
        matches!(err, ConvBertHeadError::LabelOutOfRange { value: 5, .. }),
        "{err}"
    );

    let qa =
        ConvBertForQuestionAnswering::from_pretrained(ckpt("base/qa"), CPU, Kind::Float).unwrap();
    let start = Tensor::from_slice(&[0i64, 1]);
    let float_end = Tensor::from_slice(&[0.0f32, 1.0]);
    let bad = SpanPositions {
        start_positions: &start,
        end_positions: &float_end,
    };
    assert!(matches!(
        qa.forward_t(&ids_inputs(&ids), Some(bad), &opts, false),
        Err(ConvBertHeadError::Kind { .. })
    ));
    let three = Tensor::from_slice(&[0i64, 1, 2]);
    let bad = SpanPositions {
        start_positions: &start,
        end_positions: &three,
    };
    assert!(matches!(
        qa.forward_t(&ids_inputs(&ids), Some(bad), &opts, false),
        Err(ConvBertHeadError::Shape { .. })
    ));
    // Out-of-range positions are not errors: HF clamps them and ignores those beyond the input.
    let far = Tensor::from_slice(&[100i64, -5]).view([2, 1]);
    let ok = SpanPositions {
        start_positions: &far,
        end_positions: &start,
    };
    assert!(qa
        .forward_t(&ids_inputs(&ids), Some(ok), &opts, false)
        .is_ok());
}

#[test]
fn multiple_choice_checks_choices_and_labels() {
    let model =
        ConvBertForMultipleChoice::from_pretrained(ckpt("base/mc"), CPU, Kind::Float).unwrap();
    let run = read_run("base/mc", "default");
    let ids = &run["in.input_ids"]; // (2, 3, 8)
    let opts = ForwardOptions::default();
    let short_mask = Tensor::ones([2, 2, 8], (Kind::Int64, CPU));
    let inputs = ConvBertInputs {
        input_ids: Some(ids),
        attention_mask: Some(&short_mask),
        ..Default::default()
    };
    let err = model.forward_t(&inputs, None, &opts, false).unwrap_err();
    assert!(
        matches!(
            err,
            ConvBertHeadError::Shape {
                what: "attention_mask",
                ..
            }
        ),
        "{err}"
    );
    let flat = ids.view([6, 8]);
    let err = model
        .forward_t(&ids_inputs(&flat), None, &opts, false)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConvBertHeadError::Shape {
                what: "input_ids",
                ..
            }
        ),
        "{err}"
    );
    let labels = Tensor::from_slice(&[0i64, 3]);
    let err = model
        .forward_t(&ids_inputs(ids), Some(&labels), &opts, false)
        .unwrap_err();
    assert!(
        matches!(err, ConvBertHeadError::LabelOutOfRange { value: 3, .. }),
        "{err}"
    );
    let err = model
        .forward_t(
            &ids_inputs(ids),
            Some(&Tensor::from_slice(&[0i64])),
            &opts,
            false,
        )
        .unwrap_err();
    assert!(
        matches!(err, ConvBertHeadError::Shape { what: "labels", .. }),
        "{err}"
    );
    // Bad ids are caught by the encoder and passed through typed.
    let too_big = ids + 1000;
    let err = model
        .forward_t(&ids_inputs(&too_big), None, &opts, false)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConvBertHeadError::Model(ConvBertError::InputIdOutOfRange { .. })
        ),
        "{err}"
    );
}

#[test]
fn checkpoint_head_shape_must_agree_with_num_labels() {
    let dir = ckpt("base/seqcls");
    let mut config = ConvBertConfig::from_file(dir.join("config.json")).unwrap();
    Labels::set_num_labels(&mut config, 5);
    let err = ConvBertForSequenceClassification::from_pretrained_with_config(
        &dir,
        config,
        CPU,
        Kind::Float,
    )
    .unwrap_err();
    match err {
        ConvBertHeadError::MismatchedWeights(names) => {
            assert!(
                names
                    .iter()
                    .any(|n| n.starts_with("classifier.out_proj.weight")),
                "{names:?}"
            );
        }
        other => panic!("expected MismatchedWeights, got {other}"),
    }
    // A QA head needs exactly 2 outputs.
    let mut config = ConvBertConfig::from_file(ckpt("base/qa").join("config.json")).unwrap();
    Labels::set_num_labels(&mut config, 3);
    let err = ConvBertForQuestionAnswering::from_config(config, CPU, Kind::Float).unwrap_err();
    assert!(
        matches!(err, ConvBertHeadError::Config { ref field, .. } if field == "num_labels"),
        "{err}"
    );
    // Loading a head checkpoint with another head's class: encoder loads, the head is new, the
    // other head's weights are reported unused (HF warns the same way).
    let model = ConvBertForTokenClassification::from_pretrained_with_config(
        ckpt("base/mlm"),
        ConvBertConfig::from_file(ckpt("base/tokcls").join("config.json")).unwrap(),
        CPU,
        Kind::Float,
    )
    .unwrap();
    let report = model.load_report().unwrap();
    assert_eq!(
        report.newly_initialized,
        ["classifier.bias", "classifier.weight"]
    );
    assert!(
        report.unused.iter().all(|k| k.starts_with("generator_")) && !report.unused.is_empty(),
        "{report}"
    );
    // A missing directory is a typed error from the locator.
    let err = ConvBertForMaskedLM::from_pretrained("/nonexistent/convbert", CPU, Kind::Float)
        .unwrap_err();
    assert!(matches!(err, ConvBertHeadError::Model(_)), "{err}");
}

#[test]
fn fresh_heads_follow_hf_init_and_config_options() {
    let mut config = ConvBertConfig::from_file(ckpt("base/mc_first").join("config.json")).unwrap();
    let model = ConvBertForMultipleChoice::from_config(config.clone(), CPU, Kind::Float).unwrap();
    let vars = model.var_store().variables();
    assert_eq!(vars["sequence_summary.summary.weight"].size(), [32, 32]);
    assert_eq!(vars["classifier.bias"].abs().max().double_value(&[]), 0.0);
    let std = vars["sequence_summary.summary.weight"]
        .std(true)
        .double_value(&[]);
    assert!(
        (std - config.initializer_range).abs() < 0.3 * config.initializer_range,
        "std {std}"
    );
    config.extra.insert("summary_type".into(), "attn".into());
    let err = ConvBertForMultipleChoice::from_config(config, CPU, Kind::Float).unwrap_err();
    assert!(
        matches!(err, ConvBertHeadError::Config { ref field, .. } if field == "summary_type"),
        "{err}"
    );
    let mut config = ConvBertConfig::from_file(ckpt("base/seqcls").join("config.json")).unwrap();
    config.extra.insert("problem_type".into(), "ranking".into());
    let err = ConvBertForSequenceClassification::from_config(config, CPU, Kind::Float).unwrap_err();
    assert!(
        matches!(err, ConvBertHeadError::Config { ref field, .. } if field == "problem_type"),
        "{err}"
    );
    let config = ConvBertConfig::from_file(ckpt("base/mlm").join("config.json")).unwrap();
    let mlm = ConvBertForMaskedLM::from_config(config, CPU, Kind::Double).unwrap();
    let vars = mlm.var_store().variables();
    assert_eq!(
        vars["generator_predictions.LayerNorm.weight"]
            .min()
            .double_value(&[]),
        1.0
    );
    assert_eq!(mlm.lm_head_weight().kind(), Kind::Double);
    assert_eq!(
        mlm.lm_head_weight().data_ptr(),
        vars["convbert.embeddings.word_embeddings.weight"].data_ptr()
    );
}
