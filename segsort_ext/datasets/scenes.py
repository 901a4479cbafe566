"""The embedded default data: scenes composed at run time from real images that ship
with installed packages, with exact labels, so the demo and the tests need no download.

- :class:`TextureMosaics` (semantic segmentation): every image is a mosaic of 2-5
  regions with wavy borders, each filled with one of six real textures from
  scikit-image (brick, grass, gravel, the moon's surface, the Hubble deep field, an
  immunohistochemistry stain). The four grey textures differ only by texture, not by
  colour. Train and test images cut their textures from disjoint parts of each source
  photograph (the left 60% for 'train', the right 40% for 'test'), so test pixels are
  never seen in training.
- :class:`DigitScenes` (instance grouping, Kong & Fowlkes' toy): 2-4 handwritten digits
  from scikit-learn's digits (8x8 scans of real handwriting, upscaled) on a noisy
  background; train and test draw from disjoint digit scans.

Both are deterministic given ``seed`` and build every image once, at construction, in
well under a second per hundred images.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from segsort_ext.utils import checks as check
from segsort_ext.utils.optional import require

__all__ = ["TEXTURE_CLASSES", "TextureMosaics", "DigitScenes", "texture_sources"]

#: Class names of :class:`TextureMosaics`, in label order.
TEXTURE_CLASSES = ("brick", "grass", "gravel", "moon", "stars", "stain")

_TRAIN_FRACTION = 0.6  # the left part of every source photograph is for training
_texture_cache: dict = {}


def _load_skimage(name: str) -> np.ndarray:
    return getattr(require("skimage.data", "TextureMosaics"), name)()


def texture_sources(split: str) -> List[torch.Tensor]:
    """The six texture photographs as (3, H, W) float tensors in [0, 1], in
    :data:`TEXTURE_CLASSES` order, cut to the columns of ``split`` ('train' or 'test')."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not _texture_cache:
        names = {"brick": "brick", "grass": "grass", "gravel": "gravel", "moon": "moon",
                 "stars": "hubble_deep_field", "stain": "immunohistochemistry"}
        for cls in TEXTURE_CLASSES:
            image = torch.from_numpy(np.ascontiguousarray(_load_skimage(names[cls]))).float() / 255
            image = image.expand(3, *image.shape) if image.dim() == 2 else image.permute(2, 0, 1)[:3]
            # Half resolution: a texel of brick or gravel then spans a few pixels of a 64x64 scene.
            size = (image.shape[1] // 2, image.shape[2] // 2)
            image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
            _texture_cache[cls] = image.clamp(0, 1).contiguous()
    out = []
    for cls in TEXTURE_CLASSES:
        image = _texture_cache[cls]
        cut = int(image.shape[2] * _TRAIN_FRACTION)
        out.append(image[:, :, :cut] if split == "train" else image[:, :, cut:])
    return out


def _smooth_noise(generator: torch.Generator, size: Tuple[int, int], cells: int) -> torch.Tensor:
    """(H, W) smooth random field in about [-1, 1]: bicubic upsampling of a coarse grid."""
    coarse = torch.rand(1, 1, cells, cells, generator=generator) * 2 - 1
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=True)[0, 0]


