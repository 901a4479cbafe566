"""Bad-input catalogue of segsort_ext.nn: every refused input raises the exact error type
with a message naming the argument; legal edge cases (empty batches, all-ignored pixels,
int64 edge ids, stride-0 inputs, sizes larger than the data) give the correct result."""
import pytest
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
from segsort_ext.utils.constants import IGNORE_INDEX

INT64_MAX = 2**63 - 1


def _embeddings(dtype=torch.float64):
    return torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _labels():
    return torch.randint(3, (2, 6, 6), generator=torch.Generator().manual_seed(1))


def _clustering(**fields):
    base = dict(centroids_1=torch.randn(3, 4, dtype=torch.float64), centroids_2=torch.randn(3, 4, dtype=torch.float64),
                labels_1=_labels(), labels_2=_labels())
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
    ("memory_labels_none_after_labelled", lambda: _memory_push(torch.tensor([0, 1]), None), TypeError, "labels"),
    ("memory_labels_none_then_labelled", lambda: _memory_push(None, torch.tensor([0, 1])), TypeError, "labels"),
    ("memory_labels_int32", lambda: _memory_push(torch.tensor([0, 1], dtype=torch.int32), None), TypeError, "labels"),
    ("memory_labels_shape", lambda: _memory_push(torch.zeros(2, 1, dtype=torch.long), None), ValueError, "labels"),
    ("memory_prototypes_dim", lambda: PrototypeMemory(4, 3).push(torch.randn(2, 4), torch.zeros(2, dtype=torch.long)),
     ValueError, "prototypes"),
    ("memory_prototypes_int", lambda: PrototypeMemory(4, 3).push(torch.ones(2, 3, dtype=torch.long),
                                                                  torch.zeros(2, dtype=torch.long)),
     TypeError, "prototypes"),
    ("memory_image_ids_shape", lambda: PrototypeMemory(4, 3).push(torch.randn(2, 3), torch.zeros(2, dtype=torch.long),
                                                                   image_ids=torch.zeros(3, dtype=torch.long)),
     ValueError, "image_ids"),
    ("memory_size_zero", lambda: PrototypeMemory(0, 3), ValueError, "size"),
    ("memory_size_float", lambda: PrototypeMemory(4.0, 3), TypeError, "size"),
    ("memory_dim_overflow", lambda: PrototypeMemory(2, 2**62), ValueError, "dim"),
    ("memory_size_overflow", lambda: PrototypeMemory(2**62, 4), ValueError, "size"),
    ("memory_last_batches_overflow", lambda: PrototypeMemory.last_batches(3, num_batches=2**40, max_per_batch=2**40),
     ValueError, "size"),
    ("memory_dtype_int", lambda: PrototypeMemory(4, 3, dtype=torch.int64), TypeError, "dtype"),
    ("memory_max_batches_zero", lambda: PrototypeMemory(4, 3, max_batches=0), ValueError, "max_batches"),
    # SegSortLoss: scalars
    ("segsort_concentration_nan", lambda: SegSortLoss(concentration=NAN), ValueError, "concentration"),
    ("segsort_concentration_inf", lambda: SegSortLoss(concentration=INF), ValueError, "concentration"),
    ("segsort_concentration_zero", lambda: SegSortLoss(concentration=0.0), ValueError, "concentration"),
    ("segsort_concentration_negative", lambda: SegSortLoss(concentration=-1.0), ValueError, "concentration"),
    ("segsort_concentration_str", lambda: SegSortLoss(concentration="10"), TypeError, "concentration"),
    ("segsort_coord_weight_nan", lambda: SegSortLoss(coord_weight=NAN), ValueError, "coord_weight"),
    ("segsort_coord_weight_inf", lambda: SegSortLoss(coord_weight=-INF), ValueError, "coord_weight"),
    ("segsort_grid_zero", lambda: SegSortLoss(grid=(0, 3)), ValueError, "grid"),
    ("segsort_grid_float", lambda: SegSortLoss(grid=2.5), TypeError, "grid"),
    ("segsort_kmeans_iters_zero", lambda: SegSortLoss(kmeans_iters=0), ValueError, "kmeans_iters"),
    ("segsort_ignore_index_overflow", lambda: SegSortLoss(ignore_index=2**63), ValueError, "ignore_index"),
    ("segsort_ignore_index_float", lambda: SegSortLoss(ignore_index=255.0), TypeError, "ignore_index"),
    ("segsort_loss_name", lambda: SegSortLoss(loss="nca"), ValueError, "loss"),
    ("segsort_connectivity", lambda: SegSortLoss(connectivity=6), ValueError, "connectivity"),
    ("segsort_memory_type", lambda: SegSortLoss(memory=torch.zeros(3)), TypeError, "memory"),
    ("segsort_max_pixels_zero", lambda: SegSortLoss(max_pixels_per_image=0), ValueError, "max_pixels_per_image"),
    # SegSortLoss: tensors
    ("segsort_embeddings_int", lambda: SegSortLoss()(torch.ones(2, 4, 6, 6, dtype=torch.long)), TypeError,
     "embeddings"),
    ("segsort_embeddings_3d", lambda: SegSortLoss()(torch.randn(4, 6, 6)), ValueError, "embeddings"),
    ("segsort_embeddings_no_channel", lambda: SegSortLoss()(torch.randn(2, 0, 6, 6)), ValueError, "embeddings"),
    ("segsort_labels_float", lambda: SegSortLoss()(_embeddings(), _labels().double()), TypeError, "labels"),
    ("segsort_labels_shape", lambda: SegSortLoss()(_embeddings(), _labels()[:, :5]), ValueError, "labels"),
    ("segsort_image_ids_shape", lambda: SegSortLoss()(_embeddings(), _labels(), image_ids=torch.zeros(3).long()),
     ValueError, "image_ids"),
    ("segsort_generator", lambda: SegSortLoss()(_embeddings(), generator=0), TypeError, "generator"),
    ("segsort_vmf_nca_without_labels", lambda: SegSortLoss(loss="vmf_nca")(_embeddings()), ValueError, "labels"),
    ("segsort_memory_dim", lambda: SegSortLoss(memory=PrototypeMemory(4, 5))(_embeddings(torch.float32), _labels()),
     ValueError, "prototypes"),
    # pairwise_margin_loss
    ("margin_alpha_nan", lambda: pairwise_margin_loss(_embeddings(), _labels(), alpha=NAN), ValueError, "alpha"),
    ("margin_alpha_inf", lambda: pairwise_margin_loss(_embeddings(), _labels(), alpha=INF), ValueError, "alpha"),
    ("margin_num_samples_zero", lambda: pairwise_margin_loss(_embeddings(), _labels(), num_samples=0), ValueError,
     "num_samples"),
    ("margin_reduction", lambda: pairwise_margin_loss(_embeddings(), _labels(), iterate_reduction="max"), ValueError,
     "iterate_reduction"),
    ("margin_empty_list", lambda: pairwise_margin_loss([], _labels()), ValueError, "embeddings"),
    ("margin_iterates_differ", lambda: pairwise_margin_loss([_embeddings(), _embeddings(torch.float32)], _labels()),
     ValueError, r"embeddings\[1\]"),
    ("margin_ids_int32", lambda: pairwise_margin_loss(_embeddings(), _labels().int()), TypeError, "instance_ids"),
    ("margin_ids_shape", lambda: pairwise_margin_loss(_embeddings(), _labels()[0]), ValueError, "instance_ids"),
    ("margin_no_channel", lambda: pairwise_margin_loss(torch.randn(5, 0), torch.zeros(5).long()), ValueError,
     "embeddings"),
    ("margin_5d", lambda: pairwise_margin_loss(torch.randn(1, 2, 4, 6, 6), _labels()), ValueError, "embeddings"),
    # soft segmentation
    ("soft_eps_nan", lambda: soft_segmentation_loss(_embeddings(), _labels(), eps=NAN), ValueError, "eps"),
    ("soft_eps_zero", lambda: soft_segmentation_loss(_embeddings(), _labels(), eps=0.0), ValueError, "eps"),
    ("soft_eps_negative", lambda: soft_segmentation_loss(_embeddings(), _labels(), eps=-1.0), ValueError, "eps"),
    ("soft_num_instances_zero", lambda: soft_segmentation_loss(_embeddings(), _labels(), num_instances=0), ValueError,
     "num_instances"),
    ("soft_pixels_float", lambda: soft_segmentation_loss(_embeddings(), _labels(), pixels_per_instance=2.0), TypeError,
     "pixels_per_instance"),
    ("soft_point_sets", lambda: soft_segmentation_loss(torch.randn(2, 36, 4), _labels().flatten(1)), ValueError,
     "embeddings"),
    ("soft_features_eps_inf", lambda: _soft_features(eps=INF), ValueError, "eps"),
    ("soft_features_radius_negative", lambda: _soft_features(radius=-1), ValueError, "radius"),
    ("soft_features_dims", lambda: _soft_features(dims=5), ValueError, "dims"),
    # PiCIE
    ("picie_scale_nan", lambda: picie_loss(_embeddings(), _embeddings(), _clustering(), scale=NAN), ValueError,
     "scale"),
    ("picie_within_weight_inf", lambda: picie_loss(_embeddings(), _embeddings(), _clustering(), within_weight=INF),
     ValueError, "within_weight"),
    ("picie_cross_weight_nan", lambda: picie_loss(_embeddings(), _embeddings(), _clustering(), cross_weight=NAN),
     ValueError, "cross_weight"),
    ("picie_clustering_weight_nan", lambda: picie_loss(_embeddings(), _embeddings(), [_clustering()] * 2,
                                                       clustering_weights=[NAN, 1.0]),
     ValueError, r"clustering_weights\[0\]"),
    ("picie_class_weights_nan", lambda: picie_loss(_embeddings(), _embeddings(), _clustering(
        class_weights_1=torch.tensor([1.0, NAN, 1.0], dtype=torch.float64))), ValueError, "class_weights_1"),
    ("picie_class_weights_negative", lambda: picie_loss(_embeddings(), _embeddings(), _clustering(
        class_weights_2=torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))), ValueError, "class_weights_2"),
    ("picie_labels_too_large", lambda: picie_loss(_embeddings(), _embeddings(), _clustering(
        labels_1=_with(_labels(), (0, 0, 0), 2**40))), ValueError, "labels_1"),
    ("picie_labels_int64_max", lambda: picie_loss(_embeddings(), _embeddings(), _clustering(
        labels_2=_with(_labels(), (1, 2, 3), INT64_MAX))), ValueError, "labels_2"),
    ("picie_labels_float", lambda: picie_loss(_embeddings(), _embeddings(), _clustering(labels_1=_labels().double())),
     TypeError, "labels_1"),
    ("picie_centroids_shape", lambda: picie_loss(_embeddings(), _embeddings(), _clustering(
        centroids_2=torch.randn(3, 5, dtype=torch.float64))), ValueError, "centroids_2"),
    ("picie_clusterings_empty", lambda: picie_loss(_embeddings(), _embeddings(), []), TypeError, "clusterings"),
    ("picie_clusterings_type", lambda: picie_loss(_embeddings(), _embeddings(), [(1, 2)]), TypeError, "clusterings"),
    ("picie_features_shape", lambda: picie_loss(_embeddings(), _embeddings()[:1], _clustering()), ValueError,
     "features_2"),
    ("balance_counts_nan", lambda: cluster_balance_weights(torch.tensor([1.0, NAN])), ValueError, "counts"),
    ("balance_counts_inf", lambda: cluster_balance_weights(torch.tensor([1.0, INF])), ValueError, "counts"),
    ("balance_counts_negative", lambda: cluster_balance_weights(torch.tensor([1, -1])), ValueError, "counts"),
    ("balance_counts_bool", lambda: cluster_balance_weights(torch.tensor([True])), TypeError, "counts"),
    ("balance_counts_2d", lambda: cluster_balance_weights(torch.ones(2, 2)), ValueError, "counts"),
]

