#!/usr/bin/env python3
"""Throughput of HF Trainer on the setup `convbert train` is benchmarked with (same config, vocab,
data and hyper-parameters), for a side-by-side examples/s figure.

    $CONVBERT_PYTHON convbert-train/benches/hf_trainer.py DIR [--bf16 | --fp16] [--max-steps N] [--cuda]

DIR holds config.json, vocab.txt and train.jsonl ({text, label}); prints HF's
train_samples_per_second over N steps (default 60), batch 16, lr 2e-3, seed 7, on the CPU (or the
GPU with --cuda), fp32 or mixed precision (as `convbert train --bf16 / --fp16`), with HF's
default optimizer (fused AdamW).
"""
import json
import sys
import tempfile
from pathlib import Path

import torch
from transformers import (BertTokenizer, ConvBertConfig, ConvBertForSequenceClassification, DataCollatorWithPadding,
                          Trainer, TrainingArguments)


def main() -> None:
    d = Path(sys.argv[1])
    max_steps = int(sys.argv[sys.argv.index("--max-steps") + 1]) if "--max-steps" in sys.argv else 60
    rows = [json.loads(l) for l in (d / "train.jsonl").read_text().splitlines() if l.strip()]
    names = sorted({r["label"] for r in rows})
    tok = BertTokenizer(str(d / "vocab.txt"))
    cfg = ConvBertConfig.from_pretrained(d)
    cfg.num_labels = len(names)
    torch.manual_seed(3)
    model = ConvBertForSequenceClassification(cfg)
    data = [dict(tok(r["text"], truncation=True, max_length=32), labels=names.index(r["label"])) for r in rows]
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=max_steps, per_device_train_batch_size=16,
                             learning_rate=2e-3, warmup_ratio=0.1, seed=7, logging_steps=10, save_strategy="no",
                             report_to=[], use_cpu="--cuda" not in sys.argv, disable_tqdm=True,
                             dataloader_num_workers=0, bf16="--bf16" in sys.argv, fp16="--fp16" in sys.argv)
    out = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok)).train()
    print(json.dumps({"hf_train_samples_per_second": out.metrics["train_samples_per_second"],
                      "hf_train_runtime": out.metrics["train_runtime"], "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
