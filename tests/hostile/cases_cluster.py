"""Bad-input cases of segsort_ext.cluster (SphericalKMeans, extract_instances, instance_proposals,
cosine_threshold_from_margin, finch): every refused input raises the exact error type with a message
naming the argument. Formerly the tables of tests/cluster/test_bad_inputs.py."""

import torch

from segsort_ext.cluster import (
    SphericalKMeans,
    cosine_threshold_from_margin,
    extract_instances,
    finch,
    instance_proposals,
)
from segsort_ext.retrieval import SegmentIndex
from segsort_ext.testing import INF, NAN, needs_cuda, needs_faiss
from tests.hostile.catalogue import Case

AREA = "cluster"
INT64_MAX = 2**63 - 1


def _points(n=40, d=3, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _fitted():
    return SphericalKMeans(3, seed=0).fit(_points())


def _load(**fields):
    return SphericalKMeans(3).load_state_dict({**_fitted().state_dict(), **fields})


def _proposals(**options):
    return instance_proposals(_points(8).view(2, 4, 3), **{"bandwidths": [2.0], "threshold": 0.5, **options})


def _finch_rows(n=5, dim=2):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(0))


def _finch_index(n=4, dim=2, **kwargs):
    index = SegmentIndex(dim, **{"backend": "torch", **kwargs})
    index.add(_finch_rows(n, dim), torch.zeros(n, dtype=torch.int64))
    return index


def _finch_with_entry(value):
    x = _finch_rows()
    x[3, 1] = value
    return x


