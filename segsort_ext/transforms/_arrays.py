"""The numpy side of the scikit-image / scipy based transforms (superpixels, UCM): torch
images in, compact int64 ids out."""
from __future__ import annotations

import numpy as np
import torch


def image_array(image, name: str = "image") -> np.ndarray:
    """A torch image ``(C, H, W)`` (C = 1 or 3) or ``(H, W)`` as float64 numpy ``(H, W[, C])``."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (C, H, W), got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor with values in [0, 1], got {image.dtype}")
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"{name} must have shape (C, H, W) with C = 1 or 3, or (H, W), got {tuple(image.shape)}")
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"{name} must not be empty, got shape {tuple(image.shape)}")
    array = image.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array[0] if array.shape[0] == 1 else np.ascontiguousarray(array.transpose(1, 2, 0))


def compact_ids(labels: np.ndarray) -> np.ndarray:
    """Renumber the values of ``labels`` to ``0..S-1`` in raster order of first appearance
    (negative values stay -1), so that equal partitions always get equal ids."""
    flat = labels.reshape(-1)
    out = np.full(flat.shape, -1, dtype=np.int64)
    keep = flat >= 0
    if keep.any():
        values, first, inverse = np.unique(flat[keep], return_index=True, return_inverse=True)
        rank = np.empty(values.size, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(values.size)
        out[keep] = rank[inverse.reshape(-1)]
    return out.reshape(labels.shape)
