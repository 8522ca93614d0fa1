# Source this file after scripts/env.sh: it exports CONVBERT_CUDA_INCLUDE, the CUDA headers the
# torch wheel lacks (crt/ and CCCL's nv/, from the nvidia-cuda-crt and nvidia-cuda-cccl wheels of
# torch 2.11's CUDA 13.0) unpacked into the cache, for the features that compile against
# libtorch's CUDA headers (convbert-distributed `nccl`, convbert-cuda-graphs `cuda`). No GPU or
# CUDA toolkit is needed to build them. A CONVBERT_CUDA_INCLUDE already set is kept.
if [ -z "${CONVBERT_CUDA_INCLUDE:-}" ]; then
    _convbert_headers="$CONVBERT_CACHE/cuda-headers-13.0.88"
    if [ ! -d "$_convbert_headers/nvidia/cu13/include/crt" ]; then
        _convbert_wheels=$(mktemp -d)
        "$CONVBERT_PYTHON" -m pip download -q --no-deps -d "$_convbert_wheels" \
            nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85 &&
            for w in "$_convbert_wheels"/*.whl; do
                "$CONVBERT_PYTHON" -m zipfile -e "$w" "$_convbert_headers.tmp" || break
            done
        rm -rf "$_convbert_wheels"
        # Whole or not at all: a cut download leaves no half-unpacked folder behind.
        if [ -d "$_convbert_headers.tmp/nvidia/cu13/include/crt" ]; then
            rm -rf "$_convbert_headers" && mv "$_convbert_headers.tmp" "$_convbert_headers"
        fi
        rm -rf "$_convbert_headers.tmp"
    fi
    export CONVBERT_CUDA_INCLUDE="$_convbert_headers/nvidia/cu13/include"
fi
