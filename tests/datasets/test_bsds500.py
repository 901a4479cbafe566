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


def test_bsds_bench_sample_without_splits():
    """The benchmark sample's bench/ folder: images/ and groundTruth/ without a split level,
    read whatever the split asked for (None, or a split it does not have)."""
    bench = BSDS_ROOT / "bench"
    if not (bench / "images").is_dir():
        pytest.skip(f"BSDS500 benchmark sample not found at {bench}")
    for split in (None, "val", "test"):
        dataset = BSDS500(bench, split=split)
        assert dataset.split is None and dataset.image_folder == bench / "images"
        assert dataset.ids == ["2018", "3063", "5096", "6046", "8068"]
    assert dataset.image_path(1) == bench / "images" / "3063.jpg"
    assert dataset.ground_truth_path(1) == bench / "groundTruth" / "3063.mat"
    image, segmentations, boundaries, image_id = dataset[1]
    assert image_id == "3063" and len(segmentations) == len(boundaries) >= 4
    assert segmentations[0].shape == image.shape[1:]


def test_bsds_layouts_on_a_synthetic_tree(tmp_path):
    """Split folders win over the split-less layout; a split-less folder needs both files."""
    from .datasets_testing import write_image

    scipy_io = pytest.importorskip("scipy.io")
    seg = np.array([[1, 1, 2], [1, 2, 2]], np.uint16)
    cells = np.empty((1, 1), dtype=object)
    cells[0, 0] = {"Segmentation": seg, "Boundaries": np.zeros_like(seg, np.uint8)}
    for folder, ids in (("", ("b", "a", "c")), ("val", ("v",))):
        for image_id in ids:
            write_image(tmp_path / "images" / folder / f"{image_id}.jpg", 2, 3)
            (tmp_path / "groundTruth" / folder).mkdir(parents=True, exist_ok=True)
            if image_id != "c":  # an image without ground truth is left out
                scipy_io.savemat(tmp_path / "groundTruth" / folder / f"{image_id}.mat", {"groundTruth": cells})
    assert BSDS500(tmp_path, split=None).ids == ["a", "b"]
    assert BSDS500(tmp_path, split="train").ids == ["a", "b"]  # no images/train/: the split-less layout
    val = BSDS500(tmp_path, split="val")
    assert val.split == "val" and val.ids == ["v"]
    assert val.ground_truth(0)[0]["segmentation"].tolist() == seg.tolist()
    with pytest.raises(FileNotFoundError, match="groundTruth"):
        BSDS500(tmp_path / "images", split=None)
