"""PASCAL VOC 2012 and the Semantic Boundaries Dataset (SBD), which shares VOC's 21 classes.

* :class:`VOCSegmentation`: the VOCdevkit layout, classes and/or object instances;
* :class:`VOCAugSegmentation`: VOC + SBD "train_aug" in the DeepLab ``SegmentationClassAug``
  layout;
* :class:`SBDSegmentation`: SBD in its own release layout (``.mat`` files, read by
  :func:`read_sbd_label`; needs scipy).

Items are ``(image, label, id)``: ``image`` float32 ``(3, H, W)`` in [0, 1], ``label`` int64
``(H, W)`` -- or ``(2, H, W)`` (class, instance) with ``target='both'`` -- with 255
(:data:`IGNORE_INDEX`) on pixels to ignore, and ``id`` the image's name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from segsort_ext.datasets.io import (
    IdSource,
    PathLike,
    as_path,
    check_choice,
    check_same_size,
    check_transform,
    read_ids,
    read_image,
    read_label,
    read_mat,
    resolve_ids,
)

__all__ = ["VOC_CLASSES", "VOCSegmentation", "VOCAugSegmentation", "SBDSegmentation", "read_sbd_label"]

#: PASCAL VOC class names; the index is the class id stored in the label PNGs.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def _label_stems(folder: Path) -> List[str]:
    """Every label PNG of ``folder``, sorted (the ids when no split is given)."""
    ids = sorted(p.stem for p in folder.glob("*.png"))
    if not ids:
        raise FileNotFoundError(f"no label PNG in {folder}")
    return ids


class VOCSegmentation(Dataset):
    """PASCAL VOC segmentation in the VOCdevkit folder layout.

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
            tensors (e.g. :class:`segsort_ext.transforms.TrainAugmentation`).
        target: ``'class'`` (``SegmentationClass/``: class ids 0..20), ``'object'``
            (``SegmentationObject/``: instance ids 1..N, 0 background) or ``'both'`` (label
            ``(2, H, W)``: class, instance; the joint transforms keep them aligned).

    Each item is ``(image, label, id)``: ``image`` float32 ``(3, H, W)`` in [0, 1], ``label``
    int64 ``(H, W)`` (or ``(2, H, W)``) with 255 on the void border ("ignore").
    """

    image_dir = "JPEGImages"
    label_dir = "SegmentationClass"
    object_dir = "SegmentationObject"
    targets = ("class", "object", "both")

    def __init__(
        self,
        root: PathLike,
        split_ids: IdSource = None,
        transform: Optional[Callable] = None,
        target: str = "class",
    ):
        self.target = check_choice(target, self.targets, "target")
        root = as_path(root, "root")
        if not (root / self.image_dir).is_dir() and (root / "VOC2012" / self.image_dir).is_dir():
            root = root / "VOC2012"
        self.root = root
        self._label_folders = [root / d for d in self._target_dirs()]
        for folder in [root / self.image_dir, *self._label_folders]:
            if not folder.is_dir():
                raise FileNotFoundError(f"{root} has no {folder.name}/ folder (needed for target={target!r})")
        self.transform = check_transform(transform)
        self.ids = self._resolve_ids(split_ids)

    def _target_dirs(self) -> List[str]:
        return {"class": [self.label_dir], "object": [self.object_dir],
                "both": [self.label_dir, self.object_dir]}[self.target]

    def _resolve_ids(self, split_ids) -> List[str]:
        if split_ids is None:
            if (self.root / "ids.txt").is_file():
                return read_ids(self.root / "ids.txt")
            return _label_stems(self._label_folders[0])
        name = split_ids if isinstance(split_ids, str) else None
        candidates = [self.root / "ImageSets" / "Segmentation" / f"{name}.txt"] if name else []
        return resolve_ids(split_ids, candidates, "split_ids")

    def __len__(self) -> int:
        return len(self.ids)

    def _load_label(self, image_id: str) -> torch.Tensor:
        labels = [read_label(folder / f"{image_id}.png") for folder in self._label_folders]
        if len(labels) == 1:
            return labels[0]
        if labels[0].shape != labels[1].shape:
            raise ValueError(f"{image_id}: class {tuple(labels[0].shape)} and object {tuple(labels[1].shape)} differ")
        return torch.stack(labels)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        image_id = self.ids[index]
        image = read_image(self.root / self.image_dir / f"{image_id}.jpg")
        label = self._load_label(image_id)
        check_same_size(image_id, image, label)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, image_id


class VOCAugSegmentation(VOCSegmentation):
    """VOC 2012 + SBD ("train_aug", 10,582 images) in the DeepLab / SegSort layout.

    Args:
        root: the VOC folder holding ``JPEGImages/`` (VOC and SBD images together) and
            ``SegmentationClassAug/`` (8-bit PNGs of class ids 0..20, 255 void).
        split_ids: ``'train_aug'`` (default), ``'val'``, ... looked up as
            ``root/ImageSets/SegmentationAug/<name>.txt``,
            ``root/ImageSets/Segmentation/<name>.txt``, ``root/<name>.txt`` and
            ``root/../<name>.txt``; or a list-file path (one id per line, or DeepLab's
            ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` lines); or a sequence of ids.
        transform: as :class:`VOCSegmentation`.
        label_dir: the label folder name, if not ``SegmentationClassAug``.

    Items as :class:`VOCSegmentation` with ``target='class'``.
    """

    label_dir = "SegmentationClassAug"
    targets = ("class",)

    def __init__(self, root: PathLike, split_ids: IdSource = "train_aug", transform: Optional[Callable] = None,
                 label_dir: Optional[str] = None):
        if label_dir is not None:
            self.label_dir = str(label_dir)
        super().__init__(root, split_ids, transform, target="class")

    def _resolve_ids(self, split_ids) -> List[str]:
        if split_ids is None:
            return _label_stems(self._label_folders[0])
        candidates = []
        if isinstance(split_ids, str):
            candidates = [self.root / "ImageSets" / "SegmentationAug" / f"{split_ids}.txt",
                          self.root / "ImageSets" / "Segmentation" / f"{split_ids}.txt",
                          self.root / f"{split_ids}.txt", self.root.parent / f"{split_ids}.txt"]
        return resolve_ids(split_ids, candidates, "split_ids")


def read_sbd_label(path: PathLike, field: str = "Segmentation") -> torch.Tensor:
    """Read an SBD ``cls/<id>.mat`` (struct ``GTcls``) or ``inst/<id>.mat`` (struct ``GTinst``).

    Returns:
        int64 ``(H, W)``: ``GTcls.Segmentation`` holds class ids 0..20 (0 background),
        ``GTinst.Segmentation`` instance ids 0..N (0 background).  SBD has no void border.

    Raises:
        ValueError: naming the file, when it is not a readable ``.mat`` file or holds no
            2-D integer ``field`` in a ``GTcls`` / ``GTinst`` struct.
    """
    contents = read_mat(path, "read_sbd_label")
    for key in ("GTcls", "GTinst"):
        if key in contents:
            struct = contents[key]
            if struct.dtype.names is None or field not in struct.dtype.names or struct.size != 1:
                raise ValueError(f"{path}: struct {key} has no field {field!r}")
            label = np.asarray(struct.flat[0][field])
            if label.ndim != 2 or label.dtype.kind not in "iub":
                raise ValueError(f"{path}: {key}.{field} must be a 2-D integer map, got {label.dtype} {label.shape}")
            return torch.from_numpy(label.astype(np.int64))
    keys = sorted(k for k in contents if not k.startswith("__"))
    raise ValueError(f"{path}: no GTcls or GTinst struct (keys {keys})")


class SBDSegmentation(Dataset):
    """Semantic Boundaries Dataset (Hariharan et al., ICCV 2011) in its release layout.

    Args:
        root: ``benchmark_RELEASE`` or its ``dataset/`` folder, holding ``img/<id>.jpg``,
            ``cls/<id>.mat`` (struct ``GTcls``), ``inst/<id>.mat`` (struct ``GTinst``) and the
            lists ``train.txt`` / ``val.txt``.
        split: ``'train'``, ``'val'``, a list-file path or a sequence of ids.
        target: ``'class'`` (``GTcls.Segmentation``, ids 0..20), ``'object'``
            (``GTinst.Segmentation``, instances 1..N, 0 background) or ``'both'`` (``(2, H, W)``).
        transform: optional ``(image, label) -> (image, label)``.

    Items ``(image, label, id)`` as :class:`VOCSegmentation` (SBD labels have no void pixels).
    """

    targets = ("class", "object", "both")

    def __init__(self, root: PathLike, split: IdSource = "train", target: str = "class",
                 transform: Optional[Callable] = None):
        self.target = check_choice(target, self.targets, "target")
        root = as_path(root, "root")
        if not (root / "img").is_dir() and (root / "dataset" / "img").is_dir():
            root = root / "dataset"
        self.root = root
        self._folders = {"class": ["cls"], "object": ["inst"], "both": ["cls", "inst"]}[target]
        for folder in ["img", *self._folders]:
            if not (root / folder).is_dir():
                raise FileNotFoundError(f"{root} has no {folder}/ folder (needed for target={target!r})")
        candidates = [root / f"{split}.txt"] if isinstance(split, str) else []
        self.ids = resolve_ids(split, candidates, "split")
        self.transform = check_transform(transform)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        image_id = self.ids[index]
        image = read_image(self.root / "img" / f"{image_id}.jpg")
        labels = [read_sbd_label(self.root / folder / f"{image_id}.mat") for folder in self._folders]
        label = labels[0] if len(labels) == 1 else torch.stack(labels)
        check_same_size(image_id, image, label)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, image_id
