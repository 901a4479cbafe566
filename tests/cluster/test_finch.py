"""FINCH clustering (segsort_ext.cluster.finch) on SegmentIndex searches: the first level
against its definition, nested hierarchies, a prebuilt index, small inputs, and the
bad-input catalogue (refused inputs name the argument; extreme scales are exact)."""
import pytest
import torch
import torch.nn.functional as F

from segsort_ext.cluster import finch
from segsort_ext.retrieval import SegmentIndex
from segsort_ext.testing import needs_faiss

EXACT_BACKENDS = ["torch", pytest.param("faiss", marks=needs_faiss)]


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """a and b group the rows identically (cluster names aside)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def refines(fine: torch.Tensor, coarse: torch.Tensor) -> bool:
    """Every cluster of `fine` lies inside one cluster of `coarse`."""
    return len(set(zip(fine.tolist(), coarse.tolist()))) == len(set(fine.tolist()))


def finch_first_level_by_definition(x: torch.Tensor) -> torch.Tensor:
    """Dense cosine similarities, the three-rule adjacency, components by flood fill."""
    unit = F.normalize(x.double(), dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(float("-inf"))
    first = similarity.argmax(1)
    n = x.shape[0]
    adjacency = torch.zeros(n, n, dtype=torch.bool)
    adjacency[torch.arange(n), first] = True
    adjacency |= adjacency.T.clone()
    adjacency |= first[:, None] == first[None, :]
    labels = torch.full((n,), -1, dtype=torch.int64)
    next_label = 0
    for start in range(n):
        if labels[start] >= 0:
            continue
        stack = [start]
        labels[start] = next_label
        while stack:
            for j in adjacency[stack.pop()].nonzero().flatten().tolist():
                if labels[j] < 0:
                    labels[j] = next_label
                    stack.append(j)
        next_label += 1
    return labels


def blobs(num_blobs, per_blob, dim, seed, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_blobs, dim, generator=g) * 10
    truth = torch.arange(num_blobs).repeat_interleave(per_blob)
    x = centers[truth] + spread * torch.randn(num_blobs * per_blob, dim, generator=g)
    order = torch.randperm(num_blobs * per_blob, generator=g)
    return x[order], truth[order]


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_finch_first_level_matches_definition(backend):
    x, _ = blobs(5, 30, 8, seed=3, spread=2.0)  # overlapping blobs: a non-trivial graph
    partitions = finch(x, backend=backend)
    assert torch.equal(partitions[0], finch_first_level_by_definition(x))


def test_finch_recovers_nested_clusters_exactly():
    """Five blobs of 8 points built as a binary hierarchy (pairs 2 apart, pairs of pairs 20
    apart, quads 200 apart, blobs ~1e4 apart): FINCH's levels are pairs, quads, then exactly
    the blobs, then blobs merge."""
    g = torch.Generator().manual_seed(4)
    dim = 8
    axes = torch.eye(dim)
    points, truth = [], []
    blob_centers = torch.randn(5, dim, generator=g) * 1e4
    for blob in range(5):
        for member in range(8):
            signs = [1 if member & bit else -1 for bit in (1, 2, 4)]
            points.append(blob_centers[blob] + signs[0] * axes[0] + signs[1] * 10 * axes[1]
                          + signs[2] * 100 * axes[2])
            truth.append(blob)
    x, truth = torch.stack(points).double(), torch.tensor(truth)
    order = torch.randperm(40, generator=g)
    x, truth = x[order], truth[order]
    partitions = finch(x, metric="euclidean", backend="torch")
    counts = [int(p.max()) + 1 for p in partitions]
    assert counts[:3] == [20, 10, 5]
    assert same_partition(partitions[2], truth)
    assert counts[-1] == 1


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_finch_levels_strictly_coarser_and_nested(backend, metric):
    x, truth = blobs(6, 50, 16, seed=0)
    partitions = finch(x, metric=metric, backend=backend)
    counts = [int(p.max()) + 1 for p in partitions]
    assert all(a > b for a, b in zip(counts, counts[1:])), counts
    assert counts[-1] == 1
    for fine, coarse in zip(partitions, partitions[1:]):
        assert refines(fine, coarse)
    for p in partitions:
        assert p.dtype == torch.int64 and p.shape == (300,)
        # compact ids numbered by lowest row: first occurrences are 0, 1, 2, ...
        first_rows = [int((p == c).nonzero()[0]) for c in range(int(p.max()) + 1)]
        assert first_rows == sorted(first_rows)
        # levels still finer than the blobs never mix two blobs (measured: the first two)
        if int(p.max()) + 1 >= 6:
            assert refines(p, truth)
    assert len(finch(x, metric=metric, backend=backend, max_levels=2)) == 2


@needs_faiss
def test_finch_with_prebuilt_index_and_duplicates():
    x, _ = blobs(4, 20, 8, seed=5)
    x = torch.cat([x, x[:10]])  # exact duplicates: a row's first neighbour is its twin
    index = SegmentIndex(8, metric="cosine")
    index.add(x, torch.zeros(90, dtype=torch.int64))
    with_index = finch(x, index=index)
    without = finch(x, backend="torch")
    assert len(with_index) == len(without)
    assert all(torch.equal(a, b) for a, b in zip(with_index, without))
    for row in range(10):
        assert with_index[0][row] == with_index[0][80 + row]


def test_finch_small_inputs():
    assert finch(torch.empty(0, 3)) == []
    assert [p.tolist() for p in finch(torch.randn(1, 3))] == [[0]]
    assert [p.tolist() for p in finch(torch.randn(2, 3))] == [[0, 0]]


# ---------------------------------------------------------------------------------------
# legal edges equal a reference
# ---------------------------------------------------------------------------------------

# The refused inputs of finch are cases of tests/hostile/cases_cluster.py (one catalogue).


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_finch_rows_far_from_unit_scale(metric):
    """float32 rows of 2**100 and 2**-100 give the partitions of the rows themselves:
    squared norms would overflow (euclidean) and F.normalize would turn them to 0
    (cosine); both are scaled by powers of two first."""
    x, _ = blobs(4, 10, 6, seed=1)
    want = finch(x, metric=metric, backend="torch")
    for scale in (2.0 ** 100, 2.0 ** -100):
        got = finch(x * scale, metric=metric, backend="torch")
        assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))
    if metric == "cosine":  # each row at its own scale: only directions count
        scales = 2.0 ** torch.randint(-100, 100, (40, 1), generator=torch.Generator().manual_seed(0))
        assert all(torch.equal(a, b) for a, b in zip(finch(x * scales, backend="torch"), want))


def test_finch_legal_edges():
    """Identical rows (a stride-0 tensor) form one cluster; float16 rows cluster like their
    float32 values."""
    assert [p.tolist() for p in finch(torch.ones(1, 3).expand(6, 3))] == [[0] * 6]
    x, _ = blobs(3, 8, 4, seed=2)
    half = x.half()
    assert all(torch.equal(a, b) for a, b in zip(finch(half, backend="torch"), finch(half.float(), backend="torch")))
