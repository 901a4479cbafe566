"""Augmentation pipelines built from the geometric and photometric transforms.

- :class:`TrainAugmentation` and :class:`RandomCropFlip`: seeded per-sample augmentation of
  ``(image, label)`` pairs, usable as a Dataset ``transform`` (labels stay aligned, padding
  takes the ignore index).
- :func:`picie_views`: PiCIE's two views of a batch, with the geometry that relates them.

NaN/inf policy: that of the geometric and photometric transforms they compose (nothing is
refused; a non-finite pixel reaches the outputs resampled from it and, under PiCIE's blur,
its blur window, and no other pixel).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from segsort_ext.transforms._checks import image_label_pair, jitter_strengths
from segsort_ext.transforms.geometry import apply_geometry, random_crop, random_hflip, random_scale, sample_geometry
from segsort_ext.transforms.photometric import apply_photometric, color_jitter, sample_photometric
from segsort_ext.utils import checks as check
from segsort_ext.utils.constants import IGNORE_INDEX

__all__ = ["RandomCropFlip", "TrainAugmentation", "picie_views"]


class RandomCropFlip:
    """Seeded joint random crop + horizontal flip, usable as a dataset ``transform``.

    Args:
        size: crop size ``(h, w)`` (or an int, a square); ``None`` to only flip.
        flip_prob: probability of mirroring.
        seed: seed of the private :class:`torch.Generator`; the same seed reproduces the same
            sequence of crops/flips (per process -- DataLoader workers each get a copy, so
            reseed with :meth:`reseed` in a ``worker_init_fn`` if workers must differ).
        ignore_index: label value used when the crop needs padding (an int the label
            dtype holds).
    """

    def __init__(
        self,
        size: Optional[Tuple[int, int]],
        flip_prob: float = 0.5,
        seed: int = 0,
        ignore_index: int = IGNORE_INDEX,
    ):
        self.size = None if size is None else check.int_pair(size, "size")
        self.flip_prob = check.number(flip_prob, "flip_prob", minimum=0.0, maximum=1.0)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
        self.ignore_index = ignore_index
        self.generator = torch.Generator()
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random sequence from ``seed``."""
        self.generator.manual_seed(check.seed(seed))

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.size is not None:
            image, label = random_crop(image, label, self.size, self.generator, self.ignore_index)
        return random_hflip(image, label, self.flip_prob, self.generator)


class TrainAugmentation:
    """Seeded training augmentation of ``(image, label)`` pairs, usable as a dataset ``transform``.

    In order: :func:`color_jitter` (image only), :func:`random_scale`, then
    :class:`RandomCropFlip` (crop padded with ``ignore_index``, horizontal flip) -- all drawing
    from one private :class:`torch.Generator`, so the same seed gives the same sequence.
    Labels may be ``(H, W)`` or ``(K, H, W)`` (e.g. class + instance).

    Args:
        crop_size: ``(h, w)`` (or an int, a square) of the output, or None (no crop).
        scale_range: ``(min, max)`` scale factors, or None (no scaling).
        flip_prob: probability of mirroring.
        brightness, contrast, saturation, hue: :func:`color_jitter` strengths (0 = off).
        seed: seed of the generator (see :meth:`reseed` for DataLoader workers).
        ignore_index: label of padded pixels.
    """

    def __init__(
        self,
        crop_size: Optional[Tuple[int, int]],
        *,
        scale_range: Optional[Tuple[float, float]] = (0.5, 2.0),
        flip_prob: float = 0.5,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        seed: int = 0,
        ignore_index: int = IGNORE_INDEX,
    ):
        self.crop_size = None if crop_size is None else check.int_pair(crop_size, "crop_size")
        self.scale_range = None if scale_range is None else check.interval(scale_range, "scale_range", minimum=0.0,
                                                                     strict=True)
        self.jitter = jitter_strengths(brightness, contrast, saturation, hue)
        self.crop_flip = RandomCropFlip(self.crop_size, flip_prob, seed, ignore_index)
        self.generator = self.crop_flip.generator

    def reseed(self, seed: int) -> None:
        """Restart the random sequence from ``seed``."""
        self.crop_flip.reseed(seed)

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        image_label_pair(image, label)
        # Jitter first: padding added by the crop must keep the fill value.
        image = color_jitter(image, *self.jitter, generator=self.generator)
        if self.scale_range is not None:
            image, label = random_scale(image, label, self.scale_range, self.generator)
        return self.crop_flip(image, label)


def picie_views(images: torch.Tensor, *, output_size=None, generator: Optional[torch.Generator] = None,
                geometry_options: Optional[dict] = None, photometric_options: Optional[dict] = None):
    """PiCIE's two views of a batch: ``view_1 = G(P1(images))`` and
    ``view_2 = P2(images)``, with independent photometric transforms P1, P2 and one
    geometric transform G. Train with ``z1 = net(view_1)`` and
    ``z2 = apply_geometry(net(view_2), G)``: both are then feature maps of the same
    crop, so equal pseudo-labels mean invariance to P and equivariance to G.

    Args:
        images: (B, 3, H, W) float RGB in [0, 1].
        output_size: (H_out, W_out) of view_1 (default: the input size).
        generator: torch.Generator (CPU) for all draws.
        geometry_options / photometric_options: keyword arguments of
            :func:`~segsort_ext.transforms.sample_geometry` /
            :func:`~segsort_ext.transforms.sample_photometric`.

    Returns:
        ``(view_1 (B, 3, H_out, W_out), view_2 (B, 3, H, W), geometry)``.
    """
    check.float_tensor(images, "images")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    for name, options in (("geometry_options", geometry_options), ("photometric_options", photometric_options)):
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"{name} must be a dict of keyword arguments or None, got {type(options).__name__}")
    B, _, H, W = images.shape
    geometry = sample_geometry(B, (H, W), output_size, generator=generator, **(geometry_options or {}))
    first = sample_photometric(B, generator=generator, **(photometric_options or {}))
    second = sample_photometric(B, generator=generator, **(photometric_options or {}))
    view_1 = apply_geometry(apply_photometric(images, first), geometry)
    view_2 = apply_photometric(images, second)
    return view_1, view_2, geometry
