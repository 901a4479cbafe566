import types

import pytest
import torch
import torch.nn.functional as F

import segsort_ext.ops.nearest_centroid as nearest_centroid_module
from segsort_ext.ops import HAS_EXTENSION, reference
from segsort_ext.ops.nearest_centroid import nearest_centroid
from segsort_ext.testing import INF, NAN, needs_extension


def unit(n, d, generator, dtype=torch.float64):
    return F.normalize(torch.randn(n, d, dtype=torch.float64, generator=generator), dim=1).to(dtype)


# (N, D, K): empty, one cluster, D not a multiple of a SIMD vector, N not a multiple of a
# tile, several slices (4096 rows each), K so large that a tile is the minimum 64 rows.
SHAPES = [(0, 5, 3), (1, 1, 1), (37, 5, 1), (1000, 20, 7), (5000, 128, 100), (3001, 33, 300), (600, 16, 1500)]


@pytest.mark.parametrize("N, D, K", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(device, generator, N, D, K, dtype):
    points, centroids = unit(N, D, generator), unit(K, D, generator)
    best, labels, sums = reference.nearest_centroid(points, centroids, with_sums=True)
    actual = nearest_centroid(points.to(device, dtype), centroids.to(device, dtype), with_sums=True)
    assert actual.best.dtype == actual.sums.dtype == dtype and actual.labels.dtype == torch.int64
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(actual.best.cpu().double(), best, rtol=0, atol=tol)
    # Labels must agree wherever the float64 runner-up is clearly behind the best.
    top = (points @ centroids.T).topk(min(K, 2), dim=1).values
    clear = (top[:, 0] - top[:, -1] > 2 * tol) | (K == 1)
    assert torch.equal(actual.labels.cpu()[clear], labels[clear])
    assert int(clear.sum()) >= 0.99 * N
    expected_sums = torch.zeros(K, D, dtype=torch.float64).index_add_(0, actual.labels.cpu(), points)
    torch.testing.assert_close(actual.sums.cpu().double(), expected_sums, rtol=0, atol=tol * max(N, 1) ** 0.5 * 10)
    assert nearest_centroid(points.to(device), centroids.to(device)).sums is None


def test_ties_zero_rows_and_nan(device):
    # Exact scores (halves and zeros): duplicate centroids tie, ties go to the lowest index.
    e = torch.eye(3, dtype=torch.float64)
    centroids = torch.stack([e[0], e[1], e[0], e[1], -e[0]])
    points = torch.stack([e[0], e[1], (e[0] + e[1]) / 2, torch.zeros(3), torch.tensor([NAN, 0, 0]),
                          torch.tensor([INF, 0, 0]), e[2]]).double()
    for dtype in (torch.float64, torch.float32):
        actual = nearest_centroid(points.to(device, dtype), centroids.to(device, dtype), with_sums=True)
        expected = reference.nearest_centroid(points.to(dtype), centroids.to(dtype), with_sums=True)
        assert actual.labels.tolist() == expected[1].tolist() == [0, 1, 0, 0, 0, 1, 0]
        torch.testing.assert_close(actual.best.cpu(), expected[0], equal_nan=True)
        torch.testing.assert_close(actual.sums.cpu(), expected[2], equal_nan=True)
        assert actual.best[3] == 0 and actual.best[6] == 0  # no direction, orthogonal: 0 everywhere
        assert torch.isnan(actual.sums[0, 0]) and actual.sums[1, 0] == INF  # the NaN and inf rows
        assert torch.equal(actual.sums[2:].cpu(), torch.zeros(3, 3, dtype=dtype))


def test_nan_centroid_reaches_every_point(device, generator):
    points, centroids = unit(300, 6, generator), unit(4, 6, generator)
    centroids[2, 1] = NAN
    actual = nearest_centroid(points.to(device), centroids.to(device), with_sums=True)
    expected = reference.nearest_centroid(points, centroids, with_sums=True)
    assert torch.isnan(actual.best).all() and bool((actual.labels == 2).all())
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.cpu(), e, equal_nan=True)


@needs_extension
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_independent_of_thread_count(generator, dtype):
    points, centroids = unit(20_000, 64, generator, dtype), unit(50, 64, generator, dtype)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(nearest_centroid(points, centroids, with_sums=True))
    finally:
        torch.set_num_threads(threads)
    for result in results[1:]:
        for a, b in zip(result, results[0]):
            assert torch.equal(a, b)


@needs_extension
@pytest.mark.parametrize("with_sums", [True, False])
def test_opcheck(generator, with_sums):
    points, centroids = unit(300, 12, generator, torch.float32), unit(7, 12, generator, torch.float32)
    torch.library.opcheck(torch.ops.segsort_ext.nearest_centroid.default, (points, centroids, with_sums))


def test_non_contiguous(device, generator):
    points, centroids = unit(70, 9, generator).to(device), unit(4, 18, generator).to(device)
    strided_points, strided_centroids = points.T.contiguous().T, centroids[:, ::2]  # column-major, every other
    assert not strided_points.is_contiguous() and not strided_centroids.is_contiguous()
    actual = nearest_centroid(strided_points, strided_centroids, with_sums=True)
    expected = nearest_centroid(points, strided_centroids.contiguous(), with_sums=True)
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)


@pytest.fixture(params=["kernel", "fallback"])
def path(request, monkeypatch):
    """The compiled kernel, or the op's plain-PyTorch kernel, which other devices run."""
    if request.param == "kernel" and not HAS_EXTENSION:
        pytest.skip("needs the compiled extension")
    if request.param == "fallback":
        kernel = nearest_centroid_module._nearest_centroid_python
        monkeypatch.setattr(nearest_centroid_module, "ops", types.SimpleNamespace(nearest_centroid=kernel))
    return request.param


P, C = torch.zeros(4, 3), torch.zeros(2, 3)
BAD = {
    "points 1-D": ((P[0], C), ValueError, "points"),
    "points 3-D": ((P[None], C), ValueError, "points"),
    "points D=0": ((P[:, :0], C[:, :0]), ValueError, "points"),
    "points int": ((P.long(), C), TypeError, "points"),
    "points float16": ((P.half(), C.half()), TypeError, "points"),
    "points a list": ((P.tolist(), C), TypeError, "points"),
    "centroids dtype": ((P, C.double()), TypeError, "centroids"),
    "centroids D": ((P, C[:, :2]), ValueError, "centroids"),
    "centroids K=0": ((P, C[:0]), ValueError, "centroids"),
    "centroids 1-D": ((P, C[0]), ValueError, "centroids"),
    "centroids meta": ((P, C.to("meta")), ValueError, "centroids"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs(path, case):
    args, error, name = BAD[case]
    with pytest.raises(error, match=rf"\b{name}\b"):
        nearest_centroid(*args, with_sums=True)


def test_with_sums_must_be_bool():
    with pytest.raises(TypeError, match="with_sums"):
        nearest_centroid(P, C, with_sums=1)


@needs_extension
@pytest.mark.parametrize("case", [c for c in BAD if c not in ("points a list", "centroids meta")])
def test_bad_inputs_raw_op(case):
    args, error, name = BAD[case]
    with pytest.raises(error, match=rf"\b{name}\b"):
        torch.ops.segsort_ext.nearest_centroid(*args, True)
