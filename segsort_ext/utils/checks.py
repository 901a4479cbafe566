"""Argument checks, one home for every layer: each message names the argument and what
was expected. Tensor arguments of the kernel ops are checked in C++ (the ops raise
ValueError/TypeError naming the argument); these helpers check non-tensor arguments, and
tensors where no compiled kernel sees them (composed functions, the plain-PyTorch kernels
of the ops)."""
from __future__ import annotations

import math
import numbers
import os
from typing import Optional

import torch


def tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def int64_tensor(value, name: str) -> torch.Tensor:
    tensor(value, name)
    if value.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 tensor, got {value.dtype}")
    return value


def float_tensor(value, name: str) -> torch.Tensor:
    tensor(value, name)
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got {value.dtype}")
    return value


def same_device(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    if a.device != b.device:
        raise ValueError(f"{a_name} ({a.device}) and {b_name} ({b.device}) must be on the same device")


def integer(value, name: str) -> int:
    """An int (a one-element integer tensor is accepted; a bool is not)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def nonnegative_int(value, name: str) -> int:
    value = integer(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def boolean(value, name: str) -> bool:
    """A bool (True/False only: a truthy string such as "no" is refused)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def positive_int(value, name: str) -> int:
    value = integer(value, name)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def pixel_features(x: torch.Tensor, ids: torch.Tensor) -> None:
    """x (B, D, H, W) with ids (B, H, W), or x (N, D) with ids (N,)."""
    pixel_shapes(x.shape, ids.shape)


def pixel_shapes(x_shape, ids_shape, x_name: str = "x") -> None:
    """The shapes of :func:`pixel_features`; ``x_name`` is the argument that gave x's shape."""
    x_shape, ids_shape = tuple(x_shape), tuple(ids_shape)
    if len(x_shape) == 4:
        expected = (x_shape[0], x_shape[2], x_shape[3])
        if ids_shape != expected:
            raise ValueError(f"ids must have shape (B, H, W) = {expected} to match {x_name} of shape "
                             f"{x_shape}, got {ids_shape}")
    elif len(x_shape) == 2:
        if ids_shape != (x_shape[0],):
            raise ValueError(f"ids must have shape (N,) = ({x_shape[0]},) to match {x_name} of shape "
                             f"{x_shape}, got {ids_shape}")
    else:
        raise ValueError(f"{x_name} must have shape (B, D, H, W) or (N, D), got {x_shape}")


def like(value: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    """value has the dtype and device of ref (as the C++ ops' check_like)."""
    if value.dtype != ref.dtype:
        raise TypeError(f"{name} must have the dtype of {ref_name} ({ref.dtype}), got {value.dtype}")
    same_device(ref, ref_name, value, name)


def int_pair(value, name: str, form: str = "(H, W)") -> tuple[int, int]:
    """An int (both the same) or a pair of ints ``form``, each >= 1: image sizes, grids."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list, torch.Size)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{name} must be an int or a pair of ints {form}, got {value!r}")
    if min(value) < 1:
        raise ValueError(f"{name} must be >= 1 in each direction, got {tuple(value)}")
    return int(value[0]), int(value[1])


def grid(value, name: str) -> tuple[int, int]:
    """A k-means grid: an int (a square grid) or a pair of ints (gh, gw), each >= 1."""
    return int_pair(value, name, "(gh, gw)")


def interval(value, name: str, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
             strict: bool = False) -> tuple[float, float]:
    """A pair (min, max) of finite numbers, min <= max, both within the bounds of :func:`number`."""
    try:
        low, high = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of numbers (min, max), got {value!r}") from None
    low = number(low, f"{name} min", minimum=minimum, maximum=maximum, strict=strict)
    high = number(high, f"{name} max", minimum=minimum, maximum=maximum, strict=strict)
    if low > high:
        raise ValueError(f"{name} must satisfy min <= max, got {(low, high)}")
    return low, high


def number(value, name: str, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
           strict: bool = False, finite: bool = True) -> float:
    """A real number (a one-element tensor is accepted), finite unless ``finite=False``,
    within ``[minimum, maximum]`` (open bounds with ``strict=True``)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{name} must be finite, got an int of {int(value).bit_length()} bits") from None
    # Comparisons, not math.isnan/isinf: under torch.compile a float argument that changed
    # between calls becomes a symbolic float, which math.isnan cannot trace.
    if value != value or (finite and abs(value) == math.inf):
        raise ValueError(f"{name} must be {'finite' if finite else 'a number, not NaN'}, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    if maximum is not None and (value >= maximum if strict else value > maximum):
        raise ValueError(f"{name} must be {'<' if strict else '<='} {maximum}, got {value}")
    return value


def optional_positive_int(value, name: str) -> Optional[int]:
    return None if value is None else positive_int(value, name)


def generator(value, name: str = "generator") -> Optional[torch.Generator]:
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(value).__name__}")
    return value


def seed(value, name: str = "seed") -> int:
    """An int that ``torch.Generator.manual_seed`` takes."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not -2**63 <= value < 2**64:
        raise ValueError(f"{name} must lie in [-2**63, 2**64), got {value}")
    return value


def allocatable(shape, dtype: torch.dtype, name: str, device=None) -> None:
    """Refuses, before anything is allocated, a tensor of ``shape`` larger than torch can
    address (torch indexes storage bytes with int64; the size is computed exactly, without
    overflow) or than the memory of ``device`` (default: torch's default device). ``name``
    is the argument that set the size."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > INT64_MAX:
        raise ValueError(f"{name}: a {dtype} tensor of shape {tuple(shape)} is too large to allocate")
    fits_in_memory(torch.get_default_device() if device is None else torch.device(device), nbytes, name)


# Sizes: the rules and messages of csrc/include/segsort/checks.h, for the code no C++ op checks
# (composed functions, the plain-PyTorch kernels of the ops).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def device(value, name: str) -> Optional[torch.device]:
    """None, or a torch.device this process can allocate on: a bad string or an absent GPU
    fails where it is given, naming the argument, not at the first use."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, torch.device, int)):
        raise TypeError(f"{name} must be a str, a torch.device, a CUDA ordinal or None, got {type(value).__name__}")
    try:
        parsed = torch.device(value)
    except RuntimeError as error:
        raise ValueError(f"{name} = {value!r} is not a torch device ({error})") from None
    if parsed.type == "meta":
        raise ValueError(f"{name} must be a device that holds data, got {parsed}")
    try:
        torch.empty(0, device=parsed)
    except (RuntimeError, AssertionError) as error:  # torch without CUDA support raises AssertionError
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{name} = {str(parsed)!r} is not available here ({reason})") from None
    return parsed


def int64(value, name: str) -> int:
    """An int argument the C++ ops take as int64."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{name} must fit in int64, got {value}")
    return value


def device_memory_bytes(device: torch.device) -> Optional[int]:
    """Total memory of a device in bytes (physical RAM for the CPU); None where unknown."""
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # not POSIX
            return None
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return None


def fits_in_memory(device: torch.device, nbytes: int, name: str) -> None:
    """Refuses, naming the argument ``name`` that sized them, buffers of ``nbytes`` that
    exceed the device's memory (or int64), before anything is allocated."""
    if nbytes < 2**30:  # every device has a GiB
        return
    if nbytes > INT64_MAX:
        raise ValueError(f"{name} is too large: a size derived from it overflows int64")
    total = device_memory_bytes(device)
    if total is not None and nbytes > total:
        raise ValueError(f"{name} is too large: it needs {_gib(nbytes)} of buffers, more than the "
                         f"{_gib(total)} of memory of {device}")


def _gib(nbytes: int) -> str:
    return f"{(nbytes + 2**29) >> 30} GiB"
