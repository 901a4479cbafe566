"""Grouping of pixel feature maps into segmentations for ``bsds/evaluate.py`` and the
demo's photos: pixel sorting (``spherical_kmeans``, one level per grid), Kong & Fowlkes'
mean shift (one level per margin), and the boundaries of a learned embedding for a UCM
with HED's."""
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
        if not found.size.numel():  # every group below min_size: one region
            ids = torch.zeros_like(ids)
        elif bool((ids < 0).any()):
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


def with_position(emb: torch.Tensor, coord_weight: float) -> torch.Tensor:
    """(h, w, D + 2) unit vectors: (1, D, h, w) embeddings and ``coord_weight`` times the pixel
    position (y, x) in [-0.5, 0.5]."""
    h, w = emb.shape[2:]
    ys = torch.linspace(-0.5, 0.5, h) if h > 1 else torch.zeros(1)
    xs = torch.linspace(-0.5, 0.5, w) if w > 1 else torch.zeros(1)
    position = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).to(emb)
    return F.normalize(torch.cat([emb[0].permute(1, 2, 0), coord_weight * position], -1), dim=-1)


def embedding_mean_shift(emb: torch.Tensor, margins: Sequence[float], max_side: int, coord_weight: float,
                         iters: int, min_size: int) -> List[np.ndarray]:
    """Mean shift of (1, D, h, w) unit embeddings plus ``coord_weight`` times the position,
    area-averaged to at most ``max_side`` (mean shift is O(N^2) per iteration); then every
    pixel at h x w joins the group whose mean feature is closest (sharper boundaries than
    upsampling the small label map)."""
    h, w = emb.shape[2:]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = with_position(F.normalize(F.adaptive_avg_pool2d(emb, size), dim=1), coord_weight).flatten(0, 1)
    full = with_position(emb, coord_weight).flatten(0, 1)
    out = []
    for labels in mean_shift(small.view(*size, -1), margins, iters, min_size):
        ids = torch.from_numpy(labels).reshape(-1).to(small.device)
        means = segsort_ext.segment_mean(small, ids, int(ids.max()) + 1)
        out.append((full @ means.t()).argmax(1).view(h, w).cpu().numpy())
    return out


def embedding_boundaries(emb: torch.Tensor, radius: int = 3) -> np.ndarray:
    """hxw float64 in [0, 1]: how far apart the (1, D, h, w) unit embeddings ``radius``
    pixels either side of a pixel are, ``(1 - cos) / 2``, the larger of the horizontal and
    the vertical pair (edges replicated). Adjacent pixels of a bilinearly upsampled
    half-resolution embedding (as HEDEmbedding's) differ too little to tell its edges from
    its noise; the default 3 scored best in a UCM with HED (bsds/evaluate.py: covering ODS 0.651
    against 0.646 with 2 and 0.643 with 1 on 40 train images, 29 levels)."""
    r = radius
    padded = F.pad(emb, (r, r, r, r), mode="replicate")[0]
    across_x = (padded[:, r:-r, 2 * r:] * padded[:, r:-r, :-2 * r]).sum(0)
    across_y = (padded[:, 2 * r:, r:-r] * padded[:, :-2 * r, r:-r]).sum(0)
    return ((1.0 - torch.minimum(across_x, across_y)) / 2.0).clamp(0.0, 1.0).double().cpu().numpy()
