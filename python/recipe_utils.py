"""Shared plumbing of the training recipes in python/ (train_segsort.py,
train_unsupervised_segsort.py, train_picie.py, train_grouping.py): command-line
arguments, dataset choice, the tiny backbone, seeds, run folders with log.jsonl and
metrics.json, and checkpoints that resume exactly.

Run folder (``--out``)::

    config.json      the arguments of the run (and the dataset it resolved to)
    log.jsonl        one JSON object per logged training step: {"step", "loss", "lr", ...}
    checkpoint.pt    model, optimizer, LR schedule, recipe state (prototype memory,
                     k-means centroids ...), step counter, every RNG state
    metrics.json     the final evaluation

``--resume`` reloads checkpoint.pt and continues at the next step; on the CPU the result
is bit-identical to a run that was never interrupted (tests/test_recipes_real.py checks
it). ``--stop-after K`` simulates an interruption: checkpoint after step K and exit.

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

Plugging in a real backbone: add an entry to :data:`BACKBONES`, a function
``(out_channels, coords) -> nn.Module`` mapping images ``(B, 3, H, W)`` in [0, 1] to
features ``(B, out_channels, h, w)``; e.g. a torchvision DeepLabv3 with its classifier's
last 1x1 convolution replaced by one with ``out_channels`` outputs, wrapped so that it
normalises the input with the ImageNet mean/std. Outputs at a lower resolution are
upsampled bilinearly to the input size (:class:`FullResolution`), which is what the
losses, pseudo-labels and evaluation expect. Then pass ``--backbone <name>``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch.utils.data import Dataset, Subset

from segsort_ext import datasets as sdata
from segsort_ext import transforms
from segsort_ext.utils import viz
from segsort_ext.metrics import ConfusionMatrix, semantic_boundary_f

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The shared data folder, relative to the project root (tests skip data variants without it).
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
IGNORE = sdata.IGNORE_INDEX
CHECKPOINT_FORMAT = 1

SEMANTIC_DATASETS = ("auto", "voc", "voc-aug", "sbd", "cityscapes", "cocostuff", "folder", "mosaics")
INSTANCE_DATASETS = ("auto", "voc-object", "sbd-object", "digits")


# ========================================================================================
# Backbones
# ========================================================================================
class TinyNet(nn.Module):
    """Five dilated 3x3 convolutions (receptive field 33 px) with BatchNorm and ReLU, and
    a 1x1 output layer, at input resolution; optional (y, x) coordinate input channels
    (instance grouping needs them to tell two identical objects apart)."""

    def __init__(self, out_channels: int, width: int = 32, coords: bool = False):
        super().__init__()
        self.coords = coords
        layers, channels = [], 3 + 2 * coords
        for dilation in (1, 2, 4, 8, 1):
            layers += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image - 0.5
        if self.coords:
            B, _, H, W = image.shape
            ys = torch.linspace(-1, 1, H, device=image.device).view(1, 1, H, 1).expand(B, 1, H, W)
            xs = torch.linspace(-1, 1, W, device=image.device).view(1, 1, 1, W).expand(B, 1, H, W)
            x = torch.cat([x, ys, xs], 1)
        return self.head(self.features(x))


class FullResolution(nn.Module):
    """Upsamples a backbone's output to the input size when it is smaller."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.body(image)
        if out.shape[-2:] != image.shape[-2:]:
            out = F.interpolate(out, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return out


#: name -> function(out_channels, coords) -> nn.Module (see the module docstring).
BACKBONES: Dict[str, Callable[[int, bool], nn.Module]] = {
    "tiny": lambda out_channels, coords: TinyNet(out_channels, coords=coords),
}


def build_backbone(name: str, out_channels: int, *, coords: bool = False) -> nn.Module:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)} (add one to recipe_utils.BACKBONES)")
    return FullResolution(BACKBONES[name](out_channels, coords))


