"""Recurrent blurring mean shift, T = 10 iterations forward + backward, D = 64: fused
(segsort_ext.blurring_mean_shift) vs the dense PyTorch loop (reference.py: the N x N kernel every
iteration) vs torch.nn.functional.scaled_dot_product_attention doing the same math
(eta = 1: softmax(bandwidth X X^T) X, then normalize). extra_info holds the achieved
GFLOP/s for the attention work and its fraction of the GEMM peak measured in the same
session, counting 4 N^2 D forward + 10 N^2 D backward per iteration (the flash-attention
convention, backward = 2.5 x forward), and peak memory.

CPU: N = 2048 (and a one-off N = 20000, D = 32, T = 2 peak-memory run); CUDA: N = 4096,
16384, 65536 (dense skipped where its N x N kernels cannot fit).

test_cpu_vs_sdpa is issue 17's row: ours against SDPA at N = 2048 and 8192, interleaved
(SDPA, ours, SDPA, ours, ...) in one process with SEGSORT_BENCH_THREADS threads (default 2;
set OMP_WAIT_POLICY=PASSIVE on a shared machine), recording both medians, our time as a
fraction of SDPA's (target <= 0.9), our GFLOP/s and the fraction of the float32 GEMM peak
measured at the same thread count.

    pytest benchmarks/bench_blurring_mean_shift.py --benchmark-group-by=group
"""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.ops import blurring_mean_shift, reference

from conftest import run
from machine_peak import interleaved, torch_threads

D, T, BANDWIDTH = 64, 10, 6.0
THREADS = int(os.environ.get("SEGSORT_BENCH_THREADS", 2))
ROUNDS = int(os.environ.get("SEGSORT_BENCH_ROUNDS", 5))


def sdpa_mean_shift(x, bandwidth, iters):
    x = F.normalize(x, dim=2)
    for _ in range(iters):
        x = F.normalize(F.scaled_dot_product_attention(x, x, x, scale=bandwidth), dim=2)
    return x


IMPLS = {
    "segsort_ext": lambda x: blurring_mean_shift(x, bandwidth=BANDWIDTH, iters=T),
    "dense": lambda x: reference.blurring_mean_shift(x, bandwidth=BANDWIDTH, iters=T),
    "sdpa": lambda x: sdpa_mean_shift(x, BANDWIDTH, T),
}


def _sizes():
    return [("cpu", 2048)] + [("cuda", n) for n in (4096, 16384, 65536)]


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("size", _sizes(), ids=lambda s: f"{s[0]}-N{s[1]}")
def test_blurring_mean_shift_forward_backward(benchmark, record_roofline, device, size, impl):
    size_device, N = size
    if size_device != device:
        pytest.skip("size for the other device")
    if impl == "dense" and N * N * 4 * T > 40 * 2**30:
        pytest.skip("dense: T N x N kernels do not fit")
    benchmark.group = f"blurring_mean_shift fwd+bwd T={T} {device} N={N} D={D}"
    x = torch.randn(1, N, D, device=device, generator=None).requires_grad_()

    def step():
        out = IMPLS[impl](x)
        out.square().sum().backward()
        x.grad = None

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = run(benchmark, step, device)
    del result
    if device == "cuda":
        benchmark.extra_info["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    record_roofline(device, flop=_flop(N))


def _flop(N):
    return 14 * N * N * D * T


@pytest.mark.parametrize("N", [2048, 8192])
def test_cpu_vs_sdpa(benchmark, record_roofline, device, N):
    if device != "cpu":
        pytest.skip("CPU target")
    benchmark.group = f"blurring_mean_shift vs SDPA fwd+bwd T={T} cpu N={N} D={D} {THREADS} threads"
    x = torch.randn(1, N, D, generator=torch.Generator().manual_seed(0)).requires_grad_()

    def step(impl):
        IMPLS[impl](x).square().sum().backward()
        x.grad = None

    with torch_threads(THREADS):
        step("segsort_ext"), step("sdpa")  # warm-up
        ours_s, sdpa_s = interleaved(benchmark, lambda: step("segsort_ext"), lambda: step("sdpa"), ROUNDS)
    ours, sdpa = statistics.median(ours_s), statistics.median(sdpa_s)
    benchmark.extra_info.update({
        "threads": THREADS, "ours_s": ours, "sdpa_s": sdpa, "time_vs_sdpa": ours / sdpa,
        "time_vs_sdpa_rounds": [a / b for a, b in zip(ours_s, sdpa_s)], "ours_rounds_s": ours_s,
        "sdpa_rounds_s": sdpa_s,
    })
    with torch_threads(THREADS):
        record_roofline(device, flop=_flop(N), time_s=ours)


_CPU_PEAK = """
import resource, torch
from segsort_ext.ops import blurring_mean_shift
x = torch.randn(1, 20000, 32).requires_grad_()
blurring_mean_shift(x, bandwidth=6.0, iters=2).square().sum().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # the whole process, torch included
"""


def test_cpu_peak_memory_n20000(benchmark, device):
    """The issue's CPU memory target: N = 20000, D = 32 forward + backward (T = 2); the
    dense version would hold 2 x 1.6 GB of kernels plus their softmax and gradients."""
    if device != "cpu":
        pytest.skip("CPU target")
    benchmark.group = "blurring_mean_shift CPU memory N=20000 D=32 T=2"
    out = benchmark.pedantic(lambda: subprocess.run([sys.executable, "-c", _CPU_PEAK], capture_output=True,
                                                    text=True, check=True, cwd=Path(__file__).parent),
                             rounds=1, iterations=1)
    benchmark.extra_info["process_peak_mib"] = json.loads(out.stdout.strip().splitlines()[-1])
