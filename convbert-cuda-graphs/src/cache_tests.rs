//! The cache's bookkeeping over a CPU stand-in for CUDA graphs: which runs capture, replay or go
//! eager, LRU eviction, and the fallback after a failed capture.

use std::cell::Cell;

use tch::{Device, Kind, Tensor};

use crate::backend::Backend;
use crate::bucket::{GraphPolicy, HostBatch, InputLimits};
use crate::cache::{Cache, GraphInputs};
use crate::error::{CaptureError, GraphError};

/// "Captures" by running the forward once; "replays" by doing nothing (its outputs stay those
/// of the capture run, enough to follow the bookkeeping), or, after `corrupt_next`, by
/// overwriting the first output as a graph replaying from a wrong buffer would.
#[derive(Default)]
struct Fake {
    fail_next: Cell<bool>,
    corrupt_next: Cell<bool>,
}

impl Backend for Fake {
    /// The output a corrupt graph overwrites.
    type Graph = Option<Tensor>;

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn upload(&self, dst: &mut Tensor, data: &[i64]) -> Result<(), GraphError> {
        dst.f_copy_(&Tensor::from_slice(data).f_view_as(dst)?)?;
        Ok(())
    }

    fn capture<F, E>(
        &self,
        _warmups: u32,
        mut forward: F,
    ) -> Result<(Option<Tensor>, Vec<Tensor>), CaptureError<E>>
    where
        F: FnMut() -> Result<Vec<Tensor>, E>,
    {
        if self.fail_next.replace(false) {
            return Err(CaptureError::Graph(GraphError::Capture("refused".into())));
        }
        let outputs = forward().map_err(CaptureError::Forward)?;
        let corrupt = self.corrupt_next.replace(false);
        Ok((corrupt.then(|| outputs[0].shallow_clone()), outputs))
    }

    fn replay(&self, graph: &Option<Tensor>) -> Result<(), GraphError> {
        if let Some(out) = graph {
            let _overwritten = out.shallow_clone().f_fill_(-1)?;
        }
        Ok(())
    }
}

const LIMITS: InputLimits = InputLimits {
    vocab_size: 100,
    type_vocab_size: 2,
    max_len: 64,
};

fn cache(max_graphs: usize) -> Cache<Fake> {
    let policy = GraphPolicy {
        max_graphs,
        ..GraphPolicy::default()
    };
    Cache::with_backend(Ok(Fake::default()), LIMITS, policy)
}

/// A batch of `rows` rows of `len` ids 1.
fn run(cache: &mut Cache<Fake>, rows: usize, len: usize, first_id: i64) -> Vec<i64> {
    let mut ids = vec![1i64; rows * len];
    ids[0] = first_id;
    let mask = vec![1i64; rows * len];
    let types = vec![0i64; rows * len];
    let batch = HostBatch {
        input_ids: &ids,
        attention_mask: &mask,
        token_type_ids: &types,
        rows,
        len,
        pad_length: true,
    };
    let out = cache
        .run(
            "ids",
            &batch,
            |x: &GraphInputs| -> Result<Vec<Tensor>, GraphError> {
                Ok(vec![x.input_ids.f_to_kind(Kind::Int64)?.f_detach_copy()?])
            },
        )
        .unwrap();
    assert_eq!(
        out[0].size()[0],
        rows as i64,
        "outputs cut to the real rows"
    );
    Vec::<i64>::try_from(out[0].f_flatten(0, -1).unwrap()).unwrap()
}

