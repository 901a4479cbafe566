import pytest
import torch

import segsort_ext
from segsort_ext.ops import reference
from segsort_ext.testing import assert_segments_equal, needs_cuda, random_clusters, random_labels


@pytest.mark.parametrize("connectivity", [None, 4, 8])
@pytest.mark.parametrize("with_labels", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 9, 13), (3, 32, 17)])
def test_matches_reference(device, generator, connectivity, with_labels, shape):
    B, H, W = shape
    clusters = random_clusters(B, H, W, 5, blob=3, ignore_fraction=0.05, generator=generator)
    labels = random_labels(B, H, W, 4, generator=generator) if with_labels else None
    expected = reference.segment_partition(clusters, labels, connectivity=connectivity)
    actual = segsort_ext.segment_partition(
        clusters.to(device), labels.to(device) if with_labels else None, connectivity=connectivity)
    assert_segments_equal(actual, expected)
    assert actual.ids.device.type == device


def test_contract_order_and_fields(device):
    # image 0: cluster 1 covers labels 0 and 2 (two aligned segments), cluster 0 label 0.
    clusters = torch.tensor([[[1, 1, 0], [1, 1, -1]]], device=device)
    labels = torch.tensor([[[2, 0, 0], [0, 255, 0]]], device=device)
    s = segsort_ext.segment_partition(clusters, labels)
    assert s.ids.tolist() == [[[2, 1, 0], [1, -1, -1]]]
    assert s.batch.tolist() == [0, 0, 0]
    assert s.cluster.tolist() == [0, 1, 1]
    assert s.label.tolist() == [0, 0, 2]
    assert s.size.tolist() == [1, 2, 1]
    unlabeled = segsort_ext.segment_partition(clusters)
    assert unlabeled.label.tolist() == [-1, -1]
    assert unlabeled.size.tolist() == [1, 4]


def test_connectivity_4_vs_8(device):
    diagonal = torch.tensor([[[0, 1, 1], [1, 0, 1], [1, 1, 0]]], device=device)
    four = segsort_ext.segment_partition(diagonal, connectivity=4)
    eight = segsort_ext.segment_partition(diagonal, connectivity=8)
    # 4-connected: three isolated diagonal 0s, the 1s above and below the diagonal.
    assert four.ids.tolist() == [[[0, 3, 3], [4, 1, 3], [4, 4, 2]]]
    assert four.cluster.tolist() == [0, 0, 0, 1, 1]
    assert eight.num_segments == 2
    assert eight.size.tolist() == [3, 6]


def test_snake_component(device):
    # One long winding component: union-find must merge along a path that doubles back.
    snake = torch.ones(1, 7, 7, dtype=torch.int64)
    snake[0, 1, :6] = 0
    snake[0, 3, 1:] = 0
    snake[0, 5, :6] = 0
    s = segsort_ext.segment_partition(snake.to(device), connectivity=4)
    # cluster 0: three separate bars; cluster 1: one snake winding between them.
    assert s.cluster.tolist() == [0, 0, 0, 1]
    assert s.size.tolist() == [6, 6, 6, 49 - 18]


def test_wide_value_range_uses_sort_path(device, generator):
    clusters = random_clusters(2, 8, 8, 4, generator=generator) * 10**12  # too wide for a table
    labels = random_labels(2, 8, 8, 3, generator=generator) * 10**9
    labels[labels == 255 * 10**9] = 255
    for connectivity in (None, 4):
        expected = reference.segment_partition(clusters, labels, connectivity=connectivity)
        actual = segsort_ext.segment_partition(clusters.to(device), labels.to(device), connectivity=connectivity)
        assert_segments_equal(actual, expected)
    assert int(actual.cluster.max()) >= 10**12


def test_non_contiguous(device, generator):
    clusters = random_clusters(2, 10, 12, 4, generator=generator).to(device).transpose(1, 2)
    labels = random_labels(2, 12, 10, 3, generator=generator).to(device)
    assert not clusters.is_contiguous()
    expected = reference.segment_partition(clusters.cpu().contiguous(), labels.cpu(), connectivity=8)
    assert_segments_equal(segsort_ext.segment_partition(clusters, labels, connectivity=8), expected)


@pytest.mark.parametrize("shape", [(0, 4, 4), (2, 0, 3), (2, 3, 0)])
def test_empty(device, shape):
    s = segsort_ext.segment_partition(torch.zeros(shape, dtype=torch.int64, device=device), connectivity=4)
    assert s.ids.shape == shape and s.num_segments == 0


def test_all_ignored(device):
    clusters = torch.full((2, 3, 3), -1, dtype=torch.int64, device=device)
    labels = torch.zeros_like(clusters)
    s = segsort_ext.segment_partition(clusters, labels)
    assert s.num_segments == 0 and bool((s.ids == -1).all())
    s = segsort_ext.segment_partition(torch.zeros_like(clusters), torch.full_like(clusters, 255))
    assert s.num_segments == 0


def test_extreme_values(device):
    # Cluster ids and labels up to INT64_MAX: no "max + 1" overflow, the sort path takes them.
    top = torch.iinfo(torch.int64).max
    clusters = torch.tensor([[[0, top], [top, 5]]], device=device)
    labels = torch.tensor([[[top, 1], [1, 0]]], device=device)
    s = segsort_ext.segment_partition(clusters, labels)
    assert s.ids.tolist() == [[[0, 2], [2, 1]]]
    assert s.cluster.tolist() == [0, 5, top] and s.label.tolist() == [top, 0, 1]
    assert_segments_equal(s, reference.segment_partition(clusters.cpu(), labels.cpu()))


@pytest.mark.parametrize("connectivity", [0, 4])
def test_opcheck(device, generator, connectivity):
    clusters = random_clusters(2, 6, 7, 3, generator=generator, ignore_fraction=0.1).to(device)
    labels = random_labels(2, 6, 7, 3, generator=generator).to(device)
    for args in [(clusters, labels, 255, connectivity), (clusters, None, 255, connectivity)]:
        torch.library.opcheck(torch.ops.segsort_ext.segment_partition.default, args)


@needs_cuda
@pytest.mark.parametrize("connectivity", [None, 4, 8])
def test_cuda_matches_cpu_large(generator, connectivity):
    clusters = random_clusters(4, 129, 129, 25, blob=5, ignore_fraction=0.02, generator=generator)
    labels = random_labels(4, 129, 129, 21, generator=generator)
    cpu = segsort_ext.segment_partition(clusters, labels, connectivity=connectivity)
    cuda = segsort_ext.segment_partition(clusters.cuda(), labels.cuda(), connectivity=connectivity)
    assert_segments_equal(cuda, cpu)
