"""Legal edge cases of segsort_ext.metrics: the reference result (the refused inputs are cases of
tests/hostile/cases_metrics.py, run by tests/test_hostile_inputs.py)."""
import math

import numpy as np
import pytest
import torch

import segsort_ext.metrics as M
from tests.hostile.cases_metrics import GT, INT64_MAX, LABELS, SEG


def _relabel(labels):
    """The same partition with ids 1..N in increasing order of the original ids."""
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape) + 1


@pytest.mark.parametrize("big", [2**31, 2**40, INT64_MAX], ids=["2**31", "2**40", "int64-max"])
def test_region_ids_are_arbitrary_integers(big):
    # Tables are sized by the regions, not the ids: ids near the int64 limit on a tiny image
    # would need more memory than exists if a table were indexed by them.
    seg = np.where(SEG > 5, big, SEG)
    gt = np.where(GT > 2, big - 1, GT)
    assert M.segmentation_covering(seg, [gt]) == M.segmentation_covering(_relabel(seg), [_relabel(gt)])
    assert M.rand_index_voi(seg, [gt]) == M.rand_index_voi(_relabel(seg), [_relabel(gt)])
    assert M.rand_index_voi(seg - big, [gt - big]) == M.rand_index_voi(_relabel(seg), [_relabel(gt)])
    np.testing.assert_array_equal(M.instance_ious(seg, gt), M.instance_ious(_relabel(seg), _relabel(gt)))


def test_region_benchmark_with_huge_ids_on_a_tiny_image_is_fast():
    # The case of the issue: ids up to 10**5 and 10**4 on an 8x8 image once allocated a joint
    # histogram of ~10**9 bins (8 GB); it must now take about the time of a contiguous labelling.
    rng = np.random.default_rng(0)
    seg = rng.integers(1, 5, (8, 8)) * 25_000
    gt = rng.integers(1, 4, (8, 8)) * 3_000
    expected = M.region_benchmark([[_relabel(seg), _relabel(seg // 2)]], [[_relabel(gt)]])
    assert M.region_benchmark([[seg, seg // 2]], [[gt]]) == expected
    assert M.boundary_benchmark([[seg]], [[gt]]) == M.boundary_benchmark([[_relabel(seg)]], [[_relabel(gt)]])
    assert M.bsds_benchmark([[seg]], [[gt]], "segs", boundaries=False)["region"]["covering"] == \
        M.bsds_benchmark([[_relabel(seg)]], [[_relabel(gt)]], "segs", boundaries=False)["region"]["covering"]


def test_instance_scores_never_build_the_dense_iou_matrix():
    # 40000 one-pixel proposals and instances: a dense (P, G) matrix would be 12.8 GB.
    ids = np.arange(200 * 200).reshape(200, 200) * 2**40 + 1
    result = M.InstanceEvaluator(background=None, ignore_index=None).update(ids, ids).compute()
    assert result["average_recall"] == 1.0 and result["num_instances"] == 40000


def test_int_widths_bools_tensors_and_stride_zero_inputs_agree():
    expected = M.confusion_matrix(LABELS, LABELS, 3)
    for dtype in (np.int8, np.uint8, np.int16, np.int32, np.uint64):
        np.testing.assert_array_equal(M.confusion_matrix(LABELS.astype(dtype), LABELS.astype(dtype), 3), expected)
    np.testing.assert_array_equal(M.confusion_matrix(torch.from_numpy(LABELS).int(), torch.from_numpy(LABELS), 3),
                                  expected)
    np.testing.assert_array_equal(M.confusion_matrix(LABELS > 0, LABELS > 0, 2),
                                  M.confusion_matrix((LABELS > 0).astype(int), (LABELS > 0).astype(int), 2))
    ones = torch.ones((), dtype=torch.long).expand(1000, 1000)  # 10**6 pixels, one element stored
    assert M.confusion_matrix(ones, ones, 2)[1, 1] == 10**6
    assert M.segmentation_covering(ones, [ones]) == 1.0
    assert M.thin_boundaries(torch.zeros((), dtype=torch.bfloat16).expand(4, 4)).sum() == 0
    np.testing.assert_array_equal(M.to_numpy(torch.ones(2, dtype=torch.bfloat16)), np.ones(2, np.float32))
    assert M.ConfusionMatrix(np.int64(3)).num_classes == 3


def test_empty_and_degenerate_inputs_have_defined_results():
    np.testing.assert_array_equal(M.confusion_matrix(np.zeros(0, int), np.zeros(0, int), 3), np.zeros((3, 3)))
    assert math.isnan(M.mean_iou(np.zeros((3, 3), int))["mean_iou"])
    all_ignored = np.full((2, 3), 255)
    assert M.ConfusionMatrix(3).update(LABELS, all_ignored).matrix.sum() == 0
    # One pixel has no pixel pairs: its Rand index is undefined (NaN), its VOI 0.
    one = M.rand_index_voi(np.ones((1, 1), int), [np.ones((1, 1), int)])
    assert math.isnan(one["pri"]) and one["voi"] == 0.0
    assert M.boundary_pr(np.zeros((4, 4)), [np.zeros((4, 4))])["f"] == 0.0
    assert M.boundary_pr(np.zeros((0, 4)), [np.zeros((0, 4))])["sum_recall"] == 0
    assert M.correspond_pixels(np.zeros((0, 5)), np.zeros((0, 5)))[0].shape == (0, 5)
    no_proposals = M.average_recall([np.zeros((0, 8, 8), bool)], [GT])
    assert no_proposals["average_recall"] == 0.0 and no_proposals["num_instances"] == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_cpu_results():
    pred, target = torch.from_numpy(LABELS), torch.from_numpy(LABELS[::-1].copy())
    expected = M.confusion_matrix(pred, target, 3)
    np.testing.assert_array_equal(M.confusion_matrix(pred.cuda(), target.cuda(), 3), expected)
    seg, gt = torch.from_numpy(SEG), torch.from_numpy(GT)
    assert M.rand_index_voi(seg.cuda(), [gt.cuda()]) == M.rand_index_voi(seg, [gt])
    with pytest.raises(TypeError, match="pred"):
        M.confusion_matrix(pred.cuda().float(), target.cuda(), 3)
