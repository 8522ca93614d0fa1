//! Which batches a graph serves: the (batch, length) bucket of a batch, the limits beyond which
//! it runs eagerly, and the padded host buffer a bucket's static inputs are filled from.

/// Limits of graph use; outside them a batch runs eagerly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphPolicy {
    /// Largest batch bucket (a batch is padded up to a power of two rows).
    pub max_batch: usize,
    /// Largest bucket in tokens (batch bucket × length bucket). Large batches are compute-bound,
    /// where a graph saves little and costs its static buffers.
    pub max_tokens: usize,
    /// Graphs kept at once; the least recently used one goes first.
    pub max_graphs: usize,
    /// Eager runs on the capture stream before a capture, as torch requires (lazy kernel and
    /// cuBLAS workspace set-up must not happen inside it).
    pub warmups: u32,
}

impl Default for GraphPolicy {
    fn default() -> Self {
        Self {
            max_batch: 16,
            max_tokens: 4096,
            max_graphs: 16,
            warmups: 2,
        }
    }
}

/// The model's input limits, checked on the host: a graph cannot check ids on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// `input_ids` lie in `[0, vocab_size)`.
    pub vocab_size: i64,
    /// `token_type_ids` lie in `[0, type_vocab_size)`.
    pub type_vocab_size: i64,
    /// Longest sequence (`max_position_embeddings`); buckets never exceed it.
    pub max_len: usize,
}

/// The padded shape a graph is captured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bucket {
    pub batch: usize,
    pub len: usize,
}

/// One batch on the host, row-major `(rows, len)`, as the model would take it.
#[derive(Debug, Clone, Copy)]
pub struct HostBatch<'a> {
    pub input_ids: &'a [i64],
    /// 1 = attend, 0 = padding.
    pub attention_mask: &'a [i64],
    pub token_type_ids: &'a [i64],
    pub rows: usize,
    pub len: usize,
    /// True when real tokens' outputs do not depend on the padded length (the model's
    /// padding-invariant mode): only then may the length be padded up to a bucket.
    pub pad_length: bool,
}

/// Rows padded up to the next power of two (rows are independent: extra rows repeat a real one).
pub fn batch_bucket(rows: usize) -> usize {
    rows.next_power_of_two()
}

/// The length a batch of `len` tokens runs at: exact unless `pad_length`; else 16, 32, 64, 128,
/// then multiples of 64, never above `max_len` (nor below `len`).
pub fn length_bucket(len: usize, pad_length: bool, max_len: usize) -> usize {
    if !pad_length {
        return len;
    }
    let bucket = match len {
        0..=16 => 16,
        17..=128 => len.next_power_of_two(),
        _ => len.div_ceil(64) * 64,
    };
    bucket.min(max_len).max(len)
}

impl GraphPolicy {
    /// The bucket of `batch`, or `None` when it should run eagerly (too big, empty, too long).
    pub fn bucket(&self, batch: &HostBatch, max_len: usize) -> Option<Bucket> {
        if batch.rows == 0 || batch.len == 0 || batch.len > max_len {
            return None;
        }
        let rows = batch_bucket(batch.rows);
        let len = length_bucket(batch.len, batch.pad_length, max_len);
        (rows <= self.max_batch && rows * len <= self.max_tokens)
            .then_some(Bucket { batch: rows, len })
    }
}

