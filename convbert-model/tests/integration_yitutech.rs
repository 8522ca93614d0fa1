//! HF's slow integration test `test_inference_no_head` (SPEC §6.1) on the real
//! YituTech/conv-bert-base checkpoint. Needs the checkpoint on disk:
//!     CONVBERT_BASE_DIR=/path/to/conv-bert-base cargo test -p convbert-model -- --ignored
//! (a directory with config.json + pytorch_model.bin or model.safetensors, or an HF cache id).

mod common;

use convbert_model::ConvBertModel;
use tch::{Device, Kind, Tensor};

#[test]
#[ignore = "needs the YituTech/conv-bert-base checkpoint (set CONVBERT_BASE_DIR)"]
fn yitutech_conv_bert_base_matches_hf_integration_numbers() {
    let dir = std::env::var("CONVBERT_BASE_DIR").expect("set CONVBERT_BASE_DIR");
    let (model, _vs) =
        ConvBertModel::from_pretrained(&dir, Device::cuda_if_available(), Kind::Float).unwrap();
    let ids = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6]).view([1, 6]);
    let out = model.forward_ids(&ids, None).unwrap();
    assert_eq!(out.size(), [1, 6, 768]);
    let expected = Tensor::from_slice(&[
        -0.0864f32, -0.4898, -0.3677, 0.1434, -0.2952, -0.7640, -0.0112, -0.4432, -0.5432,
    ])
    .view([1, 3, 3]);
    let got = out.narrow(1, 0, 3).narrow(2, 0, 3).to_device(Device::Cpu);
    common::assert_close("conv-bert-base output[:, :3, :3]", &got, &expected, 1e-4);
}
