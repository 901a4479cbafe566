"""Bad-input cases of segsort_ext.nn: every refused input raises the exact error type with a
message naming the argument. Formerly the tables of tests/nn/test_bad_inputs.py."""

import torch

from segsort_ext.nn import (
    PiCIEClustering,
    PrototypeMemory,
    SegSortLoss,
    cluster_balance_weights,
    pairwise_margin_loss,
    picie_loss,
    soft_segmentation_features,
    soft_segmentation_loss,
)
from segsort_ext.testing import INF, NAN, needs_cuda
from tests.hostile.catalogue import Case

AREA = "nn"
INT64_MAX = 2**63 - 1


def _embeddings(dtype=torch.float64):
    return torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _labels():
    return torch.randint(3, (2, 6, 6), generator=torch.Generator().manual_seed(1))


def _clustering(**fields):
    base = dict(
        centroids_1=torch.randn(3, 4, dtype=torch.float64),
        centroids_2=torch.randn(3, 4, dtype=torch.float64),
        labels_1=_labels(),
        labels_2=_labels(),
    )
    return PiCIEClustering(**{**base, **fields})


def _soft_features(**options):
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return soft_segmentation_features(image, _embeddings()[:1], **{"radius": 1, "eps": 1e-3, **options})


def _memory_push(first_labels, second_labels):
    memory = PrototypeMemory(4, 3)
    memory.push(torch.randn(2, 3), first_labels)
    memory.push(torch.randn(2, 3), second_labels)


def _with(labels, index, value):
    labels = labels.clone()
    labels[index] = value
    return labels