def _random_crop(source: torch.Tensor, size: Tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    H, W = size
    top = int(torch.randint(source.shape[1] - H + 1, (1,), generator=generator))
    left = int(torch.randint(source.shape[2] - W + 1, (1,), generator=generator))
    return source[:, top:top + H, left:left + W]


class _Scenes(Dataset):
    """Shared storage: images (N, 3, H, W), labels (N, H, W), instances (N, H, W)."""

    images: torch.Tensor
    labels: torch.Tensor
    instances: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        """(image (3, H, W) float in [0, 1], label (H, W) int64, instance ids (H, W) int64)."""
        return self.images[index], self.labels[index], self.instances[index]


def _check_common(split: str, num_images, size, seed) -> Tuple[int, int]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    check.positive_int(num_images, "num_images")
    # The generator is seeded with 2 * seed + (split == 'test'), which must fit in 64 bits.
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not -(2**62) <= seed < 2**63:
        raise ValueError(f"seed must be in [-2**62, 2**63), got {seed}")
    return check.int_pair(size, "size")


class TextureMosaics(_Scenes):
    """Texture-mosaic scenes for semantic segmentation (six classes, every pixel labelled).

    Args:
        split: 'train' or 'test' (disjoint parts of the source textures).
        num_images: how many scenes.
        size: scene size, an int or (H, W), in [8, 96] (the test textures are 102 px wide).
        regions: (min, max) number of regions per scene; regions of one scene get
            distinct classes.
        seed: the scenes are a function of (split, num_images, size, regions, seed).

    Items: ``(image, label, instance)``: label in ``[0, 6)``, see
    :data:`TEXTURE_CLASSES`; instance = the region index within the scene.
    """

    num_classes = len(TEXTURE_CLASSES)
    class_names = TEXTURE_CLASSES

    def __init__(self, split: str = "train", num_images: int = 200, size=64, regions: Tuple[int, int] = (2, 5),
                 seed: int = 0):
        H, W = _check_common(split, num_images, size, seed)
        if not (8 <= min(H, W) and max(H, W) <= 96):
            raise ValueError(f"size must lie in [8, 96], got {(H, W)}")
        lo, hi = check.int_pair(regions, "regions", "(min, max)")
        if not 1 <= lo <= hi <= len(TEXTURE_CLASSES):
            raise ValueError(f"regions must be (min, max) with 1 <= min <= max <= {len(TEXTURE_CLASSES)}, "
                             f"got {regions!r}")
        sources = texture_sources(split)
        generator = torch.Generator().manual_seed(seed * 2 + (split == "test"))
        ys = torch.linspace(0, 1, H).view(H, 1).expand(H, W)
        xs = torch.linspace(0, 1, W).view(1, W).expand(H, W)
        images, labels, instances = [], [], []
        for _ in range(num_images):
            count = int(torch.randint(lo, hi + 1, (1,), generator=generator))
            classes = torch.randperm(len(TEXTURE_CLASSES), generator=generator)[:count]
            seeds = torch.rand(count, 2, generator=generator)
            # Voronoi cells of warped coordinates: wavy, natural-looking borders.
            wy = ys + 0.12 * _smooth_noise(generator, (H, W), 4)
            wx = xs + 0.12 * _smooth_noise(generator, (H, W), 4)
            distance = (wy[None] - seeds[:, 0, None, None]) ** 2 + (wx[None] - seeds[:, 1, None, None]) ** 2
            region = distance.argmin(0)
            image = torch.zeros(3, H, W)
            for r in range(count):
                texture = _random_crop(sources[int(classes[r])], (H, W), generator)
                # Mild brightness/contrast jitter: a class is its texture, not its exact grey level.
                gain = 0.85 + 0.3 * float(torch.rand((), generator=generator))
                bias = 0.08 * (float(torch.rand((), generator=generator)) - 0.5)
                texture = ((texture - texture.mean()) * gain + texture.mean() + bias).clamp(0, 1)
                image = torch.where(region == r, texture, image)
            images.append(image)
            labels.append(classes[region])
            instances.append(region)
        self.images = torch.stack(images)
        self.labels = torch.stack(labels).long()
        self.instances = torch.stack(instances).long()


def _digit_scans(split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    digits = require("sklearn.datasets", "DigitScenes").load_digits()
    images = torch.from_numpy(digits.images).float() / 16
    targets = torch.from_numpy(digits.target).long()
    cut = 1300  # 1797 scans: the first 1300 for training, the rest for testing
    return (images[:cut], targets[:cut]) if split == "train" else (images[cut:], targets[cut:])


class DigitScenes(_Scenes):
    """Multi-digit scenes for instance grouping (Kong & Fowlkes' toy, with real scans).

    Args:
        split: 'train' or 'test' (disjoint digit scans).
        num_images: how many scenes.
        size: scene size, an int or (H, W), at least 24.
        digits: (min, max) digits per scene; digits never overlap (boxes 1 pixel apart).
        digit_size: (min, max) side of an upscaled digit in pixels.
        seed: the scenes are a function of the arguments.

    Items: ``(image, label, instance)``: label = digit class + 1 on digit pixels, 0 on
    background; instance = 1..k for the k digits, 0 for background.
    """

    num_classes = 11
    class_names = ("background",) + tuple(str(d) for d in range(10))

    def __init__(self, split: str = "train", num_images: int = 200, size=48, digits: Tuple[int, int] = (2, 4),
                 digit_size: Tuple[int, int] = (14, 20), seed: int = 0):
        H, W = _check_common(split, num_images, size, seed)
        lo, hi = check.int_pair(digits, "digits", "(min, max)")
        smin, smax = check.int_pair(digit_size, "digit_size", "(min, max)")
        if not 6 <= smin <= smax <= min(H, W):
            raise ValueError(f"digit_size must be (min, max) with 6 <= min <= max <= {min(H, W)}, got {digit_size!r}")
        room = ((H + 1) // (smin + 1)) * ((W + 1) // (smin + 1))  # digits of the smallest size, 1 px apart
        if not 1 <= lo <= hi <= room:
            raise ValueError(f"digits must be (min, max) with 1 <= min <= max <= {room} (what fits in {(H, W)}), "
                             f"got {digits!r}")
        scans, targets = _digit_scans(split)
        generator = torch.Generator().manual_seed(seed * 2 + (split == "test"))
        images, labels, instances = [], [], []
        for _ in range(num_images):
            count = int(torch.randint(lo, hi + 1, (1,), generator=generator))
            image = 0.15 * torch.rand(H, W, generator=generator)
            label = torch.zeros(H, W, dtype=torch.long)
            instance = torch.zeros(H, W, dtype=torch.long)
            occupied = torch.zeros(H + 2, W + 2, dtype=torch.bool)
            placed = 0
            for _attempt in range(30 * count):
                if placed == count:
                    break
                side = int(torch.randint(smin, smax + 1, (1,), generator=generator))
                top = int(torch.randint(H - side + 1, (1,), generator=generator))
                left = int(torch.randint(W - side + 1, (1,), generator=generator))
                if occupied[top:top + side + 2, left:left + side + 2].any():
                    continue
                pick = int(torch.randint(scans.shape[0], (1,), generator=generator))
                glyph = F.interpolate(scans[pick][None, None], size=(side, side), mode="bilinear",
                                      align_corners=False)[0, 0]
                mask = glyph > 0.3
                brightness = 0.6 + 0.4 * float(torch.rand((), generator=generator))
                window = (slice(top, top + side), slice(left, left + side))
                image[window] = torch.where(mask, 0.15 + brightness * glyph.clamp(0, 1) * 0.85, image[window])
                label[window][mask] = int(targets[pick]) + 1
                placed += 1
                instance[window][mask] = placed
                occupied[top + 1:top + side + 1, left + 1:left + side + 1] = True
            image = (image + 0.03 * torch.randn(H, W, generator=generator)).clamp(0, 1)
            images.append(image.expand(3, H, W).clone())
            labels.append(label)
            instances.append(instance)
        self.images = torch.stack(images)
        self.labels = torch.stack(labels)
        self.instances = torch.stack(instances)


def scene_batches(dataset: _Scenes, batch_size: int, generator: Optional[torch.Generator] = None):
    """Endless random batches ``(images, labels, instances, indices)`` of a scene set."""
    check.positive_int(batch_size, "batch_size")
    check.generator(generator)
    while True:
        picks = torch.randint(len(dataset), (batch_size,), generator=generator)
        yield dataset.images[picks], dataset.labels[picks], dataset.instances[picks], picks
