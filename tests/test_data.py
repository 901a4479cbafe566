"""Tests of segsort_ext.data: loaders on the real VOC 2012 / BSDS500 samples (skipped when
shared/data is absent) and the batching / joint augmentation helpers on synthetic tensors."""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segsort_ext.data import (
    BSDS500,
    IGNORE_INDEX,
    RandomCropFlip,
    VOCSegmentation,
    collate,
    load_bsds_ground_truth,
    random_crop,
    random_hflip,
)

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VOC_ROOT = DATA_ROOT / "voc2012"
BSDS_ROOT = DATA_ROOT / "bsds500"

VALID_VOC_LABELS = set(range(21)) | {IGNORE_INDEX}


@pytest.fixture(scope="module")
def voc():
    if not (VOC_ROOT / "JPEGImages").is_dir():
        pytest.skip(f"VOC 2012 sample not found at {VOC_ROOT}")
    return VOCSegmentation(VOC_ROOT)


@pytest.fixture(scope="module")
def bsds():
    if not (BSDS_ROOT / "images" / "val").is_dir():
        pytest.skip(f"BSDS500 sample not found at {BSDS_ROOT}")
    return BSDS500(BSDS_ROOT, split="val")


# ============================================================================================
# VOC
# ============================================================================================


def test_voc_sample_contents(voc):
    assert len(voc) == 66
    assert voc.ids == (VOC_ROOT / "ids.txt").read_text().split()
    seen = set()
    for index in range(len(voc)):
        image, label, image_id = voc[index]
        assert image_id == voc.ids[index]
        assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
        assert label.dtype == torch.int64 and label.shape == image.shape[1:]
        assert 0.0 <= image.min() and image.max() <= 1.0
        values = set(torch.unique(label).tolist())
        assert values <= VALID_VOC_LABELS, (image_id, values)
        # Every VOC label has objects and the void border (palette ids, not colours).
        assert IGNORE_INDEX in values and values - {0, IGNORE_INDEX}
        seen |= values
    assert len(seen) > 10  # many classes over the sample


def test_voc_split_ids_variants(voc, tmp_path):
    ids = voc.ids[:3]
    by_list = VOCSegmentation(VOC_ROOT, split_ids=ids)
    assert by_list.ids == ids
    id_file = tmp_path / "subset.txt"
    id_file.write_text("\n".join(ids) + "\n")
    by_file = VOCSegmentation(VOC_ROOT, split_ids=id_file)
    assert by_file.ids == ids
    torch.testing.assert_close(by_file[1][1], voc[1][1])
    with pytest.raises(FileNotFoundError):
        VOCSegmentation(VOC_ROOT, split_ids="no_such_split")
    with pytest.raises(FileNotFoundError):
        VOCSegmentation(tmp_path)


def test_voc_dataloader_with_collate(voc):
    subset = VOCSegmentation(VOC_ROOT, split_ids=voc.ids[:4], transform=RandomCropFlip((200, 240), seed=1))
    loader = DataLoader(subset, batch_size=4, collate_fn=functools.partial(collate, size=(256, 256)))
    images, labels, ids = next(iter(loader))
    assert images.shape == (4, 3, 256, 256) and images.dtype == torch.float32
    assert labels.shape == (4, 256, 256) and labels.dtype == torch.int64
    assert ids == voc.ids[:4]
    # Padding beyond the 200x240 crops is ignore-labelled and black.
    assert (labels[:, 200:, :] == IGNORE_INDEX).all() and (labels[:, :, 240:] == IGNORE_INDEX).all()
    assert (images[:, :, 200:, :] == 0).all()
    assert set(torch.unique(labels).tolist()) <= VALID_VOC_LABELS


# ============================================================================================
# BSDS500
# ============================================================================================


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


# ============================================================================================
# Batching and augmentation (synthetic, no data needed)
# ============================================================================================


def _coded_sample(height, width):
    """Image whose channels encode the pixel position; label = a function of the position."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = torch.stack([ys.float(), xs.float(), (ys * width + xs).float()])
    label = (ys * width + xs) % 21
    return image, label


def test_collate_pads_and_crops():
    small = _coded_sample(3, 4)
    large = _coded_sample(6, 2)
    images, labels, ids = collate([(*small, "a"), (*large, "b")])
    assert images.shape == (2, 3, 6, 4) and labels.shape == (2, 6, 4)
    assert ids == ["a", "b"]
    torch.testing.assert_close(images[0, :, :3, :4], small[0])
    assert (labels[0, 3:] == IGNORE_INDEX).all() and (labels[1, :, 2:] == IGNORE_INDEX).all()
    assert (images[0, :, 3:] == 0).all()
    # Fixed size smaller than the samples crops from the top-left corner.
    images, labels, _ = collate([(*large, "b")], size=(2, 1))
    torch.testing.assert_close(labels[0], large[1][:2, :1])


def test_random_crop_flip_same_geometry_and_deterministic():
    image, label = _coded_sample(10, 12)
    transform = RandomCropFlip((5, 7), flip_prob=0.5, seed=123)
    outputs = [transform(image, label) for _ in range(8)]
    flips = 0
    for out_image, out_label in outputs:
        assert out_image.shape == (3, 5, 7) and out_label.shape == (5, 7)
        # The label still sits under the image pixel it came from.
        torch.testing.assert_close(out_label, out_image[2].long() % 21)
        flips += int(out_image[1, 0, 0] > out_image[1, 0, -1])
    assert 0 < flips < len(outputs)  # both flipped and unflipped crops happen
    transform.reseed(123)
    for out_image, out_label in outputs:
        again_image, again_label = transform(image, label)
        torch.testing.assert_close(again_image, out_image)
        torch.testing.assert_close(again_label, out_label)


def test_random_crop_pads_small_inputs_and_hflip():
    image, label = _coded_sample(3, 4)
    generator = torch.Generator().manual_seed(0)
    out_image, out_label = random_crop(image, label, (5, 6), generator)
    assert out_image.shape == (3, 5, 6)
    torch.testing.assert_close(out_label[:3, :4], label)
    assert (out_label[3:] == IGNORE_INDEX).all() and (out_label[:, 4:] == IGNORE_INDEX).all()
    flipped_image, flipped_label = random_hflip(image, label, p=1.0)
    torch.testing.assert_close(flipped_label, label.flip(-1))
    torch.testing.assert_close(flipped_image, image.flip(-1))
    same_image, same_label = random_hflip(image, label, p=0.0)
    assert same_image is image and same_label is label
