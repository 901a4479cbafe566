"""Loads the compiled extension, which defines and implements ``torch.ops.segsort_ext.*``.

Where it cannot be imported (a source checkout never built, a build against another
torch), the same operators are defined here from :mod:`segsort_ext.ops.schemas`, and
each op module registers its plain-PyTorch kernel (its argument checks, then the twin in
:mod:`segsort_ext.ops.reference`, 10-100x slower) with :func:`python_kernel`; importing
warns once with the reason. Either way the public functions call one
``torch.ops.segsort_ext.<op>``, and the fake and autograd registrations of the op modules
apply to both. ``HAS_EXTENSION`` tells which kernels run; :func:`not_supported_reasons`
says why the compiled ones do not run on a device.
"""
from __future__ import annotations

import os
import warnings

import torch

from segsort_ext.ops.schemas import CPU_ONLY, NAMESPACE, SCHEMAS

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


def _is_defined(name: str) -> bool:
    try:
        getattr(ops, name)
    except AttributeError:
        return False
    return True


# The Python registrations of this package: the schemas where _C did not define them (all
# of them, unless _C failed after its TORCH_LIBRARY block ran), and the plain-PyTorch kernels.
_LIBRARY = torch.library.Library(NAMESPACE, "FRAGMENT")
if not HAS_EXTENSION:
    for name, schema in SCHEMAS.items():
        if not _is_defined(name):
            _LIBRARY.define(name + schema)
    del name, schema


def python_kernel(name: str):
    """Decorator: registers the function as the plain-PyTorch kernel of
    ``segsort_ext::<name>`` (CompositeExplicitAutograd): without the extension for every
    device; with it only for the CPU-only ops, whose compiled CPU kernel takes precedence,
    so that other devices run this one. (A build without CUDA kernels still refuses CUDA
    tensors of the other ops: :func:`not_supported_reasons` says why.) Meta tensors reach
    the op's fake kernel."""
    if name not in SCHEMAS:
        raise ValueError(f"{NAMESPACE}::{name} is not in the schema list (segsort_ext/ops/schemas.py)")

    def register(func):
        if not HAS_EXTENSION or name in CPU_ONLY:
            _LIBRARY.impl(name, func, "CompositeExplicitAutograd")
        return func

    return register


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


def not_supported_reasons(device_type) -> list[str]:
    """Why the compiled kernels of ``torch.ops.segsort_ext`` do not run on tensors of
    ``device_type`` (``"cpu"``, ``"cuda"``, ...; a ``torch.device`` is accepted) in this
    process, one sentence each: an empty list when they do. Without the extension every
    op runs its plain-PyTorch kernel instead (10-100x slower); ``nearest_centroid`` and
    ``group_max_scores`` have compiled kernels on the CPU only, and run their
    plain-PyTorch kernel on every other device whatever this says."""
    if isinstance(device_type, torch.device):
        device_type = device_type.type
    if not isinstance(device_type, str):
        raise TypeError(f"device_type must be a str or a torch.device, got {type(device_type).__name__}")
    try:
        device_type = torch.device(device_type).type
    except RuntimeError as error:
        raise ValueError(f"device_type = {device_type!r} is not a torch device type ({error})") from None
    reasons = []
    if device_type not in ("cpu", "cuda"):
        reasons.append(f"segsort_ext compiles kernels for cpu and cuda only, not {device_type}")
    if not HAS_EXTENSION:
        reasons.append(f"the compiled extension segsort_ext._C failed to import: {IMPORT_ERROR}")
    if device_type == "cuda":
        if HAS_EXTENSION and not has_cuda_kernels():
            reasons.append("segsort_ext._C was built without CUDA kernels (a CPU-only build: FORCE_CPU=1, or no GPU "
                           "and no WITH_CUDA=1 when it was built)")
        if torch.version.cuda is None:
            reasons.append(f"torch {torch.__version__} was built without CUDA")
        elif not torch.cuda.is_available():
            reasons.append("torch sees no CUDA device (torch.cuda.is_available() is False)")
    return reasons


def extension_info() -> dict:
    """What the compiled extension was built with (``with_cuda``, ``arch_list``,
    ``torch_version``, ``csrc_digest``, ...), or ``{"import_error": reason}``."""
    if not HAS_EXTENSION:
        return {"import_error": str(IMPORT_ERROR)}
    return {**_C.build_info(), "simd_bits": SIMD_BITS}
