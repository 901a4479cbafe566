"""Argument checks the transforms share, beyond :mod:`segsort_ext.utils.checks`: image/label
pairs, colour jitter strengths, fill values and smoothing widths."""
from __future__ import annotations

from typing import Sequence

import torch

from segsort_ext.utils import checks as check


def image_label_pair(image, label) -> None:
    """A float image (C, H, W) and a label map (H, W) or (K, H, W) of the same size."""
    if not isinstance(image, torch.Tensor) or not image.is_floating_point() or image.dim() != 3:
        raise TypeError("image must be a floating point tensor (C, H, W)")
    if not isinstance(label, torch.Tensor) or label.dim() not in (2, 3):
        raise TypeError("label must be a tensor (H, W) or (K, H, W)")
    if tuple(label.shape[-2:]) != tuple(image.shape[-2:]):
        raise ValueError(f"label {tuple(label.shape)} and image {tuple(image.shape)} must have the same (H, W)")


def jitter_strengths(brightness, contrast, saturation, hue) -> tuple[float, float, float, float]:
    """Colour jitter strengths: brightness, contrast, saturation >= 0 and hue in [0, 0.5]
    (a fraction of the colour wheel)."""
    return (check.number(brightness, "brightness", minimum=0.0), check.number(contrast, "contrast", minimum=0.0),
            check.number(saturation, "saturation", minimum=0.0), check.number(hue, "hue", minimum=0.0, maximum=0.5))


def fill_value(value, dtype: torch.dtype, name: str):
    """A value that a tensor of ``dtype`` holds exactly: an int within the range of an
    integer dtype, a bool (or 0/1) for bool, any number but NaN (inf included) for floats."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if dtype.is_floating_point or dtype.is_complex:
        return check.number(value, name, finite=False)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int for a {dtype} tensor, got {type(value).__name__}")
    low, high = (0, 1) if dtype == torch.bool else (torch.iinfo(dtype).min, torch.iinfo(dtype).max)
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}] to fit the {dtype} tensor, got {value}")
    return value


def smoothing_sigma(value, image_size: Sequence[int], name: str = "sigma") -> float:
    """A Gaussian pre-smoothing sigma (pixels) for an image of ``image_size`` (H, W): >= 0
    and at most twice its larger side. A wider Gaussian only flattens the image further,
    while its kernel (and the time to apply it) grows with sigma without bound."""
    limit = 2 * max(image_size)
    value = check.number(value, name, minimum=0.0)
    if value > limit:
        raise ValueError(f"{name} must be <= 2 * max(H, W) = {limit} for an image of size {tuple(image_size)}, "
                         f"got {value}")
    return value
