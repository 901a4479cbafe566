"""Argument checks the augmentation transforms share, beyond :mod:`segsort_ext.utils.checks`:
image/label pairs and colour jitter strengths."""
from __future__ import annotations

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
