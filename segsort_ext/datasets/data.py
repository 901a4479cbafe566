"""Dataset loaders, batching and joint augmentation for segmentation.

The loaders are plain :class:`torch.utils.data.Dataset` subclasses that need only numpy,
scipy, torch and pillow.  Every semantic loader yields ``(image, label, id)``: ``image`` a
float32 tensor ``(3, H, W)`` in [0, 1], ``label`` an int64 tensor ``(H, W)`` with 255 (=
:data:`IGNORE_INDEX`) on pixels to ignore -- or ``(2, H, W)`` (class, instance) where a
loader is asked for both -- and ``id`` the image's name.

* :class:`VOCSegmentation`: PASCAL VOC (VOCdevkit layout), classes and/or object instances;
* :class:`VOCAugSegmentation`: VOC + SBD "train_aug" in the DeepLab ``SegmentationClassAug``
  layout;
* :class:`SBDSegmentation`: the Semantic Boundaries Dataset in its own layout (``.mat``);
* :class:`CityscapesSegmentation`: Cityscapes, label ids mapped to the 19 train ids;
* :class:`COCOStuffSegmentation`: COCO-Stuff ``stuffthingmaps`` mapped to PiCIE's 27 coarse
  classes;
* :class:`ImageFolderSegmentation`: any image folder + label folder matched by file stem;
* :class:`BSDS500`: images with all human segmentations and boundaries (region/boundary
  benchmarks).

:func:`collate` pads/crops ``(image, label, id)`` samples to a common size (labels padded with
the ignore index) so that they can be batched.  :func:`random_scale`, :func:`random_crop`,
:func:`random_hflip` and :func:`color_jitter` are seeded augmentations (the geometric ones move
the image and its label together); :class:`RandomCropFlip` and :class:`TrainAugmentation`
combine them with one private :class:`torch.Generator`.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

__all__ = [
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_LABEL_TO_TRAIN_ID",
    "COCOSTUFF27_CLASSES",
    "COCOSTUFF_FINE_TO_COARSE",
    "read_image",
    "read_label",
    "read_sbd_label",
    "load_bsds_ground_truth",
    "VOCSegmentation",
    "VOCAugSegmentation",
    "SBDSegmentation",
    "CityscapesSegmentation",
    "COCOStuffSegmentation",
    "ImageFolderSegmentation",
    "BSDS500",
    "collate",
    "random_crop",
    "random_hflip",
    "random_scale",
    "color_jitter",
    "RandomCropFlip",
    "TrainAugmentation",
]

PathLike = Union[str, os.PathLike]
IdSource = Optional[Union[str, os.PathLike, Sequence[str]]]

#: Label value of pixels excluded from training and evaluation (the VOC void border).
IGNORE_INDEX = 255

#: PASCAL VOC class names; the index is the class id stored in the label PNGs.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

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

#: PiCIE's 27 COCO-Stuff classes: the 12 COCO thing supercategories (0..11), then the 15
#: COCO-Stuff stuff supercategories (12..26), in the index order of PiCIE's
#: ``fine_to_coarse_dict.pickle`` (also used by STEGO's ``cocostuff27``).
COCOSTUFF27_CLASSES = (
    "electronic", "appliance", "food", "furniture", "indoor", "kitchen", "accessory", "animal",
    "outdoor", "person", "sports", "vehicle",
    "ceiling", "floor", "food-stuff", "furniture-stuff", "raw-material", "textile", "wall",
    "window", "building", "ground", "plant", "sky", "solid", "structural", "water",
)  # fmt: skip


def _cocostuff_fine_to_coarse() -> Tuple[int, ...]:
    # Fine ids are the COCO-Stuff category ids minus 1, as stored in the stuffthingmaps PNGs
    # (0..90 things, of which 11 ids are unused by COCO; 91..181 stuff).  Things follow the
    # COCO supercategories, whose ids are contiguous; stuff follows the COCO-Stuff label
    # hierarchy (github.com/nightrome/cocostuff).  Checked entry by entry against the table
    # PiCIE trains with (janghyuncho/PiCIE, fine_to_coarse_dict.pickle, as spelled out in
    # mhamilton723/STEGO src/data.py).
    thing_runs = (  # (first fine id, last fine id, coarse class)
        (0, 0, 9),     # person
        (1, 8, 11),    # bicycle .. boat: vehicle
        (9, 14, 8),    # traffic light .. bench: outdoor
        (15, 24, 7),   # bird .. giraffe: animal
        (25, 32, 6),   # hat .. suitcase: accessory
        (33, 42, 10),  # frisbee .. tennis racket: sports
        (43, 50, 5),   # bottle .. bowl: kitchen
        (51, 60, 2),   # banana .. cake: food
        (61, 70, 3),   # chair .. door: furniture
        (71, 76, 0),   # tv .. cell phone: electronic
        (77, 82, 1),   # microwave .. blender: appliance
        (83, 90, 4),   # book .. hair brush: indoor
    )  # fmt: skip
    stuff_groups = {
        12: (101, 102),                                          # ceiling-other, ceiling-tile
        13: (100, 113, 114, 115, 116, 117),                      # carpet, floor-*
        14: (120, 121, 152, 169),                                # food-other, fruit, salad, vegetable
        15: (97, 106, 107, 109, 111, 122, 129, 132, 155, 160, 164),  # cabinet, counter, ... table
        16: (99, 131, 138, 142),                                 # cardboard, metal, paper, plastic
        17: (91, 92, 103, 104, 108, 130, 136, 140, 151, 166, 167),   # banner, blanket, ... towel
        18: (170, 171, 172, 173, 174, 175, 176),                 # wall-*
        19: (179, 180),                                          # window-blind, window-other
        20: (94, 95, 127, 150, 157, 165),                        # bridge, building-other, ... tent
        21: (110, 124, 125, 135, 139, 143, 144, 146, 148, 153, 158),  # dirt, gravel, ... snow
        22: (93, 96, 118, 123, 128, 133, 141, 162, 168),         # branch, bush, ... tree
        23: (105, 156),                                          # clouds, sky-other
        24: (126, 134, 149, 159, 161, 181),                      # hill, mountain, ... wood
        25: (98, 112, 137, 145, 163),                            # cage, fence, net, railing, structural-other
        26: (119, 147, 154, 177, 178),                           # fog, river, sea, water-other, waterdrops
    }  # fmt: skip
    table = [-1] * 182
    for first, last, coarse in thing_runs:
        for fine in range(first, last + 1):
            table[fine] = coarse
    for coarse, fines in stuff_groups.items():
        for fine in fines:
            table[fine] = coarse
    assert -1 not in table and sum(len(f) for f in stuff_groups.values()) == 91
    return tuple(table)


#: COCO-Stuff fine id (0..181, the stuffthingmaps PNG values) -> PiCIE's coarse class
#: (index into :data:`COCOSTUFF27_CLASSES`); the unlabeled value 255 maps to 255.
COCOSTUFF_FINE_TO_COARSE: Tuple[int, ...] = _cocostuff_fine_to_coarse()

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
_LABEL_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".pgm")


# ============================================================================================
# Readers
# ============================================================================================


def read_image(path: PathLike) -> torch.Tensor:
    """Read an image file as a float tensor ``(3, H, W)`` in [0, 1] (RGB)."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def read_label(path: PathLike) -> torch.Tensor:
    """Read a label image (palette, 8/16/32-bit grayscale) as an int64 tensor ``(H, W)``.

    The stored values *are* the ids (a palette PNG's indices, not its colours), so the image
    is never converted to RGB or grayscale; RGB label images raise ValueError.
    """
    with Image.open(path) as img:
        if img.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
            raise ValueError(f"{path}: expected a palette/index label image, got mode {img.mode!r}")
        array = np.array(img)
    return torch.from_numpy(array.astype(np.int64))


