import pytest
import torch

from segsort_ext.testing import devices


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param not in devices():
        pytest.skip("CUDA: no GPU or no CUDA kernels in this build")
    return request.param


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
