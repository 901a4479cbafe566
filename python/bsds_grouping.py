"""Grouping of pixel feature maps into segmentations for ``eval_bsds.py``: pixel sorting
(``spherical_kmeans``, one level per grid), Kong & Fowlkes' mean shift (one level per
margin), and the boundaries of a learned embedding for a UCM with HED's."""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import segsort_ext
from segsort_ext.cluster import cosine_threshold_from_margin, extract_instances
from segsort_ext.ops import bandwidth_from_margin


def grid_for(level: int, h: int, w: int):
    """A k-means grid with about ``level`` cells along the longer side, square cells."""
    longer = max(h, w)
    return max(1, round(level * h / longer)), max(1, round(level * w / longer))


def pixel_sorting(features: torch.Tensor, grids: Sequence[int], coord_weight: float, iters: int) -> List[np.ndarray]:
    """spherical_kmeans of (1, D, h, w) features, one segmentation per grid."""
    h, w = features.shape[2:]
    out = []
    for level in grids:
        result = segsort_ext.spherical_kmeans(features, grid_for(level, h, w), iters=iters, coord_weight=coord_weight)
        out.append(result.labels[0].cpu().numpy())
    return out


def mean_shift(features: torch.Tensor, margins: Sequence[float], iters: int, min_size: int) -> List[np.ndarray]:
    """blurring_mean_shift of (h, w, D) features + extract_instances, one segmentation (h x w)
    per margin alpha (bandwidth ``bandwidth_from_margin``, threshold
    ``cosine_threshold_from_margin``)."""
    h, w, dim = features.shape
    x = features.reshape(1, h * w, dim)
    out = []
    for alpha in margins:
        shifted = segsort_ext.blurring_mean_shift(x, bandwidth=bandwidth_from_margin(alpha), iters=iters)
        found = extract_instances(shifted, cosine_threshold_from_margin(alpha), min_size=min_size)
        ids = found.ids[0]
        if found.size.numel() and bool((ids < 0).any()):
            # Points of instances below min_size join the instance of closest mean embedding.
            nearest = (shifted[0] @ found.embeddings.t()).argmax(1)
            ids = torch.where(ids >= 0, ids, nearest)
        out.append(ids.view(h, w).cpu().numpy())
    return out


def embed(image: np.ndarray, module, device) -> torch.Tensor:
    """(1, D, h, w) unit embeddings of an hxwx3 image in [0, 1]: the module's output resized
    bilinearly to the image and renormalised."""
    rgb = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
    with torch.no_grad():
        emb = module(rgb)
    if not isinstance(emb, torch.Tensor) or emb.dim() != 4 or emb.shape[0] != 1:
        raise ValueError(f"the embedding module must return a (1, D, h, w) tensor, got "
                         f"{type(emb).__name__} {tuple(getattr(emb, 'shape', ()))}")
    emb = F.interpolate(emb.float(), size=image.shape[:2], mode="bilinear", align_corners=False)
    return F.normalize(emb, dim=1)


def embedding_mean_shift(emb: torch.Tensor, margins: Sequence[float], max_side: int, coord_weight: float,
                         iters: int, min_size: int) -> List[np.ndarray]:
    """Mean shift of (1, D, h, w) unit embeddings (plus ``coord_weight`` times the pixel
    position in [-0.5, 0.5]) area-averaged to at most ``max_side`` (O(N^2) per iteration),
    the levels upsampled back to h x w by the caller."""
    h, w = emb.shape[2:]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.normalize(F.adaptive_avg_pool2d(emb, size), dim=1)[0].permute(1, 2, 0)
    ys = torch.linspace(-0.5, 0.5, size[0]) if size[0] > 1 else torch.zeros(1)
    xs = torch.linspace(-0.5, 0.5, size[1]) if size[1] > 1 else torch.zeros(1)
    position = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).to(small)
    return mean_shift(torch.cat([small, coord_weight * position], -1), margins, iters, min_size)


def embedding_boundaries(emb: torch.Tensor) -> np.ndarray:
    """hxw float64 in [0, 1]: how far apart the embeddings on either side of a pixel are,
    ``(1 - cos) / 2`` of its left/right and of its upper/lower neighbours (edge pixels
    replicated), the larger of the two."""
    padded = F.pad(emb, (1, 1, 1, 1), mode="replicate")[0]
    across_x = (padded[:, 1:-1, 2:] * padded[:, 1:-1, :-2]).sum(0)
    across_y = (padded[:, 2:, 1:-1] * padded[:, :-2, 1:-1]).sum(0)
    return ((1.0 - torch.minimum(across_x, across_y)) / 2.0).clamp(0.0, 1.0).double().cpu().numpy()
