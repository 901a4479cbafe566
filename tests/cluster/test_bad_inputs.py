"""Bad-input catalogue of segsort_ext.cluster (SphericalKMeans, extract_instances,
instance_proposals, cosine_threshold_from_margin): every refused input raises the exact
error type with a message naming the argument; legal edge cases give the correct result."""
import numpy as np
import pytest
import torch

from segsort_ext.cluster import SphericalKMeans, cosine_threshold_from_margin, extract_instances, instance_proposals
from segsort_ext.testing import INF, NAN, needs_cuda

INT64_MAX = 2**63 - 1


def _points(n=40, d=3, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _fitted():
    return SphericalKMeans(3, seed=0).fit(_points())


def _load(**fields):
    return SphericalKMeans(3).load_state_dict({**_fitted().state_dict(), **fields})


def _proposals(**options):
    return instance_proposals(_points(8).view(2, 4, 3), **{"bandwidths": [2.0], "threshold": 0.5, **options})


REFUSED = [
    # SphericalKMeans: constructor
    ("kmeans_num_clusters_zero", lambda: SphericalKMeans(0), ValueError, "num_clusters"),
    ("kmeans_num_clusters_float", lambda: SphericalKMeans(2.0), TypeError, "num_clusters"),
    ("kmeans_init_name", lambda: SphericalKMeans(2, init="kmeans++"), ValueError, "init"),
    ("kmeans_init_shape", lambda: SphericalKMeans(2, init=torch.randn(3, 4)), ValueError, "init"),
    ("kmeans_init_nan", lambda: SphericalKMeans(2, init=torch.tensor([[NAN, 1.0], [1.0, 0.0]])), ValueError, "init"),
    ("kmeans_init_inf", lambda: SphericalKMeans(2, init=torch.tensor([[INF, 1.0], [1.0, 0.0]])), ValueError, "init"),
    ("kmeans_init_zero_row", lambda: SphericalKMeans(2, init=torch.tensor([[0.0, 0.0], [1.0, 0.0]])), ValueError,
     "init"),
    ("kmeans_init_int", lambda: SphericalKMeans(2, init=torch.ones(2, 2, dtype=torch.long)), TypeError, "init"),
    ("kmeans_max_iter_negative", lambda: SphericalKMeans(2, max_iter=-1), ValueError, "max_iter"),
    ("kmeans_tol_nan", lambda: SphericalKMeans(2, tol=NAN), ValueError, "tol"),
    ("kmeans_tol_str", lambda: SphericalKMeans(2, tol="1e-3"), TypeError, "tol"),
    ("kmeans_chunk_size_zero", lambda: SphericalKMeans(2, chunk_size=0), ValueError, "chunk_size"),
    ("kmeans_seed_str", lambda: SphericalKMeans(2, seed="0"), TypeError, "seed"),
    ("kmeans_seed_float", lambda: SphericalKMeans(2, seed=1.5), TypeError, "seed"),
    ("kmeans_seed_overflow", lambda: SphericalKMeans(2, seed=2**64), ValueError, "seed"),
    ("kmeans_device_name", lambda: SphericalKMeans(2, device="gpu0"), ValueError, "device"),
    ("kmeans_device_type", lambda: SphericalKMeans(2, device=1.5), TypeError, "device"),
    ("kmeans_device_bool", lambda: SphericalKMeans(2, device=True), TypeError, "device"),
    ("kmeans_device_meta", lambda: SphericalKMeans(2, device="meta"), ValueError, "device"),
    # an absent GPU fails in the constructor, not in fit (issue 25)
    ("kmeans_device_absent", lambda: SphericalKMeans(2, device=f"cuda:{torch.cuda.device_count() + 7}"),
     ValueError, "device"),
    ("kmeans_init_sample_negative", lambda: SphericalKMeans(2, init_sample=-1), ValueError, "init_sample"),
    ("kmeans_distributed_type", lambda: SphericalKMeans(2, distributed=1), TypeError, "distributed"),
    # SphericalKMeans: data
    ("kmeans_data_int", lambda: SphericalKMeans(2).fit(torch.ones(10, 2, dtype=torch.long)), ValueError, "data"),
    ("kmeans_data_1d", lambda: SphericalKMeans(2).fit(torch.randn(10)), ValueError, "data"),
    ("kmeans_data_no_column", lambda: SphericalKMeans(2).fit(torch.randn(10, 0)), ValueError, "data"),
    ("kmeans_data_object", lambda: SphericalKMeans(2).fit(object()), TypeError, "data"),
    ("kmeans_data_empty", lambda: SphericalKMeans(2).fit(torch.empty(0, 3)), ValueError, "data"),
    ("kmeans_fewer_points_than_clusters", lambda: SphericalKMeans(2**40).fit(_points()), ValueError, "num_clusters"),
    ("kmeans_all_nan", lambda: SphericalKMeans(3).fit(torch.full((40, 3), NAN)), ValueError, "data"),
    ("kmeans_all_zero", lambda: SphericalKMeans(3).fit(torch.zeros(40, 3)), ValueError, "data"),
    ("kmeans_random_init_mostly_nan", lambda: SphericalKMeans(3, init="random").fit(
        torch.cat([_points(2), torch.full((38, 3), NAN, dtype=torch.float64)])), ValueError, "data"),
    ("kmeans_batch_empty", lambda: SphericalKMeans(2).partial_fit(torch.empty(0, 3)), ValueError, "data"),
    ("kmeans_batch_int", lambda: SphericalKMeans(2).partial_fit(torch.ones(4, 3, dtype=torch.long)), ValueError,
     "batch"),
    ("kmeans_predict_unfitted", lambda: SphericalKMeans(2).predict(_points()), RuntimeError, "fit"),
    ("kmeans_predict_dim", lambda: _fitted().predict(torch.randn(4, 5)), ValueError, "D"),
    ("kmeans_objective_dim", lambda: _fitted().objective(torch.randn(4, 5)), ValueError, "D"),
    ("kmeans_init_dim", lambda: SphericalKMeans(2, init=torch.randn(2, 4)).fit(_points()), ValueError, "init"),
    # SphericalKMeans: state
    ("kmeans_state_keys", lambda: SphericalKMeans(3).load_state_dict({"centroids": None}), ValueError, "state"),
    ("kmeans_state_centroids_nan", lambda: _load(centroids=torch.full((3, 3), NAN)), ValueError, "centroids"),
    ("kmeans_state_centroids_shape", lambda: _load(centroids=torch.randn(2, 3)), ValueError, "centroids"),
    ("kmeans_state_counts_negative", lambda: _load(counts=torch.tensor([1, -1, 0])), ValueError, "counts"),
    ("kmeans_state_counts_float", lambda: _load(counts=torch.ones(3)), TypeError, "counts"),
    ("kmeans_state_inertia_str", lambda: _load(inertia="x"), TypeError, "inertia"),
    ("kmeans_state_inertia_nan", lambda: _load(inertia=NAN), ValueError, "inertia"),
    ("kmeans_state_n_iter_negative", lambda: _load(n_iter=-1), ValueError, "n_iter"),
    # extract_instances
    ("instances_threshold_nan", lambda: extract_instances(_points(5), NAN), ValueError, "threshold"),
    ("instances_threshold_inf", lambda: extract_instances(_points(5), INF), ValueError, "threshold"),
    ("instances_threshold_range", lambda: extract_instances(_points(5), 1.5), ValueError, "threshold"),
    ("instances_threshold_str", lambda: extract_instances(_points(5), "0.5"), TypeError, "threshold"),
    ("instances_min_size_zero", lambda: extract_instances(_points(5), 0.5, min_size=0), ValueError, "min_size"),
    ("instances_x_int", lambda: extract_instances(torch.ones(5, 3, dtype=torch.long), 0.5), TypeError, "x"),
    ("instances_x_4d", lambda: extract_instances(torch.randn(1, 2, 5, 3), 0.5), ValueError, "x"),
    ("instances_x_no_channel", lambda: extract_instances(torch.randn(5, 0), 0.5), ValueError, "x"),
    ("instances_lengths_int32", lambda: extract_instances(_points(8).view(2, 4, 3), 0.5,
                                                          lengths=torch.tensor([1, 2], dtype=torch.int32)),
     TypeError, "lengths"),
    ("instances_lengths_shape", lambda: extract_instances(_points(8).view(2, 4, 3), 0.5,
                                                          lengths=torch.tensor([1, 2, 3])), ValueError, "lengths"),
    ("instances_lengths_int64_max", lambda: extract_instances(_points(8).view(2, 4, 3), 0.5,
                                                              lengths=torch.tensor([1, INT64_MAX])), ValueError,
     "lengths"),
    ("instances_lengths_negative", lambda: extract_instances(_points(8).view(2, 4, 3), 0.5,
                                                             lengths=torch.tensor([-1, 2])), ValueError, "lengths"),
    # instance_proposals
    ("proposals_bandwidth_inf", lambda: _proposals(bandwidths=[1.0, INF]), ValueError, r"bandwidths\[1\]"),
    ("proposals_bandwidth_nan", lambda: _proposals(bandwidths=[NAN]), ValueError, r"bandwidths\[0\]"),
    ("proposals_bandwidth_zero", lambda: _proposals(bandwidths=[0.0]), ValueError, r"bandwidths\[0\]"),
    ("proposals_bandwidth_negative", lambda: _proposals(bandwidths=[-1.0]), ValueError, r"bandwidths\[0\]"),
    ("proposals_bandwidth_str", lambda: _proposals(bandwidths=["1"]), TypeError, r"bandwidths\[0\]"),
    ("proposals_bandwidths_scalar", lambda: _proposals(bandwidths=2.0), TypeError, "bandwidths"),
    ("proposals_bandwidths_empty", lambda: _proposals(bandwidths=[]), TypeError, "bandwidths"),
    ("proposals_bandwidths_tensor", lambda: _proposals(bandwidths=torch.tensor([1.0])), TypeError, "bandwidths"),
    ("proposals_threshold_nan", lambda: _proposals(threshold=NAN), ValueError, "threshold"),
    ("proposals_threshold_inf", lambda: _proposals(threshold=-INF), ValueError, "threshold"),
    ("proposals_eta_nan", lambda: _proposals(eta=NAN), ValueError, "eta"),
    ("proposals_eta_inf", lambda: _proposals(eta=INF), ValueError, "eta"),
    ("proposals_iters_float", lambda: _proposals(iters=2.0), TypeError, "iters"),
    ("proposals_iters_negative", lambda: _proposals(iters=-1), ValueError, "iters"),
    ("proposals_duplicate_iou_nan", lambda: _proposals(duplicate_iou=NAN), ValueError, "duplicate_iou"),
    ("proposals_duplicate_iou_zero", lambda: _proposals(duplicate_iou=0.0), ValueError, "duplicate_iou"),
    ("proposals_min_size_zero", lambda: _proposals(min_size=0), ValueError, "min_size"),
    ("proposals_lengths_int64_max", lambda: _proposals(lengths=torch.tensor([INT64_MAX, 1])), ValueError, "lengths"),
    ("proposals_masks_image", lambda: _proposals().masks(2), ValueError, "image"),
    # cosine_threshold_from_margin
    ("threshold_alpha_nan", lambda: cosine_threshold_from_margin(NAN), ValueError, "alpha"),
    ("threshold_alpha_inf", lambda: cosine_threshold_from_margin(INF), ValueError, "alpha"),
    ("threshold_alpha_one", lambda: cosine_threshold_from_margin(1.0), ValueError, "alpha"),
    ("threshold_alpha_str", lambda: cosine_threshold_from_margin("0.5"), TypeError, "alpha"),
]

REFUSED_CUDA = [
    ("instances_lengths_device", lambda: extract_instances(_points(8).view(2, 4, 3).cuda(), 0.5,
                                                           lengths=torch.tensor([1, 2])), ValueError, "lengths"),
    ("proposals_lengths_device", lambda: instance_proposals(_points(8).view(2, 4, 3).cuda(), [1.0], threshold=0.5,
                                                            lengths=torch.tensor([1, 2])), ValueError, "lengths"),
]


@pytest.mark.parametrize("call, error, name", [pytest.param(*case[1:], id=case[0]) for case in REFUSED]
                         + [pytest.param(*case[1:], id=case[0], marks=needs_cuda) for case in REFUSED_CUDA])
def test_refused_with_the_argument_named(call, error, name):
    # name: a regular expression matching the argument's name in the message
    with pytest.raises(error, match=name):
        call()


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
