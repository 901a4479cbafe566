"""The VOC program's data: the split, the images at the working size, and the cache of
what the frozen parts compute once (HED's pool3 features of every image and its mirror
image; HED-owt-ucm pseudo segments of the training images)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from segsort_ext.datasets import IGNORE_INDEX, VOCSegmentation
from segsort_ext.models import HED, UCM_SIDE_WEIGHTS
from segsort_ext.transforms import HED_UCM_OPTIONS, pseudo_segments

from voc_model import STRIDE, pool3_features

CACHE_FORMAT = 1


@dataclass
class Split:
    """Training and held-out ids and how they were chosen."""
    train: List[str]
    test: List[str]
    test_split: str  # 'val' or 'held-out part of train'


def choose_split(root: Path, hold_out_every: int) -> Split:
    """train.txt for training and val.txt for testing when the root has val.txt; otherwise
    every ``hold_out_every``-th id of train.txt (in its order) is held out for testing."""
    train = VOCSegmentation(root, "train").ids
    if (root / "ImageSets" / "Segmentation" / "val.txt").is_file():
        return Split(list(train), list(VOCSegmentation(root, "val").ids), "val")
    test = [image_id for k, image_id in enumerate(train) if k % hold_out_every == 0]
    kept = [image_id for k, image_id in enumerate(train) if k % hold_out_every != 0]
    return Split(kept, test, f"every {hold_out_every}th id of train (held out)")


def working_size(height: int, width: int, side: int):
    """(h, w) with the longer side ``side``."""
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


def resize_labels(labels: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].long()


def strided(labels: torch.Tensor) -> torch.Tensor:
    """The label at the centre of every STRIDE x STRIDE cell (the grid of pool3)."""
    H, W = labels.shape
    ys = torch.arange(STRIDE // 2, STRIDE * -(-H // STRIDE), STRIDE).clamp_max(H - 1)
    xs = torch.arange(STRIDE // 2, STRIDE * -(-W // STRIDE), STRIDE).clamp_max(W - 1)
    return labels[ys][:, xs]


def _key(root: Path, ids: Sequence[str], side: int, hed_path: Path, regions: int) -> str:
    text = "|".join([str(CACHE_FORMAT), str(root.resolve()), str(side), str(hed_path.stat().st_size),
                     str(regions), *ids])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@torch.no_grad()
def cached_features(root: Path, ids: Sequence[str], *, side: int, cache_dir: Path, hed: HED, hed_path: Path,
                    pseudo: bool, regions: int, what: str) -> dict:
    """Per image: ``pool3`` (2, 256, h, w) float16 of the image and its mirror image,
    ``labels`` at the original size, ``labels8`` on the pool3 grid, ``size`` (the working
    size); with ``pseudo``, ``pseudo8``: HED-owt-ucm segments (the level of the hierarchy
    with ``regions`` regions) on the pool3 grid. Computed once per (root, ids, side, regions), kept in cache_dir."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{what}-{side}px-{_key(root, ids, side, hed_path, regions)}.pt"
    if path.is_file():
        try:
            cache = torch.load(path, weights_only=True)
            if not pseudo or "pseudo8" in cache:
                return cache
        except (OSError, RuntimeError, EOFError, ValueError) as error:  # a damaged cache is rebuilt, not trusted
            print(f"note: cache {path} unreadable ({type(error).__name__}); computing it again")
    dataset = VOCSegmentation(root, list(ids))
    items = {"pool3": [], "labels": [], "labels8": [], "size": [], "pseudo8": []}
    for k in tqdm(range(len(dataset)), desc=f"HED features of {what} images", unit="img"):
        image, labels, _ = dataset[k]
        size = working_size(*labels.shape, side)
        small = resize_image(image, size)
        both = torch.stack([small, small.flip(-1)])
        items["pool3"].append(pool3_features(hed, both).half())
        items["labels"].append(labels.to(torch.uint8))
        items["labels8"].append(strided(resize_labels(labels, size)).to(torch.uint8))
        items["size"].append(torch.tensor(size))
        if pseudo:
            contours = hed.multiscale(small[None], (1.0,), side_weights=UCM_SIDE_WEIGHTS)
            segments = pseudo_segments(small[None], "contour-ucm", contours=contours, num_segments=regions,
                                       **HED_UCM_OPTIONS)[0]
            items["pseudo8"].append(strided(segments).to(torch.int16))
    cache = {k: v for k, v in items.items() if v}
    temporary = path.with_suffix(".tmp")
    torch.save(cache, temporary)
    temporary.replace(path)
    return cache


def valid_labels(labels: torch.Tensor) -> torch.Tensor:
    """uint8 labels -> int64 with IGNORE_INDEX for void."""
    labels = labels.long()
    return labels.masked_fill(labels > 20, IGNORE_INDEX)
