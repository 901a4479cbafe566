#!/usr/bin/env bash
# GPU verification (DESIGN.md): on a GPU machine that has this working tree and a CUDA
# torch but no network, build against that torch, run the tests (CUDA included) and the
# benchmarks, and write <date>-<gpu>.json to the directory given (default
# benchmarks/results/). Prints a summary table last. Budget: under 10 minutes.
#
#   benchmarks/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out_dir=${1:-benchmarks/results}
mkdir -p "$out_dir"
work=$(mktemp -d)
PY=${PYTHON:-python}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
# Only this GPU's architecture: a faster build, and the kernels that will actually run.
arch=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null)
if [ -z "$arch" ]; then echo "gpu_check: torch sees no GPU" >&2; exit 1; fi
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export REQUIRE_CUDA=1

echo "== build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
start=$(date +%s)
if ! $PY -m pip install --no-deps --no-build-isolation -e . >"$work/build.log" 2>&1; then
  tail -50 "$work/build.log"; echo "gpu_check: build failed" >&2; exit 1
fi
echo "   built in $(( $(date +%s) - start )) s"
$PY -m segsort_ext.buildinfo

echo "== tests"
timeout 240 $PY -m pytest tests -q -p no:cacheprovider --junitxml="$work/tests.xml" 2>&1 | tail -25

echo "== benchmarks (CUDA cases; the CPU ones are measured on the CPU machines)"
SEGSORT_BENCH_POINTS=${SEGSORT_BENCH_POINTS:-10000000} \
timeout 200 $PY -m pytest benchmarks -q -p no:cacheprovider -k cuda --benchmark-max-time=0.2 \
  --benchmark-json="$work/bench.json" --benchmark-group-by=group \
  --benchmark-columns=median,iqr,rounds 2>&1 | grep -vE "^\s*$" | tail -80

$PY benchmarks/gpu_results.py --tests "$work/tests.xml" --bench "$work/bench.json" --out-dir "$out_dir"
