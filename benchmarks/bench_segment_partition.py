"""segment_partition at SegSort training size (B=8, 129x129 pixels, K=25/144 k-means
clusters, 21 classes): the fused op vs what research code does today (torch.unique over
(image, cluster, label) keys, as in SPML). Memory-bound: every row records its rate
against the machine's copy bandwidth, for the bytes the op must move at least (read the
int64 clusters and labels, write the int64 segment ids).

    pytest benchmarks/bench_segment_partition.py --benchmark-group-by=group
"""
import pytest

import segsort_ext
from segsort_ext.ops import reference

from conftest import run, segsort_segments


@pytest.mark.parametrize("K", [25, 144])
@pytest.mark.parametrize("impl", ["segsort_ext", "segsort_ext_conn8", "torch_unique"])
def test_segment_partition(benchmark, record_roofline, device, K, impl):
    benchmark.group = f"segment_partition {device} K={K}"
    clusters, labels = segsort_segments(device, K)
    fn = {
        "segsort_ext": lambda: segsort_ext.segment_partition(clusters, labels),
        "segsort_ext_conn8": lambda: segsort_ext.segment_partition(clusters, labels, connectivity=8),
        "torch_unique": lambda: reference.segment_partition(clusters, labels),
    }[impl]
    run(benchmark, fn, device)
    record_roofline(device, nbytes=3 * clusters.numel() * 8)