REFUSED_CUDA = [
    ("memory_cuda_rows", lambda: PrototypeMemory(4, 3).push(torch.randn(2, 3, device="cuda"),
                                                             torch.zeros(2, dtype=torch.long)),
     ValueError, "prototypes"),
    ("segsort_labels_device", lambda: SegSortLoss()(_embeddings().cuda(), _labels()), ValueError, "labels"),
    ("segsort_memory_device", lambda: SegSortLoss(memory=PrototypeMemory(4, 4))(_embeddings().cuda()), ValueError,
     "memory"),
    ("margin_ids_device", lambda: pairwise_margin_loss(_embeddings().cuda(), _labels()), ValueError, "instance_ids"),
    ("picie_centroids_device", lambda: picie_loss(_embeddings().cuda(), _embeddings().cuda(),
                                                  _clustering(labels_1=_labels().cuda(), labels_2=_labels().cuda())),
     ValueError, "centroids_1"),
]


@pytest.mark.parametrize("call, error, name", [pytest.param(*case[1:], id=case[0]) for case in REFUSED]
                         + [pytest.param(*case[1:], id=case[0], marks=needs_cuda) for case in REFUSED_CUDA])
def test_refused_with_the_argument_named(call, error, name):
    # name: a regular expression matching the argument's name in the message
    with pytest.raises(error, match=name):
        call()


