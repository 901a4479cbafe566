"""Helpers of the transforms tests: coded samples whose pixels name their source position,
small scenes, and checks of partitions."""
import numpy as np
import torch

from segsort_ext.utils.constants import IGNORE_INDEX


def coded_sample(height, width):
    """Image whose channels encode the pixel position; label = a function of the position."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = torch.stack([ys.float(), xs.float(), (ys * width + xs).float()])
    label = (ys * width + xs) % 21
    return image, label


def position_sample(height, width):
    """Image channels = source row, source column, 0.5; label = row * width + column (keep
    height * width <= 255 so that no label collides with the ignore index)."""
    assert height * width <= IGNORE_INDEX
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = torch.stack([ys.double(), xs.double(), torch.full((height, width), 0.5, dtype=torch.float64)])
    return image, ys * width + xs


def assert_label_under_image(image, label, width):
    """Each label pixel names the source pixel nearest to where its image value was sampled."""
    valid = label != IGNORE_INDEX
    assert valid.any()
    rows, cols = label[valid] // width, label[valid] % width
    assert (rows.double() - image[0][valid]).abs().max() <= 0.5 + 1e-6
    assert (cols.double() - image[1][valid]).abs().max() <= 0.5 + 1e-6


def scene(height=32, width=40, seed=0):
    """Float image (3, H, W) of four flat colour quadrants plus mild noise."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.empty(3, height, width)
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9], [0.9, 0.9, 0.2]])
    h, w = height // 2, width // 2
    for k, (ys, xs) in enumerate([(slice(0, h), slice(0, w)), (slice(0, h), slice(w, None)),
                                  (slice(h, None), slice(0, w)), (slice(h, None), slice(w, None))]):
        image[:, ys, xs] = colours[k].view(3, 1, 1)
    return (image + 0.03 * torch.randn(image.shape, generator=generator)).clamp(0, 1)


def assert_compact(ids):
    assert ids.dtype == torch.int64
    values = torch.unique(ids)
    assert torch.equal(values, torch.arange(values.numel()))
    # Numbered in raster order of first appearance.
    flat = ids.reshape(-1).tolist()
    firsts = [flat.index(v) for v in range(values.numel())]
    assert firsts == sorted(firsts)


def is_refinement(fine, coarse):
    """Every region of ``fine`` lies inside one region of ``coarse``."""
    fine, coarse = np.asarray(fine).reshape(-1), np.asarray(coarse).reshape(-1)
    pairs = np.unique(fine * (int(coarse.max()) + 1) + coarse)
    return pairs.size == int(fine.max()) + 1


def purity(ids, regions):
    """Fraction of pixels lying in the majority region of their segment."""
    counts = torch.zeros(int(ids.max()) + 1, int(regions.max()) + 1)
    counts.index_put_((ids.reshape(-1), regions.reshape(-1)), torch.ones(ids.numel()), accumulate=True)
    return float(counts.max(1).values.sum() / ids.numel())
