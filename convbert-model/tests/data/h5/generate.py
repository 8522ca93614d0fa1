"""Writes the tf_model.h5 fixtures of `checkpoint/tf_h5.rs`'s unit tests.

Run with the TF venv (tensorflow-cpu 2.21.0, tf-keras 2.21.0, transformers 4.57.6, h5py):
    TF_USE_LEGACY_KERAS=1 CUDA_VISIBLE_DEVICES="" python generate.py
- tf_model.h5 + tf_model.json: a tiny TFConvBertForSequenceClassification.save_pretrained file,
  and every weight's name, dtype, shape and FNV-1a 64 of its little-endian bytes (as h5py reads it).
- odd.h5: what Keras may also write: weight_names split into weight_names0/1 as fixed-length
  byte strings, an empty float64 weight_names, and f16/f64/i32 datasets.
- chunked.h5: a layer whose only weight is chunked + gzip (not readable in place).
"""
import json
import os
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def real():
    import tensorflow as tf
    from transformers import ConvBertConfig, TFConvBertForSequenceClassification

    tf.keras.utils.set_random_seed(0)
    cfg = ConvBertConfig(vocab_size=100, hidden_size=32, embedding_size=16, num_attention_heads=2,
                         head_ratio=4, intermediate_size=48, num_hidden_layers=2, num_groups=2,
                         conv_kernel_size=3, max_position_embeddings=64, num_labels=3)
    model = TFConvBertForSequenceClassification(cfg)
    model(model.dummy_inputs)
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        with open(os.path.join(d, "tf_model.h5"), "rb") as f:
            data = f.read()
    with open(os.path.join(HERE, "tf_model.h5"), "wb") as f:
        f.write(data)
    weights = []
    with h5py.File(os.path.join(HERE, "tf_model.h5"), "r") as f:
        for layer in f.attrs["layer_names"]:
            layer = layer.decode() if hasattr(layer, "decode") else layer
            for name in f[layer].attrs["weight_names"]:
                name = name.decode() if hasattr(name, "decode") else name
                value = np.asarray(f[layer][name])
                weights.append({"name": f"{layer}/{name}", "dtype": str(value.dtype),
                                "shape": list(value.shape),
                                "fnv1a64": fnv1a64(value.astype("<f4").tobytes())})
    with open(os.path.join(HERE, "tf_model.json"), "w") as f:
        json.dump({"weights": weights}, f, indent=1)


def odd():
    with h5py.File(os.path.join(HERE, "odd.h5"), "w") as f:
        f.attrs["layer_names"] = np.array([b"split", b"empty"])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.21.0"
        g = f.create_group("split")
        names = [b"m/split/a/kernel:0", b"m/split/b:0", b"m/split/c:0"]
        g.attrs["weight_names0"] = np.array(names[:2])
        g.attrs["weight_names1"] = np.array(names[2:])
        g["m/split/a/kernel:0"] = np.arange(6, dtype="<f2").reshape(2, 3)
        g["m/split/b:0"] = np.arange(4, dtype="<f8")
        g["m/split/c:0"] = np.arange(3, dtype="<i4")
        e = f.create_group("empty")
        e.attrs["weight_names"] = np.asarray([])


def chunked():
    with h5py.File(os.path.join(HERE, "chunked.h5"), "w") as f:
        f.attrs["layer_names"] = np.array([b"dense"])
        g = f.create_group("dense")
        g.attrs["weight_names"] = np.array([b"m/dense/kernel:0"])
        g.create_dataset("m/dense/kernel:0", data=np.ones((8, 8), "<f4"), chunks=(4, 4),
                         compression="gzip")


if __name__ == "__main__":
    real()
    odd()
    chunked()