REFUSED = [
    # SphericalKMeans: constructor
    Case("kmeans_num_clusters_zero", lambda: SphericalKMeans(0), error=ValueError, arg="num_clusters"),
    Case("kmeans_num_clusters_float", lambda: SphericalKMeans(2.0), error=TypeError, arg="num_clusters"),
    Case("kmeans_init_name", lambda: SphericalKMeans(2, init="kmeans++"), error=ValueError, arg="init"),
    Case("kmeans_init_shape", lambda: SphericalKMeans(2, init=torch.randn(3, 4)), error=ValueError, arg="init"),
    Case(
        "kmeans_init_nan",
        lambda: SphericalKMeans(2, init=torch.tensor([[NAN, 1.0], [1.0, 0.0]])),
        error=ValueError,
        arg="init",
    ),
    Case(
        "kmeans_init_inf",
        lambda: SphericalKMeans(2, init=torch.tensor([[INF, 1.0], [1.0, 0.0]])),
        error=ValueError,
        arg="init",
    ),
    Case(
        "kmeans_init_zero_row",
        lambda: SphericalKMeans(2, init=torch.tensor([[0.0, 0.0], [1.0, 0.0]])),
        error=ValueError,
        arg="init",
    ),
    Case(
        "kmeans_init_int",
        lambda: SphericalKMeans(2, init=torch.ones(2, 2, dtype=torch.long)),
        error=TypeError,
        arg="init",
    ),
    Case("kmeans_max_iter_negative", lambda: SphericalKMeans(2, max_iter=-1), error=ValueError, arg="max_iter"),
    Case("kmeans_tol_nan", lambda: SphericalKMeans(2, tol=NAN), error=ValueError, arg="tol"),
    Case("kmeans_tol_str", lambda: SphericalKMeans(2, tol="1e-3"), error=TypeError, arg="tol"),
    Case("kmeans_chunk_size_zero", lambda: SphericalKMeans(2, chunk_size=0), error=ValueError, arg="chunk_size"),
    Case("kmeans_seed_str", lambda: SphericalKMeans(2, seed="0"), error=TypeError, arg="seed"),
    Case("kmeans_seed_float", lambda: SphericalKMeans(2, seed=1.5), error=TypeError, arg="seed"),
    Case("kmeans_seed_overflow", lambda: SphericalKMeans(2, seed=2**64), error=ValueError, arg="seed"),
    Case("kmeans_device_name", lambda: SphericalKMeans(2, device="gpu0"), error=ValueError, arg="device"),
    Case("kmeans_device_type", lambda: SphericalKMeans(2, device=1.5), error=TypeError, arg="device"),
    Case("kmeans_device_bool", lambda: SphericalKMeans(2, device=True), error=TypeError, arg="device"),
    Case("kmeans_device_meta", lambda: SphericalKMeans(2, device="meta"), error=ValueError, arg="device"),
    # an absent GPU fails in the constructor, not in fit (issue 25)
    Case(
        "kmeans_device_absent",
        lambda: SphericalKMeans(2, device=f"cuda:{torch.cuda.device_count() + 7}"),
        error=ValueError,
        arg="device",
    ),
    Case(
        "kmeans_init_sample_negative", lambda: SphericalKMeans(2, init_sample=-1), error=ValueError, arg="init_sample"
    ),
    Case("kmeans_distributed_type", lambda: SphericalKMeans(2, distributed=1), error=TypeError, arg="distributed"),
    # SphericalKMeans: data
    Case(
        "kmeans_data_int",
        lambda: SphericalKMeans(2).fit(torch.ones(10, 2, dtype=torch.long)),
        error=ValueError,
        arg="data",
    ),
    Case("kmeans_data_1d", lambda: SphericalKMeans(2).fit(torch.randn(10)), error=ValueError, arg="data"),
    Case("kmeans_data_no_column", lambda: SphericalKMeans(2).fit(torch.randn(10, 0)), error=ValueError, arg="data"),
    Case("kmeans_data_object", lambda: SphericalKMeans(2).fit(object()), error=TypeError, arg="data"),
    Case("kmeans_data_empty", lambda: SphericalKMeans(2).fit(torch.empty(0, 3)), error=ValueError, arg="data"),
    Case(
        "kmeans_fewer_points_than_clusters",
        lambda: SphericalKMeans(2**40).fit(_points()),
        error=ValueError,
        arg="num_clusters",
    ),
    Case("kmeans_all_nan", lambda: SphericalKMeans(3).fit(torch.full((40, 3), NAN)), error=ValueError, arg="data"),
    Case("kmeans_all_zero", lambda: SphericalKMeans(3).fit(torch.zeros(40, 3)), error=ValueError, arg="data"),
    Case(
        "kmeans_random_init_mostly_nan",
        lambda: SphericalKMeans(3, init="random").fit(
            torch.cat([_points(2), torch.full((38, 3), NAN, dtype=torch.float64)])
        ),
        error=ValueError,
        arg="data",
    ),
    Case("kmeans_batch_empty", lambda: SphericalKMeans(2).partial_fit(torch.empty(0, 3)), error=ValueError, arg="data"),
    Case(
        "kmeans_batch_int",
        lambda: SphericalKMeans(2).partial_fit(torch.ones(4, 3, dtype=torch.long)),
        error=ValueError,
        arg="batch",
    ),
    Case("kmeans_predict_unfitted", lambda: SphericalKMeans(2).predict(_points()), error=RuntimeError, arg="fit"),
    Case("kmeans_predict_dim", lambda: _fitted().predict(torch.randn(4, 5)), error=ValueError, arg="D"),
    Case("kmeans_objective_dim", lambda: _fitted().objective(torch.randn(4, 5)), error=ValueError, arg="D"),
    Case(
        "kmeans_init_dim",
        lambda: SphericalKMeans(2, init=torch.randn(2, 4)).fit(_points()),
        error=ValueError,
        arg="init",
    ),
    # SphericalKMeans: state
    Case(
        "kmeans_state_keys",
        lambda: SphericalKMeans(3).load_state_dict({"centroids": None}),
        error=ValueError,
        arg="state",
    ),
    Case(
        "kmeans_state_centroids_nan",
        lambda: _load(centroids=torch.full((3, 3), NAN)),
        error=ValueError,
        arg="centroids",
    ),
    Case("kmeans_state_centroids_shape", lambda: _load(centroids=torch.randn(2, 3)), error=ValueError, arg="centroids"),
    Case(
        "kmeans_state_counts_negative", lambda: _load(counts=torch.tensor([1, -1, 0])), error=ValueError, arg="counts"
    ),
    Case("kmeans_state_counts_float", lambda: _load(counts=torch.ones(3)), error=TypeError, arg="counts"),
    Case("kmeans_state_inertia_str", lambda: _load(inertia="x"), error=TypeError, arg="inertia"),
    Case("kmeans_state_inertia_nan", lambda: _load(inertia=NAN), error=ValueError, arg="inertia"),
    Case("kmeans_state_n_iter_negative", lambda: _load(n_iter=-1), error=ValueError, arg="n_iter"),
    # extract_instances
    Case("instances_threshold_nan", lambda: extract_instances(_points(5), NAN), error=ValueError, arg="threshold"),
    Case("instances_threshold_inf", lambda: extract_instances(_points(5), INF), error=ValueError, arg="threshold"),
    Case("instances_threshold_range", lambda: extract_instances(_points(5), 1.5), error=ValueError, arg="threshold"),
    Case("instances_threshold_str", lambda: extract_instances(_points(5), "0.5"), error=TypeError, arg="threshold"),
    Case(
        "instances_min_size_zero",
        lambda: extract_instances(_points(5), 0.5, min_size=0),
        error=ValueError,
        arg="min_size",
    ),
    Case(
        "instances_x_int", lambda: extract_instances(torch.ones(5, 3, dtype=torch.long), 0.5), error=TypeError, arg="x"
    ),
    Case("instances_x_4d", lambda: extract_instances(torch.randn(1, 2, 5, 3), 0.5), error=ValueError, arg="x"),
    Case("instances_x_no_channel", lambda: extract_instances(torch.randn(5, 0), 0.5), error=ValueError, arg="x"),
    Case(
        "instances_lengths_int32",
        lambda: extract_instances(_points(8).view(2, 4, 3), 0.5, lengths=torch.tensor([1, 2], dtype=torch.int32)),
        error=TypeError,
        arg="lengths",
    ),
    Case(
        "instances_lengths_shape",
        lambda: extract_instances(_points(8).view(2, 4, 3), 0.5, lengths=torch.tensor([1, 2, 3])),
        error=ValueError,
        arg="lengths",
    ),
    Case(
        "instances_lengths_int64_max",
        lambda: extract_instances(_points(8).view(2, 4, 3), 0.5, lengths=torch.tensor([1, INT64_MAX])),
        error=ValueError,
        arg="lengths",
    ),
    Case(
        "instances_lengths_negative",
        lambda: extract_instances(_points(8).view(2, 4, 3), 0.5, lengths=torch.tensor([-1, 2])),
        error=ValueError,
        arg="lengths",
    ),
    # instance_proposals
    Case(
        "proposals_bandwidth_inf", lambda: _proposals(bandwidths=[1.0, INF]), error=ValueError, arg=r"bandwidths\[1\]"
    ),
    Case("proposals_bandwidth_nan", lambda: _proposals(bandwidths=[NAN]), error=ValueError, arg=r"bandwidths\[0\]"),
    Case("proposals_bandwidth_zero", lambda: _proposals(bandwidths=[0.0]), error=ValueError, arg=r"bandwidths\[0\]"),
    Case(
        "proposals_bandwidth_negative", lambda: _proposals(bandwidths=[-1.0]), error=ValueError, arg=r"bandwidths\[0\]"
    ),
    Case("proposals_bandwidth_str", lambda: _proposals(bandwidths=["1"]), error=TypeError, arg=r"bandwidths\[0\]"),
    Case("proposals_bandwidths_scalar", lambda: _proposals(bandwidths=2.0), error=TypeError, arg="bandwidths"),
    Case("proposals_bandwidths_empty", lambda: _proposals(bandwidths=[]), error=TypeError, arg="bandwidths"),
    Case(
        "proposals_bandwidths_tensor",
        lambda: _proposals(bandwidths=torch.tensor([1.0])),
        error=TypeError,
        arg="bandwidths",
    ),
    Case("proposals_threshold_nan", lambda: _proposals(threshold=NAN), error=ValueError, arg="threshold"),
    Case("proposals_threshold_inf", lambda: _proposals(threshold=-INF), error=ValueError, arg="threshold"),
    Case("proposals_eta_nan", lambda: _proposals(eta=NAN), error=ValueError, arg="eta"),
    Case("proposals_eta_inf", lambda: _proposals(eta=INF), error=ValueError, arg="eta"),
    Case("proposals_iters_float", lambda: _proposals(iters=2.0), error=TypeError, arg="iters"),
    Case("proposals_iters_negative", lambda: _proposals(iters=-1), error=ValueError, arg="iters"),
    Case("proposals_duplicate_iou_nan", lambda: _proposals(duplicate_iou=NAN), error=ValueError, arg="duplicate_iou"),
    Case("proposals_duplicate_iou_zero", lambda: _proposals(duplicate_iou=0.0), error=ValueError, arg="duplicate_iou"),
    Case("proposals_min_size_zero", lambda: _proposals(min_size=0), error=ValueError, arg="min_size"),
    Case(
        "proposals_lengths_int64_max",
        lambda: _proposals(lengths=torch.tensor([INT64_MAX, 1])),
        error=ValueError,
        arg="lengths",
    ),
    Case("proposals_masks_image", lambda: _proposals().masks(2), error=ValueError, arg="image"),
    # cosine_threshold_from_margin
    Case("threshold_alpha_nan", lambda: cosine_threshold_from_margin(NAN), error=ValueError, arg="alpha"),
    Case("threshold_alpha_inf", lambda: cosine_threshold_from_margin(INF), error=ValueError, arg="alpha"),
    Case("threshold_alpha_one", lambda: cosine_threshold_from_margin(1.0), error=ValueError, arg="alpha"),
    Case("threshold_alpha_str", lambda: cosine_threshold_from_margin("0.5"), error=TypeError, arg="alpha"),
]

