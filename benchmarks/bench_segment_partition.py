"""segment_partition at SegSort training size (B=8, 129x129 pixels, K=25/144 k-means
clusters, 21 classes): the fused op vs what research code does today (torch.unique over
(image, cluster, label) keys, as in SPML).

    pytest benchmarks/bench_segment_partition.py --benchmark-group-by=group
"""
import pytest
import torch

import segsort_ext
from segsort_ext.ops import reference
from segsort_ext.testing import random_clusters, random_labels

from conftest import run

B, H, W, NUM_CLASSES = 8, 129, 129, 21


def _segments(device, K):
    g = torch.Generator().manual_seed(0)
    blob = max(1, int(129 / K ** 0.5))
    clusters = random_clusters(B, H, W, K, blob=blob, ignore_fraction=0.0, generator=g).to(device)
    labels = random_labels(B, H, W, NUM_CLASSES, generator=g).to(device)
    return clusters, labels


@pytest.mark.parametrize("K", [25, 144])
@pytest.mark.parametrize("impl", ["segsort_ext", "segsort_ext_conn8", "torch_unique"])
def test_segment_partition(benchmark, device, K, impl):
    benchmark.group = f"segment_partition {device} K={K}"
    clusters, labels = _segments(device, K)
    fn = {
        "segsort_ext": lambda: segsort_ext.segment_partition(clusters, labels),
        "segsort_ext_conn8": lambda: segsort_ext.segment_partition(clusters, labels, connectivity=8),
        "torch_unique": lambda: reference.segment_partition(clusters, labels),
    }[impl]
    run(benchmark, fn, device)
