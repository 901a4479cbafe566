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


def group_max_scores(queries: torch.Tensor, bank: torch.Tensor, group: int) -> torch.Tensor:
    """The (Q, M) scores, padded with -inf to whole groups, then amax over each group."""
    scores = queries @ bank.T
    scores = F.pad(scores, (0, -bank.shape[0] % group), value=float("-inf"))
    return scores.view(queries.shape[0], -(-bank.shape[0] // group), group).amax(2)


def pixel_coordinates(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Linear over [-0.5, 0.5] (as torch.linspace; -0.5 for n == 1), computed as the
    kernels do: i / (n - 1) - 0.5."""
    if n == 1:
        return torch.full((1,), -0.5, dtype=dtype, device=device)
    return torch.arange(n, dtype=dtype, device=device) / (n - 1) - 0.5


def spherical_kmeans(x, grid=(5, 5), *, iters=10, coord_weight=1.0, mask=None, init=None, tol=None):
    """SegSort's pixel sorting the way SPML/HSG do it: a Python loop over images, with a
    dense (N, K) one-hot matmul for every M-step. Returns (labels, centroids)."""
    B, D, H, W = x.shape
    gh, gw = grid
    K = gh * gw
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    ys = pixel_coordinates(H, acc, x.device).view(H, 1).expand(H, W).reshape(-1)
    xs = pixel_coordinates(W, acc, x.device).view(1, W).expand(H, W).reshape(-1)
    cells = ((torch.arange(H, device=x.device) * gh // H).view(H, 1) * gw
             + (torch.arange(W, device=x.device) * gw // W).view(1, W)).reshape(-1)
    all_labels, all_centroids = [], []
    for b in range(B):
        pixels = x[b].to(acc).reshape(D, H * W).t()
        valid = torch.isfinite(pixels).all(1)
        if mask is not None:
            valid &= mask[b].reshape(-1)
        labels = cells.clone() if init is None else init[b].reshape(-1).clone()
        valid &= labels >= 0
        pixels = torch.where(valid.unsqueeze(1), pixels, 0)
        coordinates = coord_weight * torch.stack([ys, xs], 1)
        f = torch.cat([F.normalize(pixels, dim=1, eps=NORM_EPS), coordinates], 1)
        f = F.normalize(f, dim=1, eps=NORM_EPS)[valid]
        members = labels[valid]
        centroids = f.new_zeros(K, D + 2)
        for _ in range(iters):
            one_hot = F.one_hot(members, K).to(acc)
            sums, counts = one_hot.t() @ f, one_hot.sum(0)
            centroids = torch.where(counts[:, None] > 0, F.normalize(sums, dim=1, eps=NORM_EPS), centroids)
            new = (f @ centroids.t()).argmax(1)
            changed = int((new != members).sum())
            members = new
            if tol is not None and changed <= tol * members.numel():
                break
        labels = torch.full_like(labels, -1)
        labels[valid] = members
        all_labels.append(labels.view(H, W))
        all_centroids.append(centroids.to(x.dtype))
    if B == 0:
        return (torch.empty(0, H, W, dtype=torch.int64, device=x.device),
                torch.zeros(0, K, D + 2, dtype=x.dtype, device=x.device))
    return torch.stack(all_labels), torch.stack(all_centroids)


def nearest_centroid(points, centroids, *, with_sums=False):
    """(best, labels, sums): the largest cosine of each unit row of points (N, D) to the
    centroids (K, D) and its index (torch.max: the first maximum, or the first NaN), and
    the (K, D) sums of the rows of each centroid (None unless with_sums)."""
    best, labels = (points @ centroids.T).max(1)
    sums = points.new_zeros(centroids.shape).index_add_(0, labels, points) if with_sums else None
    return best, labels, sums


def _vmf_logits(embeddings, prototypes, concentration, memory):
    """Dense (N, S + M) logits, as the official TF code and SPML compute them."""
    logits = concentration * embeddings @ prototypes.t()
    if memory is not None:
        logits = torch.cat([logits, concentration * embeddings @ memory[0].detach().t()], 1)
    return logits


def vmf_loss(embeddings, segment_ids, prototypes, *, concentration=10.0, memory=None):
    """Eq. 8 of SegSort: -log softmax of the own segment over all batch and memory
    prototypes, mean over pixels with segment_ids >= 0."""
    valid = segment_ids >= 0
    if not bool(valid.any()):
        return embeddings.sum() * 0 + prototypes.sum() * 0
    logits = _vmf_logits(embeddings[valid], prototypes, concentration, memory)
    own = segment_ids[valid]
    return (torch.logsumexp(logits, 1) - logits.gather(1, own[:, None]).squeeze(1)).mean()


def vmf_nca_loss(embeddings, segment_ids, prototypes, prototype_labels, *, concentration=10.0, memory=None):
    """Eq. 10 of SegSort: -log(sum over same-label prototypes other than the own segment /
    sum over all prototypes other than the own segment), batch and memory; pixels with no
    such positive fall back to Eq. 8. Prototype labels < 0 are never positives."""
    valid = segment_ids >= 0
    if not bool(valid.any()):
        return embeddings.sum() * 0 + prototypes.sum() * 0
    logits = _vmf_logits(embeddings[valid], prototypes, concentration, memory)
    own = segment_ids[valid]
    labels = prototype_labels if memory is None else torch.cat([prototype_labels, memory[1]])
    own_label = prototype_labels[own]
    is_own = torch.zeros_like(logits, dtype=torch.bool)
    is_own[torch.arange(len(own), device=own.device), own] = True
    positive = (labels[None, :] == own_label[:, None]) & (own_label[:, None] >= 0) & ~is_own
    neg_inf = torch.finfo(logits.dtype).min
    denominator = torch.logsumexp(logits.masked_fill(is_own, neg_inf), 1)
    numerator = torch.logsumexp(logits.masked_fill(~positive, neg_inf), 1)
    nca = denominator - numerator
    fallback = torch.logsumexp(logits, 1) - logits.gather(1, own[:, None]).squeeze(1)
    return torch.where(positive.any(1), nca, fallback).mean()


def blurring_mean_shift(x, *, bandwidth, iters=10, eta=1.0, lengths=None, return_all=False):
    """The dense way (Kong & Fowlkes' MatConvNet code, PyTorch ports): the full
    (B, N, N) kernel every iteration."""
    B, N, _ = x.shape
    if lengths is None:
        lengths = torch.full((B,), N, dtype=torch.int64, device=x.device)
    valid = torch.arange(N, device=x.device)[None, :] < lengths[:, None]
    current = F.normalize(x, dim=2, eps=NORM_EPS)
    iterates = [current]
    for _ in range(iters):
        logits = bandwidth * current @ current.transpose(1, 2)
        logits = logits.masked_fill(~valid[:, None, :], torch.finfo(logits.dtype).min)
        values = current.masked_fill(~valid[..., None], 0)  # padding (even NaN) never reaches valid points
        shifted = (1 - eta) * current + eta * torch.softmax(logits, 2) @ values
        current = torch.where(valid[..., None], F.normalize(shifted, dim=2, eps=NORM_EPS), current)
        iterates.append(current)
    return iterates if return_all else current
