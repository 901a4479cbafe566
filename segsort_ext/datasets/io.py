"""Reading what the loaders share: images, label maps, ``.mat`` files, id lists and
label-value tables.

:func:`read_image` and :func:`read_label` are exported; the rest is the loaders' common
plumbing (id lists, value -> train id tables, argument checks). A file that cannot be read
(corrupt, truncated, another format, an empty id list) raises ValueError naming the file; a
missing one FileNotFoundError. Pillow and scipy are imported on first read (the ``data`` extra).
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from segsort_ext.utils.constants import IGNORE_INDEX
from segsort_ext.utils.optional import require

__all__ = ["read_image", "read_label"]

PathLike = Union[str, os.PathLike]
#: Which images a loader uses: a split name, a list-file path or a sequence of ids.
IdSource = Optional[Union[str, os.PathLike, Sequence[str]]]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
LABEL_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".pgm")


def as_path(value, name: str) -> Path:
    """``value`` (a str or os.PathLike) as a Path; anything else is a TypeError naming ``name``."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return Path(value)


def _read_file(path, what: str, read: Callable):
    """``read(path)``, with the reader's errors on a corrupt, truncated or foreign file turned
    into a ValueError that names the file. Errors of the file system itself (a missing file,
    no permission: OSErrors with an errno) already name it and pass unchanged."""
    try:
        return read(path)
    except Exception as error:  # the readers raise anything on a corrupt file: OSError, SyntaxError, IndexError...
        if isinstance(error, OSError) and error.errno is not None:
            raise
        raise ValueError(f"{path}: cannot read it as {what} ({type(error).__name__}: {error})") from error


def _open_image(path, what: str, decode: Callable):
    """``decode(PIL image)`` of the image file at ``path`` (a path or a binary file object)."""
    if not (isinstance(path, (str, os.PathLike)) or hasattr(path, "read")):
        raise TypeError(f"path must be a path (str or os.PathLike) or a binary file, got {type(path).__name__}")
    Image = require("PIL.Image", what)

    def read(source):
        with Image.open(source) as img:
            return decode(img)

    return _read_file(path, "an image", read)


