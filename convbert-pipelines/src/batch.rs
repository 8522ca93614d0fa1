//! Batching shared by every pipeline: sequences are sorted by length, cut into batches of
//! `batch_size`, right-padded to the longest of their batch, run, and their outputs handed back
//! unpadded, in input order. [`Prepared`] is what one input becomes before the model runs: its
//! encodings and the rows they give, so a caller may pack rows of many inputs into one batch.

use convbert_cuda_graphs::HostBatch;
use convbert_model::ForwardOptions;
use tch::{Device, Kind, Tensor};
use tokenizers::Encoding;

use crate::error::{PipelineError, Result};
use crate::options::PipelineOptions;

/// One tokenized sequence: token ids and token type ids of equal length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub(crate) ids: Vec<i64>,
    pub(crate) type_ids: Vec<i64>,
    /// Tokens that are real; the rest of `ids` is padding the row carries itself.
    pub(crate) real: usize,
}

impl Row {
    pub(crate) fn new(enc: &Encoding) -> Self {
        Self {
            ids: enc.get_ids().iter().map(|&i| i64::from(i)).collect(),
            type_ids: enc.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
            real: enc.len(),
        }
    }

    /// `enc` padded to `len` tokens, as HF pads the windows of one text together.
    pub(crate) fn padded(enc: &Encoding, len: usize, pad_id: i64) -> Self {
        let mut row = Self::new(enc);
        let pad = len.saturating_sub(row.ids.len());
        row.ids.extend(std::iter::repeat_n(pad_id, pad));
        row.type_ids.extend(std::iter::repeat_n(0, pad));
        row
    }

    /// A row of ready-made token ids (type ids 0), e.g. ids a client sent.
    pub(crate) fn from_ids(ids: Vec<i64>) -> Self {
        let real = ids.len();
        Self {
            type_ids: vec![0; real],
            ids,
            real,
        }
    }

    /// Tokens in the row (its own padding included): its cost in a padded batch.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True for a row without tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// One input, tokenized and checked: the encodings its model rows come from (several for the
/// windows of a long text) and the rows themselves.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub(crate) encodings: Vec<Encoding>,
    pub(crate) rows: Vec<Row>,
}

impl Prepared {
    /// One encoding, one row.
    pub(crate) fn single(enc: Encoding) -> Self {
        let rows = vec![Row::new(&enc)];
        Self {
            encodings: vec![enc],
            rows,
        }
    }

    /// Ready-made token ids as one row.
    pub(crate) fn from_ids(ids: Vec<i64>) -> Self {
        Self {
            encodings: Vec::new(),
            rows: vec![Row::from_ids(ids)],
        }
    }

    /// The model rows of this input, in order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Real (unpadded) tokens over all rows.
    pub fn tokens(&self) -> usize {
        self.rows.iter().map(|r| r.real).sum()
    }
}

/// The rows of the inputs that could be prepared; the others answer with their own error.
pub(crate) fn ok_rows(prepared: &[Result<Prepared>]) -> Vec<Row> {
    prepared
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|p| p.rows.iter().cloned())
        .collect()
}

/// Runs the prepared inputs in batches and hands each `Ok` input its outputs (one `Vec<Tensor>`
/// per row) to `finish`; inputs that failed to prepare keep their error.
pub(crate) fn run_prepared<T, F, G>(
    prepared: Vec<Result<Prepared>>,
    options: &PipelineOptions,
    pad_id: i64,
    granularity: Granularity,
    forward: F,
    mut finish: G,
) -> Result<Vec<Result<T>>>
where
    F: FnMut(&HostBatch, &ForwardOptions) -> Result<Vec<Tensor>>,
    G: FnMut(usize, &Prepared, Vec<Vec<Tensor>>) -> Result<T>,
{
    let outputs = run_batched(&ok_rows(&prepared), options, pad_id, granularity, forward)?;
    let mut outputs = outputs.into_iter();
    prepared
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let p = match p {
                Ok(p) => p,
                Err(e) => return Ok(Err(e)),
            };
            let outs: Vec<Vec<Tensor>> = outputs.by_ref().take(p.rows.len()).collect();
            if outs.len() != p.rows.len() {
                return Err(PipelineError::Input("the model returned no output".into()));
            }
            Ok(finish(i, &p, outs))
        })
        .collect()
}

/// The single output of each row, in order.
pub(crate) fn single_outputs(outputs: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>> {
    outputs
        .into_iter()
        .map(|mut v| {
            v.pop()
                .ok_or_else(|| PipelineError::Input("the model returned no output".into()))
        })
        .collect()
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
    F: FnMut(&HostBatch, &ForwardOptions) -> Result<Vec<Tensor>>,
{
    let mut results: Vec<Vec<Tensor>> = (0..rows.len()).map(|_| Vec::new()).collect();
    for chunk in length_order(rows).chunks(options.batch_size.max(1)) {
        let batch: Vec<&Row> = chunk.iter().map(|&i| &rows[i]).collect();
        let outputs = forward_batch(&batch, options, pad_id, granularity, &mut forward)?;
        for (&i, out) in chunk.iter().zip(outputs) {
            results[i] = out;
        }
    }
    Ok(results)
}

/// Runs `forward` on `rows` as one batch, right-padded to the longest (host ids, mask and type
/// ids); returns per row its outputs (f32, CPU) without padding. Per-token outputs may be longer
/// than the batch (a CUDA graph's length bucket): each row is cut to its real tokens.
pub(crate) fn forward_batch<F>(
    rows: &[&Row],
    options: &PipelineOptions,
    pad_id: i64,
    granularity: Granularity,
    mut forward: F,
) -> Result<Vec<Vec<Tensor>>>
where
    F: FnMut(&HostBatch, &ForwardOptions) -> Result<Vec<Tensor>>,
{
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let _guard = tch::no_grad_guard();
    let forward_options = ForwardOptions {
        padding_invariant: options.padding_invariant,
        ..Default::default()
    };
    let len = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
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
    let host = HostBatch {
        input_ids: &ids,
        attention_mask: &mask,
        token_type_ids: &types,
        rows: rows.len(),
        len,
        // Only then may a graph run the batch at a longer, bucketed length.
        pad_length: options.padding_invariant,
    };
    let outputs = forward(&host, &forward_options)?
        .into_iter()
        .map(|t| t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float))
        .collect::<Result<Vec<_>, _>>()?;
    rows.iter()
        .enumerate()
        .map(|(j, row)| {
            outputs
                .iter()
                .map(|out| {
                    let r = out.f_get(j as i64)?;
                    Ok(match granularity {
                        Granularity::Token => r.f_narrow(0, 0, row.real as i64)?,
                        Granularity::Sequence => r,
                    })
                })
                .collect()
        })
        .collect()
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
