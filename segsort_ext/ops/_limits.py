"""Size limits of the op layer in Python, for the code no C++ op checks (the composed
``segment_label_histogram`` and the pure-PyTorch fallback), with the rules and messages
of ``csrc/include/segsort/checks.h``: integer arguments fit int64, and an op whose
buffers exceed the device's memory is refused before anything is allocated."""
from __future__ import annotations

import os
from typing import Optional

import torch

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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


def check_fits_in_memory(device: torch.device, nbytes: int, name: str) -> None:
    """Refuses, naming the argument ``name`` that sized them, buffers of ``nbytes`` that
    exceed the device's memory (or int64), before anything is allocated."""
    if nbytes < 2**30:  # every device has a GiB
        return
    if nbytes > INT64_MAX:
        raise ValueError(f"{name} is too large: a size derived from it overflows int64")
    total = device_memory_bytes(device)
    if total is not None and nbytes > total:
        raise ValueError(f"{name} is too large: the op needs {_gib(nbytes)} of buffers, more than the "
                         f"{_gib(total)} of memory of {device}")


def _gib(nbytes: int) -> str:
    return f"{(nbytes + 2**29) >> 30} GiB"
