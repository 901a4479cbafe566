import pytest
import torch

from segsort_ext.testing import NO_CUDA_REASON, devices


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param not in devices():
        pytest.skip(NO_CUDA_REASON)
    return request.param


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
