# Source this file: it makes sure the pinned TensorFlow reference (tensorflow-cpu==2.21.0 and
# tf-keras==2.21.0, fixtures/requirements-tf.txt) is installed in a versioned venv outside the
# checkout, one that also sees the torch venv of scripts/env.sh (torch, transformers, safetensors)
# through a .pth file, and exports CONVBERT_TF_PYTHON. Only fixtures/gen_tf.py and
# fixtures/check_tf_export.py need it; the normal build and test run do not.
#   . scripts/tf-env.sh && "$CONVBERT_TF_PYTHON" fixtures/gen_tf.py
# The venv is created when missing and reused when present; override its home with CONVBERT_CACHE.
CONVBERT_TF_VERSION=2.21.0
_convbert_tf_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$_convbert_tf_root/scripts/env.sh" || return 1
CONVBERT_TF_VENV="$CONVBERT_CACHE/venv-tf-$CONVBERT_TF_VERSION"

if ! TF_USE_LEGACY_KERAS=1 CUDA_VISIBLE_DEVICES="" TF_CPP_MIN_LOG_LEVEL=3 "$CONVBERT_TF_VENV/bin/python" -c \
    "import tensorflow, tf_keras, h5py, torch, transformers, safetensors" >/dev/null 2>&1; then
    echo "setting up $CONVBERT_TF_VENV (tensorflow-cpu $CONVBERT_TF_VERSION, about 1 GB, a few minutes)" >&2
    python3 -m venv "$CONVBERT_TF_VENV" &&
        _convbert_tf_site=$("$CONVBERT_TF_VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") &&
        _convbert_torch_site=$("$CONVBERT_PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") &&
        echo "$_convbert_torch_site" >"$_convbert_tf_site/zz-torch-venv.pth" &&
        "$CONVBERT_TF_VENV/bin/pip" install --quiet -r "$_convbert_tf_root/fixtures/requirements-tf.txt" ||
        { echo "error: could not install tensorflow into $CONVBERT_TF_VENV" >&2; return 1; }
fi

export CONVBERT_TF_VENV
export CONVBERT_TF_PYTHON="$CONVBERT_TF_VENV/bin/python"
# transformers' TF classes need Keras 2 (tf-keras); the goldens are CPU-only.
export TF_USE_LEGACY_KERAS=1