def read_sbd_label(path: PathLike, field: str = "Segmentation") -> torch.Tensor:
    """Read an SBD ``cls/<id>.mat`` (struct ``GTcls``) or ``inst/<id>.mat`` (struct ``GTinst``).

    Returns:
        int64 ``(H, W)``: ``GTcls.Segmentation`` holds class ids 0..20 (0 background),
        ``GTinst.Segmentation`` instance ids 0..N (0 background).  SBD has no void border.
    """
    contents = scipy.io.loadmat(os.fspath(path))
    for key in ("GTcls", "GTinst"):
        if key in contents:
            struct = contents[key]
            if struct.dtype.names is None or field not in struct.dtype.names:
                raise ValueError(f"{path}: struct {key} has no field {field!r}")
            return torch.from_numpy(np.asarray(struct[0, 0][field]).astype(np.int64))
    keys = sorted(k for k in contents if not k.startswith("__"))
    raise ValueError(f"{path}: no GTcls or GTinst struct (keys {keys})")


def _lookup_table(mapping: Union[Mapping[int, int], Sequence[int], np.ndarray], name: str) -> np.ndarray:
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


def _map_label(label: torch.Tensor, table: np.ndarray) -> torch.Tensor:
    values = label.numpy()
    inside = (values >= 0) & (values < table.size)
    out = np.full(values.shape, IGNORE_INDEX, dtype=np.int64)
    out[inside] = table[values[inside]]
    return torch.from_numpy(out)


