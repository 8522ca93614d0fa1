//! Compiles the c10d shim (src/shim.cpp) against the libtorch torch-sys links, and sets the
//! rpath so tests and binaries find libtorch without LD_LIBRARY_PATH.

use std::env;
use std::path::PathBuf;

use convbert_build::{emit_torch_link_args, Libtorch};

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
/// CCCL's nv/) and nccl.h. They come from CONVBERT_CUDA_INCLUDE (a path list), else CUDA_HOME,
/// else the nvidia-* wheels next to a PyPI torch (nvidia-cuda-crt and nvidia-cuda-cccl are not
/// torch dependencies: pip install them into that venv).
fn nccl(build: &mut cc::Build, torch: &std::path::Path) {
    println!("cargo:rerun-if-env-changed=CONVBERT_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let mut dirs: Vec<PathBuf> = match env::var_os("CONVBERT_CUDA_INCLUDE") {
        Some(list) => env::split_paths(&list).collect(),
        None => Vec::new(),
    };
    let cuda_home =
        env::var_os("CUDA_HOME").map_or_else(|| "/usr/local/cuda".into(), PathBuf::from);
    dirs.push(cuda_home.join("include"));
    let nvidia = torch.join("../nvidia");
    for wheel in ["cu13", "cuda_runtime", "cuda_nvcc", "cuda_cccl", "nccl"] {
        dirs.push(nvidia.join(wheel).join("include"));
    }
    dirs.retain(|d| d.is_dir());
    for header in ["cuda_runtime.h", "crt/host_config.h", "nv/target", "nccl.h"] {
        if !dirs.iter().any(|d| d.join(header).exists()) {
            panic!(
                "the nccl feature needs {header}, found in none of {dirs:?}: set \
                 CONVBERT_CUDA_INCLUDE or CUDA_HOME, or pip install nvidia-cuda-crt and \
                 nvidia-cuda-cccl (the torch wheel's CUDA version) into the torch venv"
            );
        }
    }
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
