"""Input conversion and checks shared by the metrics: every metric takes numpy arrays or torch
tensors, computes in numpy, and refuses what it cannot score with an error naming the argument.

The rules, one place for all metrics:

* class, region and instance maps must have an integer (or bool) dtype; float maps are refused
  with a TypeError rather than truncated (convert deliberately: ``.long()``, ``.astype(int)``);
* binary maps (boundaries, void masks) are "nonzero = on" of any real dtype; NaN is refused;
* label values are arbitrary integers: tables are sized by the number of distinct labels (after
  relabelling), never by the label values, so no metric allocates more than a small multiple
  of its inputs; class counts, which size dense ``(C, C)`` tables, are at most 2**14.
"""
from __future__ import annotations

from typing import Callable, List, Mapping

import numpy as np

__all__ = ["to_numpy"]

# Largest num_classes / num_clusters: a (C, C) int64 table of 2 GiB.
_MAX_CLASSES = 2**14


def to_numpy(x) -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors are detached and moved to the CPU;
    bfloat16, which numpy lacks, becomes float32)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _numbers(x, name: str) -> np.ndarray:
    """``x`` as a numpy array of real numbers (bool, integer or float)."""
    if getattr(x, "is_meta", False):
        raise ValueError(f"{name} is on the meta device: it holds no data")
    try:
        arr = to_numpy(x)
    except (TypeError, ValueError, RuntimeError) as error:  # ragged lists, unsupported tensors
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__} ({error})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _label_map(x, name: str) -> np.ndarray:
    """An integer (or bool) map as int64; float maps are refused, not truncated."""
    arr = _numbers(x, name)
    if arr.dtype.kind == "f":
        raise TypeError(f"{name} must have an integer dtype (class, region or instance ids), got {arr.dtype}; "
                        f"convert integral floats explicitly (.long() / .astype(np.int64))")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds ids beyond the int64 range (max {arr.max()})")
    return arr.astype(np.int64, copy=False)


def _binary_map(x, name: str) -> np.ndarray:
    """A "nonzero = on" map of any real dtype as bool; NaN is on nor off, so it is refused."""
    arr = _numbers(x, name)
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN (a binary map: nonzero = on)")
    return arr.astype(bool)


def _class_count(value, name: str) -> int:
    """A number of classes (or clusters) in ``[1, 2**14]``; numpy integers are accepted (it
    often comes from ``labels.max() + 1``)."""
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 1 <= value <= _MAX_CLASSES:
        raise ValueError(f"{name} must be in [1, {_MAX_CLASSES}] (it sizes a dense table), got {value}")
    return int(value)


def _optional_label(value, name: str):
    """``ignore_index`` / ``background``: an int label value or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    return int(value)


def _sequence(value, name: str):
    """``value`` if it is a sized sequence (one entry per image), not a string."""
    if not hasattr(value, "__len__") or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a sequence (one entry per image), got {type(value).__name__}")
    return value


def _ground_truth_maps(ground_truth, key: str, name: str, convert: Callable[[object, str], np.ndarray]
                       ) -> List[np.ndarray]:
    """The human annotations of one image as a non-empty list of 2-D maps: ``ground_truth`` is
    one map, a sequence of maps, or (a sequence of) BSDS ground-truth dicts, whose ``key``
    (``'boundaries'`` or ``'segmentation'``) is taken; ``convert`` is :func:`_label_map` or
    :func:`_binary_map`, ``name`` the argument's name for errors."""
    if isinstance(ground_truth, Mapping) or getattr(ground_truth, "ndim", None) == 2:
        ground_truth = [ground_truth]
    if isinstance(ground_truth, (str, bytes)) or not hasattr(ground_truth, "__iter__"):
        raise TypeError(f"{name} must be a map, a sequence of maps or ground-truth dicts, "
                        f"got {type(ground_truth).__name__}")
    maps = []
    for k, gt in enumerate(ground_truth):
        if isinstance(gt, Mapping):
            if key not in gt:
                raise ValueError(f"{name}[{k}] has no {key!r} entry (keys {sorted(map(str, gt))})")
            gt = gt[key]
        arr = convert(gt, f"{name}[{k}]")
        if arr.ndim != 2:
            raise ValueError(f"{name}[{k}] must be an HxW map, got shape {arr.shape}")
        maps.append(arr)
    if not maps:
        raise ValueError(f"{name} is empty: at least one human annotation is needed")
    return maps
