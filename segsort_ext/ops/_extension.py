"""Loads the compiled extension, which registers ``torch.ops.segsort_ext.*``.

Where it cannot be imported (a source checkout never built, a build against another
torch) the public functions fall back to the plain-PyTorch twins in
:mod:`segsort_ext.ops.reference`, 10-100x slower: importing warns once with the reason,
and ``HAS_EXTENSION`` tells which is in use.
"""
from __future__ import annotations

import warnings

import torch

try:
    from segsort_ext import _C  # importing registers the operators

    HAS_EXTENSION = True
    IMPORT_ERROR: ImportError | None = None
except ImportError as exc:
    _C = None
    HAS_EXTENSION = False
    IMPORT_ERROR = exc
    warnings.warn(
        f"segsort_ext: the compiled extension segsort_ext._C failed to import ({exc}); falling back to the "
        "plain-PyTorch reference ops, which are 10-100x slower. Build it with "
        "`pip install --no-build-isolation .` against torch 2.11.0 (see README).",
        RuntimeWarning, stacklevel=2)

ops = torch.ops.segsort_ext


def has_cuda_kernels() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    return HAS_EXTENSION and bool(_C.build_info()["with_cuda"])


def extension_info() -> dict:
    """What the compiled extension was built with (``with_cuda``, ``arch_list``,
    ``torch_version``, ``csrc_digest``, ...), or ``{"import_error": reason}``."""
    if not HAS_EXTENSION:
        return {"import_error": str(IMPORT_ERROR)}
    return dict(_C.build_info())
