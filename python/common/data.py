"""The recipes' data: the ``--dataset`` choices, opening and detecting a data set,
images at the recipe's scale, and the random crops and pixels a training step draws.

Datasets (``--dataset``, with ``--data`` the root folder): ``voc`` (VOCdevkit layout;
the ``train``/``val`` lists of ImageSets/Segmentation when present, else the last
``--test-images`` images are held out), ``voc-aug`` (SegmentationClassAug, ``train_aug``
/ ``val``), ``sbd``, ``cityscapes`` (19 train ids), ``cocostuff`` (PiCIE's 27 classes),
``folder`` (``<data>/images`` + ``<data>/labels`` matched by stem, optional
``train.txt``/``val.txt``; needs ``--num-classes``), the embedded ``mosaics`` (texture
mosaics) and, for grouping, ``voc-object``, ``sbd-object`` and the embedded ``digits``.
``auto`` (default) reads the layout of ``--data``; without ``--data`` it takes the VOC
sample in ``../shared/data`` (relative to the project root) when present, else the
embedded scenes, so every recipe runs anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from segsort_ext.datasets import (
    CITYSCAPES_CLASSES,
    COCOSTUFF27_CLASSES,
    VOC_CLASSES,
    CityscapesSegmentation,
    COCOStuffSegmentation,
    DigitScenes,
    ImageFolderSegmentation,
    SBDSegmentation,
    TextureMosaics,
    VOCAugSegmentation,
    VOCSegmentation,
)
from segsort_ext.transforms import random_crop, random_hflip, random_scale

from common.args import fail

#: The shared data folder beside the project root (tests skip data variants without it).
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

SEMANTIC_DATASETS = ("auto", "voc", "voc-aug", "sbd", "cityscapes", "cocostuff", "folder", "mosaics")
INSTANCE_DATASETS = ("auto", "voc-object", "sbd-object", "digits")


class _TensorPairs(Dataset):
    """(image, label) pairs from stacked tensors (the embedded scenes)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, prefix: str):
        self.images, self.labels, self.prefix = images, labels, prefix

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index], f"{self.prefix}{index}"


class ScaledSet:
    """``(image (3, H, W), label (H, W))`` items of a loader, resized by ``scale``
    (bilinear with antialiasing for images, nearest-exact for labels), cached in memory
    when the data set is small."""

    def __init__(self, dataset: Dataset, scale: float, *, cache_limit: int = 1000):
        self.dataset, self.scale = dataset, scale
        self._cache: Optional[dict] = {} if len(dataset) <= cache_limit else None

    def __len__(self) -> int:
        return len(self.dataset)

    def name(self, index: int) -> str:
        """The loader's id of item ``index`` (e.g. the VOC image name)."""
        return self.item(index)[2]

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.item(index)[:2]

    def item(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        try:
            image, label, name = self.dataset[index]
        except (ValueError, OSError) as error:  # the loaders name the damaged or missing file
            fail(f"--data: cannot read image {index} of the data set: {str(error).splitlines()[0]}")
        if self.scale != 1.0:
            size = (max(1, round(image.shape[1] * self.scale)), max(1, round(image.shape[2] * self.scale)))
            image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True,
                                  align_corners=False)[0].clamp(0, 1)
            label = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
        item = (image.contiguous(), label.long().contiguous(), str(name))
        if self._cache is not None:
            self._cache[index] = item
        return item


@dataclass
class SegmentationData:
    """Training and held-out images of one data set, at the recipe's scale."""

    kind: str  # the --dataset it resolved to
    root: Optional[str]
    train: ScaledSet
    test: ScaledSet
    num_classes: int  # classes (semantic) or 0 (instances)
    class_names: Tuple[str, ...]
    default_crop: int
    note: str  # how the held-out images were chosen

    def describe(self) -> str:
        where = f" at {self.root}" if self.root else " (embedded)"
        return f"{self.kind}{where}: {len(self.train)} training, {len(self.test)} held-out images ({self.note})"


def _descend(root: Path) -> Path:
    """The dataset folder inside common wrappers (shared/data, VOCdevkit, VOC2012)."""
    for sub in ("voc2012", "VOCdevkit/VOC2012", "VOC2012"):
        if (root / sub / "JPEGImages").is_dir():
            return root / sub
    return root


