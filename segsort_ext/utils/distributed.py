"""torch.distributed helpers shared by the memory bank, the SegSort loss, dataset k-means
and the sharded segment index.

Everything here is opt-in: a class that takes ``distributed=True`` resolves its process
group *when it is used* (so it can be built before ``init_process_group``), and behaves
exactly as in a single process when torch.distributed is not initialised. Every function
that takes a :class:`Group` is a collective: all ranks of the group must call it, in the
same order, with tensors of the same dtype (row counts may differ between ranks).

Backends: tensors travel on the device the backend wants (CUDA for NCCL, the host for
gloo) and come back on the device they came from, so CPU data works under NCCL and CUDA
data under gloo (at the cost of a copy).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
import torch.distributed as dist

__all__ = [
    "Group",
    "resolve_group",
    "is_initialized",
    "check_process_group",
    "all_gather_counts",
    "all_gather_rows",
    "all_gather_rows_with_grad",
    "all_reduce_sum",
    "broadcast_from_first",
    "rank_offsets",
]


class Group(NamedTuple):
    """A resolved process group: the torch group (None = the default group), this
    process's rank in it and its size."""

    group: Optional["dist.ProcessGroup"]
    rank: int
    world_size: int


def is_initialized() -> bool:
    """True when a default torch.distributed process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def check_process_group(process_group, name: str = "process_group") -> None:
    """TypeError unless process_group is None or a torch ProcessGroup."""
    if process_group is None:
        return
    if not dist.is_available() or not isinstance(process_group, dist.ProcessGroup):
        raise TypeError(f"{name} must be None (the default group) or a torch.distributed ProcessGroup, "
                        f"got {type(process_group).__name__}")


def resolve_group(enabled: bool, process_group=None) -> Optional[Group]:
    """The group to communicate over, or None for single-process behaviour (``enabled``
    is False, or torch.distributed is not initialised)."""
    if not enabled or not is_initialized():
        return None
    return Group(process_group, dist.get_rank(process_group), dist.get_world_size(process_group))


def _wire_device(group: Group, device: torch.device) -> torch.device:
    """The device a collective of `group` needs for a tensor living on `device`."""
    backend = str(dist.get_backend(group.group)).lower()
    if device.type == "cuda" and "gloo" in backend and "nccl" not in backend:
        return torch.device("cpu")  # gloo has no CUDA all_gather
    if device.type == "cpu" and "nccl" in backend and "gloo" not in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def all_reduce_sum(tensor: torch.Tensor, group: Group) -> torch.Tensor:
    """Sum of `tensor` over the ranks (a new tensor, same device; identical bits on every
    rank, as DDP's own gradient averaging relies on)."""
    wire = _wire_device(group, tensor.device)
    out = tensor.detach().to(wire, copy=True).contiguous()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group.group)
    return out.to(tensor.device)


def broadcast_from_first(tensor: torch.Tensor, group: Group) -> torch.Tensor:
    """Rank 0's `tensor` (of the group) on every rank; same shape and dtype on all ranks."""
    wire = _wire_device(group, tensor.device)
    out = tensor.detach().to(wire, copy=True).contiguous()
    dist.broadcast(out, group=group.group, group_src=0)
    return out.to(tensor.device)


def rank_offsets(counts: torch.Tensor) -> torch.Tensor:
    """Exclusive prefix sums over ranks of per-rank counts ((world,) or (world, c)): where
    each rank's rows (segments, images, ...) start in the rank-order concatenation."""
    return torch.cumsum(counts, 0) - counts


def all_gather_counts(values: Sequence[int], group: Group, device=None) -> torch.Tensor:
    """(world, len(values)) int64 table of small per-rank integers, on the host."""
    wire = _wire_device(group, torch.device(device or "cpu"))
    mine = torch.tensor(list(values), dtype=torch.int64, device=wire)
    parts = [torch.empty_like(mine) for _ in range(group.world_size)]
    dist.all_gather(parts, mine, group=group.group)
    return torch.stack(parts).cpu()


def all_gather_rows(tensors: Sequence[torch.Tensor], group: Group,
                    counts: Optional[torch.Tensor] = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """All-gathers tensors that share their first dimension n, which may differ between
    ranks. Returns the rank-order concatenations and the (world,) host int64 row counts.

    ``counts`` (the per-rank n, if the caller already exchanged them) saves one collective.
    Not differentiable: see :func:`all_gather_rows_with_grad`.
    """
    tensors = list(tensors)
    if not tensors:
        raise ValueError("tensors must hold at least one tensor")
    n = tensors[0].shape[0]
    for i, t in enumerate(tensors):
        if t.shape[0] != n:
            raise ValueError(f"tensors[{i}] has {t.shape[0]} rows, tensors[0] has {n}: they must share dimension 0")
    if counts is None:
        counts = all_gather_counts([n], group, tensors[0].device)[:, 0]
    counts = counts.cpu()
    if int(counts[group.rank]) != n:
        raise ValueError(f"counts[{group.rank}] = {int(counts[group.rank])} but this rank has {n} rows")
    longest = int(counts.max()) if counts.numel() else 0
    gathered = []
    for tensor in tensors:
        wire = _wire_device(group, tensor.device)
        # all_gather wants equal shapes: pad every rank's rows to the longest.
        padded = tensor.detach().new_zeros((longest, *tensor.shape[1:]), device=wire)
        padded[:n] = tensor.detach()
        parts = [torch.empty_like(padded) for _ in range(group.world_size)]
        dist.all_gather(parts, padded, group=group.group)
        rows = torch.cat([part[:int(c)] for part, c in zip(parts, counts.tolist())])
        gathered.append(rows.to(tensor.device))
    return gathered, counts


class _AllGatherRows(torch.autograd.Function):
    """Forward: rank-order concatenation of every rank's rows. Backward: each rank's loss
    sends gradients to every rank's rows, so the gradient of this rank's rows is the sum,
    over ranks, of the gradient of their slice: one all-reduce of the full gradient, then
    this rank's slice (all-reduce instead of reduce-scatter: gloo has none, and the
    gathered tensors are small, e.g. segment prototypes)."""

    @staticmethod
    def forward(ctx, tensor, group, counts):
        (rows,), counts = all_gather_rows([tensor], group, counts)
        start = int(rank_offsets(counts)[group.rank])
        ctx.group, ctx.start, ctx.stop = group, start, start + tensor.shape[0]
        return rows

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        total = all_reduce_sum(grad, ctx.group)
        return total[ctx.start:ctx.stop], None, None


def all_gather_rows_with_grad(tensor: torch.Tensor, group: Group,
                              counts: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable :func:`all_gather_rows` of one tensor: returns the rank-order
    concatenation (gradients flow back to this rank's rows, summed over the losses of all
    ranks; the backward is a collective too) and the (world,) host row counts."""
    if counts is None:
        counts = all_gather_counts([tensor.shape[0]], group, tensor.device)[:, 0]
    return _AllGatherRows.apply(tensor, group, counts.cpu()), counts.cpu()
