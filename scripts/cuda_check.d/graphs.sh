# CUDA graphs for small-batch inference (issue 15, part 2): the graph-vs-eager tests of
# convbert-cuda-graphs (the encoder: padded batches, exact lengths, eager outside the buckets, a
# capture that fails and falls back) and of every pipeline (graphs on vs off, fp32, 1e-5), then
# the speed at batch 1, 8 and 64 x 128 on the conv-bert-base shape (random weights, fp32): ours
# eager, ours through the graphs and HF eager in the same run, tokens/s and p50 latency, with the
# ratios (the target: graphs >= 2x HF in tokens/s and p50 at batch 1 and 8, no loss at 64).
# Sourced by scripts/cuda_check.sh.

# The cuda feature's builds (their own target directory: other features, a full rebuild), with
# the CUDA headers of scripts/cuda-headers.sh.
graphs_kit() {
    . scripts/cuda-headers.sh
    local json
    # The bench as a test-profile binary (its main runs as is): no separate bench-profile build.
    json=$(cargo test --release --no-run --message-format=json --target-dir target/cuda \
        --features convbert-cuda-graphs/cuda,convbert-pipelines/cuda-graphs \
        -p convbert-cuda-graphs --test graph_vs_eager --bench graphs \
        -p convbert-pipelines --test cuda_graphs)
    mkdir -p gpu-kit/graphs
    echo "$json" | copy_test_binaries gpu-kit/graphs
    ls gpu-kit/graphs
}

graphs_run() {
    local k=gpu-kit/graphs status=0 t
    for t in cuda-graphs_graph_vs_eager pipelines_cuda_graphs; do
        echo "== $t (CONVBERT_TEST_DEVICE=cuda)"
        "$k/$t" --nocapture --test-threads 1 || status=1
    done
    echo "== inference speed, conv-bert-base shape, fp32, batch 1, 8, 64 x 128, cuda: eager, graphs, HF eager"
    BENCH_DEVICE=cuda BENCH_BATCHES=${GRAPHS_BATCHES:-1,8,64} BENCH_SECONDS=${BENCH_SECONDS:-2} \
        BENCH_ROUNDS=${BENCH_ROUNDS:-3} "$k/cuda-graphs_graphs" || status=1
    return $status
}
