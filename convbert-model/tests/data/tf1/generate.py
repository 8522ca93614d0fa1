"""Writes the small TF1 tensor bundle the `checkpoint::tf_bundle` unit tests read.

Run from this directory with TensorFlow 2.21.0 (CPU): `CUDA_VISIBLE_DEVICES= python generate.py`.
Two `SaveV2` parts merged by `MergeV2Checkpoints` give a two-shard bundle (`model.ckpt-7`), with
a string tensor, an int64 `global_step`, several dtypes and enough names for several restart
points of the index block; `expected.json` is what TensorFlow itself lists and reads back.
"""

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = "model.ckpt-7"


def parts():
    rng = np.random.default_rng(7)
    a = {
        "global_step": np.array(7, dtype=np.int64),
        "electra/embeddings/word_embeddings": rng.standard_normal((30, 8)).astype(np.float32),
        "electra/embeddings/LayerNorm/gamma": np.ones(8, dtype=np.float32),
        "vocab_strings": np.array([b"hello", b"world", b""], dtype=object),
        "half_weight": rng.standard_normal((3, 2)).astype(np.float16),
        "bf16_weight": tf.constant(rng.standard_normal(4).astype(np.float32), dtype=tf.bfloat16),
        "int32_ids": np.arange(5, dtype=np.int32),
        "double_scalar": np.array(2.5, dtype=np.float64),
        "bool_mask": np.array([True, False, True]),
        "uint8_bytes": np.arange(6, dtype=np.uint8).reshape(2, 3),
        "int8_bytes": np.arange(-3, 3, dtype=np.int8),
        "empty_tensor": np.zeros((0, 4), dtype=np.float32),
    }
    b = {}
    for i in range(40):
        b[f"electra/encoder/layer_{i % 4}/attention/self/w_{i:02d}"] = (
            rng.standard_normal((2, 3)).astype(np.float32))
    return [a, b]


def main():
    for name in os.listdir(HERE):
        if name.startswith(PREFIX) or name in ("checkpoint", "expected.json"):
            os.remove(os.path.join(HERE, name))
    tmp = tempfile.mkdtemp()
    prefixes = []
    for i, part in enumerate(parts()):
        p = os.path.join(tmp, f"part-{i}")
        names = list(part)
        tf.raw_ops.SaveV2(prefix=p, tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=[tf.constant(part[n]) if not isinstance(part[n], tf.Tensor)
                                   else part[n] for n in names])
        prefixes.append(p)
    dest = os.path.join(HERE, PREFIX)
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=prefixes, destination_prefix=dest,
                                  delete_old_dirs=False)
    shutil.rmtree(tmp)
    with open(os.path.join(HERE, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{PREFIX}"\n'
                f'all_model_checkpoint_paths: "{PREFIX}"\n')

    reader = tf.train.load_checkpoint(dest)
    dtypes = reader.get_variable_to_dtype_map()
    tensors = []
    for name, shape in tf.train.list_variables(dest):
        value = reader.get_tensor(name)
        entry = {"name": name, "shape": list(shape), "dtype": types_pb2.DataType.Name(dtypes[name].as_datatype_enum)}
        if dtypes[name] != tf.string:
            flat = np.asarray(value).reshape(-1)
            entry["first"] = [float(x) for x in flat[:3].astype(np.float64)]
        tensors.append(entry)
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        f.write('{"tf_version": %s, "prefix": %s, "tensors": [\n' % (
            json.dumps(tf.__version__), json.dumps(PREFIX)))
        f.write(",\n".join(json.dumps(t) for t in tensors))
        f.write("\n]}\n")


if __name__ == "__main__":
    main()