def detect_dataset(root: Path, task: str) -> str:
    """The --dataset whose layout ``root`` has (ValueError naming what was looked for)."""
    if (root / "SegmentationClassAug").is_dir() and task == "semantic":
        return "voc-aug"
    if (root / "JPEGImages").is_dir():
        if task == "semantic":
            return "voc"
        return "voc-object"
    if (root / "leftImg8bit").is_dir() and task == "semantic":
        return "cityscapes"
    if (root / "img").is_dir() or (root / "dataset" / "img").is_dir():
        return "sbd" if task == "semantic" else "sbd-object"
    if task == "semantic" and any((root / d).is_dir() for d in ("annotations", "stuffthingmaps_trainval2017",
                                                                "stuffthingmaps")):
        return "cocostuff"
    if (root / "images").is_dir() and task == "semantic":
        return "folder"
    raise ValueError(f"--data {root}: no known dataset layout found (VOC JPEGImages/, SegmentationClassAug/, "
                     f"Cityscapes leftImg8bit/, SBD img/, COCO-Stuff annotations/ or images/ + labels/); "
                     f"pass --dataset explicitly")


def _hold_out(dataset: Dataset, count: int) -> Tuple[Dataset, Dataset, str]:
    n = len(dataset)
    if n == 0:
        raise ValueError("the data set is empty")
    if n == 1:
        return dataset, dataset, "a single image: tested on the training image"
    count = min(max(count, 1), n - 1)
    return Subset(dataset, range(n - count)), Subset(dataset, range(n - count, n)), f"last {count} held out"


def _first(dataset: Dataset, count: int) -> Dataset:
    return Subset(dataset, range(min(count, len(dataset)))) if count else dataset


def _file_or_none(path: Path) -> Optional[Path]:
    return path if path.is_file() else None


def load_data(args, task: str, *, real_scale: float = 0.5) -> SegmentationData:
    """The data set of ``args`` (``task`` 'semantic': class labels; 'instance': instance
    ids with 0 = background and 255 = void), resized by --scale (default ``real_scale``
    for real data, 1 for the embedded scenes). Raises ValueError / FileNotFoundError with
    a message that names the argument."""
    kind = args.dataset
    root = Path(args.data).expanduser() if args.data else None
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"--data {root} is not a folder")
    embedded = "mosaics" if task == "semantic" else "digits"
    if root is None and kind in ("auto", "voc", "voc-object") and (SHARED_DATA / "voc2012").is_dir() \
            and not (kind == "auto" and task == "instance"):
        # The shared VOC sample has no SegmentationObject/: grouping defaults to the
        # embedded digits, and only an explicit --dataset voc-object tries (and explains).
        root = SHARED_DATA / "voc2012"
    if kind == "auto":
        kind = embedded if root is None else detect_dataset(_descend(root), task)
    if kind != embedded and root is None:
        raise ValueError(f"--dataset {kind} needs --data (the dataset root folder)")
    if kind == embedded:
        root = None  # the embedded scenes are built in memory; --data plays no part
    if root is not None:
        root = _descend(root)
    scale = args.scale if args.scale is not None else (1.0 if kind == embedded else real_scale)

    target = "class" if task == "semantic" else "object"
    num_classes, names, default_crop = 0, (), 96
    if kind == "mosaics":
        train_n = args.train_images or 120
        test_n = args.test_images or 24
        train = TextureMosaics("train", train_n, 64, seed=0)
        test = TextureMosaics("test", test_n, 64, seed=0)
        train_set, test_set = _TensorPairs(train.images, train.labels, "train"), \
            _TensorPairs(test.images, test.labels, "test")
        num_classes, names, default_crop, note = TextureMosaics.num_classes, TextureMosaics.class_names, 48, \
            "test mosaics cut from unseen parts of the textures"
    elif kind == "digits":
        train_n = args.train_images or 200
        test_n = args.test_images or 24
        train = DigitScenes("train", train_n, 48, seed=0)
        test = DigitScenes("test", test_n, 48, seed=0)
        train_set, test_set = _TensorPairs(train.images, train.instances, "train"), \
            _TensorPairs(test.images, test.instances, "test")
        default_crop, note = 48, "test scenes from unseen digit scans"
    elif kind in ("voc", "voc-object"):
        if kind == "voc-object" and not (root / VOCSegmentation.object_dir).is_dir():
            raise FileNotFoundError(f"--dataset voc-object: {root} has no SegmentationObject/ folder (the VOC sample "
                                    f"in ../shared/data has none); use the full VOC 2012 or --dataset digits")
        lists = root / "ImageSets" / "Segmentation"
        if (lists / "train.txt").is_file() and (lists / "val.txt").is_file():
            train_set = VOCSegmentation(root, "train", target=target)
            test_set = _first(VOCSegmentation(root, "val", target=target), args.test_images)
            note = "VOC train / val lists"
        else:
            train_set, test_set, note = _hold_out(VOCSegmentation(root, target=target), args.test_images)
        num_classes, names = (21, VOC_CLASSES) if task == "semantic" else (0, ())
    elif kind == "voc-aug":
        train_set = VOCAugSegmentation(root, "train_aug")
        test_set = _first(VOCAugSegmentation(root, "val"), args.test_images)
        num_classes, names, note = 21, VOC_CLASSES, "train_aug / val"
    elif kind in ("sbd", "sbd-object"):
        train_set = SBDSegmentation(root, "train", target=target)
        test_set = _first(SBDSegmentation(root, "val", target=target), args.test_images)
        num_classes, names = (21, VOC_CLASSES) if task == "semantic" else (0, ())
        note = "SBD train / val"
    elif kind == "cityscapes":
        train_set = CityscapesSegmentation(root, "train")
        test_set = _first(CityscapesSegmentation(root, "val"), args.test_images)
        num_classes, names, note = 19, CITYSCAPES_CLASSES, "Cityscapes train / val"
    elif kind == "cocostuff":
        train_set = COCOStuffSegmentation(root, "train")
        test_set = _first(COCOStuffSegmentation(root, "val"), args.test_images)
        num_classes, names, note = 27, COCOSTUFF27_CLASSES, "COCO-Stuff train2017 / val2017"
    elif kind == "folder":
        if not args.num_classes:
            raise ValueError("--dataset folder needs --num-classes")
        labels = root / "labels" if (root / "labels").is_dir() else None
        full = ImageFolderSegmentation(root / "images", labels, _file_or_none(root / "train.txt"))
        if (root / "val.txt").is_file():
            train_set = full
            test_set = _first(ImageFolderSegmentation(root / "images", labels, root / "val.txt"),
                              args.test_images)
            note = "train.txt / val.txt"
        else:
            train_set, test_set, note = _hold_out(full, args.test_images)
        num_classes, names = args.num_classes, tuple(str(c) for c in range(args.num_classes))
    else:
        raise ValueError(f"--dataset {kind} is not available for this recipe")
    if kind not in ("mosaics", "digits"):
        train_set = _first(train_set, args.train_images)
    if len(train_set) == 0 or len(test_set) == 0:
        raise ValueError(f"--dataset {kind}: no training or no held-out images")
    return SegmentationData(kind, None if root is None else str(root), ScaledSet(train_set, scale),
                            ScaledSet(test_set, scale), num_classes, tuple(names),
                            max(8, round(default_crop * (1.0 if kind in ("mosaics", "digits") else scale / 0.5))),
                            note)


