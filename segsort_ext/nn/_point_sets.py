"""Pixel sets shared by the losses: (B, N, D) point sets from the layouts the losses
accept, compact (image, instance) groups, and uniform sampling without replacement."""
from __future__ import annotations

from typing import Optional

import torch

from segsort_ext.utils import checks as check


def uniform(shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Uniform [0, 1) numbers on `device`, drawn on the generator's device (so a CPU
    generator drives sampling for CUDA data, reproducibly)."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def sample_rows(valid: torch.Tensor, count: int,
                generator: Optional[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of valid (B, N), `count` column indices drawn uniformly without replacement
    among the valid columns (all valid ones when fewer). Returns (index (B, k), taken
    (B, k) bool) with k = min(count, N), indices in ascending order."""
    keys = uniform(valid.shape, generator, valid.device)
    keys = keys.masked_fill(~valid, 2.0)  # invalid columns sort after every valid one
    k = min(count, valid.shape[1])
    index = keys.topk(k, dim=1, largest=False).indices.sort(dim=1).values
    return index, valid.gather(1, index)


def point_sets(embeddings, instance_ids: torch.Tensor,
               name: str = "embeddings") -> tuple[list[torch.Tensor], torch.Tensor]:
    """Embeddings (B, D, H, W), (B, N, D) or (N, D), or a list of equal iterates, and
    their instance ids, checked -> ([(B, N, D)] one per iterate, (B, N) ids)."""
    iterates = list(embeddings) if isinstance(embeddings, (list, tuple)) else [embeddings]
    if not iterates:
        raise ValueError(f"{name} must be a tensor or a non-empty list of tensors")
    for t, x in enumerate(iterates):
        check.float_tensor(x, name if len(iterates) == 1 else f"{name}[{t}]")
    first = iterates[0]
    if first.dim() in (2, 3, 4) and first.shape[1 if first.dim() == 4 else -1] < 1:
        raise ValueError(f"{name} must have at least one channel, got shape {tuple(first.shape)}")
    for t, x in enumerate(iterates[1:], 1):
        if x.shape != first.shape or x.dtype != first.dtype or x.device != first.device:
            raise ValueError(f"{name}[{t}] must match {name}[0] in shape, dtype and device: "
                             f"{tuple(x.shape)} {x.dtype} {x.device} vs "
                             f"{tuple(first.shape)} {first.dtype} {first.device}")
    check.int64_tensor(instance_ids, "instance_ids")
    check.same_device(first, name, instance_ids, "instance_ids")
    if first.dim() == 4:
        B, D, H, W = first.shape
        if tuple(instance_ids.shape) != (B, H, W):
            raise ValueError(f"instance_ids must have shape (B, H, W) = {(B, H, W)} to match {name} of shape "
                             f"{tuple(first.shape)}, got {tuple(instance_ids.shape)}")
        points = [x.permute(0, 2, 3, 1).reshape(B, H * W, D) for x in iterates]
        return points, instance_ids.reshape(B, H * W)
    if first.dim() == 3:
        B, N, D = first.shape
        if tuple(instance_ids.shape) != (B, N):
            raise ValueError(f"instance_ids must have shape (B, N) = {(B, N)} to match {name} of shape "
                             f"{tuple(first.shape)}, got {tuple(instance_ids.shape)}")
        return iterates, instance_ids
    if first.dim() == 2:
        N, D = first.shape
        if tuple(instance_ids.shape) != (N,):
            raise ValueError(f"instance_ids must have shape (N,) = ({N},) to match {name} of shape "
                             f"{tuple(first.shape)}, got {tuple(instance_ids.shape)}")
        return [x.unsqueeze(0) for x in iterates], instance_ids.unsqueeze(0)
    raise ValueError(f"{name} must have shape (B, D, H, W), (B, N, D) or (N, D), got {tuple(first.shape)}")


def instance_groups(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids (B, N) (negative = ignored) -> (group (B, N) compact id of each (image,
    instance) pair or -1, group_image (G,), group_size (G,), instances_per_image (B,))."""
    B, N = ids.shape
    valid = ids >= 0
    image = torch.arange(B, device=ids.device).unsqueeze(1).expand(B, N)
    pairs = torch.stack([image[valid], ids[valid]], 1)
    unique_pairs, inverse, sizes = torch.unique(pairs, dim=0, return_inverse=True, return_counts=True)
    group = torch.full_like(ids, -1)
    group[valid] = inverse
    group_image = unique_pairs[:, 0]
    instances_per_image = torch.bincount(group_image, minlength=B)
    return group, group_image, sizes, instances_per_image

