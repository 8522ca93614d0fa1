//! Compiles the c10d shim (src/shim.cpp) against the libtorch torch-sys links, and sets the
//! rpath so tests and binaries find libtorch without LD_LIBRARY_PATH.

use std::env;

use convbert_build::{cuda_include_dirs, emit_torch_link_args, Libtorch};

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-changed=third_party/gloo");
    let torch = Libtorch::from_torch_sys("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp");
    let mut build = torch.cxx();
    if env::var_os("CARGO_FEATURE_NCCL").is_some() {
        nccl(&mut build, &torch.root);
    }
    build
        .define("USE_C10D_GLOO", None)
        .define("GLOG_USE_GLOG_EXPORT", None)
        // Only the gloo headers ProcessGroupGloo.hpp includes: the wheel ships none of them.
        .include("third_party/gloo")
        .include(torch.include.join("torch/csrc/api/include"))
        .file("src/shim.cpp")
        .compile("convbert_c10d_shim");
    emit_torch_link_args(&torch.lib);
}

/// The `nccl` feature: ProcessGroupNCCL.hpp needs the CUDA runtime headers (with crt/ and
/// CCCL's nv/) and nccl.h, found by [`cuda_include_dirs`].
fn nccl(build: &mut cc::Build, torch: &std::path::Path) {
    let dirs = cuda_include_dirs(
        torch,
        &["cuda_runtime.h", "crt/host_config.h", "nv/target", "nccl.h"],
        "nccl",
    );
    build
        .includes(&dirs)
        .define("USE_C10D_NCCL", None)
        .define("USE_CUDA", None)
        .define("CONVBERT_NCCL", None)
        .flag_if_supported("-Wno-interference-size");
    // ProcessGroupNCCL itself is in libtorch_cuda (which torch-sys links); the shim also calls
    // c10::cuda::set_device. torch-sys already put the lib folder on the search path.
    println!("cargo:rustc-link-lib=c10_cuda");
}
