//! Compiles the quantized-ops shim (src/shim.cpp) against the libtorch torch-sys links, and sets
//! the rpath so tests and binaries find libtorch without LD_LIBRARY_PATH.

use std::env;
use std::path::PathBuf;

use convbert_build::emit_torch_link_args;

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    // Set by torch-sys (`links = "tch"`): the lib folder of the libtorch it compiled against.
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("DEP_TCH_LIBTORCH_LIB is unset: torch-sys did not report its libtorch");
    };
    // Headers sit next to the lib folder (libtorch/include, or torch/include in a PyPI wheel)
    // unless LIBTORCH_INCLUDE says otherwise, as in torch-sys.
    let root = match env::var("LIBTORCH_INCLUDE") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => PathBuf::from(&lib).join(".."),
    };
    let include = root.join("include");
    let header = include.join("ATen/core/dispatch/Dispatcher.h");
    if !header.exists() {
        panic!(
            "{} is missing: this libtorch has no ATen headers",
            header.display()
        );
    }
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .include(&include)
        .file("src/shim.cpp")
        .compile("convbert_quant_shim");
    emit_torch_link_args(&lib);
}
