//! Evaluation accuracy of a text classifier in fp32 and int8-quantized (encoder and head), e.g.
//! the docs/finetune sentiment model (train it first as docs/finetune/README.md says):
//!     cargo run --release -p convbert-quant --example classifier_int8 -- /tmp/sentiment docs/finetune/eval.jsonl

use std::error::Error;

use convbert_heads::ConvBertForSequenceClassification;
use convbert_model::{ConvBertInputs, ForwardOptions};
use convbert_tokenizer::{ConvBertTokenizer, EncodeOptions};
use tch::{Device, Kind, Tensor};

fn accuracy(
    model: &ConvBertForSequenceClassification,
    tok: &ConvBertTokenizer,
    rows: &[(String, i64)],
) -> Result<(f64, Vec<Tensor>), Box<dyn Error>> {
    let _g = tch::no_grad_guard();
    let (mut right, mut logits) = (0usize, Vec::new());
    for (text, label) in rows {
        let enc = tok.encode(text, &EncodeOptions::default())?;
        let ids: Vec<i64> = enc.ids.iter().map(|&i| i64::from(i)).collect();
        let ids = Tensor::from_slice(&ids).view([1, -1]);
        let inputs = ConvBertInputs {
            input_ids: Some(&ids),
            ..Default::default()
        };
        let out = model.forward_t(&inputs, None, &ForwardOptions::default(), false)?;
        if out.logits.argmax(-1, false).int64_value(&[0]) == *label {
            right += 1;
        }
        logits.push(out.logits);
    }
    Ok((right as f64 / rows.len() as f64, logits))
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, eval) = match args.as_slice() {
        [_, dir, eval] => (dir.clone(), eval.clone()),
        _ => return Err("usage: classifier_int8 MODEL_DIR EVAL_JSONL".into()),
    };
    let tok = ConvBertTokenizer::from_pretrained(&dir)?;
    let fp32 = ConvBertForSequenceClassification::from_pretrained(&dir, Device::Cpu, Kind::Float)?;
    let mut int8 =
        ConvBertForSequenceClassification::from_pretrained(&dir, Device::Cpu, Kind::Float)?;
    let n = convbert_quant::quantize_dynamic_int8(&mut int8)?;
    let label2id: Vec<(String, i64)> = fp32
        .labels()
        .id2label
        .iter()
        .map(|(i, name)| (name.clone(), *i))
        .collect();
    let mut rows = Vec::new();
    for line in std::fs::read_to_string(&eval)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let text = v["text"].as_str().ok_or("no text")?.to_string();
        let name = v["label"].as_str().ok_or("no label")?;
        let id = label2id
            .iter()
            .find(|(l, _)| l == name)
            .map(|(_, i)| *i)
            .ok_or_else(|| format!("label {name} not in id2label"))?;
        rows.push((text, id));
    }
    let (a32, l32) = accuracy(&fp32, &tok, &rows)?;
    let (a8, l8) = accuracy(&int8, &tok, &rows)?;
    let worst = l32
        .iter()
        .zip(&l8)
        .map(|(a, b)| (a - b).abs().max().double_value(&[]))
        .fold(0.0, f64::max);
    println!(
        "{} eval examples: fp32 accuracy {a32:.4}, int8 ({n} GEMMs) accuracy {a8:.4}, \
         difference {:.2} points; max |logit difference| {worst:.4}",
        rows.len(),
        (a8 - a32) * 100.0
    );
    Ok(())
}
