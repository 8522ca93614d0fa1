//! Build-script helper shared by every ConvBERT crate whose binaries link libtorch (a
//! `[build-dependencies]` crate, so each crate packages on its own), and both halves of the C++
//! shims' error convention: include/convbert_shim.hpp and [`shim`], their Rust side.
//!
//! Two linker facts this fixes, so tests and binaries run without a hand-set `LD_LIBRARY_PATH`:
//! * torch-sys links libtorch dynamically but sets no rpath on the final binary;
//! * rustc links with `--as-needed`, which drops `libtorch_cuda.so` (nothing references its symbols
//!   directly), and then CUDA is silently unavailable. `--no-as-needed` keeps it.

pub mod shim;

use std::path::{Path, PathBuf};

/// The libtorch torch-sys compiled against, for a crate that compiles a C++ shim against it too
/// (the crate depends on torch-sys, which exports `DEP_TCH_LIBTORCH_LIB`).
#[derive(Debug, Clone)]
pub struct Libtorch {
    /// The lib folder (for [`emit_torch_link_args`]).
    pub lib: String,
    /// The folder above `include/` (libtorch/, or torch/ in a PyPI wheel).
    pub root: PathBuf,
    /// The headers.
    pub include: PathBuf,
}

impl Libtorch {
    /// torch-sys's libtorch, its headers next to the lib folder unless `LIBTORCH_INCLUDE` says
    /// otherwise (as in torch-sys). A missing `header` (relative to `include/`) stops the build
    /// with a message naming it.
    pub fn from_torch_sys(header: &str) -> Self {
        println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
        println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
        let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
            panic!("DEP_TCH_LIBTORCH_LIB is unset: torch-sys did not report its libtorch");
        };
        let root = match std::env::var("LIBTORCH_INCLUDE") {
            Ok(dir) => PathBuf::from(dir),
            Err(_) => PathBuf::from(&lib).join(".."),
        };
        let include = root.join("include");
        let wanted = include.join(header);
        if !wanted.exists() {
            panic!(
                "{} is missing: this libtorch lacks the headers the shim needs",
                wanted.display()
            );
        }
        Self { lib, root, include }
    }

    /// A C++17 build against these headers with libtorch's ABI (`LIBTORCH_CXX11_ABI`, default 1),
    /// and this crate's `convbert_shim.hpp` (the exception guard of a shim's C ABI).
    pub fn cxx(&self) -> cc::Build {
        let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .pic(true)
            .warnings(false)
            .std("c++17")
            .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
            .include(&self.include)
            .include(concat!(env!("CARGO_MANIFEST_DIR"), "/include"));
        println!(
            "cargo:rerun-if-changed={}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/include/convbert_shim.hpp")
        );
        build
    }
}

/// The CUDA header folders for a shim compiled against libtorch's CUDA headers, from
/// `CONVBERT_CUDA_INCLUDE` (a path list), else `CUDA_HOME` (default /usr/local/cuda), else the
/// nvidia-* wheels next to a PyPI torch (`torch_root`). The torch wheel lacks crt/ and CCCL's nv/:
/// pip install nvidia-cuda-crt and nvidia-cuda-cccl (the wheel's CUDA version) or point
/// `CONVBERT_CUDA_INCLUDE` at them. Stops the build naming `feature` when a `required` header
/// (relative to an include folder) is in none of them.
pub fn cuda_include_dirs(torch_root: &Path, required: &[&str], feature: &str) -> Vec<PathBuf> {
    println!("cargo:rerun-if-env-changed=CONVBERT_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let mut dirs: Vec<PathBuf> = match std::env::var_os("CONVBERT_CUDA_INCLUDE") {
        Some(list) => std::env::split_paths(&list).collect(),
        None => Vec::new(),
    };
    let cuda_home =
        std::env::var_os("CUDA_HOME").map_or_else(|| "/usr/local/cuda".into(), PathBuf::from);
    dirs.push(cuda_home.join("include"));
    let nvidia = torch_root.join("../nvidia");
    for wheel in ["cu13", "cuda_runtime", "cuda_nvcc", "cuda_cccl", "nccl"] {
        dirs.push(nvidia.join(wheel).join("include"));
    }
    dirs.retain(|d| d.is_dir());
    if let Some(header) = missing_header(&dirs, required) {
        panic!(
            "the {feature} feature needs {header}, found in none of {dirs:?}: set \
             CONVBERT_CUDA_INCLUDE or CUDA_HOME, or pip install nvidia-cuda-crt and \
             nvidia-cuda-cccl (the torch wheel's CUDA version) into the torch venv"
        );
    }
    dirs
}

/// The first of `required` that no folder of `dirs` holds.
fn missing_header<'a>(dirs: &[PathBuf], required: &[&'a str]) -> Option<&'a str> {
    required
        .iter()
        .find(|h| !dirs.iter().any(|d| d.join(h).exists()))
        .copied()
}

/// Emits the link arguments for the binaries, tests and benches of the calling package: an rpath
/// to `libtorch_lib` and, when `libtorch_cuda.so` is there, `--no-as-needed -ltorch_cuda`.
/// Call it from a build script (it prints `cargo:` directives on stdout).
pub fn emit_torch_link_args(libtorch_lib: &str) {
    for arg in torch_link_args(Path::new(libtorch_lib)) {
        println!("cargo:rustc-link-arg={arg}");
    }
}

/// The linker arguments [`emit_torch_link_args`] emits, in order.
pub fn torch_link_args(lib: &Path) -> Vec<String> {
    let mut args = vec![format!("-Wl,-rpath,{}", lib.display())];
    if lib.join("libtorch_cuda.so").exists() {
        args.extend([
            "-Wl,--no-as-needed".to_string(),
            format!("-L{}", lib.display()),
            "-ltorch_cuda".to_string(),
            "-Wl,--as-needed".to_string(),
        ]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_header_is_named() {
        let dir = std::env::temp_dir().join(format!("convbert-build-inc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("crt")).unwrap();
        std::fs::write(dir.join("crt/host_config.h"), b"").unwrap();
        let dirs = [dir.clone()];
        assert_eq!(missing_header(&dirs, &["crt/host_config.h"]), None);
        assert_eq!(
            missing_header(&dirs, &["crt/host_config.h", "nv/target"]),
            Some("nv/target")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rpath_only_without_cuda() {
        let dir = std::env::temp_dir().join(format!("convbert-build-cpu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            torch_link_args(&dir),
            [format!("-Wl,-rpath,{}", dir.display())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cuda_library_is_kept_with_no_as_needed() {
        let dir = std::env::temp_dir().join(format!("convbert-build-cuda-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libtorch_cuda.so"), b"").unwrap();
        let d = dir.display();
        assert_eq!(
            torch_link_args(&dir),
            [
                format!("-Wl,-rpath,{d}"),
                "-Wl,--no-as-needed".to_string(),
                format!("-L{d}"),
                "-ltorch_cuda".to_string(),
                "-Wl,--as-needed".to_string(),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
