"""Batching samples of different sizes, alone and behind a DataLoader of the VOC sample."""
import functools

import torch
from torch.utils.data import DataLoader

from segsort_ext.datasets import IGNORE_INDEX, VOCSegmentation, collate
from segsort_ext.transforms import RandomCropFlip

from .datasets_testing import VOC_ROOT, label_values

VALID_VOC_LABELS = set(range(21)) | {IGNORE_INDEX}


def coded_sample(height, width):
    """Image whose channels encode the pixel position; label = a function of the position."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = torch.stack([ys.float(), xs.float(), (ys * width + xs).float()])
    label = (ys * width + xs) % 21
    return image, label


def test_collate_pads_and_crops():
    small = coded_sample(3, 4)
    large = coded_sample(6, 2)
    images, labels, ids = collate([(*small, "a"), (*large, "b")])
    assert images.shape == (2, 3, 6, 4) and labels.shape == (2, 6, 4)
    assert ids == ["a", "b"]
    torch.testing.assert_close(images[0, :, :3, :4], small[0])
    assert (labels[0, 3:] == IGNORE_INDEX).all() and (labels[1, :, 2:] == IGNORE_INDEX).all()
    assert (images[0, :, 3:] == 0).all()
    # Fixed size smaller than the samples crops from the top-left corner.
    images, labels, _ = collate([(*large, "b")], size=(2, 1))
    torch.testing.assert_close(labels[0], large[1][:2, :1])


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
    assert label_values(labels) <= VALID_VOC_LABELS
