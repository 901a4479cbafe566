"""Loads the compiled extension, which registers ``torch.ops.segsort_ext.*``.

Where it cannot be imported (a source checkout never built, a build against another
torch) the public functions fall back to the plain-PyTorch twins in
:mod:`segsort_ext.ops.reference`, 10-100x slower: importing warns once with the reason,
and ``HAS_EXTENSION`` tells which is in use.
"""
from __future__ import annotations

import os
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

#: SEGSORT_SIMD value -> vector width in bits of the CPU kernels it selects.
SIMD_WIDTHS = {"baseline": 128, "avx2": 256, "avx512": 512}


def _simd_bits() -> int | None:
    """The vector width of the CPU kernels: the widest this CPU runs, or the one the
    environment variable SEGSORT_SIMD names (tests run every width on one machine).
    Checked here, before any kernel runs, so that a bad value is a clear error."""
    if not HAS_EXTENSION:
        return None
    widest = int(_C.build_info()["cpu_simd_bits"])
    asked = os.environ.get("SEGSORT_SIMD", "")
    if not asked:
        return widest
    if asked not in SIMD_WIDTHS:
        raise ValueError(f"SEGSORT_SIMD must be one of {sorted(SIMD_WIDTHS)} (or unset), got {asked!r}")
    if SIMD_WIDTHS[asked] > widest:
        raise ValueError(f"SEGSORT_SIMD={asked} asks for {SIMD_WIDTHS[asked]}-bit vectors, but this CPU runs at "
                         f"most {widest}-bit ones")
    return SIMD_WIDTHS[asked]


SIMD_BITS = _simd_bits()


def has_cuda_kernels() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    return HAS_EXTENSION and bool(_C.build_info()["with_cuda"])


def extension_info() -> dict:
    """What the compiled extension was built with (``with_cuda``, ``arch_list``,
    ``torch_version``, ``csrc_digest``, ...), or ``{"import_error": reason}``."""
    if not HAS_EXTENSION:
        return {"import_error": str(IMPORT_ERROR)}
    return {**_C.build_info(), "simd_bits": SIMD_BITS}
