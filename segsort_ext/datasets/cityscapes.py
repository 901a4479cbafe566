"""Cityscapes (Cordts et al., CVPR 2016): the official folder layout, label ids mapped to
the 19 train ids of the evaluation."""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch.utils.data import Dataset

from segsort_ext.datasets.io import (
    LabelTable,
    PathLike,
    as_path,
    check_choice,
    check_same_size,
    check_transform,
    read_image,
    read_label,
)
from segsort_ext.utils.constants import IGNORE_INDEX

__all__ = ["CITYSCAPES_CLASSES", "CITYSCAPES_LABEL_TO_TRAIN_ID", "CityscapesSegmentation"]

#: The 19 Cityscapes evaluation classes; the index is the train id.
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

#: Cityscapes label id (the values of ``*_gtFine_labelIds.png``) -> train id, from the label
#: table of the official cityscapesScripts (``cityscapesscripts/helpers/labels.py``): the 19
#: classes with ``ignoreInEval=False`` get train ids 0..18, every other id (void, parking,
#: rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer) gets 255.
CITYSCAPES_LABEL_TO_TRAIN_ID: Dict[int, int] = {
    **{label_id: IGNORE_INDEX for label_id in range(34)},
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


class CityscapesSegmentation(Dataset):
    """Cityscapes in the official folder layout.

    Args:
        root: folder holding ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` and
            ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` (``_instanceIds.png``).
        split: ``'train'``, ``'val'`` or ``'test'`` (a folder name under ``leftImg8bit/``).
        target: ``'semantic'`` (label ids mapped to the 19 train ids of
            :data:`CITYSCAPES_LABEL_TO_TRAIN_ID`, 255 ignore), ``'instance'`` (the official
            ``instanceIds`` values: ``labelId * 1000 + k`` for instance k, the label id for
            pixels outside instances) or ``'both'`` (``(2, H, W)``: train ids, instanceIds).
        annotation: ``'gtFine'`` or ``'gtCoarse'``.
        transform: optional ``(image, label) -> (image, label)``.

    Items ``(image, label, id)`` with id ``<city>_<seq>_<frame>``, ordered by city then name.
    """

    targets = ("semantic", "instance", "both")

    def __init__(self, root: PathLike, split: str = "train", target: str = "semantic",
                 annotation: str = "gtFine", transform: Optional[Callable] = None):
        self.target = check_choice(target, self.targets, "target")
        self.annotation = check_choice(annotation, ("gtFine", "gtCoarse"), "annotation")
        root = as_path(root, "root")
        if not isinstance(split, str):
            raise TypeError(f"split must be a str (a folder under leftImg8bit/), got {type(split).__name__}")
        self.root, self.split, self.transform = root, split, check_transform(transform)
        self.image_folder = root / "leftImg8bit" / split
        self.label_folder = root / annotation / split
        if not self.image_folder.is_dir() or not self.label_folder.is_dir():
            raise FileNotFoundError(f"{root} has no leftImg8bit/{split}/ and {annotation}/{split}/ folders")
        suffix = "_leftImg8bit.png"
        self.files = sorted((p.parent.name, p.name[: -len(suffix)]) for p in self.image_folder.glob(f"*/*{suffix}"))
        if not self.files:
            raise FileNotFoundError(f"no <city>/*{suffix} image under {self.image_folder}")
        self.ids = [name for _, name in self.files]
        self._train_ids = LabelTable(CITYSCAPES_LABEL_TO_TRAIN_ID, "CITYSCAPES_LABEL_TO_TRAIN_ID")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        city, name = self.files[index]
        image = read_image(self.image_folder / city / f"{name}_leftImg8bit.png")
        stem = self.label_folder / city / f"{name}_{self.annotation}"
        labels = []
        if self.target in ("semantic", "both"):
            labels.append(self._train_ids(read_label(f"{stem}_labelIds.png")))
        if self.target in ("instance", "both"):
            labels.append(read_label(f"{stem}_instanceIds.png"))
        label = labels[0] if len(labels) == 1 else torch.stack(labels)
        check_same_size(name, image, label)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, name