REFUSED_CUDA = [
    Case(
        "instances_lengths_device",
        lambda: extract_instances(_points(8).view(2, 4, 3).cuda(), 0.5, lengths=torch.tensor([1, 2])),
        error=ValueError,
        arg="lengths",
        marks=(needs_cuda,),
    ),
    Case(
        "proposals_lengths_device",
        lambda: instance_proposals(_points(8).view(2, 4, 3).cuda(), [1.0], threshold=0.5, lengths=torch.tensor([1, 2])),
        error=ValueError,
        arg="lengths",
        marks=(needs_cuda,),
    ),
]

FINCH_REFUSED = [
    Case("finch_x_no_features", lambda: finch(torch.randn(50, 0)), error=ValueError, arg="x"),
    Case(
        "instances_min_size_beyond_int64",
        lambda: extract_instances(torch.randn(1, 6, 3), 0.9, min_size=10**30),
        error=ValueError,
        arg="min_size",
    ),
    Case("finch_x_list", lambda: finch([[0.0, 1.0]] * 3), error=TypeError, arg="x"),
    Case("finch_x_int64", lambda: finch(torch.zeros(5, 2, dtype=torch.int64)), error=TypeError, arg="x"),
    Case("finch_x_bool", lambda: finch(torch.zeros(5, 2, dtype=torch.bool)), error=TypeError, arg="x"),
    Case("finch_x_1d", lambda: finch(torch.randn(5)), error=ValueError, arg="x must have shape"),
    Case("finch_x_3d", lambda: finch(torch.randn(2, 5, 2)), error=ValueError, arg="x must have shape"),
    Case(
        "finch_x_on_meta",
        lambda: finch(torch.empty(5, 2, device="meta")),
        error=ValueError,
        arg="x is on the meta device",
    ),
    Case("finch_x_nan", lambda: finch(_finch_with_entry(float("nan"))), error=ValueError, arg="x must be finite"),
    Case(
        "finch_x_inf",
        lambda: finch(_finch_with_entry(float("inf")), metric="euclidean"),
        error=ValueError,
        arg="x must be finite",
    ),
    Case(
        "finch_x_minus_inf", lambda: finch(_finch_with_entry(float("-inf"))), error=ValueError, arg="x must be finite"
    ),
    Case("finch_metric", lambda: finch(_finch_rows(), metric="manhattan"), error=ValueError, arg="metric"),
    Case("finch_metric_None", lambda: finch(_finch_rows(), metric=None), error=ValueError, arg="metric"),
    Case("finch_max_levels_0", lambda: finch(_finch_rows(), max_levels=0), error=ValueError, arg="max_levels"),
    Case("finch_max_levels_float", lambda: finch(_finch_rows(), max_levels=1.5), error=TypeError, arg="max_levels"),
    Case("finch_backend", lambda: finch(_finch_rows(), backend="annoy"), error=ValueError, arg="backend"),
    Case("finch_index_str", lambda: finch(_finch_rows(), index="bank"), error=TypeError, arg="index"),
    Case(
        "finch_index_other_rows",
        lambda: finch(_finch_rows(5), index=_finch_index(4)),
        error=ValueError,
        arg="index must hold",
    ),
    Case(
        "finch_index_other_dim",
        lambda: finch(_finch_rows(4), index=_finch_index(4, dim=3)),
        error=ValueError,
        arg="index must hold",
    ),
    Case(
        "finch_index_with_euclidean",
        lambda: finch(_finch_rows(4), metric="euclidean", index=_finch_index(4)),
        error=ValueError,
        arg="index",
    ),
    Case(
        "finch_index_IVF",
        lambda: finch(_finch_rows(40), index=_finch_index(40, backend="auto", ivf_nlist=2)),
        error=ValueError,
        arg="index must be exact",
        marks=needs_faiss,
    ),
]

CASES = REFUSED + FINCH_REFUSED + REFUSED_CUDA
