import pytest
import torch

from segsort_ext.testing import devices


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param not in devices():
        pytest.skip("CUDA: no GPU or no CUDA kernels in this build")
    return request.param


def run(benchmark, fn, device):
    """Times fn with the GPU synchronised after every call (pytest-benchmark times host
    wall clock, so each round must include the kernels it launched)."""
    if device == "cuda":
        def timed():
            out = fn()
            torch.cuda.synchronize()
            return out
    else:
        timed = fn
    timed()  # warm-up: allocator, lazy init
    return benchmark(timed)
