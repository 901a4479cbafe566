"""Batching ``(image, label, id)`` samples of different sizes."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from segsort_ext.transforms import crop_or_pad
from segsort_ext.utils import checks
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

    Raises:
        ValueError: an empty batch, a sample that is not ``(image (C, H, W), label (H, W), id)``,
            samples that differ in their channels, a ``size`` whose batch cannot fit in memory.
        TypeError: a float label (refused, not truncated), a non-int ``ignore_index``.
        ValueError: an ``ignore_index`` beyond int64.
    """
    if not isinstance(batch, Sequence):
        raise TypeError(f"batch must be a sequence of (image, label, id) samples, got {type(batch).__name__}")
    if not batch:
        raise ValueError("batch is empty")
    for i, sample in enumerate(batch):
        if not (isinstance(sample, (tuple, list)) and len(sample) == 3):
            raise ValueError(f"batch[{i}] must be an (image, label, id) triple, got {type(sample).__name__}")
        image, label, _ = sample
        checks.tensor(image, f"batch[{i}] image")
        checks.tensor(label, f"batch[{i}] label")
        if image.dim() != 3 or label.dim() not in (2, 3) or image.shape[-2:] != label.shape[-2:]:
            raise ValueError(f"batch[{i}] must hold an image (C, H, W) and a label (H, W) or (K, H, W) of its size, "
                             f"got {tuple(image.shape)} and {tuple(label.shape)}")
        if label.is_floating_point() or label.is_complex():
            raise TypeError(f"batch[{i}] label must be an integer tensor, got {label.dtype}")
    for what, shapes in (("image channels", {s[0].shape[:-2] for s in batch}),
                         ("label leading dimensions", {s[1].shape[:-2] for s in batch})):
        if len(shapes) > 1:
            raise ValueError(f"batch samples must agree in their {what}, got {sorted(map(tuple, shapes))}")
    if size is None:
        size = (max(s[0].shape[-2] for s in batch), max(s[0].shape[-1] for s in batch))
    else:
        size = checks.int_pair(size, "size")
    ignore_index = checks.int64(ignore_index, "ignore_index")
    image_fill = checks.number(image_fill, "image_fill")
    # The padded samples and their stack are alive together: twice the batch's bytes.
    image, label, _ = batch[0]
    sample_bytes = image.shape[0] * image.element_size() + label[..., 0, 0].numel() * 8
    checks.fits_in_memory(image.device, 2 * len(batch) * sample_bytes * size[0] * size[1], "size")
    images = torch.stack([crop_or_pad(image, size, image_fill) for image, _, _ in batch])
    labels = torch.stack([crop_or_pad(label.long(), size, ignore_index) for _, label, _ in batch])
    return images, labels, [image_id for _, _, image_id in batch]
