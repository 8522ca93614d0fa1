use convbert_build::emit_torch_link_args;

fn main() {
    // Set by torch-sys (`links = "tch"`): the libtorch it compiled and linked against.
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    emit_torch_link_args(&lib);
    // Re-exported as DEP_CONVBERT_LIBTORCH_LIB_DIR for the crates built on this one.
    println!("cargo:lib_dir={lib}");
}
