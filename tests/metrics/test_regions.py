"""Tests of segsort_ext.metrics.regions: covering, PRI and VOI on hand-checked maps."""
import numpy as np
import pytest
import torch

from segsort_ext.metrics import rand_index_voi, segmentation_covering


def test_region_metrics_hand_cases():
    gt = np.ones((10, 10), dtype=np.int64)
    gt[:, 5:] = 2
    assert segmentation_covering(gt, [gt]) == 1.0
    assert rand_index_voi(gt, [gt]) == {"pri": 1.0, "voi": 0.0}
    single = np.ones_like(gt)
    # Each half (area 50) overlaps the single region (area 100) with IoU 0.5.
    assert segmentation_covering(single, [gt]) == pytest.approx(0.5)
    riv = rand_index_voi(single, [gt])
    m = 50  # pixels per half: agreeing pairs are the 2*C(m,2) same-half pairs
    assert riv["pri"] == pytest.approx((m - 1) / (2 * m - 1))
    assert riv["voi"] == pytest.approx(1.0)  # H(gt) = 1 bit, no shared information
    # Averaged over annotators.
    assert segmentation_covering(single, [gt, single]) == pytest.approx(0.75)


def test_region_metrics_accept_ground_truth_dicts_and_tensors():
    gt = np.ones((6, 8), dtype=np.int64)
    gt[3:] = 2
    seg = np.ones_like(gt)
    expected = segmentation_covering(seg, [gt]), rand_index_voi(seg, [gt])
    for gts in (gt, {"segmentation": gt}, [{"segmentation": torch.from_numpy(gt)}]):
        assert (segmentation_covering(torch.from_numpy(seg), gts), rand_index_voi(seg, gts)) == expected
