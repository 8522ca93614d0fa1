//! `Quantization::DynamicInt8` through the pipelines: fill-mask on the default model (its
//! 30522-wide vocabulary projection in int8 too) ranks as fp32 does; int8 on another device or
//! dtype is refused as an option error before anything loads.

use convbert_pipelines::{FillMaskPipeline, PipelineError, PipelineOptions, Quantization};
use tch::{Device, Kind};

const DEFAULT_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/default-model");

/// The README's examples and a few more with a clear winner in fp32.
const TEXTS: [&str; 4] = [
    "paris is the [MASK] of france.",
    "he went to the [MASK] to buy some bread.",
    "the [MASK] of the united states lives in the white house.",
    "she opened the [MASK] and walked into the room.",
];

fn int8() -> PipelineOptions {
    PipelineOptions {
        quantization: Quantization::DynamicInt8,
        ..Default::default()
    }
}

#[test]
fn int8_fill_mask_ranks_as_fp32() {
    let fp32 =
        FillMaskPipeline::from_pretrained(DEFAULT_MODEL, PipelineOptions::default()).unwrap();
    let q = FillMaskPipeline::from_pretrained(DEFAULT_MODEL, int8()).unwrap();
    let a = fp32.run(&TEXTS, 5).unwrap();
    let b = q.run(&TEXTS, 5).unwrap();
    let mut worst = 0.0f64;
    for (text, (a, b)) in TEXTS.iter().zip(a.iter().zip(&b)) {
        let (a, b) = (&a.as_ref().unwrap()[0], &b.as_ref().unwrap()[0]);
        let tokens = |c: &[convbert_pipelines::FillMaskCandidate]| {
            c.iter().map(|c| c.token_str.clone()).collect::<Vec<_>>()
        };
        eprintln!("{text}: fp32 {:?}, int8 {:?}", tokens(a), tokens(b));
        assert_eq!(a[0].token, b[0].token, "{text}: best candidate");
        for (x, y) in a.iter().zip(b.iter()) {
            if x.token == y.token {
                worst = worst.max((x.score - y.score).abs());
            }
        }
        // The top 2 hold the same tokens; further down, candidates a few 1e-3 apart may swap
        // (int8 moves scores by up to about 3e-3 here).
        let (mut ta, mut tb) = (tokens(&a[..2]), tokens(&b[..2]));
        ta.sort();
        tb.sort();
        assert_eq!(ta, tb, "{text}: top 2");
    }
    eprintln!("max |score int8 - fp32| over shared candidates: {worst:.2e}");
    assert!(
        worst > 0.0,
        "int8 gave fp32's scores exactly: was it applied?"
    );
}

#[test]
fn int8_is_refused_off_the_cpu_and_with_reduced_precision() {
    for options in [
        PipelineOptions {
            kind: Kind::BFloat16,
            ..int8()
        },
        PipelineOptions {
            device: Device::Cuda(0),
            ..int8()
        },
    ] {
        let err = FillMaskPipeline::from_pretrained(DEFAULT_MODEL, options).unwrap_err();
        assert!(
            matches!(
                err,
                PipelineError::Option {
                    name: "quantization",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("cpu with f32"), "{err}");
    }
}