def read_image(path: PathLike) -> torch.Tensor:
    """Read an image file as a float tensor ``(3, H, W)`` in [0, 1] (RGB).

    8-bit images are divided by 255; 16-bit greyscale images (Pillow modes ``I;16*``, and
    ``I`` with values in [0, 65535], as older Pillows open a 16-bit PNG) by 65535, so their
    full range maps to [0, 1] instead of being clipped at 255.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable image (corrupt, truncated, another format),
            or a greyscale image whose values are not 8- or 16-bit (32-bit integer values
            outside [0, 65535], floating-point mode ``F``), naming the file.
    """
    array, scale = _open_image(path, "read_image", _decode_rgb)
    if scale is None:
        raise ValueError(f"{path}: read_image reads 8- and 16-bit images; this one is a {array} image")
    tensor = torch.from_numpy(np.array(array, copy=True))
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(2).expand(-1, -1, 3)
    return tensor.permute(2, 0, 1).float().div_(scale).contiguous()


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def _decode_rgb(img):
    """(array, scale): an HxWx3 uint8 array and 255, an HxW 16-bit array (as int32) and
    65535, or (a description, None) for an image that is neither."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "I":
        values = np.asarray(img).astype(np.int32)
        if values.size and (values.min() < 0 or values.max() > 65535):
            return f"32-bit integer (mode {img.mode!r}, values {values.min()}..{values.max()})", None
        return values, 65535.0
    if img.mode == "F":
        return "32-bit floating-point (mode 'F')", None
    return np.asarray(img.convert("RGB"), dtype=np.uint8), 255.0


_LABEL_MODES = ("P", "L", "I", "I;16", "I;16B", "I;16L")


def read_label(path: PathLike) -> torch.Tensor:
    """Read a label image (palette, 8/16/32-bit grayscale) as an int64 tensor ``(H, W)``.

    The stored values *are* the ids (a palette PNG's indices, not its colours), so the image
    is never converted to RGB or grayscale; RGB label images raise ValueError, as do files
    that are not readable images (naming the file).
    """
    mode, array = _open_image(path, "read_label",
                              lambda img: (img.mode, np.array(img) if img.mode in _LABEL_MODES else None))
    if array is None:
        raise ValueError(f"{path}: expected a palette/index label image, got mode {mode!r}")
    return torch.from_numpy(array.astype(np.int64))


def read_mat(path: PathLike, what: str) -> dict:
    """The variables of a MATLAB ``.mat`` file (scipy, for ``what``); a file scipy cannot read
    (corrupt, truncated, v7.3/HDF5, not a .mat file) raises ValueError naming it."""
    loadmat = require("scipy.io", what).loadmat
    return _read_file(os.fspath(as_path(path, "path")), "a MATLAB file", loadmat)


class LabelTable:
    """A raw label value -> id table (dict, or a 1-D integer sequence indexed by the value);
    values it does not cover map to IGNORE_INDEX. Dense when the largest key is small (fast
    indexing), sorted keys otherwise: memory follows the table's size, not its key values."""

    def __init__(self, mapping: Union[Mapping[int, int], Sequence[int], np.ndarray], name: str):
        if isinstance(mapping, Mapping):
            for k, v in mapping.items():
                if not (_is_int(k) and _is_int(v)):
                    raise TypeError(f"{name} must map int label values to int ids, got {k!r}: {v!r} "
                                    f"(keys read from JSON are strings: convert them with int())")
                if k < 0 or not -(2**63) <= v < 2**63:
                    raise ValueError(f"{name} keys must be >= 0 and values int64 ids, got {k!r}: {v!r}")
            keys = np.array(sorted(int(k) for k in mapping), dtype=np.int64)
            ids = np.array([int(mapping[k]) for k in sorted(mapping, key=int)], dtype=np.int64)
        else:
            table = np.asarray(mapping)
            if table.ndim != 1 or not np.issubdtype(table.dtype, np.integer):
                raise TypeError(f"{name} must be a dict or a 1-D integer sequence, got {table.dtype} {table.shape}")
            if table.dtype == np.uint64 and table.size and table.max() >= 2**63:
                raise ValueError(f"{name} values must be int64 ids, got {table.max()}")
            keys, ids = np.arange(table.size), table.astype(np.int64)
        self.dense = keys.size == 0 or keys[-1] < 2**16 + 4 * keys.size
        if self.dense:
            self.table = np.full(keys[-1] + 1 if keys.size else 0, IGNORE_INDEX, dtype=np.int64)
            self.table[keys] = ids
        else:
            self.keys, self.ids = keys, ids

    def __call__(self, label: torch.Tensor) -> torch.Tensor:
        values = label.numpy()
        if self.dense:
            inside = (values >= 0) & (values < self.table.size)
            out = np.full(values.shape, IGNORE_INDEX, dtype=np.int64)
            out[inside] = self.table[values[inside]]
            return torch.from_numpy(out)
        position = np.minimum(np.searchsorted(self.keys, values), self.keys.size - 1)
        return torch.from_numpy(np.where(self.keys[position] == values, self.ids[position], IGNORE_INDEX))


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def read_ids(path: PathLike) -> List[str]:
    """Ids from a list file: one per line, first column.  A DeepLab-style line
    ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` gives ``<id>``. A file that is not
    text, or holds no id, raises ValueError naming it."""

    def read(source) -> List[str]:
        with open(source) as fh:
            return fh.read().splitlines()

    ids = []
    for line in _read_file(as_path(path, "path"), "a text list of ids", read):
        if not line.strip():
            continue
        token = line.split()[0]
        if "/" in token or token.lower().endswith(IMAGE_EXTENSIONS):
            token = Path(token).stem
        ids.append(token)
    if not ids:
        raise ValueError(f"{path}: the id list is empty")
    return ids


def resolve_ids(source: IdSource, candidates: Sequence[Path], name: str) -> List[str]:
    """``source`` is a list-file path, a name looked up as ``candidates`` (tried in order) or a
    sequence of ids."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file():
            return read_ids(path)
        for candidate in candidates:
            if candidate.is_file():
                return read_ids(candidate)
        tried = ", ".join(str(c) for c in [path, *candidates])
        raise FileNotFoundError(f"no id list for {name}={source!r} (tried {tried})")
    if isinstance(source, Sequence):
        if not source:
            raise ValueError(f"{name} is an empty sequence of ids")
        return [str(i) for i in source]
    raise TypeError(f"{name} must be a split name, a list-file path or a sequence of ids, "
                    f"got {type(source).__name__}")


def check_transform(transform: Optional[Callable]) -> Optional[Callable]:
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be a callable (image, label) -> (image, label) or None, "
                        f"got {type(transform).__name__}")
    return transform


def check_choice(value, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_same_size(image_id: str, image: torch.Tensor, label: torch.Tensor) -> None:
    if tuple(image.shape[1:]) != tuple(label.shape[-2:]):
        raise ValueError(f"{image_id}: image {tuple(image.shape[1:])} and label {tuple(label.shape[-2:])} differ")