#[test]
fn first_run_of_a_bucket_captures_then_replays() {
    let mut c = cache(4);
    let first = run(&mut c, 3, 10, 7);
    // Captured at (4, 16): the batch's rows padded to 16 with id 0.
    assert_eq!(first.len(), 3 * 16);
    assert_eq!(&first[..11], &[7, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
    run(&mut c, 4, 12, 1); // same bucket
    let s = c.stats();
    assert_eq!((s.captures, s.replays, s.eager, s.graphs), (1, 2, 0, 1));
}

#[test]
fn least_recently_used_graph_is_evicted() {
    let mut c = cache(2);
    run(&mut c, 1, 10, 1); // (1, 16)
    run(&mut c, 2, 10, 1); // (2, 16)
    run(&mut c, 1, 10, 1); // replay (1, 16): now (2, 16) is the oldest
    run(&mut c, 4, 10, 1); // (4, 16) evicts (2, 16)
    assert_eq!(c.stats().graphs, 2);
    run(&mut c, 1, 10, 1); // still held
    assert_eq!(c.stats().captures, 3);
    run(&mut c, 2, 10, 1); // captured again
    assert_eq!(c.stats().captures, 4);
}

#[test]
fn outside_the_buckets_or_bad_ids_run_eagerly() {
    let mut c = cache(4);
    run(&mut c, 64, 10, 1); // batch bucket above max_batch
    run(&mut c, 1, 10, 100); // id out of the vocabulary: the model's own error path
    let s = c.stats();
    assert_eq!((s.captures, s.eager), (0, 2));
}

#[test]
fn a_failed_capture_falls_back_to_eager_for_that_key_only() {
    let mut c = cache(4);
    c.backend.as_ref().unwrap().fail_next.set(true);
    let out = run(&mut c, 1, 10, 5);
    assert_eq!(out.len(), 10, "eager: the batch's own length");
    run(&mut c, 1, 10, 5); // the key stays eager, no second capture attempt
    let s = c.stats();
    assert_eq!((s.captures, s.failed_captures, s.eager), (0, 1, 2));
    assert!(s.last_failure.unwrap().contains("refused"));
    run(&mut c, 2, 10, 5); // another key still captures
    assert_eq!(c.stats().captures, 1);
}

#[test]
fn a_graph_whose_replay_differs_from_eager_is_dropped() {
    let mut c = cache(4);
    c.backend.as_ref().unwrap().corrupt_next.set(true);
    let out = run(&mut c, 1, 10, 5);
    assert_eq!(&out[..2], &[5, 1], "the eager result, not the replay's");
    assert_eq!(out.len(), 10, "eager: the batch's own length");
    let s = c.stats();
    assert_eq!(
        (s.captures, s.failed_captures, s.eager, s.graphs),
        (0, 1, 1, 0)
    );
    let why = s.last_failure.unwrap();
    assert!(why.contains("differs from the eager forward"), "{why}");
    run(&mut c, 2, 10, 5); // another key still captures and checks out
    assert_eq!(c.stats().captures, 1);
}

#[test]
fn replay_check_tolerates_rounding_not_errors() {
    use super::cache::verify_replay;
    let a = Tensor::from_slice(&[1.0f32, 2.0, f32::NAN]);
    let near = &a + 1e-6;
    assert!(verify_replay(&[near], &[a.shallow_clone()]).is_ok());
    let err = verify_replay(&[&a + 1e-2], &[a.shallow_clone()]).unwrap_err();
    assert!(err.starts_with("output 0 of the replay differs"), "{err}");
    assert!(
        err.contains("|Δ| 9.99") || err.contains("|Δ| 1e-2"),
        "{err}"
    );
    let ids = Tensor::from_slice(&[1i64, 2]);
    assert!(verify_replay(&[&ids + 1], &[ids.shallow_clone()]).is_err());
    assert!(verify_replay(&[ids.shallow_clone()], &[]).is_err());
    assert!(verify_replay(&[ids.f_view([1, 2]).unwrap()], &[ids]).is_err());
}

#[test]
fn without_a_backend_everything_is_eager() {
    let mut c: Cache<Fake> =
        Cache::with_backend(Err("no GPU".into()), LIMITS, GraphPolicy::default());
    assert_eq!(c.unavailable(), Some("no GPU"));
    run(&mut c, 1, 10, 1);
    assert_eq!(c.stats().eager, 1);
}
