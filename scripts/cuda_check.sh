#!/usr/bin/env bash
# CUDA checks on a GPU machine that has torch 2.11.0 in `python3` but no Rust toolchain.
#   scripts/cuda_check.sh kit   here: builds the test and bench binaries into gpu-kit.tar.xz and
#                               downloads the pinned HF reference as wheels into .whl/ (both
#                               git-ignored: carry them, 64 MiB at most together)
#   scripts/cuda_check.sh run [PART...]
#                               there, from a copy of the repository holding both: the golden
#                               parity tests on CUDA (1e-4), mixed-precision training, and the
#                               conv-bert-base forward speed against HF eager on the same GPU,
#                               and data-parallel training on NCCL (world size 1) against Gloo
#   Each scripts/cuda_check.d/NAME.sh adds its own checks: a NAME_kit function run at the end of
#   `kit` and a NAME_run function run at the end of `run`; `run NAME...` runs only those parts.
set -euo pipefail
cd "$(dirname "$0")/.."

parts=()
for f in scripts/cuda_check.d/*.sh; do
    [ -e "$f" ] || continue
    # shellcheck source=/dev/null
    . "$f"
    parts+=("$(basename "$f" .sh)")
done

# Copies the executables of `cargo ... --message-format=json` (stdin) into $1, named
# CRATE_TARGET (crate without its convbert- prefix), or $2 when given (one executable).
copy_test_binaries() {
    python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        crate = m["package_id"].split("#")[0].rsplit("/", 1)[-1].removeprefix("convbert-")
        target = m["target"]["name"]
        name = sys.argv[2] if len(sys.argv) > 2 else f"{crate}_{target}"
        shutil.copy(m["executable"], f"{sys.argv[1]}/{name}")
' "$@"
}

kit() {
    . scripts/env.sh
    local json
    json=$(cargo test --release --no-run --message-format=json \
        -p convbert-model --test golden -p convbert-heads --test golden \
        -p convbert-train --test step_parity --test mixed_precision)
    cargo bench --no-run -p convbert-model --bench forward
    rm -rf gpu-kit gpu-kit.tar.xz && mkdir gpu-kit
    echo "$json" | copy_test_binaries gpu-kit
    cp "$(ls -t target/release/deps/forward-* | grep -v '\.d$' | head -1)" gpu-kit/bench_forward
    nccl_kit
    for part in "${parts[@]}"; do "${part}_kit"; done
    find gpu-kit -type f -perm -u+x -exec strip {} +
    mkdir -p .whl
    "$CONVBERT_PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_17_x86_64 -d .whl \
        transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2
    # What travels to the GPU machine is at most 64 MiB: the binaries go compressed.
    du -sh gpu-kit
    tar -cf - gpu-kit | xz -T0 -6 > gpu-kit.tar.xz && rm -rf gpu-kit
    du -sh gpu-kit.tar.xz .whl
}

# The `nccl` feature's build (its own target directory: other features, a full rebuild), with the
# CUDA headers the torch wheel lacks (scripts/cuda-headers.sh); the kit's `convbert` is this one,
# with NCCL and CUDA graphs (it runs the model commands through `convbert-torch` beside it).
nccl_kit() {
    . scripts/cuda-headers.sh
    local json
    json=$(cargo test --release --no-run --message-format=json --target-dir target/nccl \
        -p convbert-distributed --features nccl --test two_process)
    cargo build --release -p convbert-cli --features nccl,cuda-graphs --target-dir target/nccl
    mkdir -p gpu-kit/nccl
    echo "$json" | copy_test_binaries gpu-kit/nccl two_process
    cp target/nccl/release/convbert target/nccl/release/convbert-torch gpu-kit/
}

# `convbert train` as a job of one rank on cuda:0, with NCCL and with Gloo: the same weights.
nccl_run() {
    local k=gpu-kit out=/tmp/nccl-vs-gloo status=0
    echo "== convbert-distributed two_process --features nccl"
    "$k/nccl/two_process" --nocapture --test-threads 1 || status=1
    rm -rf $out
    for backend in nccl gloo; do
        echo "== convbert train --device cuda --distributed --ddp-backend $backend (world size 1)"
        MASTER_ADDR=127.0.0.1 MASTER_PORT=$((29500 + RANDOM % 1000)) RANK=0 WORLD_SIZE=1 \
            "$k/convbert" train --task text-classification --config docs/finetune/config.json \
            --train docs/finetune/train.jsonl --output $out/$backend --max-steps 20 \
            --batch-size 16 --learning-rate 3e-3 --seed 7 --no-progress --device cuda \
            --distributed --ddp-backend $backend --ddp-timeout 60 || status=1
    done
    python3 - $out <<'PY' || status=1
import sys
from safetensors.torch import load_file
a, b = (load_file(f"{sys.argv[1]}/{x}/model.safetensors") for x in ("nccl", "gloo"))
diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
print(f"nccl vs gloo: max |diff| weights {diff:.2e}")
sys.exit(0 if diff < 1e-5 else 1)
PY
    return $status
}

run() {
    # The binaries find fixtures/ through the absolute path they were built in.
    mkdir -p /work && ln -sfn "$PWD" /work/main
    [ -d gpu-kit ] || xz -dc gpu-kit.tar.xz | tar -xf -
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site CONVBERT_PYTHON=python3 CONVBERT_TEST_DEVICE=cuda
    LD_LIBRARY_PATH=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__) + "/lib")')
    export LD_LIBRARY_PATH
    if [ $# -gt 0 ]; then
        local part status=0
        for part in "$@"; do "${part}_run" || status=1; done
        return $status
    fi
    nvidia-smi -L
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
    local k=gpu-kit status=0
    for t in model_golden heads_golden train_step_parity train_mixed_precision; do
        echo "== $t (CONVBERT_TEST_DEVICE=cuda)"
        "$k/$t" --nocapture --test-threads 1 || status=1
    done
    echo "== convbert train --device cuda --bf16"
    "$k/convbert" train --task text-classification --config docs/finetune/config.json \
        --train docs/finetune/train.jsonl --eval docs/finetune/eval.jsonl \
        --output /tmp/sentiment-bf16 --epochs 12 --batch-size 16 --learning-rate 3e-3 \
        --warmup-ratio 0.1 --logging-steps 4 --eval-steps 8 --save-total-limit 1 --seed 42 \
        --no-progress --device cuda --bf16 || status=1
    echo "== convbert fill-mask --device cuda"
    "$k/convbert" fill-mask --device cuda "paris is the [MASK] of france." || status=1
    echo "== training throughput, docs/finetune classifier, batch 16, 300 steps, cuda: ours vs HF Trainer"
    local d=/tmp/tput
    mkdir -p $d && cp docs/finetune/config.json docs/finetune/train.jsonl fixtures/default-model/vocab.txt $d/
    for p in "" --bf16 --fp16; do
        "$k/convbert" train --task text-classification --config $d/config.json \
            --tokenizer $d/vocab.txt --train $d/train.jsonl --output "$d/out$p" --max-steps 300 \
            --batch-size 16 --learning-rate 2e-3 --warmup-ratio 0.1 --seed 7 --max-length 32 \
            --no-progress --device cuda $p | python3 -c "import json, sys; print('ours ${p:-fp32}', json.load(sys.stdin)['examples_per_second'])" || status=1
        python3 convbert-train/benches/hf_trainer.py $d --max-steps 300 --cuda $p 2>/dev/null | tail -1 || status=1
    done
    for batch in 8 64; do
        echo "== forward speed, conv-bert-base, batch $batch x 128, cuda"
        BENCH_DEVICE=cuda BENCH_BATCH=$batch BENCH_SECONDS=${BENCH_SECONDS:-2} \
            BENCH_ROUNDS=${BENCH_ROUNDS:-3} "$k/bench_forward" || status=1
    done
    nccl_run || status=1
    for part in "${parts[@]}"; do "${part}_run" || status=1; done
    return $status
}

case "${1:-}" in
    kit) kit ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 kit|run [PART...]" >&2; exit 2 ;;
esac
