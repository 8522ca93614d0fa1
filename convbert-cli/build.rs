use std::path::Path;

use convbert_build::torch_link_args;

fn main() {
    // The directory the binaries are built into (OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out):
    // where the front looks for convbert-torch last, so a copied `convbert` still finds it.
    if let Some(dir) = std::env::var_os("OUT_DIR")
        .and_then(|o| Path::new(&o).ancestors().nth(3).map(Path::to_path_buf))
    {
        println!("cargo:rustc-env=CONVBERT_BUILD_BIN_DIR={}", dir.display());
    }
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
