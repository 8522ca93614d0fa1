use std::path::Path;

use convbert_build::torch_link_args;

fn main() {
    // Exported by convbert-model's build script (`links = "convbert_libtorch"`).
    if let Ok(lib) = std::env::var("DEP_CONVBERT_LIBTORCH_LIB_DIR") {
        // Only the targets that run libtorch get its rpath and the kept libtorch_cuda: not the
        // front binary `convbert` (no libtorch, fast start) nor the benches (they time it).
        for arg in torch_link_args(Path::new(&lib)) {
            println!("cargo:rustc-link-arg-bin=convbert-torch={arg}");
            println!("cargo:rustc-link-arg-tests={arg}");
            println!("cargo:rustc-link-arg-examples={arg}");
        }
    }
}
