#!/usr/bin/env python3
"""Throughput of HF Trainer on the setup `convbert train` is benchmarked with (same config, vocab,
data and hyper-parameters), for a side-by-side examples/s figure.

    $CONVBERT_PYTHON convbert-train/benches/hf_trainer.py DIR [--bf16 | --fp16] [--max-steps N] [--cuda]
        [--batch-size B] [--max-length L] [--learning-rate LR] [--optim NAME]

DIR holds config.json, vocab.txt and train.jsonl ({text, label}); prints HF's
train_samples_per_second over N steps (default 60), batch B (16), texts truncated at L word pieces
(32), lr LR (2e-3), seed 7, on the CPU (or the GPU with --cuda), fp32 or mixed precision (as
`convbert train --bf16 / --fp16`), with the optimizer NAME (`TrainingArguments.optim`; default
HF's default, fused AdamW: `adamw_torch_fused`).
"""
import argparse
import json
import tempfile
from pathlib import Path

import torch
from transformers import (BertTokenizer, ConvBertConfig, ConvBertForSequenceClassification, DataCollatorWithPadding,
                          Trainer, TrainingArguments)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=2e-3)
    ap.add_argument("--optim", default=None)
    ap.add_argument("--cuda", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--fp16", action="store_true")
    a = ap.parse_args()
    d = a.dir
    rows = [json.loads(l) for l in (d / "train.jsonl").read_text().splitlines() if l.strip()]
    names = sorted({r["label"] for r in rows})
    tok = BertTokenizer(str(d / "vocab.txt"))
    cfg = ConvBertConfig.from_pretrained(d)
    cfg.num_labels = len(names)
    torch.manual_seed(3)
    model = ConvBertForSequenceClassification(cfg)
    data = [dict(tok(r["text"], truncation=True, max_length=a.max_length), labels=names.index(r["label"]))
            for r in rows]
    optim = {"optim": a.optim} if a.optim else {}
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=a.max_steps,
                             per_device_train_batch_size=a.batch_size, learning_rate=a.learning_rate,
                             warmup_ratio=0.1, seed=7, logging_steps=10, save_strategy="no", report_to=[],
                             use_cpu=not a.cuda, disable_tqdm=True, dataloader_num_workers=0, bf16=a.bf16,
                             fp16=a.fp16, **optim)
    out = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok)).train()
    print(json.dumps({"hf_train_samples_per_second": out.metrics["train_samples_per_second"],
                      "hf_train_runtime": out.metrics["train_runtime"], "torch_threads": torch.get_num_threads(),
                      "optim": args.optim.value if hasattr(args.optim, "value") else str(args.optim)}))


if __name__ == "__main__":
    main()
