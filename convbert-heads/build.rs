use convbert_build::emit_torch_link_args;

fn main() {
    // Exported by convbert-model's build script (`links = "convbert_libtorch"`).
    if let Ok(lib) = std::env::var("DEP_CONVBERT_LIBTORCH_LIB_DIR") {
        emit_torch_link_args(&lib);
    }
}
