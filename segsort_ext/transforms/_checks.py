"""Argument checks the augmentation transforms share, beyond :mod:`segsort_ext.utils.checks`:
image sizes, ``(min, max)`` ranges, image/label pairs."""
from __future__ import annotations

from typing import Optional

import torch

from segsort_ext.utils import checks as check


def image_size(value, name: str) -> tuple[int, int]:
    """An int (a square) or a pair of ints (H, W), each >= 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list, torch.Size)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{name} must be an int or a pair of ints (H, W), got {value!r}")
    if min(value) < 1:
        raise ValueError(f"{name} must be >= 1 in each direction, got {tuple(value)}")
    return int(value[0]), int(value[1])


def interval(value, name: str, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
             strict: bool = False) -> tuple[float, float]:
    """A pair (min, max) of finite numbers, min <= max, both within the bounds of
    :func:`segsort_ext.utils.checks.number`."""
    try:
        low, high = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of numbers (min, max), got {value!r}") from None
    low = check.number(low, f"{name} min", minimum=minimum, maximum=maximum, strict=strict)
    high = check.number(high, f"{name} max", minimum=minimum, maximum=maximum, strict=strict)
    if low > high:
        raise ValueError(f"{name} must satisfy min <= max, got {(low, high)}")
    return low, high


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
