"""Loads the compiled extension, which registers ``torch.ops.segsort_ext.*``.

Where the extension is absent (a source checkout that was never built) the public
functions fall back to :mod:`segsort_ext.reference`; ``HAS_EXTENSION`` tells which.
"""
from __future__ import annotations

import torch

try:
    from segsort_ext import _C  # noqa: F401  (importing registers the operators)

    HAS_EXTENSION = True
    IMPORT_ERROR: ImportError | None = None
except ImportError as exc:  # pragma: no cover - exercised only without a build
    _C = None
    HAS_EXTENSION = False
    IMPORT_ERROR = exc

ops = torch.ops.segsort_ext


def has_cuda_kernels() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    return HAS_EXTENSION and bool(_C.build_info()["with_cuda"])
