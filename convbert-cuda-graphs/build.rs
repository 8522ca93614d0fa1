//! With the `cuda` feature, compiles the CUDA graph shim (src/shim.cpp) against the libtorch
//! torch-sys links and the CUDA runtime headers ([`cuda_include_dirs`]); always sets the rpath so
//! tests and binaries find libtorch without LD_LIBRARY_PATH.

use convbert_build::{cuda_include_dirs, emit_torch_link_args, Libtorch};

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        let torch = Libtorch::from_torch_sys("ATen/cuda/CUDAGraph.h");
        let dirs = cuda_include_dirs(
            &torch.root,
            &["cuda_runtime_api.h", "crt/host_config.h", "nv/target"],
            "cuda",
        );
        torch
            .cxx()
            .includes(&dirs)
            .define("USE_CUDA", None)
            .file("src/shim.cpp")
            .compile("convbert_cuda_graphs_shim");
        // CUDAGraph is in libtorch_cuda, streams and the caching allocator in libc10_cuda; the
        // libraries propagate to every crate that links this one.
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
        emit_torch_link_args(&torch.lib);
    } else {
        let torch = Libtorch::from_torch_sys("ATen/ATen.h");
        emit_torch_link_args(&torch.lib);
    }
}
