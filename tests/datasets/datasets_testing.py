"""Helpers of the dataset tests: where the real samples live (skipped when shared/data is
absent) and writers of small synthetic dataset trees."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"
VOC_ROOT = DATA_ROOT / "voc2012"
BSDS_ROOT = DATA_ROOT / "bsds500"


def label_values(label):
    """The set of values of a non-negative label tensor (bincount: linear time, unlike a sort)."""
    return set(torch.bincount(label.reshape(-1)).nonzero().flatten().tolist())


def write_image(path, height, width, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def write_index_png(path, label, mode="P"):
    """A label PNG whose stored values are ``label`` (palette indices for 'P', gray for 'L')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    label = np.ascontiguousarray(label, dtype=np.uint8)
    img = Image.frombytes(mode, (label.shape[1], label.shape[0]), label.tobytes())
    if mode == "P":
        img.putpalette(np.random.default_rng(1).integers(0, 256, 768, dtype=np.uint8).tolist())
    img.save(path)


def blocks(height, width, values, block=2):
    """Label map of block x block squares cycling through ``values``."""
    ys, xs = np.meshgrid(np.arange(height) // block, np.arange(width) // block, indexing="ij")
    return np.asarray(values)[(ys * ((width + block - 1) // block) + xs) % len(values)]
