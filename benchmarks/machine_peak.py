"""The machine's floor for the benchmarks that compare with it: the float32 GEMM peak,
measured in the same run (a large ``torch.mm``), so every row reads as a fraction of what
this machine, under its load at that moment, can do.

    from machine_peak import gemm_peak_gflops, roofline, seconds, torch_threads

A shared or throttled machine makes absolute times noisy; ratios measured side by side
in one run, and the fraction of a peak measured in that run, are what a row means.
"""
from __future__ import annotations

import contextlib
import statistics
import time

import torch


def seconds(fn, device: str = "cpu") -> float:
    """Wall time of one call of fn (the GPU synchronised before and after)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def gemm_peak_gflops(device: str = "cpu", size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 (size x size) @ (size x size) torch.mm into a preallocated
    output, the median of `repeats` calls after a warm-up (current torch threads)."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device) for _ in range(2))
    out = torch.empty(size, size, device=device)
    torch.mm(a, b, out=out)  # warm-up: allocator, BLAS dispatch, thread pool
    median = statistics.median(seconds(lambda: torch.mm(a, b, out=out), device) for _ in range(repeats))
    return 2 * size ** 3 / median / 1e9


def roofline(flop: float, time_s: float, peak_gflops: float) -> dict:
    """extra_info fields of a row: its GFLOP, achieved GFLOP/s and fraction of the peak."""
    achieved = flop / time_s / 1e9
    return {"gflop": flop / 1e9, "achieved_gflops": achieved, "peak_gflops": peak_gflops,
            "fraction_of_peak": achieved / peak_gflops}


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's intra-op threads set to `count` for the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
