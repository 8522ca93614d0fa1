#!/usr/bin/env python3
"""Checks that head checkpoints written by the Rust `save_pretrained` load in Hugging Face
`transformers` (pinned: 4.57.6) and reproduce the Rust outputs.

    $CONVBERT_PYTHON scripts/roundtrip_heads.py DIR

DIR holds one sub-directory per saved head: config.json + model.safetensors (what Rust wrote) and
rust_outputs.safetensors with the inputs (`in.*`) the Rust head ran on and its outputs (`out.*`:
logits | start_logits + end_logits, and loss when labels were given). The HF class comes from
`architectures` in config.json. Each head is loaded with `from_pretrained` (any missing or
unexpected weight fails), run in eval mode, and compared with atol 1e-5 (loss: rtol 1e-5).
Exit status: 0 when every head matches, 1 otherwise.
"""
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file

ATOL = 1e-5


def check_head(head_dir: Path) -> list[str]:
    import json

    config = json.loads((head_dir / "config.json").read_text())
    class_name = config["architectures"][0]
    cls = getattr(transformers, class_name)
    model, info = cls.from_pretrained(head_dir, output_loading_info=True)
    model.eval()
    problems = [f"{k}: {v}" for k, v in info.items() if k != "error_msgs" and v]
    if class_name == "ConvBertForMaskedLM" and model.config.tie_word_embeddings:
        emb = model.convbert.embeddings.word_embeddings.weight
        if model.generator_lm_head.weight.data_ptr() != emb.data_ptr():
            problems.append("generator_lm_head.weight is not tied to the word embeddings")
    tensors = load_file(head_dir / "rust_outputs.safetensors")
    inputs = {k[3:]: v for k, v in tensors.items() if k.startswith("in.")}
    with torch.inference_mode():
        out = model(**inputs)
    for key, want in tensors.items():
        if not key.startswith("out."):
            continue
        name = key[4:]
        got = getattr(out, name)
        if got is None:
            problems.append(f"{name}: HF returned None")
            continue
        got = got.reshape(want.shape).to(want.dtype)
        diff = (got - want).abs().max().item() if want.numel() else 0.0
        tol = ATOL if name != "loss" else ATOL * max(1.0, want.abs().max().item())
        status = "ok" if diff <= tol else "MISMATCH"
        print(f"  {head_dir.name:40s} {class_name:36s} {name:13s} max|diff| {diff:.2e} {status}")
        if diff > tol:
            problems.append(f"{name}: max |diff| {diff:.3e} > {tol:.1e}")
    return problems


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(sys.argv[1])
    heads = sorted(p for p in root.iterdir() if (p / "rust_outputs.safetensors").exists())
    if not heads:
        print(f"no saved heads (with rust_outputs.safetensors) under {root}", file=sys.stderr)
        return 1
    transformers.logging.set_verbosity_error()
    failed = 0
    for head_dir in heads:
        problems = check_head(head_dir)
        for p in problems:
            print(f"FAIL {head_dir.name}: {p}")
        failed += bool(problems)
    print(f"{len(heads) - failed}/{len(heads)} heads reproduced by transformers {transformers.__version__}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
