#!/usr/bin/env bash
# The test command: installs the pinned libtorch if missing (see scripts/env.sh), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# With the TensorFlow reference (scripts/tf-env.sh), HF's TF classes check our tf_model.h5 exports
# too; without it those checks are skipped and our own loader checks them alone.
. scripts/tf-env.sh || echo "warning: no TensorFlow venv: tf_model.h5 exports are not checked by HF's TF loader" >&2
cargo test --workspace --release "$@"
