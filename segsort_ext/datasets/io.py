"""Reading what the loaders share: images, label maps, id lists and label-value tables.

:func:`read_image` and :func:`read_label` are exported; the other functions are the
loaders' common plumbing (id lists, value -> train id tables, argument checks).
Pillow is imported on first read (the ``data`` extra).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from segsort_ext.utils.constants import IGNORE_INDEX
from segsort_ext.utils.optional import require

__all__ = ["read_image", "read_label"]

PathLike = Union[str, os.PathLike]
#: Which images a loader uses: a split name, a list-file path or a sequence of ids.
IdSource = Optional[Union[str, os.PathLike, Sequence[str]]]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
LABEL_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".pgm")


def read_image(path: PathLike) -> torch.Tensor:
    """Read an image file as a float tensor ``(3, H, W)`` in [0, 1] (RGB)."""
    Image = require("PIL.Image", "read_image")
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def read_label(path: PathLike) -> torch.Tensor:
    """Read a label image (palette, 8/16/32-bit grayscale) as an int64 tensor ``(H, W)``.

    The stored values *are* the ids (a palette PNG's indices, not its colours), so the image
    is never converted to RGB or grayscale; RGB label images raise ValueError.
    """
    Image = require("PIL.Image", "read_label")
    with Image.open(path) as img:
        if img.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
            raise ValueError(f"{path}: expected a palette/index label image, got mode {img.mode!r}")
        array = np.array(img)
    return torch.from_numpy(array.astype(np.int64))


def lookup_table(mapping: Union[Mapping[int, int], Sequence[int], np.ndarray], name: str) -> np.ndarray:
    """A value -> id table as an int64 array; values it does not cover map to IGNORE_INDEX."""
    if isinstance(mapping, Mapping):
        keys = [int(k) for k in mapping]
        if any(k < 0 for k in keys):
            raise ValueError(f"{name} keys must be >= 0")
        table = np.full(max(keys, default=-1) + 1, IGNORE_INDEX, dtype=np.int64)
        for k, v in mapping.items():
            table[int(k)] = int(v)
        return table
    table = np.asarray(mapping)
    if table.ndim != 1 or not np.issubdtype(table.dtype, np.integer):
        raise TypeError(f"{name} must be a dict or a 1-D integer sequence, got {table.dtype} {table.shape}")
    return table.astype(np.int64)


def map_label(label: torch.Tensor, table: np.ndarray) -> torch.Tensor:
    """``table[label]``, with IGNORE_INDEX where the label value is outside the table."""
    values = label.numpy()
    inside = (values >= 0) & (values < table.size)
    out = np.full(values.shape, IGNORE_INDEX, dtype=np.int64)
    out[inside] = table[values[inside]]
    return torch.from_numpy(out)


def read_ids(path: PathLike) -> List[str]:
    """Ids from a list file: one per line, first column.  A DeepLab-style line
    ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` gives ``<id>``."""
    ids = []
    with open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            token = line.split()[0]
            if "/" in token or token.lower().endswith(IMAGE_EXTENSIONS):
                token = Path(token).stem
            ids.append(token)
    return ids


def resolve_ids(source: IdSource, candidates: Sequence[Path], name: str) -> List[str]:
    """``source`` is a list-file path, a name looked up as ``candidates`` (tried in order) or a
    sequence of ids."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file():
            return read_ids(path)
        for candidate in candidates:
            if candidate.is_file():
                return read_ids(candidate)
        tried = ", ".join(str(c) for c in [path, *candidates])
        raise FileNotFoundError(f"no id list for {name}={source!r} (tried {tried})")
    if isinstance(source, Sequence):
        return [str(i) for i in source]
    raise TypeError(f"{name} must be a split name, a list-file path or a sequence of ids, "
                    f"got {type(source).__name__}")


def check_choice(value, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_same_size(image_id: str, image: torch.Tensor, label: torch.Tensor) -> None:
    if tuple(image.shape[1:]) != tuple(label.shape[-2:]):
        raise ValueError(f"{image_id}: image {tuple(image.shape[1:])} and label {tuple(label.shape[-2:])} differ")
