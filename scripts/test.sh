#!/usr/bin/env bash
# The test command: installs the pinned libtorch if missing (see scripts/env.sh), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo test --workspace --release "$@"
