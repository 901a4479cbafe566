"""Plain-PyTorch versions of every op: the specification the kernels are tested
against, the baseline the benchmarks compare with (how research code does it today),
and the fallback where the extension is not built. Clarity over speed."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

NORM_EPS = 1e-12


def _connected_roots(group: torch.Tensor, connectivity: int) -> torch.Tensor:
    """(B, H, W) -> raster index of the first pixel of each pixel's connected component
    among pixels of equal group (-1 where group < 0), by min-label propagation."""
    B, H, W = group.shape
    big = H * W
    valid = group >= 0
    root = torch.arange(H * W, device=group.device).view(1, H, W).expand(B, H, W).clone()
    root[~valid] = big
    shifts = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if connectivity == 8:
        shifts += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    padded_group = F.pad(group, (1, 1, 1, 1), value=-1)
    while True:
        padded_root = F.pad(root, (1, 1, 1, 1), value=big)
        new = root.clone()
        for dy, dx in shifts:
            neighbour_group = padded_group[:, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
            neighbour_root = padded_root[:, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
            same = valid & (neighbour_group == group)
            new = torch.where(same, torch.minimum(new, neighbour_root), new)
        if torch.equal(new, root):
            return torch.where(valid, root, -1)
        root = new


def segment_partition(
    clusters: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    ignore_index: int = 255,
    connectivity: Optional[int] = None,
):
    """The torch.unique way (as SPML does it): one sort over (image, cluster, label) keys."""
    B, H, W = clusters.shape
    valid = clusters >= 0
    if labels is not None:
        valid &= (labels != ignore_index) & (labels >= 0)
    batch_index = torch.arange(B, device=clusters.device).view(B, 1, 1).expand(B, H, W)
    columns = [batch_index[valid], clusters[valid]]
    columns.append(labels[valid] if labels is not None else torch.zeros_like(columns[0]))
    triples = torch.stack(columns, 1)
    unique_triples, inverse = torch.unique(triples, dim=0, return_inverse=True)
    ids = torch.full_like(clusters, -1)
    ids[valid] = inverse
    if connectivity:
        roots = _connected_roots(ids, connectivity)
        pairs = torch.stack([ids[valid], roots[valid]], 1)
        unique_pairs, inverse = torch.unique(pairs, dim=0, return_inverse=True)
        ids = torch.full_like(clusters, -1)
        ids[valid] = inverse
        unique_triples = unique_triples[unique_pairs[:, 0]]
    size = torch.bincount(ids[valid], minlength=unique_triples.shape[0])
    label = unique_triples[:, 2] if labels is not None else torch.full_like(unique_triples[:, 2], -1)
    return ids, unique_triples[:, 0], unique_triples[:, 1], label, size


def segment_mean(x: torch.Tensor, ids: torch.Tensor, num_segments: int, *, normalize: bool = True) -> torch.Tensor:
    """index_add_ over pixel-major features, then F.normalize or divide by the count."""
    pixels = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) if x.dim() == 4 else x
    flat_ids = ids.reshape(-1)
    keep = flat_ids >= 0
    sums = pixels.new_zeros(num_segments, pixels.shape[1]).index_add(0, flat_ids[keep], pixels[keep])
    if normalize:
        return F.normalize(sums, dim=1, eps=NORM_EPS)
    counts = torch.bincount(flat_ids[keep], minlength=num_segments).clamp_min(1)
    return sums / counts.unsqueeze(1).to(sums.dtype)


def segment_label_histogram(ids, labels, num_segments, num_classes, *, ignore_index=255):
    """Dense one-hot sum, as research code computes segment label statistics."""
    keep = (ids >= 0) & (labels != ignore_index) & (labels >= 0)
    one_hot = F.one_hot(labels[keep], num_classes)
    return torch.zeros(num_segments, num_classes, dtype=torch.int64, device=ids.device).index_add_(
        0, ids[keep], one_hot)
