#!/usr/bin/env bash
# The test command: installs the pinned libtorch if missing (see scripts/env.sh), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# With the TensorFlow reference (scripts/tf-env.sh), HF's TF classes check our tf_model.h5 exports
# too; without it those checks are skipped and our own loader checks them alone.
. scripts/tf-env.sh || echo "warning: no TensorFlow venv: tf_model.h5 exports are not checked by HF's TF loader" >&2
cargo test --workspace --release "$@"
# The CUDA-only code compiles and links without a GPU: the cuda-graphs shim (its tests run, the
# GPU ones skip) and the NCCL process group, against headers from two nvidia wheels.
. scripts/cuda-headers.sh
cargo test --release -p convbert-cuda-graphs --features cuda
cargo test --release -p convbert-distributed --features nccl --no-run
# Packaging (see docs/packaging.md): the tokenizer builds and tests without its embedded vocabulary,
# and builds from its own package as crates.io would; the libtorch crates depend on unpublished
# workspace crates, so they are packaged together (a local overlay registry) without the verify
# build, which would rebuild torch-sys.
cargo test --release -p convbert-tokenizer --no-default-features --lib --tests
cargo publish --dry-run --allow-dirty -p convbert-tokenizer
cargo package --allow-dirty --no-verify --workspace --exclude convbert-testing
