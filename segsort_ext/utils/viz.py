"""Pictures of segmentations and embeddings as uint8 RGB arrays (H, W, 3), for panels a
person looks at: class colours, instance colours, segment outlines, PCA-RGB embeddings."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from segsort_ext.utils.constants import IGNORE_INDEX

__all__ = ["voc_palette", "class_palette", "colorize", "instance_colors", "outline", "pca_rgb", "to_uint8", "highlight",
           "draw_panels"]

# Distinct, colour-blind friendly-ish colours (Tableau 10 + extras); index = class id.
_PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (255, 217, 47), (102, 194, 165),
], dtype=np.uint8)
IGNORE_COLOR = np.array((235, 235, 235), dtype=np.uint8)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def voc_palette() -> np.ndarray:
    """(256, 3) uint8: the PASCAL VOC label colours (bit-interleaved class id); 255 cream."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for k in range(256):
        c, rgb = k, [0, 0, 0]
        for j in range(8):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << (7 - j)
            c >>= 3
        palette[k] = rgb
    palette[255] = (224, 224, 192)
    return palette


def class_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours; distinct for up to 12 classes, then random."""
    if num_classes <= len(_PALETTE):
        return _PALETTE[:num_classes].copy()
    extra = np.random.default_rng(0).integers(30, 230, size=(num_classes - len(_PALETTE), 3), dtype=np.uint8)
    return np.concatenate([_PALETTE, extra])


def colorize(labels, num_classes: int, ignore_index: Optional[int] = IGNORE_INDEX) -> np.ndarray:
    """Class map (H, W) -> (H, W, 3) uint8; ignored (or out-of-range) pixels light grey."""
    labels = _numpy(labels).astype(np.int64)
    palette = np.concatenate([class_palette(num_classes), IGNORE_COLOR[None]])
    index = np.where((labels >= 0) & (labels < num_classes) & (labels != ignore_index), labels, num_classes)
    return palette[index]


def instance_colors(ids, background: Optional[int] = 0, seed: int = 3) -> np.ndarray:
    """Instance map (H, W) -> (H, W, 3) uint8 with a random colour per id; ``background``
    (and negative ids) dark grey."""
    ids = _numpy(ids).astype(np.int64)
    colours = np.random.default_rng(seed).integers(60, 256, size=(max(int(ids.max()), 0) + 1, 3), dtype=np.uint8)
    out = colours[np.clip(ids, 0, None)]
    dark = ids < 0 if background is None else (ids < 0) | (ids == background)
    out[dark] = (40, 40, 40)
    return out


def to_uint8(image) -> np.ndarray:
    """(3, H, W) float image in [0, 1] -> (H, W, 3) uint8."""
    image = _numpy(image)
    return (np.clip(image.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)


def outline(picture: np.ndarray, ids, color=(255, 255, 255)) -> np.ndarray:
    """Draws the borders between different ids of the map (H, W) onto a copy of picture."""
    ids = _numpy(ids)
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    out = picture.copy()
    out[edge] = color
    return out


def highlight(picture: np.ndarray, mask, color=(255, 255, 0)) -> np.ndarray:
    """Dims everything outside ``mask`` and outlines the mask: one segment stands out."""
    mask = _numpy(mask).astype(bool)
    out = picture.astype(np.float32)
    out[~mask] = out[~mask] * 0.3
    out = outline(out.astype(np.uint8), mask, color)
    return out


def pca_rgb(embeddings: torch.Tensor, basis: Optional[tuple] = None, *, return_basis: bool = False):
    """(B, D, H, W) embeddings -> (B, H, W, 3) uint8: the top three principal components
    of all pixels, stretched to [0, 255] by their 1st/99th percentiles.

    Pass ``basis`` (the second output of a call with ``return_basis=True``) to colour
    other maps in the same projection, so that equal colours mean equal embeddings."""
    x = embeddings.detach().float().permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1]).cpu()
    if basis is None:
        sample = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:50000]]
        mean = sample.mean(0)
        _, _, v = torch.linalg.svd(sample - mean, full_matrices=False)
        components = v[:3].T
        # A fixed sign per component (largest entry positive) keeps colours reproducible.
        components = components * torch.sign(components.gather(0, components.abs().argmax(0, keepdim=True)))
        projected = (sample - mean) @ components
        low, high = torch.quantile(projected, 0.01, dim=0), torch.quantile(projected, 0.99, dim=0)
        basis = (mean, components, low, high)
    mean, components, low, high = basis
    projected = ((x - mean) @ components - low) / (high - low).clamp_min(1e-12)
    B, _, H, W = embeddings.shape
    rgb = (projected.clamp(0, 1) * 255 + 0.5).to(torch.uint8).reshape(B, H, W, -1).numpy()
    if rgb.shape[-1] < 3:  # D < 3
        rgb = np.concatenate([rgb, np.zeros(rgb.shape[:-1] + (3 - rgb.shape[-1],), np.uint8)], -1)
    return (rgb, basis) if return_basis else rgb


def draw_panels(axes, panels, *, titles=None, notes=None) -> None:
    """Shows one row of pictures on matplotlib ``axes`` (one axis per panel), without
    ticks; ``titles`` go above (pass them for a figure's first row only) and ``notes``
    below, an empty string leaving its panel without."""
    for k, (ax, panel) in enumerate(zip(axes, panels)):
        ax.imshow(panel, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        if titles is not None and titles[k]:
            ax.set_title(titles[k], fontsize=9)
        if notes is not None and notes[k]:
            ax.set_xlabel(notes[k], fontsize=8)
