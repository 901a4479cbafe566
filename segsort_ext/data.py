"""Dataset loaders (PASCAL VOC 2012 segmentation, BSDS500) and batching/augmentation helpers.

The loaders are plain :class:`torch.utils.data.Dataset` subclasses that need only numpy,
scipy, torch and pillow:

* :class:`VOCSegmentation` reads the VOCdevkit layout (``JPEGImages/<id>.jpg`` and palette
  PNGs ``SegmentationClass/<id>.png``) and yields ``(image, label, id)`` with ``image`` a float
  tensor ``(3, H, W)`` in [0, 1] and ``label`` an int64 tensor ``(H, W)`` of class ids 0..20 and
  255 (void / ignore).
* :class:`BSDS500` reads ``images/<split>/<id>.jpg`` and ``groundTruth/<split>/<id>.mat`` and
  yields ``(image, segmentations, boundaries, id)`` with one entry per human annotator.

:func:`collate` pads/crops ``(image, label, id)`` samples to a common size (labels padded with
the ignore index) so that they can be batched, and :func:`random_crop` / :func:`random_hflip`
(combined in :class:`RandomCropFlip`) are seeded augmentations that apply identical geometry to
an image and its label.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.io
import torch
from PIL import Image
from torch.utils.data import Dataset

__all__ = [
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "read_image",
    "read_label",
    "load_bsds_ground_truth",
    "VOCSegmentation",
    "BSDS500",
    "collate",
    "random_crop",
    "random_hflip",
    "RandomCropFlip",
]

PathLike = Union[str, os.PathLike]

#: Label value of pixels excluded from training and evaluation (the VOC void border).
IGNORE_INDEX = 255

#: PASCAL VOC class names; the index is the class id stored in the label PNGs.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def read_image(path: PathLike) -> torch.Tensor:
    """Read an image file as a float tensor ``(3, H, W)`` in [0, 1] (RGB)."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def read_label(path: PathLike) -> torch.Tensor:
    """Read a VOC palette label PNG as an int64 tensor ``(H, W)`` of class ids.

    The palette indices *are* the class ids, so the PNG must not be converted to RGB or
    grayscale (that would turn ids into colours / luminance).
    """
    with Image.open(path) as img:
        if img.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"{path}: expected a palette/index label image, got mode {img.mode!r}")
        array = np.array(img)
    return torch.from_numpy(array.astype(np.int64))


def _read_ids(path: PathLike) -> List[str]:
    with open(path) as fh:
        return [line.split()[0] for line in fh if line.strip()]


