//! Batching shared by every pipeline: sequences are sorted by length, cut into batches of
//! `batch_size`, right-padded to the longest of their batch, run, and their outputs handed back
//! unpadded, in input order.

use convbert_model::{ConvBertInputs, ForwardOptions};
use tch::{Device, Kind, Tensor};

use crate::error::{PipelineError, Result};
use crate::options::PipelineOptions;

/// One tokenized sequence: token ids and token type ids of equal length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub ids: Vec<i64>,
    pub type_ids: Vec<i64>,
    /// Tokens that are real; the rest of `ids` is padding the row carries itself.
    pub real: usize,
}

impl Row {
    pub fn new(enc: &tokenizers::Encoding) -> Self {
        Self {
            ids: enc.get_ids().iter().map(|&i| i64::from(i)).collect(),
            type_ids: enc.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
            real: enc.len(),
        }
    }

    /// `enc` padded to `len` tokens, as HF pads the windows of one text together.
    pub fn padded(enc: &tokenizers::Encoding, len: usize, pad_id: i64) -> Self {
        let mut row = Self::new(enc);
        let pad = len.saturating_sub(row.ids.len());
        row.ids.extend(std::iter::repeat_n(pad_id, pad));
        row.type_ids.extend(std::iter::repeat_n(0, pad));
        row
    }
}

/// The rows of the inputs that could be prepared; the others answer with their own error.
pub(crate) fn ok_rows(prepared: &[Result<Row>]) -> Vec<Row> {
    prepared
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect()
}

/// The single output of the next row.
pub(crate) fn next_output(outputs: &mut impl Iterator<Item = Vec<Tensor>>) -> Result<Tensor> {
    outputs
        .next()
        .and_then(|mut v| v.pop())
        .ok_or_else(|| PipelineError::Input("the model returned no output".into()))
}

/// Whether each output of the model is per token `(B, L, ..)` or per sequence `(B, ..)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Granularity {
    Token,
    Sequence,
}

/// The order in which rows are batched: longest first, ties in input order.
pub(crate) fn length_order(rows: &[Row]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(rows[i].ids.len()));
    order
}

/// Runs `forward` over `rows` batch by batch; returns per row its outputs (f32, CPU) without
/// padding, in the order of `rows`.
pub(crate) fn run_batched<F>(
    rows: &[Row],
    options: &PipelineOptions,
    pad_id: i64,
    granularity: Granularity,
    mut forward: F,
) -> Result<Vec<Vec<Tensor>>>
where
    F: FnMut(&ConvBertInputs, &ForwardOptions) -> Result<Vec<Tensor>>,
{
    let _guard = tch::no_grad_guard();
    let forward_options = ForwardOptions {
        padding_invariant: options.padding_invariant,
        ..Default::default()
    };
    let mut results: Vec<Vec<Tensor>> = (0..rows.len()).map(|_| Vec::new()).collect();
    for chunk in length_order(rows).chunks(options.batch_size.max(1)) {
        let len = chunk.iter().map(|&i| rows[i].ids.len()).max().unwrap_or(0);
        let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for &i in chunk {
            let row = &rows[i];
            let pad = len - row.ids.len();
            ids.extend(
                row.ids
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad_id, pad)),
            );
            types.extend(
                row.type_ids
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, pad)),
            );
            mask.extend(
                std::iter::repeat_n(1i64, row.real)
                    .chain(std::iter::repeat_n(0, row.ids.len() - row.real + pad)),
            );
        }
        let shape = [chunk.len() as i64, len as i64];
        let ids = Tensor::from_slice(&ids).f_view(shape)?;
        let types = Tensor::from_slice(&types).f_view(shape)?;
        let mask = Tensor::from_slice(&mask).f_view(shape)?;
        let inputs = ConvBertInputs {
            input_ids: Some(&ids),
            attention_mask: Some(&mask),
            token_type_ids: Some(&types),
            ..Default::default()
        };
        let outputs = forward(&inputs, &forward_options)?
            .into_iter()
            .map(|t| t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float))
            .collect::<Result<Vec<_>, _>>()?;
        for (j, &i) in chunk.iter().enumerate() {
            for out in &outputs {
                let row = out.f_get(j as i64)?;
                results[i].push(match granularity {
                    Granularity::Token => row.f_narrow(0, 0, rows[i].real as i64)?,
                    Granularity::Sequence => row,
                });
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_ties_in_input_order() {
        let row = |n: usize| Row {
            ids: vec![1; n],
            type_ids: vec![0; n],
            real: n,
        };
        let rows = [row(2), row(5), row(2), row(7)];
        assert_eq!(length_order(&rows), vec![3, 1, 0, 2]);
    }
}