def _read_ids(path: PathLike) -> List[str]:
    """Ids from a list file: one per line, first column.  A DeepLab-style line
    ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` gives ``<id>``."""
    ids = []
    with open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            token = line.split()[0]
            if "/" in token or token.lower().endswith(_IMAGE_EXTENSIONS):
                token = Path(token).stem
            ids.append(token)
    return ids


def _resolve_ids(source: IdSource, candidates: Sequence[Path], name: str) -> List[str]:
    """``source`` is a list-file path, a name looked up as ``candidates`` (tried in order) or a
    sequence of ids."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file():
            return _read_ids(path)
        for candidate in candidates:
            if candidate.is_file():
                return _read_ids(candidate)
        tried = ", ".join(str(c) for c in [path, *candidates])
        raise FileNotFoundError(f"no id list for {name}={source!r} (tried {tried})")
    if isinstance(source, Sequence):
        return [str(i) for i in source]
    raise TypeError(f"{name} must be a split name, a list-file path or a sequence of ids, "
                    f"got {type(source).__name__}")


def _check_choice(value, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def _check_same_size(image_id: str, image: torch.Tensor, label: torch.Tensor) -> None:
    if tuple(image.shape[1:]) != tuple(label.shape[-2:]):
        raise ValueError(f"{image_id}: image {tuple(image.shape[1:])} and label {tuple(label.shape[-2:])} differ")


# ============================================================================================
# PASCAL VOC and SBD
# ============================================================================================


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
            tensors (e.g. :class:`RandomCropFlip`).
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
        self.target = _check_choice(target, self.targets, "target")
        root = Path(root)
        if not (root / self.image_dir).is_dir() and (root / "VOC2012" / self.image_dir).is_dir():
            root = root / "VOC2012"
        self.root = root
        self._label_folders = [root / d for d in self._target_dirs()]
        for folder in [root / self.image_dir, *self._label_folders]:
            if not folder.is_dir():
                raise FileNotFoundError(f"{root} has no {folder.name}/ folder (needed for target={target!r})")
        self.transform = transform
        self.ids = self._resolve_ids(split_ids)

    def _target_dirs(self) -> List[str]:
        return {"class": [self.label_dir], "object": [self.object_dir],
                "both": [self.label_dir, self.object_dir]}[self.target]

    def _resolve_ids(self, split_ids) -> List[str]:
        if split_ids is None:
            if (self.root / "ids.txt").is_file():
                return _read_ids(self.root / "ids.txt")
            return sorted(p.stem for p in self._label_folders[0].glob("*.png"))
        name = split_ids if isinstance(split_ids, str) else None
        candidates = [self.root / "ImageSets" / "Segmentation" / f"{name}.txt"] if name else []
        return _resolve_ids(split_ids, candidates, "split_ids")

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
        _check_same_size(image_id, image, label)
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
            return sorted(p.stem for p in self._label_folders[0].glob("*.png"))
        candidates = []
        if isinstance(split_ids, str):
            candidates = [self.root / "ImageSets" / "SegmentationAug" / f"{split_ids}.txt",
                          self.root / "ImageSets" / "Segmentation" / f"{split_ids}.txt",
                          self.root / f"{split_ids}.txt", self.root.parent / f"{split_ids}.txt"]
        return _resolve_ids(split_ids, candidates, "split_ids")


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
        self.target = _check_choice(target, self.targets, "target")
        root = Path(root)
        if not (root / "img").is_dir() and (root / "dataset" / "img").is_dir():
            root = root / "dataset"
        self.root = root
        self._folders = {"class": ["cls"], "object": ["inst"], "both": ["cls", "inst"]}[target]
        for folder in ["img", *self._folders]:
            if not (root / folder).is_dir():
                raise FileNotFoundError(f"{root} has no {folder}/ folder (needed for target={target!r})")
        candidates = [root / f"{split}.txt"] if isinstance(split, str) else []
        self.ids = _resolve_ids(split, candidates, "split")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        image_id = self.ids[index]
        image = read_image(self.root / "img" / f"{image_id}.jpg")
        labels = [read_sbd_label(self.root / folder / f"{image_id}.mat") for folder in self._folders]
        label = labels[0] if len(labels) == 1 else torch.stack(labels)
        _check_same_size(image_id, image, label)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, image_id


# ============================================================================================
# Cityscapes, COCO-Stuff, generic folders
# ============================================================================================


class CityscapesSegmentation(Dataset):
    """Cityscapes (Cordts et al., CVPR 2016) in the official folder layout.

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
        self.target = _check_choice(target, self.targets, "target")
        self.annotation = _check_choice(annotation, ("gtFine", "gtCoarse"), "annotation")
        root = Path(root)
        self.root, self.split, self.transform = root, split, transform
        self.image_folder = root / "leftImg8bit" / split
        self.label_folder = root / annotation / split
        if not self.image_folder.is_dir() or not self.label_folder.is_dir():
            raise FileNotFoundError(f"{root} has no leftImg8bit/{split}/ and {annotation}/{split}/ folders")
        suffix = "_leftImg8bit.png"
        self.files = sorted((p.parent.name, p.name[: -len(suffix)]) for p in self.image_folder.glob(f"*/*{suffix}"))
        self.ids = [name for _, name in self.files]
        self._train_ids = _lookup_table(CITYSCAPES_LABEL_TO_TRAIN_ID, "CITYSCAPES_LABEL_TO_TRAIN_ID")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        city, name = self.files[index]
        image = read_image(self.image_folder / city / f"{name}_leftImg8bit.png")
        stem = self.label_folder / city / f"{name}_{self.annotation}"
        labels = []
        if self.target in ("semantic", "both"):
            labels.append(_map_label(read_label(f"{stem}_labelIds.png"), self._train_ids))
        if self.target in ("instance", "both"):
            labels.append(read_label(f"{stem}_instanceIds.png"))
        label = labels[0] if len(labels) == 1 else torch.stack(labels)
        _check_same_size(name, image, label)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, name


