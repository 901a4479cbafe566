"""Legal edge cases of segsort_ext.cluster: the correct result (the refused inputs are cases of
tests/hostile/cases_cluster.py, run by tests/test_hostile_inputs.py)."""
import numpy as np
import torch

from segsort_ext.cluster import SphericalKMeans, cosine_threshold_from_margin, extract_instances, instance_proposals
from tests.hostile.cases_cluster import INT64_MAX, _fitted, _points

# -- legal edge cases: the correct result --------------------------------------------

def test_kmeans_accepts_arrays_and_half_precision():
    points = _points()
    expected = SphericalKMeans(3, seed=0).fit(points).predict(points)
    assert torch.equal(SphericalKMeans(3, seed=0).fit(points.numpy()).predict(points.numpy()), expected)
    half = SphericalKMeans(3, seed=0).fit(points.half())
    assert half.centroids.dtype == torch.float32 and torch.isfinite(half.centroids).all()


def test_kmeans_huge_settings_bounded_by_the_data():
    points = _points()
    assert torch.equal(SphericalKMeans(3, seed=0, init_sample=2**62, chunk_size=2**62).fit(points).centroids,
                       SphericalKMeans(3, seed=0).fit(points).centroids)
    assert SphericalKMeans(3, seed=-2**63).fit(points).centroids.shape == (3, 3)


def test_kmeans_empty_queries():
    km = _fitted()
    assert km.predict(torch.empty(0, 3)).shape == (0,)
    assert km.objective(np.empty((0, 3))) == 0.0


def test_instances_and_proposals_of_empty_batches():
    for x in (torch.empty(0, 3), torch.empty(0, 4, 3), torch.empty(2, 0, 3)):
        found = extract_instances(x, 0.5)
        assert found.ids.shape == x.shape[:-1] and found.size.numel() == 0
        proposals = instance_proposals(x, [1.0, 2.0], threshold=0.5)
        assert proposals.ids.shape == (2, *x.shape[:-1]) and proposals.size.numel() == 0


def test_instances_huge_min_size_drops_everything():
    assert torch.equal(extract_instances(_points(5), 0.5, min_size=INT64_MAX).ids, torch.full((5,), -1))


def test_cosine_threshold_accepts_one_element_tensors():
    assert cosine_threshold_from_margin(torch.tensor(0.5)) == 0.5
