//! Graph replays equal the eager encoder (fp32, within 1e-5) on a GPU: padded batches and
//! lengths, a second batch through the same graph, shapes outside the buckets, exact lengths
//! without the padding-invariant mode, and a forward that cannot be captured (a host read of a
//! device value), which falls back to eager and leaves CUDA usable. Runs with
//! `CONVBERT_TEST_DEVICE=cuda` and the `cuda` feature; elsewhere each test says it is skipped.

use convbert_cuda_graphs::{
    GraphCache, GraphError, GraphInputs, GraphPolicy, HostBatch, InputLimits,
};
use convbert_model::{ConvBertConfig, ConvBertError, ConvBertModel, ForwardOptions};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-5;

/// The model's error or the cache's.
#[derive(Debug)]
enum TestError {
    Model(ConvBertError),
    Graph(GraphError),
}

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Model(e) => e.fmt(f),
            Self::Graph(e) => e.fmt(f),
        }
    }
}

impl From<ConvBertError> for TestError {
    fn from(e: ConvBertError) -> Self {
        Self::Model(e)
    }
}

impl From<GraphError> for TestError {
    fn from(e: GraphError) -> Self {
        Self::Graph(e)
    }
}

impl From<tch::TchError> for TestError {
    fn from(e: tch::TchError) -> Self {
        Self::Model(e.into())
    }
}

/// The GPU these tests run on, or `None` (skipped) without `CONVBERT_TEST_DEVICE=cuda`.
fn cuda() -> Option<Device> {
    let name = std::env::var("CONVBERT_TEST_DEVICE").unwrap_or_default();
    let device = convbert_model::parse_device(&name).filter(|d| d.is_cuda());
    if device.is_none() || !convbert_cuda_graphs::BUILT_WITH_CUDA {
        eprintln!("skipped: needs CONVBERT_TEST_DEVICE=cuda and the cuda feature");
        return None;
    }
    device
}

fn model(device: Device) -> (ConvBertModel, VarStore, InputLimits) {
    let cfg = ConvBertConfig::from_json_str(
        r#"{"vocab_size": 100, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 256, "embedding_size": 64, "max_position_embeddings": 64}"#,
    )
    .unwrap();
    tch::manual_seed(0);
    let mut vs = VarStore::new(device);
    let m = ConvBertModel::new(&vs.root(), &cfg).unwrap();
    vs.freeze();
    let limits = InputLimits {
        vocab_size: cfg.vocab_size,
        type_vocab_size: cfg.type_vocab_size,
        max_len: 64,
    };
    (m, vs, limits)
}

fn encoder(
    m: &ConvBertModel,
    x: &GraphInputs,
    padding_invariant: bool,
) -> Result<Vec<Tensor>, TestError> {
    let opts = ForwardOptions {
        padding_invariant,
        ..Default::default()
    };
    Ok(vec![
        m.forward_t(&x.model_inputs(), &opts, false)?
            .last_hidden_state,
    ])
}

/// Rows of the given real lengths, right-padded to the longest (ids from `seed`).
struct Rows {
    ids: Vec<i64>,
    mask: Vec<i64>,
    types: Vec<i64>,
    lens: Vec<usize>,
    len: usize,
}

fn rows(lens: &[usize], seed: i64) -> Rows {
    let len = *lens.iter().max().unwrap();
    let (mut ids, mut mask, mut types) = (Vec::new(), Vec::new(), Vec::new());
    for (r, &real) in lens.iter().enumerate() {
        for t in 0..len {
            let on = t < real;
            ids.push(if on {
                1 + (seed + 7 * r as i64 + 3 * t as i64) % 99
            } else {
                0
            });
            mask.push(i64::from(on));
            types.push(i64::from(on && t >= real / 2));
        }
    }
    Rows {
        ids,
        mask,
        types,
        lens: lens.to_vec(),
        len,
    }
}

impl Rows {
    fn batch(&self, pad_length: bool) -> HostBatch<'_> {
        HostBatch {
            input_ids: &self.ids,
            attention_mask: &self.mask,
            token_type_ids: &self.types,
            rows: self.lens.len(),
            len: self.len,
            pad_length,
        }
    }
}