impl HostBatch<'_> {
    /// Consistent shapes and every id within `limits`: what the model's own checks would pass.
    pub(crate) fn is_valid(&self, limits: &InputLimits) -> bool {
        let n = self.rows * self.len;
        let in_range = |v: &[i64], limit: i64| v.iter().all(|&x| (0..limit).contains(&x));
        self.input_ids.len() == n
            && self.attention_mask.len() == n
            && self.token_type_ids.len() == n
            && in_range(self.input_ids, limits.vocab_size)
            && in_range(self.token_type_ids, limits.type_vocab_size)
    }

    /// The static inputs of `bucket` as one `(3, batch, len)` buffer: ids, mask, type ids. Each
    /// row is padded with id 0, mask 0 and type 0; rows past the real ones repeat row 0.
    pub(crate) fn staged(&self, bucket: Bucket) -> Vec<i64> {
        let (b, l) = (bucket.batch, bucket.len);
        let mut out = vec![0i64; 3 * b * l];
        for (plane, src) in [self.input_ids, self.attention_mask, self.token_type_ids]
            .into_iter()
            .enumerate()
        {
            for row in 0..b {
                let from = if row < self.rows { row } else { 0 };
                let dst = plane * b * l + row * l;
                out[dst..dst + self.len]
                    .copy_from_slice(&src[from * self.len..(from + 1) * self.len]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch<'a>(ids: &'a [i64], mask: &'a [i64], rows: usize, pad: bool) -> HostBatch<'a> {
        HostBatch {
            input_ids: ids,
            attention_mask: mask,
            token_type_ids: mask,
            rows,
            len: ids.len() / rows,
            pad_length: pad,
        }
    }

    #[test]
    fn buckets_round_up() {
        assert_eq!([1, 2, 3, 5, 8, 9].map(batch_bucket), [1, 2, 4, 8, 8, 16]);
        let padded = |l| length_bucket(l, true, 512);
        assert_eq!(
            [1, 16, 17, 100, 128, 129, 200, 500, 512].map(padded),
            [16, 16, 32, 128, 128, 192, 256, 512, 512]
        );
        assert_eq!(length_bucket(100, false, 512), 100);
        // Never above the position table, never below the batch.
        assert_eq!(length_bucket(9, true, 10), 10);
        assert_eq!(length_bucket(100, true, 100), 100);
    }

    #[test]
    fn large_empty_and_long_batches_run_eagerly() {
        let policy = GraphPolicy::default();
        let ids = vec![1i64; 64 * 128];
        let at = |rows: usize, pad| {
            policy.bucket(
                &batch(&ids[..rows * 128], &ids[..rows * 128], rows, pad),
                512,
            )
        };
        assert_eq!(at(1, true), Some(Bucket { batch: 1, len: 128 }));
        assert_eq!(at(8, true), Some(Bucket { batch: 8, len: 128 }));
        assert_eq!(at(5, false), Some(Bucket { batch: 8, len: 128 }));
        assert_eq!(at(64, true), None, "batch 64 stays eager");
        assert_eq!(at(32, true), None);
        let long = vec![1i64; 300];
        assert_eq!(policy.bucket(&batch(&long, &long, 1, true), 256), None);
        assert_eq!(policy.bucket(&batch(&[], &[], 1, true), 512), None);
    }

    #[test]
    fn ids_out_of_range_or_ragged_shapes_are_invalid() {
        let limits = InputLimits {
            vocab_size: 10,
            type_vocab_size: 2,
            max_len: 8,
        };
        let ok = batch(&[1, 9, 0, 3], &[1, 1, 1, 0], 2, true);
        assert!(ok.is_valid(&limits));
        assert!(!batch(&[1, 10, 0, 3], &[1, 1, 1, 0], 2, true).is_valid(&limits));
        assert!(!batch(&[1, -1, 0, 3], &[1, 1, 1, 0], 2, true).is_valid(&limits));
        let types = [0, 2, 0, 0];
        assert!(!HostBatch {
            token_type_ids: &types,
            ..ok
        }
        .is_valid(&limits));
        assert!(!HostBatch { rows: 3, ..ok }.is_valid(&limits));
    }

    #[test]
    fn staging_pads_length_and_repeats_row_zero() {
        let ids = [5, 6, 7, 8];
        let mask = [1, 1, 1, 0];
        let b = batch(&ids, &mask, 2, true);
        let staged = b.staged(Bucket { batch: 4, len: 3 });
        #[rustfmt::skip]
        let want = [
            5, 6, 0,  7, 8, 0,  5, 6, 0,  5, 6, 0, // ids
            1, 1, 0,  1, 0, 0,  1, 1, 0,  1, 1, 0, // mask
            1, 1, 0,  1, 0, 0,  1, 1, 0,  1, 1, 0, // type ids (the mask here)
        ];
        assert_eq!(staged, want);
    }
}