class COCOStuffSegmentation(Dataset):
    """COCO-Stuff 164k with PiCIE's 27 coarse classes (Cho et al., CVPR 2021).

    Args:
        root: folder holding the images ``images/<split>2017/<id>.jpg`` (or ``<split>2017/``)
            and the ``stuffthingmaps`` label PNGs (fine ids 0..181, 255 unlabeled) as
            ``annotations/<split>2017/<id>.png`` (PiCIE's layout),
            ``stuffthingmaps_trainval2017/<split>2017/`` or ``stuffthingmaps/<split>2017/``.
        split: ``'train'`` / ``'val'`` (or the folder name, e.g. ``'val2017'``).
        image_list: ``None`` (every label PNG), a list name looked up in
            ``root/curated/<split>2017/`` (PiCIE's curated lists, e.g.
            ``'Coco164kFull_Stuff_Coarse_7'``, with or without ``.txt``), a list-file path, or a
            sequence of ids.
        classes: ``'all'`` (27 classes, :data:`COCOSTUFF27_CLASSES`), ``'stuff'`` (the 15
            stuff classes as 0..14, things ignored: PiCIE's / IIC's stuff-only benchmark) or
            ``'things'`` (the 12 thing classes, stuff ignored).
        transform: optional ``(image, label) -> (image, label)``.

    Items ``(image, label, id)``; unlabeled pixels (and excluded classes) are 255.
    """

    _LABEL_DIRS = ("annotations", "stuffthingmaps_trainval2017", "stuffthingmaps")

    def __init__(self, root: PathLike, split: str = "train", image_list: IdSource = None,
                 classes: str = "all", transform: Optional[Callable] = None):
        self.classes = _check_choice(classes, ("all", "stuff", "things"), "classes")
        root = Path(root)
        folder = split if str(split).endswith(("2014", "2017")) else f"{split}2017"
        self.root, self.split, self.transform = root, folder, transform
        self.image_folder = next((d for d in (root / "images" / folder, root / folder) if d.is_dir()), None)
        self.label_folder = next((root / d / folder for d in self._LABEL_DIRS if (root / d / folder).is_dir()), None)
        if self.image_folder is None or self.label_folder is None:
            raise FileNotFoundError(f"{root} has no images/{folder}/ and "
                                    f"{{{','.join(self._LABEL_DIRS)}}}/{folder}/ folders")
        if image_list is None:
            self.ids = sorted(p.stem for p in self.label_folder.glob("*.png"))
        else:
            candidates = []
            if isinstance(image_list, str):
                name = image_list if image_list.endswith(".txt") else f"{image_list}.txt"
                candidates = [root / "curated" / folder / name]
            self.ids = _resolve_ids(image_list, candidates, "image_list")
        table = np.array(COCOSTUFF_FINE_TO_COARSE, dtype=np.int64)
        if classes == "stuff":
            table = np.where(table >= 12, table - 12, IGNORE_INDEX)
        elif classes == "things":
            table = np.where(table < 12, table, IGNORE_INDEX)
        self._table = table  # values past 181 (255 = unlabeled) fall outside: ignore

    @property
    def num_classes(self) -> int:
        return {"all": 27, "stuff": 15, "things": 12}[self.classes]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        image_id = self.ids[index]
        image = read_image(self.image_folder / f"{image_id}.jpg")
        label = _map_label(read_label(self.label_folder / f"{image_id}.png"), self._table)
        _check_same_size(image_id, image, label)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, image_id


