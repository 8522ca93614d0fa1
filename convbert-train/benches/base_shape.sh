#!/usr/bin/env bash
# Training throughput at the conv-bert-base shape (random init, full 128-token texts): `convbert
# train` against HF Trainer with its fused AdamW, in the same run, fp32 then bf16.
#   convbert-train/benches/base_shape.sh [BATCH (8)] [STEPS (12)] [ROUNDS (2)]
# On the CPU, with `convbert` built in target/release. HF Trainer needs accelerate, installed
# here (once) into the cache beside the torch venv. The same comparison on CUDA is part of
# scripts/cuda_check.sh (scripts/cuda_check.d/train.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
accelerate_dir="$(dirname "$(dirname "$(dirname "$CONVBERT_PYTHON")")")/accelerate-1.11.0"
if [ ! -d "$accelerate_dir/accelerate" ]; then
    "$CONVBERT_PYTHON" -m pip install -q --no-deps --target "$accelerate_dir" \
        -r fixtures/requirements-ddp.txt
fi
export PYTHONPATH="$accelerate_dir${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck source=/dev/null
. scripts/cuda_check.d/train.sh
lscpu | grep -m1 'Model name'
for round in $(seq "${3:-2}"); do
    echo "round $round"
    train_base_compare target/release/convbert "$CONVBERT_PYTHON" cpu "${1:-8}" "${2:-12}"
done
