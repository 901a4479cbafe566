"""BSDS500 images for the bsds programs: the default data folder, the images of a split
(found by ``segsort_ext.datasets.BSDS500``, either layout) and the resizing between the
full size, where the benchmark scores, and a program's working size."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from segsort_ext.datasets import BSDS500

from common.args import fail
from common.data import SHARED_DATA

DEFAULT_DATA_ROOT = SHARED_DATA / "bsds500"


def open_bsds(root: Path, split: str, limit: int = 0) -> BSDS500:
    """``BSDS500(root, split)`` (a folder without splits, such as the benchmark sample's
    ``bench/``, whatever the split), keeping its first ``limit`` images by id (0: all).
    For a program: a missing, empty or unusable root exits with one line naming
    ``--data-root`` (status 2)."""
    try:
        dataset = BSDS500(root, split)
    except (OSError, ValueError, TypeError) as error:
        fail(f"--data-root {root}: {_first_line(error)}")
    if limit:
        dataset.ids = dataset.ids[:limit]
    if not dataset.ids:
        fail(f"--data-root {root}: no images in split {split!r}")
    return dataset


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_rgb(path: Path) -> np.ndarray:
    """uint8 HxWx3 RGB of an image file (ValueError naming a file that is not a readable
    image)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise
    except Exception as error:  # PIL raises anything on a damaged file
        raise ValueError(f"{path}: cannot read it as an image ({type(error).__name__}: {error})") from error


def read_image_and_truth(dataset: BSDS500, index: int, root: Path):
    """(uint8 HxWx3 image, human segmentations) of image ``index``; for a program a damaged
    or missing file exits with one line naming it and ``--data-root`` (status 2)."""
    try:
        return load_rgb(dataset.image_path(index)), dataset.ground_truth(index)
    except (OSError, ValueError) as error:
        fail(f"--data-root {root}: {_first_line(error)}")


def downscale(image: np.ndarray, max_side: Optional[int]) -> np.ndarray:
    """uint8 HxWx3 -> float32 hxwx3 in [0, 1] with max(h, w) <= max_side (area-averaged)."""
    h, w = image.shape[:2]
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
    return image.astype(np.float32) / 255.0


def upsample_labels(labels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour upsampling of an hxw label map to ``shape`` (pixel centres)."""
    h, w = labels.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]