REFUSED = [
    # PrototypeMemory
    Case(
        "memory_labels_none_after_labelled",
        lambda: _memory_push(torch.tensor([0, 1]), None),
        error=TypeError,
        arg="labels",
    ),
    Case(
        "memory_labels_none_then_labelled",
        lambda: _memory_push(None, torch.tensor([0, 1])),
        error=TypeError,
        arg="labels",
    ),
    Case(
        "memory_labels_int32",
        lambda: _memory_push(torch.tensor([0, 1], dtype=torch.int32), None),
        error=TypeError,
        arg="labels",
    ),
    Case(
        "memory_labels_shape",
        lambda: _memory_push(torch.zeros(2, 1, dtype=torch.long), None),
        error=ValueError,
        arg="labels",
    ),
    Case(
        "memory_prototypes_dim",
        lambda: PrototypeMemory(4, 3).push(torch.randn(2, 4), torch.zeros(2, dtype=torch.long)),
        error=ValueError,
        arg="prototypes",
    ),
    Case(
        "memory_prototypes_int",
        lambda: PrototypeMemory(4, 3).push(torch.ones(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long)),
        error=TypeError,
        arg="prototypes",
    ),
    Case(
        "memory_image_ids_shape",
        lambda: PrototypeMemory(4, 3).push(
            torch.randn(2, 3), torch.zeros(2, dtype=torch.long), image_ids=torch.zeros(3, dtype=torch.long)
        ),
        error=ValueError,
        arg="image_ids",
    ),
    Case("memory_size_zero", lambda: PrototypeMemory(0, 3), error=ValueError, arg="size"),
    Case("memory_size_float", lambda: PrototypeMemory(4.0, 3), error=TypeError, arg="size"),
    Case("memory_dim_overflow", lambda: PrototypeMemory(2, 2**62), error=ValueError, arg="dim"),
    Case("memory_size_overflow", lambda: PrototypeMemory(2**62, 4), error=ValueError, arg="size"),
    Case(
        "memory_last_batches_overflow",
        lambda: PrototypeMemory.last_batches(3, num_batches=2**40, max_per_batch=2**40),
        error=ValueError,
        arg="size",
    ),
    Case("memory_dtype_int", lambda: PrototypeMemory(4, 3, dtype=torch.int64), error=TypeError, arg="dtype"),
    Case("memory_max_batches_zero", lambda: PrototypeMemory(4, 3, max_batches=0), error=ValueError, arg="max_batches"),
    # SegSortLoss: scalars
    Case("segsort_concentration_nan", lambda: SegSortLoss(concentration=NAN), error=ValueError, arg="concentration"),
    Case("segsort_concentration_inf", lambda: SegSortLoss(concentration=INF), error=ValueError, arg="concentration"),
    Case("segsort_concentration_zero", lambda: SegSortLoss(concentration=0.0), error=ValueError, arg="concentration"),
    Case(
        "segsort_concentration_negative", lambda: SegSortLoss(concentration=-1.0), error=ValueError, arg="concentration"
    ),
    Case("segsort_concentration_str", lambda: SegSortLoss(concentration="10"), error=TypeError, arg="concentration"),
    Case("segsort_coord_weight_nan", lambda: SegSortLoss(coord_weight=NAN), error=ValueError, arg="coord_weight"),
    Case("segsort_coord_weight_inf", lambda: SegSortLoss(coord_weight=-INF), error=ValueError, arg="coord_weight"),
    Case("segsort_grid_zero", lambda: SegSortLoss(grid=(0, 3)), error=ValueError, arg="grid"),
    Case("segsort_grid_float", lambda: SegSortLoss(grid=2.5), error=TypeError, arg="grid"),
    Case("segsort_kmeans_iters_zero", lambda: SegSortLoss(kmeans_iters=0), error=ValueError, arg="kmeans_iters"),
    Case(
        "segsort_ignore_index_overflow", lambda: SegSortLoss(ignore_index=2**63), error=ValueError, arg="ignore_index"
    ),
    Case("segsort_ignore_index_float", lambda: SegSortLoss(ignore_index=255.0), error=TypeError, arg="ignore_index"),
    Case("segsort_loss_name", lambda: SegSortLoss(loss="nca"), error=ValueError, arg="loss"),
    Case("segsort_connectivity", lambda: SegSortLoss(connectivity=6), error=ValueError, arg="connectivity"),
    Case("segsort_memory_type", lambda: SegSortLoss(memory=torch.zeros(3)), error=TypeError, arg="memory"),
    Case(
        "segsort_max_pixels_zero",
        lambda: SegSortLoss(max_pixels_per_image=0),
        error=ValueError,
        arg="max_pixels_per_image",
    ),
    # SegSortLoss: tensors
    Case(
        "segsort_embeddings_int",
        lambda: SegSortLoss()(torch.ones(2, 4, 6, 6, dtype=torch.long)),
        error=TypeError,
        arg="embeddings",
    ),
    Case("segsort_embeddings_3d", lambda: SegSortLoss()(torch.randn(4, 6, 6)), error=ValueError, arg="embeddings"),
    Case(
        "segsort_embeddings_no_channel",
        lambda: SegSortLoss()(torch.randn(2, 0, 6, 6)),
        error=ValueError,
        arg="embeddings",
    ),
    Case(
        "segsort_labels_float", lambda: SegSortLoss()(_embeddings(), _labels().double()), error=TypeError, arg="labels"
    ),
    Case(
        "segsort_labels_shape", lambda: SegSortLoss()(_embeddings(), _labels()[:, :5]), error=ValueError, arg="labels"
    ),
    Case(
        "segsort_image_ids_shape",
        lambda: SegSortLoss()(_embeddings(), _labels(), image_ids=torch.zeros(3).long()),
        error=ValueError,
        arg="image_ids",
    ),
    Case("segsort_generator", lambda: SegSortLoss()(_embeddings(), generator=0), error=TypeError, arg="generator"),
    Case(
        "segsort_vmf_nca_without_labels",
        lambda: SegSortLoss(loss="vmf_nca")(_embeddings()),
        error=ValueError,
        arg="labels",
    ),
    Case(
        "segsort_memory_dim",
        lambda: SegSortLoss(memory=PrototypeMemory(4, 5))(_embeddings(torch.float32), _labels()),
        error=ValueError,
        arg="prototypes",
    ),
    # pairwise_margin_loss
    Case(
        "margin_alpha_nan",
        lambda: pairwise_margin_loss(_embeddings(), _labels(), alpha=NAN),
        error=ValueError,
        arg="alpha",
    ),
    Case(
        "margin_alpha_inf",
        lambda: pairwise_margin_loss(_embeddings(), _labels(), alpha=INF),
        error=ValueError,
        arg="alpha",
    ),
    Case(
        "margin_num_samples_zero",
        lambda: pairwise_margin_loss(_embeddings(), _labels(), num_samples=0),
        error=ValueError,
        arg="num_samples",
    ),
    Case(
        "margin_reduction",
        lambda: pairwise_margin_loss(_embeddings(), _labels(), iterate_reduction="max"),
        error=ValueError,
        arg="iterate_reduction",
    ),
    Case("margin_empty_list", lambda: pairwise_margin_loss([], _labels()), error=ValueError, arg="embeddings"),
    Case(
        "margin_iterates_differ",
        lambda: pairwise_margin_loss([_embeddings(), _embeddings(torch.float32)], _labels()),
        error=ValueError,
        arg=r"embeddings\[1\]",
    ),
    Case(
        "margin_ids_int32",
        lambda: pairwise_margin_loss(_embeddings(), _labels().int()),
        error=TypeError,
        arg="instance_ids",
    ),
    Case(
        "margin_ids_shape",
        lambda: pairwise_margin_loss(_embeddings(), _labels()[0]),
        error=ValueError,
        arg="instance_ids",
    ),
    Case(
        "margin_no_channel",
        lambda: pairwise_margin_loss(torch.randn(5, 0), torch.zeros(5).long()),
        error=ValueError,
        arg="embeddings",
    ),
    Case(
        "margin_5d",
        lambda: pairwise_margin_loss(torch.randn(1, 2, 4, 6, 6), _labels()),
        error=ValueError,
        arg="embeddings",
    ),
    # soft segmentation
    Case(
        "soft_eps_nan", lambda: soft_segmentation_loss(_embeddings(), _labels(), eps=NAN), error=ValueError, arg="eps"
    ),
    Case(
        "soft_eps_zero", lambda: soft_segmentation_loss(_embeddings(), _labels(), eps=0.0), error=ValueError, arg="eps"
    ),
    Case(
        "soft_eps_negative",
        lambda: soft_segmentation_loss(_embeddings(), _labels(), eps=-1.0),
        error=ValueError,
        arg="eps",
    ),
    Case(
        "soft_num_instances_zero",
        lambda: soft_segmentation_loss(_embeddings(), _labels(), num_instances=0),
        error=ValueError,
        arg="num_instances",
    ),
    Case(
        "soft_pixels_float",
        lambda: soft_segmentation_loss(_embeddings(), _labels(), pixels_per_instance=2.0),
        error=TypeError,
        arg="pixels_per_instance",
    ),
    Case(
        "soft_point_sets",
        lambda: soft_segmentation_loss(torch.randn(2, 36, 4), _labels().flatten(1)),
        error=ValueError,
        arg="embeddings",
    ),
    Case("soft_features_eps_inf", lambda: _soft_features(eps=INF), error=ValueError, arg="eps"),
    Case("soft_features_radius_negative", lambda: _soft_features(radius=-1), error=ValueError, arg="radius"),
    Case("soft_features_dims", lambda: _soft_features(dims=5), error=ValueError, arg="dims"),
    # PiCIE
    Case(
        "picie_scale_nan",
        lambda: picie_loss(_embeddings(), _embeddings(), _clustering(), scale=NAN),
        error=ValueError,
        arg="scale",
    ),
    Case(
        "picie_within_weight_inf",
        lambda: picie_loss(_embeddings(), _embeddings(), _clustering(), within_weight=INF),
        error=ValueError,
        arg="within_weight",
    ),
    Case(
        "picie_cross_weight_nan",
        lambda: picie_loss(_embeddings(), _embeddings(), _clustering(), cross_weight=NAN),
        error=ValueError,
        arg="cross_weight",
    ),
    Case(
        "picie_clustering_weight_nan",
        lambda: picie_loss(_embeddings(), _embeddings(), [_clustering()] * 2, clustering_weights=[NAN, 1.0]),
        error=ValueError,
        arg=r"clustering_weights\[0\]",
    ),
    Case(
        "picie_class_weights_nan",
        lambda: picie_loss(
            _embeddings(),
            _embeddings(),
            _clustering(class_weights_1=torch.tensor([1.0, NAN, 1.0], dtype=torch.float64)),
        ),
        error=ValueError,
        arg="class_weights_1",
    ),
    Case(
        "picie_class_weights_negative",
        lambda: picie_loss(
            _embeddings(),
            _embeddings(),
            _clustering(class_weights_2=torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)),
        ),
        error=ValueError,
        arg="class_weights_2",
    ),
    Case(
        "picie_labels_too_large",
        lambda: picie_loss(_embeddings(), _embeddings(), _clustering(labels_1=_with(_labels(), (0, 0, 0), 2**40))),
        error=ValueError,
        arg="labels_1",
    ),
    Case(
        "picie_labels_int64_max",
        lambda: picie_loss(_embeddings(), _embeddings(), _clustering(labels_2=_with(_labels(), (1, 2, 3), INT64_MAX))),
        error=ValueError,
        arg="labels_2",
    ),
    Case(
        "picie_labels_float",
        lambda: picie_loss(_embeddings(), _embeddings(), _clustering(labels_1=_labels().double())),
        error=TypeError,
        arg="labels_1",
    ),
    Case(
        "picie_centroids_shape",
        lambda: picie_loss(
            _embeddings(), _embeddings(), _clustering(centroids_2=torch.randn(3, 5, dtype=torch.float64))
        ),
        error=ValueError,
        arg="centroids_2",
    ),
    Case(
        "picie_clusterings_empty",
        lambda: picie_loss(_embeddings(), _embeddings(), []),
        error=TypeError,
        arg="clusterings",
    ),
    Case(
        "picie_clusterings_type",
        lambda: picie_loss(_embeddings(), _embeddings(), [(1, 2)]),
        error=TypeError,
        arg="clusterings",
    ),
    Case(
        "picie_features_shape",
        lambda: picie_loss(_embeddings(), _embeddings()[:1], _clustering()),
        error=ValueError,
        arg="features_2",
    ),
    Case(
        "balance_counts_nan", lambda: cluster_balance_weights(torch.tensor([1.0, NAN])), error=ValueError, arg="counts"
    ),
    Case(
        "balance_counts_inf", lambda: cluster_balance_weights(torch.tensor([1.0, INF])), error=ValueError, arg="counts"
    ),
    Case(
        "balance_counts_negative",
        lambda: cluster_balance_weights(torch.tensor([1, -1])),
        error=ValueError,
        arg="counts",
    ),
    Case("balance_counts_bool", lambda: cluster_balance_weights(torch.tensor([True])), error=TypeError, arg="counts"),
    Case("balance_counts_2d", lambda: cluster_balance_weights(torch.ones(2, 2)), error=ValueError, arg="counts"),
    Case("memory_device_bogus", lambda: PrototypeMemory(8, 3, device="bogus"), error=ValueError, arg="device"),
    # Flags take True/False only: "no" is truthy (an outsider's sweep, issue 25).
    Case(
        "segsort_return_diagnostics_str",
        lambda: SegSortLoss()(torch.randn(2, 4, 6, 6), torch.randint(0, 3, (2, 6, 6)), return_diagnostics="no"),
        error=TypeError,
        arg="return_diagnostics",
    ),
    Case(
        "margin_calibrated_str",
        lambda: pairwise_margin_loss(torch.randn(1, 6, 3), torch.tensor([[0, 0, 1, 1, 2, 2]]), calibrated="x"),
        error=TypeError,
        arg="calibrated",
    ),
]