def _files_by_stem(folder: Path, extensions: Sequence[str], name: str) -> Dict[str, Path]:
    files: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions:
            if path.stem in files:
                raise ValueError(f"{name}: two files with the stem {path.stem!r} "
                                 f"({files[path.stem].name}, {path.name})")
            files[path.stem] = path
    return files


class ImageFolderSegmentation(Dataset):
    """Images and label maps in two folders, matched by file stem.

    Args:
        image_dir: folder of images (``.jpg``, ``.png``, ``.bmp``, ``.tif``, ...).
        label_dir: folder of label images (``.png``, ``.bmp``, ``.tif``, ``.pgm``) read as
            stored (palette indices or gray values, never converted; RGB labels raise), or
            ``None`` for unlabelled images (every label pixel is 255), e.g. for PiCIE.
        list_file: optional text file of ids (stems), one per line; default: every image
            that has a label (every image when ``label_dir`` is None), sorted.
        label_map: optional raw value -> train id table (dict, or a sequence indexed by the
            raw value); raw values it does not cover become 255.
        transform: optional ``(image, label) -> (image, label)``.

    Items ``(image, label, id)`` with id the file stem.
    """

    def __init__(self, image_dir: PathLike, label_dir: Optional[PathLike] = None,
                 list_file: Optional[PathLike] = None, *,
                 label_map: Optional[Union[Mapping[int, int], Sequence[int]]] = None,
                 transform: Optional[Callable] = None):
        image_dir = Path(image_dir)
        if not image_dir.is_dir():
            raise FileNotFoundError(f"image_dir {image_dir} is not a folder")
        self.images = _files_by_stem(image_dir, _IMAGE_EXTENSIONS, "image_dir")
        self.labels: Optional[Dict[str, Path]] = None
        if label_dir is not None:
            label_dir = Path(label_dir)
            if not label_dir.is_dir():
                raise FileNotFoundError(f"label_dir {label_dir} is not a folder")
            self.labels = _files_by_stem(label_dir, _LABEL_EXTENSIONS, "label_dir")
        if list_file is not None:
            if not Path(list_file).is_file():
                raise FileNotFoundError(f"list_file {list_file} does not exist")
            self.ids = _read_ids(list_file)
            for image_id in self.ids:
                if image_id not in self.images or (self.labels is not None and image_id not in self.labels):
                    raise FileNotFoundError(f"list_file: {image_id!r} has no image or no label")
        else:
            self.ids = [i for i in self.images if self.labels is None or i in self.labels]
        if not self.ids:
            where = "" if label_dir is None else f" with a label in {label_dir}"
            raise FileNotFoundError(f"no image in {image_dir}{where}")
        self.label_map = None if label_map is None else _lookup_table(label_map, "label_map")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        image_id = self.ids[index]
        image = read_image(self.images[image_id])
        if self.labels is None:
            label = torch.full(image.shape[1:], IGNORE_INDEX, dtype=torch.int64)
        else:
            label = read_label(self.labels[image_id])
            if self.label_map is not None:
                label = _map_label(label, self.label_map)
        _check_same_size(image_id, image, label)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, image_id


