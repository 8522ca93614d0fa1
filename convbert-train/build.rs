//! Compiles the multi-tensor optimizer shim (src/shim.cpp) against the libtorch torch-sys links,
//! and sets the rpath so tests and binaries find libtorch without LD_LIBRARY_PATH.

use convbert_build::{emit_torch_link_args, Libtorch};

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    let torch = Libtorch::from_torch_sys("ATen/ops/_fused_adamw.h");
    torch
        .cxx()
        .file("src/shim.cpp")
        .compile("convbert_train_shim");
    emit_torch_link_args(&torch.lib);
}