REFUSED_CUDA = [
    Case(
        "memory_cuda_rows",
        lambda: PrototypeMemory(4, 3).push(torch.randn(2, 3, device="cuda"), torch.zeros(2, dtype=torch.long)),
        error=ValueError,
        arg="prototypes",
        marks=(needs_cuda,),
    ),
    Case(
        "segsort_labels_device",
        lambda: SegSortLoss()(_embeddings().cuda(), _labels()),
        error=ValueError,
        arg="labels",
        marks=(needs_cuda,),
    ),
    Case(
        "segsort_memory_device",
        lambda: SegSortLoss(memory=PrototypeMemory(4, 4))(_embeddings().cuda()),
        error=ValueError,
        arg="memory",
        marks=(needs_cuda,),
    ),
    Case(
        "margin_ids_device",
        lambda: pairwise_margin_loss(_embeddings().cuda(), _labels()),
        error=ValueError,
        arg="instance_ids",
        marks=(needs_cuda,),
    ),
    Case(
        "picie_centroids_device",
        lambda: picie_loss(
            _embeddings().cuda(),
            _embeddings().cuda(),
            _clustering(labels_1=_labels().cuda(), labels_2=_labels().cuda()),
        ),
        error=ValueError,
        arg="centroids_1",
        marks=(needs_cuda,),
    ),
]

CASES = REFUSED + REFUSED_CUDA