# ========================================================================================
# Arguments
# ========================================================================================
def add_common_arguments(parser: argparse.ArgumentParser, *, datasets: Sequence[str], default_out: str,
                         default_steps: int, default_batch: int, default_test_images: int,
                         default_lr: float = 3e-3, steps_help: Optional[str] = None,
                         real_scale: float = 0.5) -> None:
    """The arguments every recipe shares (data, run folder, schedule, checkpoints)."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", default=None, help="dataset root folder (default: ../shared/data's VOC sample "
                       "when present, else the embedded scenes)")
    group.add_argument("--dataset", default="auto", choices=list(datasets),
                       help="dataset layout of --data ('auto': detect it)")
    group.add_argument("--num-classes", type=int, default=None, help="classes of a 'folder' dataset")
    group.add_argument("--scale", type=float, default=None,
                       help=f"resize factor applied to every image first (default {real_scale} for real data, "
                            f"1 for the embedded scenes)")
    group.add_argument("--crop", type=int, default=None, help="training crop side in pixels (default: per dataset)")
    group.add_argument("--train-images", type=int, default=0, help="use only the first N training images (0: all)")
    group.add_argument("--test-images", type=int, default=default_test_images,
                       help="held-out images: evaluated images of a val split (0: all), or the last N images "
                            "held out where the data set has no val split")
    group = parser.add_argument_group("run")
    group.add_argument("--out", default=default_out, help="run folder (log.jsonl, checkpoint.pt, metrics.json)")
    group.add_argument("--steps", type=int, default=None,
                       help=steps_help or f"training steps (default {default_steps})")
    group.add_argument("--epochs", type=float, default=None, help="training length in passes over the training "
                       "images instead of --steps")
    group.add_argument("--batch-size", type=int, default=default_batch)
    group.add_argument("--lr", type=float, default=default_lr, help="Adam learning rate (poly decay, power 0.9)")
    group.add_argument("--backbone", default="tiny", help=f"network ({', '.join(sorted(BACKBONES))})")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1' ...")
    group.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    group.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (0: at the end "
                       "only)")
    group.add_argument("--log-every", type=int, default=0, help="steps between log lines (0: about 20 per run)")
    group.add_argument("--stop-after", type=int, default=None, help="checkpoint after this step and exit without "
                       "evaluating (simulates an interruption; continue with --resume)")
    group.add_argument("--skip-eval", action="store_true", help="train (and checkpoint) only")
    parser.set_defaults(default_steps=default_steps)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    positive: Sequence[str] = (), nonnegative: Sequence[str] = ()) -> None:
    """parser.error (exit status 2, a message naming the argument) on bad values."""
    for name in ("batch_size", *positive):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    for name in ("train_images", "test_images", "checkpoint_every", "log_every", *nonnegative):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    for name in ("steps", "epochs", "crop", "scale", "lr", "num_classes"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if args.steps is not None and args.epochs is not None:
        parser.error("give --steps or --epochs, not both")
    aug_scale = getattr(args, "aug_scale", None)
    if aug_scale is not None and not 0 < aug_scale[0] <= aug_scale[1]:
        parser.error(f"--aug-scale must satisfy 0 < MIN <= MAX, got {aug_scale}")
    if args.stop_after is not None and args.stop_after < 1:
        parser.error(f"--stop-after must be >= 1, got {args.stop_after}")
    if args.backbone not in BACKBONES:
        parser.error(f"--backbone must be one of {sorted(BACKBONES)}, got {args.backbone!r}")
    try:
        args.device = str(resolve_device(args.device))
    except ValueError as error:
        parser.error(str(error))


def total_steps(args, train_size: int) -> int:
    if args.steps is not None:
        return args.steps
    if args.epochs is not None:
        return max(1, math.ceil(args.epochs * train_size / args.batch_size))
    return args.default_steps


def parse_grid(text: str) -> Tuple[int, int]:
    """'6' -> (6, 6); '4x6' -> (4, 6): an argparse type."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a grid is N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"a grid is N or HxW with positive sides, got {text!r}")
    return parts[0], parts[1]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# ========================================================================================
# Datasets
# ========================================================================================
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
        image, label, name = self.dataset[index]
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


def open_data(args, task: str, *, real_scale: float = 0.5) -> SegmentationData:
    """:func:`load_data` for a script: a bad argument exits with its message (status 2),
    and the resolved dataset is recorded in ``args`` (part of a run's identity for --resume)."""
    try:
        data = load_data(args, task, real_scale=real_scale)
    except (ValueError, FileNotFoundError) as error:
        fail(str(error))
    args.resolved_dataset, args.data_root = data.kind, data.root
    return data


def start_run(run: "Run") -> int:
    """``run.start()`` for a script: a refused --resume exits with its message (status 2)."""
    try:
        return run.start()
    except (ValueError, FileNotFoundError) as error:
        fail(str(error))


