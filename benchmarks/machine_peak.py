"""The machine's floors, measured in the same run as the rows that compare with them: the
float32 GEMM peak (a large ``torch.mm``) for compute-bound rows, the copy bandwidth (a
large tensor copy) for memory-bound ones, so every row reads as a fraction of what this
machine, under its load at that moment, can do.

    from machine_peak import measure_floor, roofline, seconds, torch_threads

The benchmarks get the floor through conftest's ``roofline`` fixture (measured once per
session for each device and thread count). A shared or throttled machine makes absolute
times noisy; ratios measured side by side in one run, and the fraction of a floor
measured in that run, are what a row means.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import NamedTuple, Optional

import torch


class Floor(NamedTuple):
    gemm_gflops: float  # float32 (2048 x 2048) @ (2048 x 2048) torch.mm
    copy_gbps: float  # bytes read + bytes written per second by a 256 MiB float32 copy


def seconds(fn, device: str = "cpu") -> float:
    """Wall time of one call of fn (the GPU synchronised before and after)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved(benchmark, ours, theirs, rounds: int, device: str = "cpu") -> tuple[list, list]:
    """(our seconds, their seconds) per round: `theirs` runs as pytest-benchmark's untimed
    setup before each of our rounds, so the two alternate and share the machine's state."""
    ours_s, theirs_s = [], []
    benchmark.pedantic(lambda: ours_s.append(seconds(ours, device)),
                       setup=lambda: theirs_s.append(seconds(theirs, device)), rounds=rounds, warmup_rounds=0)
    return ours_s, theirs_s


def _median_seconds(fn, device: str, repeats: int) -> float:
    fn()  # warm-up: allocator, BLAS dispatch, thread pool
    return statistics.median(seconds(fn, device) for _ in range(repeats))


def gemm_peak_gflops(device: str = "cpu", size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 (size x size) @ (size x size) torch.mm into a preallocated
    output, the median of `repeats` calls after a warm-up (current torch threads)."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device) for _ in range(2))
    out = torch.empty(size, size, device=device)
    return 2 * size ** 3 / _median_seconds(lambda: torch.mm(a, b, out=out), device, repeats) / 1e9


def copy_peak_gbps(device: str = "cpu", mib: int = 256, repeats: int = 5) -> float:
    """GB/s (bytes read + bytes written, as STREAM counts a copy) of copying `mib` MiB of
    float32 into a preallocated tensor: far larger than any cache, so it measures memory."""
    source = torch.ones(mib << 18, device=device)
    target = torch.empty_like(source)
    return 2 * source.numel() * 4 / _median_seconds(lambda: target.copy_(source), device, repeats) / 1e9


def measure_floor(device: str = "cpu") -> Floor:
    return Floor(gemm_peak_gflops(device), copy_peak_gbps(device))


def roofline(time_s: float, floor: Floor, *, flop: Optional[float] = None, nbytes: Optional[float] = None) -> dict:
    """extra_info fields of a row that took time_s: a compute-bound row gives its `flop`
    (GFLOP, achieved GFLOP/s, fraction of the GEMM peak), a memory-bound one the `nbytes`
    it must move at least (GB, achieved GB/s, fraction of the copy bandwidth)."""
    if (flop is None) == (nbytes is None):
        raise ValueError("roofline: give exactly one of flop (compute-bound) or nbytes (memory-bound)")
    if flop is not None:
        achieved = flop / time_s / 1e9
        return {"gflop": flop / 1e9, "achieved_gflops": achieved, "peak_gflops": floor.gemm_gflops,
                "fraction_of_peak": achieved / floor.gemm_gflops}
    achieved = nbytes / time_s / 1e9
    return {"gbytes": nbytes / 1e9, "achieved_gbps": achieved, "peak_gbps": floor.copy_gbps,
            "fraction_of_peak": achieved / floor.copy_gbps}


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's intra-op threads set to `count` for the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
