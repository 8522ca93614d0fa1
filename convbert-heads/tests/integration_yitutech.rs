//! The public YituTech checkpoints are encoder-only: loaded into each head, the report must say
//! that exactly the head's keys are newly initialised. Needs the checkpoint on disk.

use convbert_heads::{
    ConvBertForMaskedLM, ConvBertForMultipleChoice, ConvBertForQuestionAnswering,
    ConvBertForSequenceClassification, ConvBertForTokenClassification, HeadLoadReport,
};
use tch::{Device, Kind};

fn check(report: Option<&HeadLoadReport>, expected: &[&str]) {
    let report = report.expect("report");
    assert!(report.base_checkpoint, "{report}");
    assert_eq!(report.newly_initialized, expected, "{report}");
    assert!(report.to_string().contains("encoder only"), "{report}");
}

#[test]
#[ignore = "needs the YituTech/conv-bert-base checkpoint (set CONVBERT_BASE_DIR)"]
fn yitutech_checkpoint_loads_into_every_head_with_new_head_weights() {
    let dir = std::env::var("CONVBERT_BASE_DIR").expect("set CONVBERT_BASE_DIR");
    let (d, k) = (Device::Cpu, Kind::Float);
    let m = ConvBertForMaskedLM::from_pretrained(&dir, d, k).expect("mlm");
    check(
        m.load_report(),
        &[
            "generator_lm_head.bias",
            "generator_predictions.LayerNorm.bias",
            "generator_predictions.LayerNorm.weight",
            "generator_predictions.dense.bias",
            "generator_predictions.dense.weight",
        ],
    );
    let m = ConvBertForSequenceClassification::from_pretrained(&dir, d, k).expect("seqcls");
    check(
        m.load_report(),
        &[
            "classifier.dense.bias",
            "classifier.dense.weight",
            "classifier.out_proj.bias",
            "classifier.out_proj.weight",
        ],
    );
    let m = ConvBertForMultipleChoice::from_pretrained(&dir, d, k).expect("mc");
    check(m.load_report(), &["classifier.bias", "classifier.weight"]);
    let m = ConvBertForTokenClassification::from_pretrained(&dir, d, k).expect("tokcls");
    check(m.load_report(), &["classifier.bias", "classifier.weight"]);
    let m = ConvBertForQuestionAnswering::from_pretrained(&dir, d, k).expect("qa");
    check(m.load_report(), &["qa_outputs.bias", "qa_outputs.weight"]);
}
