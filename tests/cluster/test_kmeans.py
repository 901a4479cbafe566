"""SphericalKMeans's constructor checks and its points without a direction (its fitting
is tested with the spherical_kmeans op in tests/ops/test_spherical_kmeans.py)."""
import pytest
import torch

from segsort_ext.cluster import SphericalKMeans


def test_constructor_checks_arguments():
    with pytest.raises(TypeError, match="num_clusters"):
        SphericalKMeans(2.0)
    with pytest.raises(TypeError, match="tol"):
        SphericalKMeans(2, tol="1e-3")
    with pytest.raises(ValueError, match="tol"):
        SphericalKMeans(2, tol=float("nan"))
    with pytest.raises(ValueError, match="chunk_size"):
        SphericalKMeans(2, chunk_size=0)
    with pytest.raises(ValueError, match="init"):
        SphericalKMeans(2, init=torch.randn(3, 4))
    # tol = -inf: never stop early, run max_iter iterations.
    points = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    km = SphericalKMeans(2, tol=-float("inf"), max_iter=3).fit(points)
    assert km.n_iter_ == 3


def _with_rows_without_direction(points):
    """points with NaN, inf and zero rows interleaved; and the mask of the other rows."""
    bad = points.clone()
    bad[0::7, 0] = float("nan")
    bad[1::7, 1] = float("inf")
    bad[2::7] = 0.0
    usable = torch.ones(len(points), dtype=torch.bool)
    usable[0::7] = usable[1::7] = usable[2::7] = False
    return bad, usable


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_points_without_a_direction_take_no_part(init):
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(400, 5, generator=generator, dtype=torch.float64)
    bad, usable = _with_rows_without_direction(points)
    km = SphericalKMeans(4, init=init, seed=2, chunk_size=64).fit(bad)
    assert torch.isfinite(km.centroids).all()
    labels = km.predict(bad)
    assert (labels[~usable] == -1).all() and (labels[usable] >= 0).all()
    assert int(km.counts.sum()) == int(usable.sum())
    assert km.objective(bad) == pytest.approx(km.objective(points[usable]), abs=1e-9)
    assert km.inertia_ == pytest.approx(km.objective(points[usable]), abs=1e-9)
    # Fitting from given centroids: exactly the fit on the usable rows alone.
    start = points[:4]
    with_bad = SphericalKMeans(4, init=start, tol=-float("inf"), max_iter=5).fit(bad)
    clean = SphericalKMeans(4, init=start, tol=-float("inf"), max_iter=5).fit(points[usable])
    torch.testing.assert_close(with_bad.centroids, clean.centroids, rtol=0, atol=1e-12)
    assert torch.equal(with_bad.counts, clean.counts)
    online = SphericalKMeans(4, init=start).partial_fit(bad)
    assert torch.isfinite(online.centroids).all() and int(online.counts.sum()) == int(usable.sum())


def test_predict_ties_go_to_the_lowest_index_in_every_block():
    # K = 3000 makes a CPU block 699 rows, so 2000 points span three blocks.
    generator = torch.Generator().manual_seed(3)
    centroids = torch.nn.functional.normalize(torch.randn(3000, 8, generator=generator), dim=1)
    centroids[2000:] = centroids[:1000]  # exact duplicates: each tie must go to the first copy
    points = centroids[torch.randint(0, 3000, (2000,), generator=generator)] * 3.0
    km = SphericalKMeans(3000)
    km.centroids = centroids
    labels = km.predict(points)
    expected = (torch.nn.functional.normalize(points, dim=1) @ centroids.t()).max(1).indices
    assert torch.equal(labels, expected) and int(labels.max()) < 2000
    # A point midway between two centroids scores equal cosines: the lower index wins.
    km = SphericalKMeans(2)
    km.centroids = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert km.predict(torch.tensor([[1.0, 1.0], [2.0, 0.0]])).tolist() == [0, 1]


def test_rows_of_tiny_or_huge_entries_keep_their_direction():
    # Their float32 norm underflows to 0 or overflows to inf; they are still points.
    points = torch.tensor([[1e-30, 2e-30], [3e30, -1e30], [0.0, 0.0], [1.0, 2.0]])
    km = SphericalKMeans(2)
    km.centroids = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0], [3.0, -1.0]]), dim=1)
    assert km.predict(points).tolist() == [0, 1, -1, 0]
    assert km.objective(points) == pytest.approx(0.0, abs=1e-6)


def test_streamed_chunks_fit_like_one_chunk():
    generator = torch.Generator().manual_seed(4)
    points = torch.randn(3000, 16, generator=generator)
    start = torch.nn.functional.normalize(points[:5].double(), dim=1)
    whole = SphericalKMeans(5, init=start, max_iter=6, tol=-1.0).fit(points)
    streamed = SphericalKMeans(5, init=start, max_iter=6, tol=-1.0, chunk_size=700).fit(points)
    torch.testing.assert_close(streamed.centroids, whole.centroids)
    assert torch.equal(streamed.counts, whole.counts)
    assert streamed.inertia_ == pytest.approx(whole.inertia_, rel=1e-5)
