# AdamW on libtorch's fused multi-tensor kernels on CUDA (issue 15, part 1): the fused CUDA step
# against the per-parameter one (tests/fused_adamw.rs; `run` already runs the step-parity goldens,
# which take the fused path on CUDA), and training throughput against HF Trainer at the
# conv-bert-base shape (random init, batch 32 x 128) in fp32 and bf16, ours and HF Trainer with
# its fused AdamW (`optim="adamw_torch_fused"`), and the ratio. Sourced by scripts/cuda_check.sh;
# `run` already compares the docs/finetune classifier.

# The fused_adamw test binary; HF Trainer needs accelerate (and its psutil, pyyaml), which `run`
# installs from .whl with the rest of the pinned reference.
train_kit() {
    local json
    json=$(cargo test --release --no-run --message-format=json -p convbert-train --test fused_adamw)
    echo "$json" | copy_test_binaries gpu-kit train_fused_adamw
    mkdir -p .whl
    # psutil 7.1.3 ships manylinux_2_28 wheels only (glibc 2.28, which torch 2.11 needs too).
    "$CONVBERT_PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        -d .whl -r fixtures/requirements-ddp.txt
}

# Writes into $1 conv-bert-base's config.json, the default model's vocabulary (bert-base-uncased)
# and train.jsonl: 512 texts of docs/finetune sentences, each over 128 word pieces, so that both
# sides train on full 128-token sequences.
train_base_setup() {
    local d=$1
    mkdir -p "$d"
    cp fixtures/default-model/vocab.txt "$d/"
    python3 - "$d" <<'PY'
import json, random, sys
from pathlib import Path
d = Path(sys.argv[1])
(d / "config.json").write_text(json.dumps({
    "architectures": ["ConvBertModel"], "model_type": "convbert", "vocab_size": 30522,
    "hidden_size": 768, "embedding_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
    "head_ratio": 2, "conv_kernel_size": 9, "num_groups": 1, "pad_token_id": 0}, indent=1))
rows = [json.loads(l) for l in Path("docs/finetune/train.jsonl").read_text().splitlines() if l.strip()]
rng = random.Random(0)
with open(d / "train.jsonl", "w") as f:
    for _ in range(512):
        picked = [rng.choice(rows) for _ in range(40)]  # ~5 words each: well over 128 pieces
        text = " ".join(r["text"] for r in picked)
        f.write(json.dumps({"text": text, "label": picked[0]["label"]}) + "\n")
PY
}

# Ours ($1, a convbert binary) against HF Trainer (python $2) at the conv-bert-base shape on
# device $3 (cpu or cuda), batch $4 x 128, $5 steps: examples/s and ours / HF for fp32 and bf16.
train_base_compare() {
    local convbert=$1 python=$2 device=$3 batch=$4 steps=$5 d=/tmp/tput-base status=0 p ours hf
    local hf_device=()
    [ "$device" = cpu ] || hf_device=(--cuda)
    rm -rf $d
    train_base_setup $d || return 1
    for p in "" --bf16; do
        ours=$("$convbert" train --task text-classification --config $d/config.json \
            --tokenizer $d/vocab.txt --train $d/train.jsonl --output "$d/out$p" \
            --max-steps "$steps" --batch-size "$batch" --max-length 128 --learning-rate 1e-4 \
            --warmup-ratio 0.1 --seed 7 --no-progress --device "$device" $p |
            python3 -c "import json, sys; print(json.load(sys.stdin)['examples_per_second'])") ||
            { status=1; continue; }
        hf=$("$python" convbert-train/benches/hf_trainer.py $d --max-steps "$steps" "${hf_device[@]}" \
            $p --batch-size "$batch" --max-length 128 --learning-rate 1e-4 \
            --optim adamw_torch_fused 2>/dev/null | tail -1 |
            python3 -c "import json, sys; print(json.load(sys.stdin)['hf_train_samples_per_second'])") ||
            { status=1; continue; }
        python3 -c "print(f'base ${p:-fp32} $device b${batch}x128: ours {$ours:.2f} examples/s, HF Trainer {$hf:.2f}, ours / HF {$ours / $hf:.2f}x')"
    done
    return $status
}

# The fused step test on CUDA, then train_base_compare at batch 32, TRAIN_BASE_STEPS steps (200).
train_run() {
    local k=gpu-kit steps=${TRAIN_BASE_STEPS:-200} status=0
    echo "== train_fused_adamw (CONVBERT_TEST_DEVICE=cuda)"
    "$k/train_fused_adamw" --nocapture --test-threads 1 || status=1
    echo "== training throughput, conv-bert-base shape, batch 32 x 128, $steps steps, cuda: ours vs HF Trainer (adamw_torch_fused)"
    train_base_compare "$k/convbert" python3 cuda 32 "$steps" || status=1
    return $status
}
