#[test]
fn libtorch_links_and_runs() {
    let t = tch::Tensor::from_slice(&[1.0f32, 2.0]).sum(tch::Kind::Float);
    assert_eq!(f64::try_from(t).unwrap(), 3.0);
    println!("cuda available: {}", tch::Cuda::is_available());
}
