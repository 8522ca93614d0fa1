# Source this file: it makes sure the pinned libtorch (PyPI torch==2.11.0, what tch 0.24 binds)
# is installed in a versioned cache outside the checkout, and exports what the build needs.
#   . scripts/env.sh
# The venv is created when missing and reused when present; override its home with CONVBERT_CACHE.
CONVBERT_TORCH_VERSION=2.11.0
CONVBERT_CACHE=${CONVBERT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/convbert}
CONVBERT_VENV="$CONVBERT_CACHE/venv-torch-$CONVBERT_TORCH_VERSION"
_convbert_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! "$CONVBERT_VENV/bin/python" -c "import torch, transformers, safetensors, openai" >/dev/null 2>&1; then
    echo "setting up $CONVBERT_VENV (torch $CONVBERT_TORCH_VERSION, about 5 GB, a few minutes)" >&2
    mkdir -p "$CONVBERT_CACHE"
    python3 -m venv "$CONVBERT_VENV" &&
        "$CONVBERT_VENV/bin/pip" install --quiet -r "$_convbert_root/fixtures/requirements-runtime.txt" ||
        { echo "error: could not install torch into $CONVBERT_VENV" >&2; return 1; }
fi

export CONVBERT_VENV
export CONVBERT_PYTHON="$CONVBERT_VENV/bin/python"
export LIBTORCH="$CONVBERT_VENV/lib/python3.11/site-packages/torch"
unset LIBTORCH_USE_PYTORCH