def open_data(args, task: str, *, real_scale: float = 0.5) -> SegmentationData:
    """:func:`load_data` for a script: a bad argument exits with its message (status 2),
    and the resolved dataset is recorded in ``args`` (part of a run's identity for --resume)."""
    try:
        data = load_data(args, task, real_scale=real_scale)
    except (ValueError, OSError) as error:
        fail(str(error).splitlines()[0] if str(error).strip() else f"--data: {type(error).__name__}")
    data.train.item(0), data.test.item(0)  # a damaged data root is refused now, not in the middle of training
    args.resolved_dataset, args.data_root = data.kind, data.root
    return data


def sample_crops(dataset: ScaledSet, picks: Sequence[int], crop: int, generator: torch.Generator,
                 scale_range: Optional[Tuple[float, float]] = None):
    """Random-scale, crop and flip ``dataset[i]`` for i in picks, all draws from ``generator``.

    Returns images (B, 3, crop, crop), labels (B, crop, crop) (255 on padding) and valid
    (B, crop, crop) bool (False on the padding a crop of a small image adds)."""
    images, labels, valid = [], [], []
    for i in picks:
        image, label = dataset[int(i)]
        # A second label channel marks padding: a void pixel of the label stays valid image content.
        stacked = torch.stack([label, torch.zeros_like(label)])
        if scale_range is not None and tuple(scale_range) != (1.0, 1.0):
            image, stacked = random_scale(image, stacked, scale_range, generator)
        image, stacked = random_crop(image, stacked, (crop, crop), generator=generator)
        image, stacked = random_hflip(image, stacked, generator=generator)
        images.append(image)
        labels.append(stacked[0])
        valid.append(stacked[1] == 0)
    return torch.stack(images), torch.stack(labels), torch.stack(valid)


def sample_pixels(features: torch.Tensor, valid: torch.Tensor, count: int, generator: torch.Generator):
    """Up to ``count`` random valid pixels of each image: features (B, D, H, W), valid
    (B, H, W) -> (n, D) rows on the CPU."""
    D = features.shape[1]
    flat = features.detach().flatten(2).transpose(1, 2).cpu()  # (B, N, D)
    ok = valid.flatten(1).cpu()
    keys = torch.rand(ok.shape, generator=generator) + 2.0 * (~ok)  # invalid pixels sort last
    order = keys.argsort(1)[:, :count]
    taken = ok.gather(1, order)
    rows = flat.gather(1, order.unsqueeze(2).expand(-1, -1, D))
    return rows[taken]