/// Largest difference over each row's real tokens between `out` (B, L' ≥ L, D) and eager.
fn max_diff(m: &ConvBertModel, r: &Rows, out: &Tensor, padding_invariant: bool) -> f64 {
    let shape = [r.lens.len() as i64, r.len as i64];
    let host = |v: &[i64]| Tensor::from_slice(v).view(shape);
    let (ids, mask, types) = (host(&r.ids), host(&r.mask), host(&r.types));
    let x = GraphInputs {
        input_ids: &ids,
        attention_mask: &mask,
        token_type_ids: &types,
    };
    let eager = encoder(m, &x, padding_invariant)
        .unwrap()
        .remove(0)
        .to_device(Device::Cpu);
    let out = out.to_device(Device::Cpu);
    assert_eq!(out.size()[0], eager.size()[0], "rows");
    r.lens
        .iter()
        .enumerate()
        .map(|(i, &real)| {
            let a = out.get(i as i64).narrow(0, 0, real as i64);
            let b = eager.get(i as i64).narrow(0, 0, real as i64);
            (a - b).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

#[test]
fn padded_batches_replay_as_eager() {
    let Some(device) = cuda() else { return };
    let _guard = tch::no_grad_guard();
    let (m, _vs, limits) = model(device);
    let mut cache = GraphCache::new(device, limits, GraphPolicy::default());
    assert_eq!(cache.unavailable(), None);
    // 3 rows of 5..20 tokens: bucket (4, 32); then other rows and ids through the same graph.
    for (lens, seed) in [(&[20, 5, 11][..], 1), (&[17, 17, 2][..], 5), (&[9][..], 3)] {
        let r = rows(lens, seed);
        let out = cache
            .run("encoder", &r.batch(true), |x| encoder(&m, x, true))
            .unwrap();
        assert_eq!(out[0].size()[0], lens.len() as i64);
        let d = max_diff(&m, &r, &out[0], true);
        assert!(d <= TOL, "rows {lens:?}: graph vs eager {d:.2e}");
    }
    let s = cache.stats();
    assert_eq!(
        (s.captures, s.replays, s.eager, s.failed_captures),
        (2, 3, 0, 0),
        "{s:?}"
    );
}

#[test]
fn exact_lengths_without_padding_invariance_and_big_batches_eager() {
    let Some(device) = cuda() else { return };
    let _guard = tch::no_grad_guard();
    let (m, _vs, limits) = model(device);
    let mut cache = GraphCache::new(device, limits, GraphPolicy::default());
    // HF's padded mode: the length is kept (bucket (2, 13)), outputs still equal eager's.
    let r = rows(&[13, 6], 2);
    let out = cache
        .run("encoder", &r.batch(false), |x| encoder(&m, x, false))
        .unwrap();
    assert_eq!(out[0].size()[1], 13);
    let d = max_diff(&m, &r, &out[0], false);
    assert!(d <= TOL, "exact length: {d:.2e}");
    // 40 rows: above max_batch, eager.
    let big = rows(&[30; 40], 4);
    let out = cache
        .run("encoder", &big.batch(true), |x| encoder(&m, x, true))
        .unwrap();
    assert!(max_diff(&m, &big, &out[0], true) <= TOL);
    let s = cache.stats();
    assert_eq!((s.captures, s.replays, s.eager), (1, 1, 1), "{s:?}");
}

#[test]
fn an_uncapturable_forward_falls_back_to_eager() {
    let Some(device) = cuda() else { return };
    let _guard = tch::no_grad_guard();
    let (m, _vs, limits) = model(device);
    let mut cache = GraphCache::new(device, limits, GraphPolicy::default());
    let r = rows(&[8, 3], 6);
    // Reading a device value on the host synchronises the stream: illegal while capturing.
    let syncing = |x: &GraphInputs| -> Result<Vec<Tensor>, TestError> {
        let top = x.input_ids.f_max()?.f_int64_value(&[])?;
        let mut out = encoder(&m, x, true)?;
        out.push(Tensor::from(top));
        Ok(out)
    };
    for _ in 0..2 {
        let out = cache.run("syncing", &r.batch(true), syncing).unwrap();
        assert!(max_diff(&m, &r, &out[0], true) <= TOL);
    }
    let s = cache.stats();
    assert_eq!((s.captures, s.failed_captures, s.eager), (0, 1, 2), "{s:?}");
    assert!(s.last_failure.is_some());
    // CUDA and the allocator are still fine: another forward captures and replays.
    let out = cache
        .run("encoder", &r.batch(true), |x| encoder(&m, x, true))
        .unwrap();
    assert!(max_diff(&m, &r, &out[0], true) <= TOL);
    assert_eq!(cache.stats().captures, 1);
    let x = Tensor::ones([4], (Kind::Float, device)).sum(Kind::Float);
    assert_eq!(x.double_value(&[]), 4.0);
}

#[test]
fn a_missing_device_or_build_says_why() {
    let limits = InputLimits {
        vocab_size: 10,
        type_vocab_size: 2,
        max_len: 8,
    };
    let cache = GraphCache::new(Device::Cuda(99), limits, GraphPolicy::default());
    let why = cache.unavailable().expect("no device 99");
    let expected = if convbert_cuda_graphs::BUILT_WITH_CUDA {
        "no CUDA device 99"
    } else {
        "without its `cuda` feature"
    };
    assert!(why.contains(expected), "{why}");
    let cpu = GraphCache::new(Device::Cpu, limits, GraphPolicy::default());
    assert!(cpu.unavailable().unwrap().contains("need a CUDA device"));
    assert!(GraphCache::disabled(limits)
        .unavailable()
        .unwrap()
        .contains("turned off"));
}
