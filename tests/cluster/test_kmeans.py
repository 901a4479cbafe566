"""SphericalKMeans's constructor checks (its fitting is tested with the spherical_kmeans
op in tests/ops/test_spherical_kmeans.py)."""
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
