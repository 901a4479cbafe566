"""Argument checks of the retrieval subpackage that utils.checks does not have: rows of
the index dimension, per-row ids, embedding maps and devices. Messages name the argument."""
from __future__ import annotations

from typing import Optional

import torch

from segsort_ext.utils import checks as check


def _holds_data(x: torch.Tensor, name: str) -> None:
    if x.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: it holds no data")


def rows(x, name: str, dim: int) -> None:
    """A (N, dim) float tensor with data."""
    check.float_tensor(x, name)
    _holds_data(x, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D) = (N, {dim}), got {tuple(x.shape)}")
    if x.shape[1] != dim:
        raise ValueError(f"{name} must have D = {dim} columns (the index dim), got shape {tuple(x.shape)}")


def per_row_ids(value, name: str, num_rows: int, like: torch.Tensor) -> None:
    """None, or (num_rows,) int64 on the device of ``like`` (the prototypes)."""
    if value is None:
        return
    check.int64_tensor(value, name)
    check.same_device(like, "prototypes", value, name)
    if tuple(value.shape) != (num_rows,):
        raise ValueError(f"{name} must have shape (M,) = ({num_rows},) to match prototypes, "
                         f"got {tuple(value.shape)}")


def embedding_map(x, name: str, dim: int) -> None:
    """A (B, dim, H, W) float tensor with data."""
    check.float_tensor(x, name)
    _holds_data(x, name)
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, D, H, W), got {tuple(x.shape)}")
    if x.shape[1] != dim:
        raise ValueError(f"{name} must have D = {dim} channels (the index dim), got shape {tuple(x.shape)}")


def search_block(value, name: str) -> Optional[tuple[int, int]]:
    """None, or a pair (query rows, bank rows) of ints >= 1."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list, torch.Size)):
        raise TypeError(f"{name} must be None or a pair (query rows, bank rows), got {type(value).__name__}")
    if len(value) != 2:
        raise ValueError(f"{name} must be (query rows, bank rows), got {value!r}")
    return check.positive_int(value[0], f"{name}[0]"), check.positive_int(value[1], f"{name}[1]")