# ============================================================================================
# BSDS500
# ============================================================================================


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


def _check_probability(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def _check_scale_range(scale_range) -> Tuple[float, float]:
    try:
        low, high = (float(v) for v in scale_range)
    except (TypeError, ValueError):
        raise TypeError(f"scale_range must be a pair of numbers (min, max), got {scale_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or not 0.0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < min <= max, got {scale_range!r}")
    return low, high


def _check_size(size, name: str) -> Tuple[int, int]:
    try:
        height, width = size
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of ints (h, w), got {size!r}") from None
    for v in (height, width):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be a pair of ints (h, w), got {size!r}")
        if v < 1:
            raise ValueError(f"{name} must be positive, got {size!r}")
    return int(height), int(width)


def _check_pair(image, label) -> None:
    if not isinstance(image, torch.Tensor) or not image.is_floating_point() or image.dim() != 3:
        raise TypeError("image must be a floating point tensor (C, H, W)")
    if not isinstance(label, torch.Tensor) or label.dim() not in (2, 3):
        raise TypeError("label must be a tensor (H, W) or (K, H, W)")
    if tuple(label.shape[-2:]) != tuple(image.shape[-2:]):
        raise ValueError(f"label {tuple(label.shape)} and image {tuple(image.shape)} must have the same (H, W)")


def _uniform(low: float, high: float, generator: Optional[torch.Generator]) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def random_scale(
    image: torch.Tensor,
    label: torch.Tensor,
    scale_range: Tuple[float, float] = (0.5, 2.0),
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Resize ``image (C, H, W)`` and ``label (H, W)`` or ``(K, H, W)`` by one random factor.

    The factor is uniform in ``scale_range``; the new size is ``round(H * s), round(W * s)``
    (at least 1).  The image is resampled bilinearly (``align_corners=False``) and the label by
    nearest neighbour on the *same* pixel-centre grid (PyTorch's ``'nearest-exact'``: output
    pixel y reads input row ``floor((y + 0.5) * H / h)``), so every label pixel is the source
    pixel nearest to where its image value was interpolated.  (Plain ``'nearest'`` reads
    ``floor(y * H / h)`` and shifts labels by up to half an input pixel against the image.)
    Follow with :func:`random_crop`, which pads with the ignore index.
    """
    _check_pair(image, label)
    low, high = _check_scale_range(scale_range)
    factor = _uniform(low, high, generator)
    height, width = image.shape[-2:]
    out_h, out_w = max(1, int(round(height * factor))), max(1, int(round(width * factor)))
    if (out_h, out_w) == (height, width):
        return image, label
    image = F.interpolate(image.unsqueeze(0), size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
    rows = ((torch.arange(out_h, dtype=torch.float64) + 0.5) * (height / out_h)).floor().long().clamp_(max=height - 1)
    cols = ((torch.arange(out_w, dtype=torch.float64) + 0.5) * (width / out_w)).floor().long().clamp_(max=width - 1)
    label = label[..., rows.to(label.device)[:, None], cols.to(label.device)[None, :]]
    return image, label


_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL's convert('L')


def _grayscale(image: torch.Tensor) -> torch.Tensor:
    return (image[0] * _GRAY[0] + image[1] * _GRAY[1] + image[2] * _GRAY[2]).unsqueeze(0)


def _rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    r, g, b = image[0], image[1], image[2]
    value, _ = image.max(0)
    delta = value - image.min(0).values
    saturation = torch.where(value > 0, delta / value.clamp_min(1e-12), torch.zeros_like(value))
    safe = delta.clamp_min(1e-12)
    hue = torch.where(value == r, (g - b) / safe,
                      torch.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    return torch.stack([hue, saturation, value])


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    # Channel c = v - v * s * clamp(min(k, 4 - k), 0, 1) with k = (n_c + 6 h) mod 6 and
    # n = 5, 3, 1 for r, g, b: the piecewise-linear colour wheel without per-sector copies.
    hue, saturation, value = hsv[0:1], hsv[1:2], hsv[2:3]
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device).view(3, 1, 1)
    k = (n + 6.0 * hue) % 6.0
    return value - value * saturation * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def _check_jitter(brightness, contrast, saturation, hue) -> Tuple[float, float, float, float]:
    values = []
    for name, value, upper in (("brightness", brightness, None), ("contrast", contrast, None),
                               ("saturation", saturation, None), ("hue", hue, 0.5)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value) or value < 0 or (upper is not None and value > upper):
            raise ValueError(f"{name} must be in [0, {upper if upper is not None else 'inf'}), got {value}")
        values.append(value)
    return tuple(values)


def color_jitter(
    image: torch.Tensor,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Random photometric change of an RGB image ``(3, H, W)`` in [0, 1] (labels are unaffected).

    As torchvision's ``ColorJitter``: factors ``b, c, s`` uniform in ``[max(0, 1 - x), 1 + x]``
    for ``x`` = brightness, contrast, saturation, and a hue shift uniform in ``[-hue, hue]``
    (fraction of the colour wheel, hue <= 0.5); the four enabled operations are applied in a
    random order drawn from ``generator``, clamping to [0, 1] after each.  Brightness scales
    the image, contrast blends it with its mean gray level, saturation with its gray image.
    """
    brightness, contrast, saturation, hue = _check_jitter(brightness, contrast, saturation, hue)
    if not isinstance(image, torch.Tensor) or not image.is_floating_point() or image.dim() != 3:
        raise TypeError("image must be a floating point tensor (3, H, W)")
    if (saturation > 0 or hue > 0 or contrast > 0) and image.shape[0] != 3:
        raise ValueError(f"image must be RGB (3, H, W) for contrast/saturation/hue jitter, got {tuple(image.shape)}")
    ops = []
    if brightness > 0:
        ops.append(("brightness", _uniform(max(0.0, 1 - brightness), 1 + brightness, generator)))
    if contrast > 0:
        ops.append(("contrast", _uniform(max(0.0, 1 - contrast), 1 + contrast, generator)))
    if saturation > 0:
        ops.append(("saturation", _uniform(max(0.0, 1 - saturation), 1 + saturation, generator)))
    if hue > 0:
        ops.append(("hue", _uniform(-hue, hue, generator)))
    if not ops:
        return image
    order = torch.randperm(len(ops), generator=generator).tolist()
    for name, factor in (ops[i] for i in order):
        if name == "brightness":
            image = image * factor
        elif name == "contrast":
            mean = _grayscale(image).mean()
            image = (image - mean) * factor + mean
        elif name == "saturation":
            gray = _grayscale(image)
            image = (image - gray) * factor + gray
        else:
            hsv = _rgb_to_hsv(image.clamp(0.0, 1.0))
            hsv = torch.stack([(hsv[0] + factor) % 1.0, hsv[1], hsv[2]])
            image = _hsv_to_rgb(hsv)
        image = image.clamp(0.0, 1.0)
    return image


class TrainAugmentation:
    """Seeded training augmentation of ``(image, label)`` pairs, usable as a dataset ``transform``.

    In order: :func:`color_jitter` (image only), :func:`random_scale`, then
    :class:`RandomCropFlip` (crop padded with ``ignore_index``, horizontal flip) -- all drawing
    from one private :class:`torch.Generator`, so the same seed gives the same sequence.
    Labels may be ``(H, W)`` or ``(K, H, W)`` (e.g. class + instance).

    Args:
        crop_size: ``(h, w)`` of the output, or None (no crop).
        scale_range: ``(min, max)`` scale factors, or None (no scaling).
        flip_prob: probability of mirroring.
        brightness, contrast, saturation, hue: :func:`color_jitter` strengths (0 = off).
        seed: seed of the generator (see :meth:`reseed` for DataLoader workers).
        ignore_index: label of padded pixels.
    """

    def __init__(
        self,
        crop_size: Optional[Tuple[int, int]],
        *,
        scale_range: Optional[Tuple[float, float]] = (0.5, 2.0),
        flip_prob: float = 0.5,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        seed: int = 0,
        ignore_index: int = IGNORE_INDEX,
    ):
        self.crop_size = None if crop_size is None else _check_size(crop_size, "crop_size")
        self.scale_range = None if scale_range is None else _check_scale_range(scale_range)
        self.jitter = _check_jitter(brightness, contrast, saturation, hue)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
        self.crop_flip = RandomCropFlip(self.crop_size, _check_probability(flip_prob, "flip_prob"), seed,
                                        ignore_index)
        self.generator = self.crop_flip.generator

    def reseed(self, seed: int) -> None:
        """Restart the random sequence from ``seed``."""
        self.crop_flip.reseed(seed)

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        _check_pair(image, label)
        # Jitter first: padding added by the crop must keep the fill value.
        image = color_jitter(image, *self.jitter, generator=self.generator)
        if self.scale_range is not None:
            image, label = random_scale(image, label, self.scale_range, self.generator)
        return self.crop_flip(image, label)