class VOCSegmentation(Dataset):
    """PASCAL VOC semantic segmentation in the VOCdevkit folder layout.

    Args:
        root: folder holding ``JPEGImages/`` and ``SegmentationClass/`` (e.g.
            ``VOCdevkit/VOC2012``); a ``VOCdevkit`` folder containing ``VOC2012/`` also works.
        split_ids: which images to use:

            * ``None``: ``root/ids.txt`` if present, else every label PNG (sorted);
            * a split name such as ``'train'`` / ``'val'``: read
              ``root/ImageSets/Segmentation/<name>.txt``;
            * a path to a text file with one id per line;
            * a sequence of ids.
        transform: optional callable ``(image, label) -> (image, label)`` applied to the
            tensors (e.g. :class:`RandomCropFlip`).

    Each item is ``(image, label, id)``: ``image`` float32 ``(3, H, W)`` in [0, 1], ``label``
    int64 ``(H, W)`` with ids 0..20 and 255 for "ignore".
    """

    image_dir = "JPEGImages"
    label_dir = "SegmentationClass"

    def __init__(
        self,
        root: PathLike,
        split_ids: Optional[Union[str, PathLike, Sequence[str]]] = None,
        transform: Optional[Callable] = None,
    ):
        root = Path(root)
        if not (root / self.image_dir).is_dir() and (root / "VOC2012" / self.image_dir).is_dir():
            root = root / "VOC2012"
        if not (root / self.image_dir).is_dir() or not (root / self.label_dir).is_dir():
            raise FileNotFoundError(f"{root} has no {self.image_dir}/ and {self.label_dir}/ folders")
        self.root = root
        self.transform = transform
        self.ids = self._resolve_ids(split_ids)

    def _resolve_ids(self, split_ids) -> List[str]:
        if split_ids is None:
            if (self.root / "ids.txt").is_file():
                return _read_ids(self.root / "ids.txt")
            return sorted(p.stem for p in (self.root / self.label_dir).glob("*.png"))
        if isinstance(split_ids, (str, os.PathLike)):
            path = Path(split_ids)
            if not path.is_file():
                path = self.root / "ImageSets" / "Segmentation" / f"{split_ids}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"no id list {split_ids!r} (tried a file path and {path})")
            return _read_ids(path)
        return [str(i) for i in split_ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        image_id = self.ids[index]
        image = read_image(self.root / self.image_dir / f"{image_id}.jpg")
        label = read_label(self.root / self.label_dir / f"{image_id}.png")
        if image.shape[1:] != label.shape:
            raise ValueError(f"{image_id}: image {tuple(image.shape[1:])} and label {tuple(label.shape)} differ")
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, image_id


def load_bsds_ground_truth(path: PathLike) -> List[Dict[str, np.ndarray]]:
    """Read a BSDS500 ``groundTruth/*.mat`` file.

    Returns:
        one dict per human annotator with ``'segmentation'`` (uint16 ``HxW``, region ids 1..N)
        and ``'boundaries'`` (bool ``HxW``) -- the format :mod:`segsort_ext.metrics` expects.
    """
    cells = scipy.io.loadmat(os.fspath(path))["groundTruth"]
    annotations = []
    for k in range(cells.shape[1]):
        entry = cells[0, k]
        annotations.append(
            {
                "segmentation": np.asarray(entry["Segmentation"][0, 0]),
                "boundaries": np.asarray(entry["Boundaries"][0, 0]).astype(bool),
            }
        )
    return annotations


class BSDS500(Dataset):
    """Berkeley Segmentation Dataset 500.

    Args:
        root: folder holding ``images/<split>/`` and ``groundTruth/<split>/`` (the ``BSR``
            release's ``BSDS500/data`` folder, or a folder containing ``data/`` with them).
        split: ``'train'``, ``'val'`` or ``'test'``.

    Each item is ``(image, segmentations, boundaries, id)``: ``image`` float32 ``(3, H, W)``
    in [0, 1]; ``segmentations`` a list (one per annotator, 4-8 of them) of int64 ``(H, W)``
    tensors with region ids 1..N; ``boundaries`` a matching list of bool ``(H, W)`` tensors.
    Use ``batch_size=1`` with ``collate_fn=lambda batch: batch[0]`` (the number of annotators
    varies between images).
    """

    def __init__(self, root: PathLike, split: str = "val"):
        root = Path(root)
        if not (root / "images").is_dir() and (root / "data" / "images").is_dir():
            root = root / "data"
        self.root = root
        self.split = split
        self.image_folder = root / "images" / split
        self.gt_folder = root / "groundTruth" / split
        if not self.image_folder.is_dir() or not self.gt_folder.is_dir():
            raise FileNotFoundError(f"{root} has no images/{split}/ and groundTruth/{split}/ folders")
        # Only images that come with a ground-truth file (the release ships Thumbs.db etc.).
        self.ids = sorted(
            p.stem for p in self.image_folder.glob("*.jpg") if (self.gt_folder / f"{p.stem}.mat").is_file()
        )

    def __len__(self) -> int:
        return len(self.ids)

    def ground_truth(self, index: int) -> List[Dict[str, np.ndarray]]:
        """The raw numpy annotations of image ``index`` (see :func:`load_bsds_ground_truth`)."""
        return load_bsds_ground_truth(self.gt_folder / f"{self.ids[index]}.mat")

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        image = read_image(self.image_folder / f"{image_id}.jpg")
        annotations = self.ground_truth(index)
        segmentations = [torch.from_numpy(a["segmentation"].astype(np.int64)) for a in annotations]
        boundaries = [torch.from_numpy(a["boundaries"]) for a in annotations]
        return image, segmentations, boundaries, image_id


# ============================================================================================
# Batching and augmentation
# ============================================================================================


def _fit(tensor: torch.Tensor, height: int, width: int, fill: float) -> torch.Tensor:
    """Crop the last two dims to at most (height, width) from the top-left corner, then pad
    bottom/right with ``fill`` up to exactly that size (keeps pixel (0, 0) in place)."""
    tensor = tensor[..., :height, :width]
    pad_h, pad_w = height - tensor.shape[-2], width - tensor.shape[-1]
    if pad_h or pad_w:
        out = tensor.new_full(tensor.shape[:-2] + (height, width), fill)
        out[..., : tensor.shape[-2], : tensor.shape[-1]] = tensor
        return out
    return tensor


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
    height, width = int(size[0]), int(size[1])
    images = torch.stack([_fit(image, height, width, image_fill) for image, _, _ in batch])
    labels = torch.stack([_fit(label.long(), height, width, ignore_index) for _, label, _ in batch])
    return images, labels, [image_id for _, _, image_id in batch]


def random_crop(
    image: torch.Tensor,
    label: torch.Tensor,
    size: Tuple[int, int],
    generator: Optional[torch.Generator] = None,
    ignore_index: int = IGNORE_INDEX,
    image_fill: float = 0.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Crop the same random ``size = (h, w)`` window from ``image (C, H, W)`` and ``label (H, W)``.

    Inputs smaller than ``size`` are first padded at the bottom/right (image with
    ``image_fill``, label with ``ignore_index``).  The window position is drawn from
    ``generator`` so that a seeded generator gives a reproducible sequence of crops.
    """
    height, width = int(size[0]), int(size[1])
    full_h, full_w = max(height, image.shape[-2]), max(width, image.shape[-1])
    image = _fit(image, full_h, full_w, image_fill)
    label = _fit(label, full_h, full_w, ignore_index)
    top = int(torch.randint(full_h - height + 1, (1,), generator=generator))
    left = int(torch.randint(full_w - width + 1, (1,), generator=generator))
    return image[..., top : top + height, left : left + width], label[..., top : top + height, left : left + width]


def random_hflip(
    image: torch.Tensor,
    label: torch.Tensor,
    p: float = 0.5,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mirror ``image`` and ``label`` left-right together with probability ``p``."""
    if float(torch.rand((), generator=generator)) < p:
        return image.flip(-1), label.flip(-1)
    return image, label


class RandomCropFlip:
    """Seeded joint random crop + horizontal flip, usable as a dataset ``transform``.

    Args:
        size: crop size ``(h, w)``; ``None`` to only flip.
        flip_prob: probability of mirroring.
        seed: seed of the private :class:`torch.Generator`; the same seed reproduces the same
            sequence of crops/flips (per process -- DataLoader workers each get a copy, so
            reseed with :meth:`reseed` in a ``worker_init_fn`` if workers must differ).
        ignore_index: label value used when the crop needs padding.
    """

    def __init__(
        self,
        size: Optional[Tuple[int, int]],
        flip_prob: float = 0.5,
        seed: int = 0,
        ignore_index: int = IGNORE_INDEX,
    ):
        self.size = size
        self.flip_prob = flip_prob
        self.ignore_index = ignore_index
        self.generator = torch.Generator()
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random sequence from ``seed``."""
        self.generator.manual_seed(int(seed))

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.size is not None:
            image, label = random_crop(image, label, self.size, self.generator, self.ignore_index)
        return random_hflip(image, label, self.flip_prob, self.generator)