# -- legal edge cases: the correct result --------------------------------------------

def _relabel(labels, top):
    """Labels 0..2 moved to top-2..top (same partition, same order)."""
    return labels + (top - 2)


@pytest.mark.parametrize("top", [2**31, 2**40, INT64_MAX])
def test_segsort_loss_int64_edge_labels(top):
    expected = SegSortLoss()(_embeddings(), _labels())
    assert torch.equal(SegSortLoss(ignore_index=-1)(_embeddings(), _relabel(_labels(), top)), expected)


@pytest.mark.parametrize("top", [2**31, 2**40, INT64_MAX])
def test_point_losses_int64_edge_ids(top):
    ids = _relabel(_labels(), top)
    assert torch.equal(pairwise_margin_loss(_embeddings(), ids), pairwise_margin_loss(_embeddings(), _labels()))
    soft = [soft_segmentation_loss(_embeddings(), labels, generator=torch.Generator().manual_seed(2))
            for labels in (ids, _labels())]
    assert torch.equal(*soft)


@pytest.mark.parametrize("top", [2**31, 2**40, INT64_MAX])
def test_memory_keeps_int64_edge_labels_and_ids(top):
    memory = PrototypeMemory(4, 3)
    edge = torch.tensor([top, -top - 1, -1])
    memory.push(torch.randn(3, 3), edge, image_ids=edge.flip(0), segment_ids=edge)
    assert torch.equal(memory.tensors()[1], edge)
    assert torch.equal(memory.provenance().image_ids, edge.flip(0))
    assert torch.equal(memory.provenance().segment_ids, edge)


