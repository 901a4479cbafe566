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
