"""Batching ``(image, label, id)`` samples of different sizes."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from segsort_ext.transforms import crop_or_pad
from segsort_ext.utils.constants import IGNORE_INDEX

__all__ = ["collate"]


def collate(
    batch: Sequence[Tuple[torch.Tensor, torch.Tensor, str]],
    size: Optional[Tuple[int, int]] = None,
    ignore_index: int = IGNORE_INDEX,
    image_fill: float = 0.0,
) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """Batch ``(image, label, id)`` samples of different sizes.

    Every sample is cropped (top-left anchored) and/or padded at the bottom/right to ``size``
    (default: the largest height and width in the batch); images are padded with
    ``image_fill`` and labels with ``ignore_index`` so that padding never counts in the loss
    or the metrics.  Use ``functools.partial(collate, size=(h, w))`` as a DataLoader
    ``collate_fn`` for a fixed size.

    Returns:
        ``(images (B, 3, h, w) float, labels (B, h, w) int64, ids)``
    """
    if not batch:
        raise ValueError("empty batch")
    if size is None:
        size = (max(s[0].shape[-2] for s in batch), max(s[0].shape[-1] for s in batch))
    size = (int(size[0]), int(size[1]))
    images = torch.stack([crop_or_pad(image, size, image_fill) for image, _, _ in batch])
    labels = torch.stack([crop_or_pad(label.long(), size, ignore_index) for _, label, _ in batch])
    return images, labels, [image_id for _, _, image_id in batch]
