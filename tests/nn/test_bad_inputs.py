"""Legal edge cases of segsort_ext.nn (empty batches, all-ignored pixels, int64 edge ids, stride-0
inputs, sizes larger than the data): the correct result (the refused inputs are cases of
tests/hostile/cases_nn.py, run by tests/test_hostile_inputs.py)."""
import pytest
import torch

from segsort_ext.nn import (
    PrototypeMemory,
    SegSortLoss,
    pairwise_margin_loss,
    picie_loss,
    soft_segmentation_loss,
)
from segsort_ext.utils.constants import IGNORE_INDEX
from tests.hostile.cases_nn import INT64_MAX, _clustering, _embeddings, _labels

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
