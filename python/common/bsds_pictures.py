"""One picture per BSDS500 image for ``bsds/evaluate.py``: the image, its human boundaries and
every method's result side by side, each panel captioned."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

COLUMNS = 4
MAX_PANEL_WIDTH = 360


def region_means(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8: every region filled with its mean colour, its outline in black."""
    ids = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    counts = np.bincount(ids.ravel())
    means = np.stack([np.bincount(ids.ravel(), weights=image[..., c].ravel()) / counts for c in range(3)], -1)
    out = means[ids]
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    out[edge] = 0.0
    return (out * 255).round().astype(np.uint8)


def boundary_strength(strength: np.ndarray) -> np.ndarray:
    """HxWx3 uint8: a boundary map in [0, 1] dark on white."""
    gray = ((1.0 - np.clip(strength, 0.0, 1.0)) * 255).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, -1)


def human_boundaries(boundaries: Sequence[np.ndarray]) -> np.ndarray:
    """HxWx3 uint8: the fraction of humans who marked each pixel, dark on white."""
    return boundary_strength(np.mean([np.asarray(b, dtype=np.float64) for b in boundaries], axis=0))


def save_picture(path: Path, panels: Sequence[Tuple[str, np.ndarray]]) -> None:
    """Tile ``(caption, HxWx3 uint8)`` panels, ``COLUMNS`` per row, into one PNG."""
    height, width = panels[0][1].shape[:2]
    scale = min(1.0, MAX_PANEL_WIDTH / width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    rows = -(-len(panels) // COLUMNS)
    columns = min(COLUMNS, len(panels))
    sheet = Image.new("RGB", (columns * (size[0] + 4), rows * (size[1] + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (caption, pixels) in enumerate(panels):
        x, y = (k % COLUMNS) * (size[0] + 4), (k // COLUMNS) * (size[1] + 4)
        sheet.paste(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR), (x, y))
        box = draw.textbbox((x + 3, y + 2), caption)
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill="white")
        draw.text((x + 3, y + 2), caption, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
