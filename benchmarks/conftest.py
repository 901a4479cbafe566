import pytest
import torch

from segsort_ext.testing import devices, random_clusters, random_labels


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


# The SegSort training-size workload of the partition and pooling benchmarks.
B, H, W, NUM_CLASSES = 8, 129, 129, 21


def segsort_segments(device, K):
    g = torch.Generator().manual_seed(0)
    blob = max(1, int(129 / K ** 0.5))
    clusters = random_clusters(B, H, W, K, blob=blob, ignore_fraction=0.0, generator=g).to(device)
    labels = random_labels(B, H, W, NUM_CLASSES, generator=g).to(device)
    return clusters, labels
