//! Config parsing (HF defaults, extras round trip, both model_type spellings, validation) and
//! bad inputs giving typed errors rather than panics or aborts.

mod common;

use common::fixtures;
use convbert_model::{
    Activation, ConvBertConfig, ConvBertError, ConvBertInputs, ConvBertModel, ForwardOptions,
};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

#[test]
fn absent_keys_take_hf_defaults() {
    let cfg = ConvBertConfig::from_json_str("{}").unwrap();
    assert_eq!(cfg, ConvBertConfig::default());
    assert_eq!(
        (
            cfg.vocab_size,
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.num_attention_heads,
            cfg.intermediate_size
        ),
        (30522, 768, 12, 12, 3072)
    );
    assert_eq!(cfg.hidden_act, "gelu");
    assert_eq!(
        (cfg.hidden_dropout_prob, cfg.attention_probs_dropout_prob),
        (0.1, 0.1)
    );
    assert_eq!((cfg.max_position_embeddings, cfg.type_vocab_size), (512, 2));
    assert_eq!((cfg.initializer_range, cfg.layer_norm_eps), (0.02, 1e-12));
    assert_eq!(
        (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id),
        (Some(1), Some(0), Some(2))
    );
    assert_eq!(
        (
            cfg.embedding_size,
            cfg.head_ratio,
            cfg.conv_kernel_size,
            cfg.num_groups
        ),
        (768, 2, 9, 1)
    );
    assert_eq!(cfg.classifier_dropout, None);
    assert_eq!((cfg.attention_heads(), cfg.attention_head_size()), (6, 64));
}

#[test]
fn unknown_keys_round_trip_and_both_model_type_spellings_load() {
    let text = r#"{"model_type": "conv_bert", "hidden_size": 64, "num_attention_heads": 4, "embedding_size": 32,
        "intermediate_size": 128, "id2label": {"0": "NEG", "1": "POS", "2": "MIX"}, "label2id": {"NEG": 0},
        "problem_type": "single_label_classification", "summary_type": "first", "summary_use_proj": true,
        "architectures": ["ConvBertForSequenceClassification"], "classifier_dropout": 0.2}"#;
    let cfg = ConvBertConfig::from_json_str(text).unwrap();
    assert_eq!(cfg.model_type, "conv_bert");
    assert_eq!(cfg.num_labels(), 3);
    assert_eq!(cfg.extra("summary_type").unwrap(), "first");
    let path = std::env::temp_dir().join(format!("convbert-config-{}.json", std::process::id()));
    cfg.to_file(&path).unwrap();
    let back = ConvBertConfig::from_file(&path).unwrap();
    assert_eq!(back, cfg);
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(raw["problem_type"], "single_label_classification");
    assert_eq!(raw["label2id"]["NEG"], 0);
    assert_eq!(raw["classifier_dropout"], 0.2);
    // Every golden config.json written by transformers round-trips too.
    for case in ["base", "grouped_bin", "prefixed"] {
        let p = fixtures().join(case).join("checkpoint").join("config.json");
        let cfg = ConvBertConfig::from_file(&p).unwrap();
        assert_eq!(cfg.model_type, "convbert");
        cfg.to_file(&path).unwrap();
        let a: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(a, b, "{case}");
    }
}

fn config_error(json: &str) -> String {
    match ConvBertConfig::from_json_str(json) {
        Err(ConvBertError::Config { field, reason }) => format!("{field}: {reason}"),
        other => panic!("expected a Config error for {json}, got {other:?}"),
    }
}

