"""BSDS500 on the real val sample (skipped when shared/data is absent)."""
import numpy as np
import pytest
import torch

from segsort_ext.datasets import BSDS500, load_bsds_ground_truth

from .datasets_testing import BSDS_ROOT


def test_bsds_val_sample_contents(bsds):
    assert len(bsds) == 50
    assert bsds.ids == sorted(bsds.ids)
    for index in range(0, len(bsds), 7):  # a spread of images keeps the test light
        image, segmentations, boundaries, image_id = bsds[index]
        assert image_id == bsds.ids[index]
        assert image.dtype == torch.float32 and tuple(image.shape) in {(3, 321, 481), (3, 481, 321)}
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert 4 <= len(segmentations) == len(boundaries) <= 8
        for seg, bdry in zip(segmentations, boundaries):
            assert seg.dtype == torch.int64 and seg.shape == image.shape[1:]
            assert seg.min() >= 1
            assert bdry.dtype == torch.bool and bdry.shape == image.shape[1:]
            assert 0 < bdry.sum() < bdry.numel() // 4


def test_bsds_ground_truth_reader(bsds):
    annotations = load_bsds_ground_truth(bsds.gt_folder / f"{bsds.ids[0]}.mat")
    assert 4 <= len(annotations) <= 8
    for ann in annotations:
        assert set(ann) == {"segmentation", "boundaries"}
        assert ann["segmentation"].dtype == np.uint16 and ann["boundaries"].dtype == bool
        labels = np.unique(ann["segmentation"])
        np.testing.assert_array_equal(labels, np.arange(1, labels.size + 1))  # ids 1..N
    with pytest.raises(FileNotFoundError):
        BSDS500(BSDS_ROOT, split="no_such_split")
