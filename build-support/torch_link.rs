// Shared by the build scripts of every crate whose binaries link libtorch.
//
// Two linker facts this fixes, so tests and binaries run without a hand-set LD_LIBRARY_PATH:
// * torch-sys links libtorch dynamically but sets no rpath on the final binary;
// * rustc links with --as-needed, which drops libtorch_cuda.so (nothing references its symbols
//   directly), and then CUDA is silently unavailable. --no-as-needed keeps it.

/// Emits the link arguments for the binaries, tests and benches of the calling package.
fn emit_torch_link_args(libtorch_lib: &str) {
    let lib = std::path::Path::new(libtorch_lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