#[test]
fn invalid_configs_name_the_field() {
    assert!(
        config_error(r#"{"hidden_size": 30, "num_attention_heads": 8}"#)
            .starts_with("num_attention_heads")
    );
    assert!(config_error(r#"{"num_groups": 5}"#).starts_with("num_groups"));
    assert!(config_error(r#"{"conv_kernel_size": 8}"#).starts_with("conv_kernel_size"));
    assert!(config_error(r#"{"hidden_act": "gelu_10"}"#).starts_with("hidden_act"));
    assert!(config_error(r#"{"model_type": "bert"}"#).starts_with("model_type"));
    assert!(config_error(r#"{"head_ratio": 0}"#).starts_with("head_ratio"));
    assert!(matches!(
        ConvBertConfig::from_json_str("[1, 2"),
        Err(ConvBertError::Json { .. })
    ));
    // HF clamps to one self-attention head when num_attention_heads < head_ratio.
    let cfg = ConvBertConfig::from_json_str(
        r#"{"hidden_size": 32, "num_attention_heads": 2, "head_ratio": 4}"#,
    )
    .unwrap();
    assert_eq!((cfg.attention_heads(), cfg.attention_head_size()), (1, 16));
}

#[test]
fn activations_match_their_hf_formulas() {
    let x = Tensor::linspace(-4.0, 4.0, 101, (Kind::Double, Device::Cpu));
    let erf_gelu = &x * 0.5 * ((&x / 2f64.sqrt()).erf() + 1.0);
    let tanh_gelu = &x
        * 0.5
        * (((&x + x.pow_tensor_scalar(3.0) * 0.044715) * (2.0 / std::f64::consts::PI).sqrt())
            .tanh()
            + 1.0);
    let cases = [
        ("gelu", erf_gelu),
        ("gelu_new", tanh_gelu.shallow_clone()),
        ("gelu_pytorch_tanh", tanh_gelu.shallow_clone()),
        ("gelu_fast", tanh_gelu),
        ("quick_gelu", &x * (&x * 1.702).sigmoid()),
        ("relu", x.relu()),
        ("silu", &x * x.sigmoid()),
        ("swish", &x * x.sigmoid()),
        ("tanh", x.tanh()),
    ];
    for (name, expected) in cases {
        let got = Activation::from_name(name).unwrap().apply(&x).unwrap();
        let d = (&got - &expected).abs().max().double_value(&[]);
        assert!(d < 1e-9, "{name}: {d}");
    }
}

fn tiny() -> (ConvBertModel, VarStore) {
    let cfg = ConvBertConfig::from_json_str(
        r#"{"vocab_size": 20, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 24, "embedding_size": 8, "max_position_embeddings": 10, "type_vocab_size": 2}"#,
    )
    .unwrap();
    let vs = VarStore::new(Device::Cpu);
    let model = ConvBertModel::new(&vs.root(), &cfg).unwrap();
    (model, vs)
}

fn run(model: &ConvBertModel, inputs: ConvBertInputs) -> Result<Tensor, ConvBertError> {
    model
        .forward_t(&inputs, &ForwardOptions::default(), false)
        .map(|o| o.last_hidden_state)
}

fn ids(v: &[i64], b: i64) -> Tensor {
    Tensor::from_slice(v).view([b, -1])
}

#[test]
fn bad_inputs_give_typed_errors() {
    let (m, _vs) = tiny();
    let good = ids(&[1, 2, 3, 4], 2);
    assert_eq!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&good),
                ..Default::default()
            }
        )
        .unwrap()
        .size(),
        [2, 2, 16]
    );

    let too_big = ids(&[1, 20], 1);
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&too_big),
                ..Default::default()
            }
        ),
        Err(ConvBertError::InputIdOutOfRange {
            value: 20,
            limit: 20,
            ..
        })
    ));
    let negative = ids(&[-1, 2], 1);
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&negative),
                ..Default::default()
            }
        ),
        Err(ConvBertError::InputIdOutOfRange { value: -1, .. })
    ));
    let long = Tensor::ones([1, 11], (Kind::Int64, Device::Cpu));
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&long),
                ..Default::default()
            }
        ),
        Err(ConvBertError::SequenceTooLong { len: 11, max: 10 })
    ));
    let mask = Tensor::ones([2, 3], (Kind::Int64, Device::Cpu));
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&good),
                attention_mask: Some(&mask),
                ..Default::default()
            }
        ),
        Err(ConvBertError::Shape { .. })
    ));
    let floats = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&floats),
                ..Default::default()
            }
        ),
        Err(ConvBertError::Kind { .. })
    ));
    let empty = Tensor::zeros([0, 4], (Kind::Int64, Device::Cpu));
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&empty),
                ..Default::default()
            }
        ),
        Err(ConvBertError::Input(_))
    ));
    let flat = Tensor::from_slice(&[1i64, 2]);
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&flat),
                ..Default::default()
            }
        ),
        Err(ConvBertError::Shape { .. })
    ));
    assert!(matches!(
        run(&m, ConvBertInputs::default()),
        Err(ConvBertError::Input(_))
    ));
    let embeds = Tensor::zeros([2, 2, 8], (Kind::Float, Device::Cpu));
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&good),
                inputs_embeds: Some(&embeds),
                ..Default::default()
            }
        ),
        Err(ConvBertError::Input(_))
    ));
    let wrong_embeds = Tensor::zeros([2, 2, 16], (Kind::Float, Device::Cpu));
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                inputs_embeds: Some(&wrong_embeds),
                ..Default::default()
            }
        ),
        Err(ConvBertError::Shape { .. })
    ));
    let types = ids(&[0, 2, 1, 0], 2);
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&good),
                token_type_ids: Some(&types),
                ..Default::default()
            }
        ),
        Err(ConvBertError::InputIdOutOfRange {
            value: 2,
            limit: 2,
            ..
        })
    ));
    let positions = ids(&[0, 10], 1);
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&good),
                position_ids: Some(&positions),
                ..Default::default()
            }
        ),
        Err(ConvBertError::InputIdOutOfRange { value: 10, .. })
    ));
    // head_mask of num_attention_heads (2) instead of the real heads (1) fails, as in HF.
    let hm = Tensor::ones([2], (Kind::Float, Device::Cpu));
    assert!(matches!(
        run(
            &m,
            ConvBertInputs {
                input_ids: Some(&good),
                head_mask: Some(&hm),
                ..Default::default()
            }
        ),
        Err(ConvBertError::Shape { .. })
    ));
}

