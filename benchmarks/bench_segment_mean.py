"""segment_mean at SegSort training size (B=8, 129x129 pixels, D=32/64, K=144 k-means
clusters, 21 classes): the fused op vs what research code does today (index_add_ /
scatter_reduce pooling over a permuted (N, D) copy), forward and forward + backward.
Memory-bound: every row records its rate against the machine's copy bandwidth, for the
bytes the op must move at least (forward: read the features and int64 ids, write the
prototypes; backward: read the ids again, write the features' gradient).

    pytest benchmarks/bench_segment_mean.py --benchmark-group-by=group
"""
import pytest
import torch

import segsort_ext
from segsort_ext.ops import reference

from conftest import B, H, W, run, segsort_segments


@pytest.mark.parametrize("D", [32, 64])
@pytest.mark.parametrize("impl", ["segsort_ext", "segsort_ext_nd", "index_add", "scatter_reduce"])
def test_segment_mean_forward(benchmark, record_roofline, device, D, impl):
    benchmark.group = f"segment_mean fwd {device} D={D} K=144"
    clusters, labels = segsort_segments(device, 144)
    s = segsort_ext.segment_partition(clusters, labels)
    x = torch.randn(B, D, H, W, device=device)
    x_nd = x.permute(0, 2, 3, 1).reshape(-1, D).contiguous()
    ids_flat = s.ids.reshape(-1)
    S = s.num_segments

    def index_add():  # what users write: permute to (N, D), drop ignored, index_add_, normalise
        keep = ids_flat >= 0
        pixels = x.permute(0, 2, 3, 1).reshape(-1, D)
        sums = pixels.new_zeros(S, D).index_add_(0, ids_flat[keep], pixels[keep])
        return torch.nn.functional.normalize(sums, dim=1)

    def scatter_reduce():
        keep = ids_flat >= 0
        pixels = x.permute(0, 2, 3, 1).reshape(-1, D)
        index = ids_flat[keep].unsqueeze(1).expand(-1, D)
        sums = pixels.new_zeros(S, D).scatter_reduce_(0, index, pixels[keep], "sum")
        return torch.nn.functional.normalize(sums, dim=1)

    fn = {
        "segsort_ext": lambda: segsort_ext.segment_mean(x, s.ids, S),
        "segsort_ext_nd": lambda: segsort_ext.segment_mean(x_nd, ids_flat, S),
        "index_add": index_add,
        "scatter_reduce": scatter_reduce,
    }[impl]
    run(benchmark, fn, device)
    record_roofline(device, nbytes=x.numel() * 4 + ids_flat.numel() * 8 + S * D * 4)


@pytest.mark.parametrize("impl", ["segsort_ext", "index_add"])
def test_segment_mean_forward_backward(benchmark, record_roofline, device, impl):
    D = 64
    benchmark.group = f"segment_mean fwd+bwd {device} D={D} K=144"
    clusters, labels = segsort_segments(device, 144)
    s = segsort_ext.segment_partition(clusters, labels)
    x = torch.randn(B, D, H, W, device=device, requires_grad=True)
    pool = segsort_ext.segment_mean if impl == "segsort_ext" else reference.segment_mean

    def step():
        pool(x, s.ids, s.num_segments).sum().backward()
        x.grad = None

    run(benchmark, step, device)
    record_roofline(device, nbytes=2 * (x.numel() * 4 + s.ids.numel() * 8 + s.num_segments * D * 4))