def add_segsort_arguments(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """The SegSortLoss options shared by the supervised and unsupervised recipes."""
    group = parser.add_argument_group(title)
    group.add_argument("--dim", type=int, default=32, help="embedding dimension")
    group.add_argument("--concentration", type=float, default=10.0, help="vMF kappa")
    group.add_argument("--grid", type=parse_grid, default=(4, 4), help="k-means grid of a training crop")
    group.add_argument("--kmeans-iters", type=int, default=10)
    group.add_argument("--memory-batches", type=int, default=2, help="batches in the prototype memory (0: none)")
    group.add_argument("--aug-scale", type=float, nargs=2, default=(0.75, 1.25), metavar=("MIN", "MAX"),
                       help="random rescaling of training images before cropping")
    return group


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
        from segsort_ext.datasets.scenes import TextureMosaics

        train_n = args.train_images or 120
        test_n = args.test_images or 24
        train = TextureMosaics("train", train_n, 64, seed=0)
        test = TextureMosaics("test", test_n, 64, seed=0)
        train_set, test_set = _TensorPairs(train.images, train.labels, "train"), \
            _TensorPairs(test.images, test.labels, "test")
        num_classes, names, default_crop, note = TextureMosaics.num_classes, TextureMosaics.class_names, 48, \
            "test mosaics cut from unseen parts of the textures"
    elif kind == "digits":
        from segsort_ext.datasets.scenes import DigitScenes

        train_n = args.train_images or 200
        test_n = args.test_images or 24
        train = DigitScenes("train", train_n, 48, seed=0)
        test = DigitScenes("test", test_n, 48, seed=0)
        train_set, test_set = _TensorPairs(train.images, train.instances, "train"), \
            _TensorPairs(test.images, test.instances, "test")
        default_crop, note = 48, "test scenes from unseen digit scans"
    elif kind in ("voc", "voc-object"):
        if kind == "voc-object" and not (root / sdata.VOCSegmentation.object_dir).is_dir():
            raise FileNotFoundError(f"--dataset voc-object: {root} has no SegmentationObject/ folder (the VOC sample "
                                    f"in ../shared/data has none); use the full VOC 2012 or --dataset digits")
        lists = root / "ImageSets" / "Segmentation"
        if (lists / "train.txt").is_file() and (lists / "val.txt").is_file():
            train_set = sdata.VOCSegmentation(root, "train", target=target)
            test_set = _first(sdata.VOCSegmentation(root, "val", target=target), args.test_images)
            note = "VOC train / val lists"
        else:
            train_set, test_set, note = _hold_out(sdata.VOCSegmentation(root, target=target), args.test_images)
        num_classes, names = (21, sdata.VOC_CLASSES) if task == "semantic" else (0, ())
    elif kind == "voc-aug":
        train_set = sdata.VOCAugSegmentation(root, "train_aug")
        test_set = _first(sdata.VOCAugSegmentation(root, "val"), args.test_images)
        num_classes, names, note = 21, sdata.VOC_CLASSES, "train_aug / val"
    elif kind in ("sbd", "sbd-object"):
        train_set = sdata.SBDSegmentation(root, "train", target=target)
        test_set = _first(sdata.SBDSegmentation(root, "val", target=target), args.test_images)
        num_classes, names = (21, sdata.VOC_CLASSES) if task == "semantic" else (0, ())
        note = "SBD train / val"
    elif kind == "cityscapes":
        train_set = sdata.CityscapesSegmentation(root, "train")
        test_set = _first(sdata.CityscapesSegmentation(root, "val"), args.test_images)
        num_classes, names, note = 19, sdata.CITYSCAPES_CLASSES, "Cityscapes train / val"
    elif kind == "cocostuff":
        train_set = sdata.COCOStuffSegmentation(root, "train")
        test_set = _first(sdata.COCOStuffSegmentation(root, "val"), args.test_images)
        num_classes, names, note = 27, sdata.COCOSTUFF27_CLASSES, "COCO-Stuff train2017 / val2017"
    elif kind == "folder":
        if not args.num_classes:
            raise ValueError("--dataset folder needs --num-classes")
        labels = root / "labels" if (root / "labels").is_dir() else None
        full = sdata.ImageFolderSegmentation(root / "images", labels, _file_or_none(root / "train.txt"))
        if (root / "val.txt").is_file():
            train_set = full
            test_set = _first(sdata.ImageFolderSegmentation(root / "images", labels, root / "val.txt"),
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
            image, stacked = transforms.random_scale(image, stacked, scale_range, generator)
        image, stacked = transforms.random_crop(image, stacked, (crop, crop), generator=generator)
        image, stacked = transforms.random_hflip(image, stacked, generator=generator)
        images.append(image)
        labels.append(stacked[0])
        valid.append(stacked[1] == 0)
    return torch.stack(images), torch.stack(labels), torch.stack(valid)


# ========================================================================================
# Run folder, logging, checkpoints
# ========================================================================================
class GeneratorState:
    """state_dict / load_state_dict for a torch.Generator."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self):
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["state"])


def _rng_state() -> dict:
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value):
    """JSON-friendly: NaN -> None, numpy/torch scalars and arrays -> Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


class Run:
    """One training run in a folder: tracks the objects whose state makes up a
    checkpoint, logs steps, saves/loads checkpoints and writes metrics.json.

    Args:
        args: the parsed arguments (saved in config.json and the checkpoint).
        recipe: the script's name.
        out: the run folder.
        fixed: argument names that must not change on --resume (the rest, e.g.
            --steps, --device or evaluation settings, may).
    """

    def __init__(self, args, recipe: str, out: Path, fixed: Sequence[str]):
        self.args, self.recipe, self.out = args, recipe, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(args.device)
        self.fixed = tuple(fixed)
        self.log_path = self.out / "log.jsonl"
        self.checkpoint_path = self.out / "checkpoint.pt"
        self.tracked: Dict[str, object] = {}
        self.start_time = time.perf_counter()

    def track(self, **objects) -> None:
        """Objects with state_dict() / load_state_dict(state) saved in every checkpoint."""
        self.tracked.update(objects)

    def config(self) -> dict:
        return _plain({k: v for k, v in vars(self.args).items()})

    def start(self) -> int:
        """Loads the checkpoint with --resume (returns its step), else starts afresh (0)."""
        # config.json holds the latest invocation (a resumed run may change e.g. --steps).
        (self.out / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        if not self.args.resume:
            if self.checkpoint_path.exists():
                print(f"note: {self.checkpoint_path} exists and is overwritten (pass --resume to continue it)")
            self.log_path.write_text("")
            return 0
        if not self.checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint_path}")
        checkpoint = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        if checkpoint.get("format") != CHECKPOINT_FORMAT or checkpoint.get("recipe") != self.recipe:
            raise ValueError(f"--resume: {self.checkpoint_path} is not a {self.recipe} checkpoint "
                             f"(recipe {checkpoint.get('recipe')!r}, format {checkpoint.get('format')!r})")
        saved, now = checkpoint["args"], self.config()
        changed = [f"--{k.replace('_', '-')}: {saved.get(k)!r} -> {now.get(k)!r}" for k in self.fixed
                   if saved.get(k) != now.get(k)]
        if changed:
            raise ValueError("--resume: these arguments differ from the checkpoint's run: " + "; ".join(changed))
        missing = set(self.tracked) ^ set(checkpoint["state"])
        if missing:
            raise ValueError(f"--resume: checkpoint state does not match this recipe ({sorted(missing)})")
        for name, obj in self.tracked.items():
            obj.load_state_dict(checkpoint["state"][name])
        # CPU-side RNGs last, after everything that might draw while loading.
        _set_rng_state(checkpoint["rng"])
        step = int(checkpoint["step"])
        # Keep the log of the steps the checkpoint covers: the resumed run appends the rest.
        kept = []
        if self.log_path.is_file():
            for line in self.log_path.read_text().splitlines():
                if line.strip() and json.loads(line).get("step", 0) <= step:
                    kept.append(line)
        self.log_path.write_text("".join(line + "\n" for line in kept))
        print(f"resumed {self.checkpoint_path} at step {step}")
        return step

    def save(self, step: int) -> None:
        checkpoint = {"format": CHECKPOINT_FORMAT, "recipe": self.recipe, "step": step, "args": self.config(),
                      "state": {name: obj.state_dict() for name, obj in self.tracked.items()}, "rng": _rng_state()}
        temporary = self.checkpoint_path.with_suffix(".tmp")
        torch.save(checkpoint, temporary)
        os.replace(temporary, self.checkpoint_path)  # never a half-written checkpoint

    def log(self, step: int, total: int, values: dict) -> None:
        record = {"step": step, **_plain(values), "seconds": round(time.perf_counter() - self.start_time, 3)}
        with self.log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        print(f"step {step:5d}/{total}  {shown}  {record['seconds']:.1f} s", flush=True)

    def train(self, step_fn: Callable[[int], dict], start: int, total: int) -> bool:
        """Runs step_fn(step) for step = start+1 .. total with logging and checkpoints.
        Returns False when --stop-after ended it early."""
        every = self.args.log_every or max(1, total // 20)
        for step in range(start + 1, total + 1):
            values = step_fn(step)
            if step == 1 or step % every == 0 or step == total:
                self.log(step, total, values)
            # == (not >=): resuming with the same command line goes on past the stop.
            stop = step == self.args.stop_after and step < total
            if stop or step == total or (self.args.checkpoint_every and step % self.args.checkpoint_every == 0):
                self.save(step)
            if stop:
                print(f"stopped after step {step} (--stop-after); continue with --resume")
                return False
        if start >= total:
            print(f"the checkpoint is at step {start} >= {total} steps: nothing to train")
        return True

    def last_logged(self) -> dict:
        """The last record of log.jsonl ({} when empty)."""
        lines = [line for line in self.log_path.read_text().splitlines() if line.strip()] \
            if self.log_path.is_file() else []
        return json.loads(lines[-1]) if lines else {}

    def finish(self, metrics: dict) -> dict:
        metrics = {"recipe": self.recipe, **metrics, "device": str(self.device), "torch": torch.__version__,
                   "seconds": round(time.perf_counter() - self.start_time, 2), "args": self.config()}
        metrics = _plain(metrics)
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"wrote {self.out / 'metrics.json'}")
        return metrics


def poly_schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """DeepLab / SegSort's poly learning-rate decay (1 - t / T) ** 0.9."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: max(0.0, 1.0 - t / max(steps, 1)) ** 0.9)


# ========================================================================================
# Evaluation helpers and pictures
# ========================================================================================
@torch.no_grad()
def embed(net: nn.Module, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(1, D, H, W) unit embeddings of one (3, H, W) image, on the CPU."""
    return F.normalize(net(image[None].to(device)), dim=1).cpu()


def semantic_scores(preds: List[torch.Tensor], targets: List[torch.Tensor], num_classes: int,
                    class_names: Sequence[str], *, boundary: bool = True) -> dict:
    """mIoU, pixel accuracy, per-class IoU and (optionally) semantic boundary F."""
    confusion = ConfusionMatrix(num_classes)
    for p, t in zip(preds, targets):
        confusion.update(p.numpy(), t.numpy())
    scores = confusion.compute()
    out = {"mean_iou": scores["mean_iou"], "pixel_accuracy": scores["pixel_accuracy"],
           "mean_accuracy": scores["mean_accuracy"],
           "class_iou": {name: float(v) for name, v in zip(class_names, scores["iou"])}}
    if boundary:
        b = semantic_boundary_f([p.numpy() for p in preds], [t.numpy() for t in targets], num_classes)
        out.update(boundary_f=b["f"], boundary_precision=b["precision"], boundary_recall=b["recall"])
    return out


@torch.no_grad()
def knn_scores(net: nn.Module, data: SegmentationData, device: torch.device, *, dim: int, knn: int,
               bank_grid=None, test_grid=None, bank_images: int = 0):
    """SegSort's inference and scores: the segments of the first ``bank_images`` (0: all)
    training images, prototypes over their majority label, in a SegmentIndex; every
    held-out image labelled by kNN votes of its segments (flip-averaged).

    Returns (scores or None without labelled pixels, bank size, predictions)."""
    import segsort_ext

    net.eval()
    embedded = data.kind == "mosaics"
    bank_grid = tuple(bank_grid or ((4, 4) if embedded else (6, 6)))
    test_grid = tuple(test_grid or ((4, 4) if embedded else (8, 8)))
    index = segsort_ext.SegmentIndex(dim)
    for i in range(min(bank_images or len(data.train), len(data.train))):
        image, label = data.train[i]
        segsort_ext.add_training_segments(index, embed(net, image, device), label[None], num_classes=data.num_classes,
                                          image_ids=torch.tensor([i]), grid=bank_grid)
    if len(index) == 0:
        return None, 0, []
    predictor = segsort_ext.SegSortPredictor(index, data.num_classes, k=min(knn, len(index)), grid=test_grid)
    predictions, targets = [], []
    for i in range(len(data.test)):
        image, label = data.test[i]
        views = [(embed(net, image, device), False), (embed(net, image.flip(-1), device), True)]
        predictions.append(predictor.predict(views)[0])
        targets.append(label)
    if all(bool((t == IGNORE).all()) for t in targets):
        return None, len(index), predictions
    return semantic_scores(predictions, targets, data.num_classes, data.class_names), len(index), predictions


def hungarian_scores(cluster_maps: List[torch.Tensor], targets: List[torch.Tensor], num_clusters: int,
                     num_classes: int, class_names: Sequence[str]):
    """PiCIE's unsupervised evaluation: clusters matched one-to-one to classes over all
    pixels of the data set (Hungarian), then accuracy and mIoU of the relabelled maps.
    Returns (scores or None without labelled pixels, relabelled maps)."""
    from segsort_ext.metrics import hungarian_match

    if all(bool((t == IGNORE).all()) for t in targets):
        return None, cluster_maps
    pred = torch.cat([p.reshape(-1) for p in cluster_maps]).numpy()
    target = torch.cat([t.reshape(-1) for t in targets]).numpy()
    match = hungarian_match(pred, target, num_clusters, num_classes)
    mapping = torch.from_numpy(match["mapping"])
    # Unmatched clusters (more clusters than classes) show as void in the pictures.
    relabelled = [torch.where(mapping[p] >= 0, mapping[p], IGNORE) for p in cluster_maps]
    scores = {"pixel_accuracy": match["pixel_accuracy"], "mean_iou": match["mean_iou"],
              "class_iou": {name: float(v) for name, v in zip(class_names, match["iou"])},
              "mapping": match["mapping"]}
    return scores, relabelled


def sample_pixels(features: torch.Tensor, valid: torch.Tensor, count: int, generator: torch.Generator):
    """Up to ``count`` random valid pixels of each image: features (B, D, H, W), valid
    (B, H, W) -> (n, D) rows on the CPU."""
    B, D = features.shape[:2]
    flat = features.detach().flatten(2).transpose(1, 2).cpu()  # (B, N, D)
    ok = valid.flatten(1).cpu()
    keys = torch.rand(ok.shape, generator=generator) + 2.0 * (~ok)  # invalid pixels sort last
    order = keys.argsort(1)[:, :count]
    taken = ok.gather(1, order)
    rows = flat.gather(1, order.unsqueeze(2).expand(-1, -1, D))
    return rows[taken]


def class_colours(labels: torch.Tensor, num_classes: int, kind: str) -> np.ndarray:
    if kind.startswith("voc") or kind.startswith("sbd"):
        return viz.voc_palette()[labels.clamp(0, 255).numpy()]
    return viz.colorize(labels, num_classes)


def save_panels(path: Path, rows: List[List[np.ndarray]], titles: Sequence[str] = ()) -> None:
    """Rows of (H, W, 3) uint8 panels side by side, rows stacked, white gaps; ``titles``
    name the columns in a header line above the first row."""
    if not rows:
        return
    # Small scenes (e.g. the 64 px mosaics) are enlarged, pixels kept sharp, so the panels
    # are big enough to see and to carry their titles.
    factor = max(1, -(-128 // min(p.shape[0] for row in rows for p in row)))
    rows = [[p.repeat(factor, 0).repeat(factor, 1) for p in row] for row in rows]
    lines = [np.concatenate([np.pad(p, ((0, 0), (0, 4), (0, 0)), constant_values=255) for p in row], 1)
             for row in rows]
    width = max(line.shape[1] for line in lines)
    canvas = np.concatenate([np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)), constant_values=255)
                             for line in lines])
    picture = Image.fromarray(canvas)
    if titles:
        header = Image.new("RGB", (canvas.shape[1], 22), "white")
        draw = ImageDraw.Draw(header)
        left = 0
        for title, panel in zip(titles, rows[0]):
            draw.text((left + 4, 5), title, fill="black")
            left += panel.shape[1] + 4
        picture = Image.fromarray(np.concatenate([np.asarray(header), canvas]))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def fail(message: str) -> None:
    """Exit with a one-line error (status 2, like argparse)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
