"""The Berkeley Segmentation Dataset 500 (BSDS500): images with every annotator's regions
and boundaries, for the region and boundary benchmarks of :mod:`segsort_ext.metrics`.
Reading the ``groundTruth/*.mat`` files needs scipy."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from segsort_ext.datasets.io import PathLike, as_path, read_image, read_mat

__all__ = ["load_bsds_ground_truth", "BSDS500"]


def load_bsds_ground_truth(path: PathLike) -> List[Dict[str, np.ndarray]]:
    """Read a BSDS500 ``groundTruth/*.mat`` file.

    Returns:
        one dict per human annotator with ``'segmentation'`` (uint16 ``HxW``, region ids 1..N)
        and ``'boundaries'`` (bool ``HxW``) -- the format :mod:`segsort_ext.metrics` expects.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file, when it is not a readable ``.mat`` file or not a BSDS500
            ground truth (no ``groundTruth`` cell array of ``Segmentation`` / ``Boundaries``
            structs holding 2-D maps of one shape, integer segmentations).
    """
    contents = read_mat(path, "load_bsds_ground_truth")
    if "groundTruth" not in contents:
        variables = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(f"{path}: not a BSDS500 ground-truth file (no 'groundTruth' variable; it holds {variables})")
    cells = contents["groundTruth"]
    if cells.dtype != object or cells.size == 0:
        raise ValueError(f"{path}: groundTruth must be a non-empty cell array, got {cells.dtype} {cells.shape}")
    annotations = []
    for k, entry in enumerate(cells.ravel(order="F")):  # MATLAB order
        names = getattr(getattr(entry, "dtype", None), "names", None) or ()
        if "Segmentation" not in names or "Boundaries" not in names or entry.size != 1:
            raise ValueError(f"{path}: groundTruth{{{k + 1}}} is not a struct with Segmentation and Boundaries")
        segmentation = np.asarray(entry["Segmentation"].flat[0])
        boundaries = np.asarray(entry["Boundaries"].flat[0])
        if (segmentation.ndim != 2 or segmentation.dtype.kind not in "iu" or boundaries.shape != segmentation.shape
                or boundaries.dtype.kind not in "biuf"):
            raise ValueError(f"{path}: groundTruth{{{k + 1}}} must hold an integer HxW Segmentation and a "
                             f"Boundaries map of its shape, got {segmentation.dtype} {segmentation.shape} and "
                             f"{boundaries.dtype} {boundaries.shape}")
        annotations.append({"segmentation": segmentation, "boundaries": boundaries.astype(bool)})
    return annotations


class BSDS500(Dataset):
    """Berkeley Segmentation Dataset 500.

    Args:
        root: folder holding ``images/<split>/`` and ``groundTruth/<split>/`` (the ``BSR``
            release's ``BSDS500/data`` folder, or a folder containing ``data/`` with them), or
            ``images/`` and ``groundTruth/`` without the split level (the benchmark sample
            ``bench/``: ``BSR/bench/data``; its machine outputs ``ucm2/``, ``segs/``, ``png/``
            lie beside them).
        split: ``'train'``, ``'val'`` or ``'test'``; ``None`` for a folder without splits. A
            folder without splits -- ``images/*.jpg`` and no ``images/<split>/`` -- is read
            whatever the split, and ``split`` is then ``None``.

    Each item is ``(image, segmentations, boundaries, id)``: ``image`` float32 ``(3, H, W)``
    in [0, 1]; ``segmentations`` a list (one per annotator, 4-8 of them) of int64 ``(H, W)``
    tensors with region ids 1..N; ``boundaries`` a matching list of bool ``(H, W)`` tensors.
    Use ``batch_size=1`` with ``collate_fn=lambda batch: batch[0]`` (the number of annotators
    varies between images). ``ids`` are sorted; :meth:`image_path` and
    :meth:`ground_truth_path` name the files of an item.
    """

    def __init__(self, root: PathLike, split: Optional[str] = "val"):
        root = as_path(root, "root")
        if split is not None and not isinstance(split, str):
            raise TypeError(f"split must be a str ('train', 'val' or 'test') or None, got {type(split).__name__}")
        if not (root / "images").is_dir() and (root / "data" / "images").is_dir():
            root = root / "data"
        if split is not None and not (root / "images" / split).is_dir() and _flat_layout(root):
            split = None  # a folder without splits (bench/)
        self.root = root
        self.split = split
        sub = () if split is None else (split,)
        self.image_folder = root.joinpath("images", *sub)
        self.gt_folder = root.joinpath("groundTruth", *sub)
        if not self.image_folder.is_dir() or not self.gt_folder.is_dir():
            where = "images/ and groundTruth/" if split is None else f"images/{split}/ and groundTruth/{split}/"
            raise FileNotFoundError(f"{root} has no {where} folders (nor images/*.jpg with groundTruth/*.mat "
                                    f"without a split level)")
        # Only images that come with a ground-truth file (the release ships Thumbs.db etc.).
        self.ids = sorted(
            p.stem for p in self.image_folder.glob("*.jpg") if (self.gt_folder / f"{p.stem}.mat").is_file()
        )
        if not self.ids:
            raise FileNotFoundError(f"no image of {self.image_folder} has a ground-truth file in {self.gt_folder}")

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        """The ``.jpg`` file of image ``index``."""
        return self.image_folder / f"{self.ids[index]}.jpg"

    def ground_truth_path(self, index: int) -> Path:
        """The ``groundTruth`` ``.mat`` file of image ``index``."""
        return self.gt_folder / f"{self.ids[index]}.mat"

    def ground_truth(self, index: int) -> List[Dict[str, np.ndarray]]:
        """The raw numpy annotations of image ``index`` (see :func:`load_bsds_ground_truth`)."""
        return load_bsds_ground_truth(self.ground_truth_path(index))

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        image = read_image(self.image_path(index))
        annotations = self.ground_truth(index)
        segmentations = [torch.from_numpy(a["segmentation"].astype(np.int64)) for a in annotations]
        boundaries = [torch.from_numpy(a["boundaries"]) for a in annotations]
        return image, segmentations, boundaries, image_id


def _flat_layout(root: Path) -> bool:
    """``images/*.jpg`` beside ``groundTruth/*.mat``: a folder without splits."""
    return (root / "groundTruth").is_dir() and any((root / "images").glob("*.jpg")) \
        and any((root / "groundTruth").glob("*.mat"))