def test_losses_without_valid_pixels_are_zero_with_a_zero_gradient():
    embeddings = _embeddings().requires_grad_()
    ignored = torch.full_like(_labels(), IGNORE_INDEX)
    losses = [SegSortLoss()(embeddings, ignored), SegSortLoss()(embeddings[:0]),
              pairwise_margin_loss(embeddings, torch.full_like(ignored, -1)),
              soft_segmentation_loss(embeddings, torch.full_like(ignored, -1)),
              picie_loss(embeddings, embeddings, _clustering(labels_1=torch.full_like(ignored, -1),
                                                             labels_2=torch.full_like(ignored, -1)))]
    for loss in losses:
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, embeddings, allow_unused=True)
        assert grad is None or not grad.any()


def test_sizes_beyond_the_data_are_all_of_it():
    # Sampling sizes larger than the data take every pixel, without allocating for the
    # requested size.
    generator = torch.Generator().manual_seed(3)
    everything = soft_segmentation_loss(_embeddings(), _labels(), pixels_per_instance=None,
                                        generator=generator.manual_seed(3))
    huge = soft_segmentation_loss(_embeddings(), _labels(), num_instances=2**62, pixels_per_instance=2**62,
                                  generator=generator.manual_seed(3))
    assert torch.equal(huge, everything)
    assert torch.equal(pairwise_margin_loss(_embeddings(), _labels(), num_samples=2**62),
                       pairwise_margin_loss(_embeddings(), _labels()))
    assert torch.equal(SegSortLoss(max_pixels_per_image=2**62)(_embeddings(), _labels()),
                       SegSortLoss()(_embeddings(), _labels()))


def test_stride_zero_embeddings_match_contiguous_ones():
    column = torch.randn(2, 4, 6, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expanded = column.expand(2, 4, 6, 6)
    losses = (SegSortLoss(), pairwise_margin_loss,
              lambda x, ids: soft_segmentation_loss(x, ids, generator=torch.Generator().manual_seed(5)))
    for loss in losses:
        assert torch.equal(loss(expanded, _labels()), loss(expanded.contiguous(), _labels()))