#[test]
fn int32_ids_bool_masks_and_row_positions_are_accepted() {
    let (m, _vs) = tiny();
    let ids64 = ids(&[1, 2, 3, 4, 5, 6], 2);
    let mask = ids(&[1, 1, 0, 1, 1, 1], 2);
    let base = run(
        &m,
        ConvBertInputs {
            input_ids: Some(&ids64),
            attention_mask: Some(&mask),
            ..Default::default()
        },
    )
    .unwrap();
    let ids32 = ids64.to_kind(Kind::Int);
    let bool_mask = mask.to_kind(Kind::Bool);
    let pos = Tensor::arange(3, (Kind::Int64, Device::Cpu)).view([1, 3]);
    let other = run(
        &m,
        ConvBertInputs {
            input_ids: Some(&ids32),
            attention_mask: Some(&bool_mask),
            position_ids: Some(&pos),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(base.equal(&other));
}

#[test]
fn prevalidated_ids_skip_only_the_range_check_and_only_in_scope() {
    let (m, _vs) = tiny();
    let good = ids(&[1, 2, 3], 1);
    let inputs = ConvBertInputs {
        input_ids: Some(&good),
        ..Default::default()
    };
    let checked = run(&m, inputs).unwrap();
    let skipped = convbert_model::with_prevalidated_ids(|| run(&m, inputs)).unwrap();
    assert!(checked.equal(&skipped));
    // Out of range: the embedding itself fails (CPU), not the host check.
    let too_big = ids(&[1, 20], 1);
    let bad = ConvBertInputs {
        input_ids: Some(&too_big),
        ..Default::default()
    };
    let inside = convbert_model::with_prevalidated_ids(|| run(&m, bad));
    assert!(matches!(inside, Err(ConvBertError::Tch(_))), "{inside:?}");
    assert!(matches!(
        run(&m, bad),
        Err(ConvBertError::InputIdOutOfRange { value: 20, .. })
    ));
}
