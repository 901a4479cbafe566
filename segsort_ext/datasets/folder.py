"""Any folder of images with a folder of label maps, matched by file stem."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from segsort_ext.datasets.io import (
    IMAGE_EXTENSIONS,
    LABEL_EXTENSIONS,
    LabelTable,
    PathLike,
    as_path,
    check_same_size,
    check_transform,
    read_ids,
    read_image,
    read_label,
)
from segsort_ext.utils.constants import IGNORE_INDEX

__all__ = ["ImageFolderSegmentation"]


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
        image_dir = as_path(image_dir, "image_dir")
        if not image_dir.is_dir():
            raise FileNotFoundError(f"image_dir {image_dir} is not a folder")
        self.images = _files_by_stem(image_dir, IMAGE_EXTENSIONS, "image_dir")
        self.labels: Optional[Dict[str, Path]] = None
        if label_dir is not None:
            label_dir = as_path(label_dir, "label_dir")
            if not label_dir.is_dir():
                raise FileNotFoundError(f"label_dir {label_dir} is not a folder")
            self.labels = _files_by_stem(label_dir, LABEL_EXTENSIONS, "label_dir")
        if list_file is not None:
            if not as_path(list_file, "list_file").is_file():
                raise FileNotFoundError(f"list_file {list_file} does not exist")
            self.ids = read_ids(list_file)
            for image_id in self.ids:
                if image_id not in self.images or (self.labels is not None and image_id not in self.labels):
                    raise FileNotFoundError(f"list_file: {image_id!r} has no image or no label")
        else:
            self.ids = [i for i in self.images if self.labels is None or i in self.labels]
        if not self.ids:
            where = "" if label_dir is None else f" with a label in {label_dir}"
            raise FileNotFoundError(f"no image in {image_dir}{where}")
        self.label_map = None if label_map is None else LabelTable(label_map, "label_map")
        self.transform = check_transform(transform)

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
                label = self.label_map(label)
        check_same_size(image_id, image, label)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, image_id
