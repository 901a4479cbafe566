"""Instances from converged mean-shift embeddings (greedy seeds, batched on the device,
no N x N) and duplicate-free proposals over several bandwidths."""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F

from segsort_ext.ops import blurring_mean_shift, segment_mean
from segsort_ext.utils import checks as check
from segsort_ext.utils.constants import NORM_EPS

__all__ = ["cosine_threshold_from_margin", "Instances", "extract_instances", "Proposals", "instance_proposals"]


# Seeds examined per round and image: bounds the (B, M, N) similarity block.
_SEED_BLOCK_ELEMENTS = 1 << 24
_MAX_SEEDS_PER_ROUND = 256


def cosine_threshold_from_margin(alpha: float, *, calibrated: bool = True) -> float:
    """Cosine above which two converged embeddings belong to one instance, for the margin
    ``alpha`` of :func:`segsort_ext.pairwise_margin_loss`.

    Training pushes pixels of one instance to similarity 1 and pixels of different
    instances to at most ``alpha``; mean shift then collapses each instance onto a point.
    The threshold is the midpoint of ``[alpha, 1]`` in the loss's similarity:

    * ``calibrated=True`` (s = (1 + cos) / 2, the paper's and the loss's default):
      s >= (1 + alpha) / 2, i.e. ``cos >= alpha``;
    * ``calibrated=False`` (s = cos): ``cos >= (1 + alpha) / 2``.
    """
    alpha = check.number(alpha, "alpha")
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
    return alpha if calibrated else (1.0 + alpha) / 2.0


class Instances(NamedTuple):
    """Output of :func:`extract_instances` (S instances over the whole batch)."""

    ids: torch.Tensor  # (B, N) or (N,) int64 in [0, S), -1 = ignored, padded or too small
    batch: torch.Tensor  # (S,) int64 image of each instance
    embeddings: torch.Tensor  # (S, D) L2-normalised mean of the members' unit embeddings
    size: torch.Tensor  # (S,) int64 members


def _check_lengths(lengths, B: int, N: int, device) -> torch.Tensor:
    if lengths is None:
        return torch.full((B,), N, dtype=torch.int64, device=device)
    check.int64_tensor(lengths, "lengths")
    if lengths.device != device:
        raise ValueError(f"x ({device}) and lengths ({lengths.device}) must be on the same device")
    if tuple(lengths.shape) != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},), got {tuple(lengths.shape)}")
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > N):
        raise ValueError(f"lengths must lie in [0, N = {N}]")
    return lengths


def _points(x: torch.Tensor):
    """x (N, D) or (B, N, D) -> ((B, N, D) detached, float32 for half inputs; was 2-D)."""
    check.float_tensor(x, "x")
    if x.dim() not in (2, 3):
        raise ValueError(f"x must have shape (B, N, D) or (N, D), got {tuple(x.shape)}")
    squeeze = x.dim() == 2
    x3 = x.unsqueeze(0) if squeeze else x
    if x3.shape[2] == 0:
        raise ValueError(f"x must have at least one channel, got shape {tuple(x.shape)}")
    x3 = x3.detach()
    if x3.dtype in (torch.float16, torch.bfloat16):
        x3 = x3.float()
    return x3, squeeze


def _first_seeds(claims_among: torch.Tensor, candidate_ok: torch.Tensor) -> torch.Tensor:
    """Which of the M candidates (in index order) become seeds: candidate i is a seed iff
    no earlier seed claims it. claims_among (B, M, M): candidate i claims candidate j."""
    M = candidate_ok.shape[1]
    is_seed = torch.zeros_like(candidate_ok)
    is_seed[:, 0] = candidate_ok[:, 0]
    for i in range(1, M):  # a loop over this round's candidates, never over all points
        taken = (claims_among[:, :i, i] & is_seed[:, :i]).any(1)
        is_seed[:, i] = candidate_ok[:, i] & ~taken
    return is_seed


def extract_instances(x: torch.Tensor, threshold: float, *, lengths: Optional[torch.Tensor] = None,
                      min_size: int = 1) -> Instances:
    """Groups points whose embeddings coincide (e.g. after :func:`blurring_mean_shift`)
    into instances, on x's device with torch ops.

    Greedy seeding, the grouping of Kong & Fowlkes' proposals: the lowest-index point not
    yet assigned is a seed; it takes every unassigned point of its image with
    ``cos(point, seed) >= threshold``; repeat until every valid point is assigned. The
    result is exactly that sequential procedure, computed in rounds: each round takes the
    first M unassigned points of every image as candidate seeds (M bounded so the
    (B, M, N) similarity block stays small), settles which candidates are seeds (a loop over
    the M candidates on an M x M block) and assigns each point to the first seed that
    claims it. Memory O(B * M * N), never N x N; all images of the batch advance together.
    Deterministic (ties go to the earlier seed; no atomics).

    Args:
        x: (B, N, D) or (N, D) embeddings (L2-normalised inside), e.g. converged mean shift.
        threshold: cosine in [-1, 1] (see :func:`cosine_threshold_from_margin`).
        lengths: optional (B,) int64 valid points per image (the first lengths[b] rows).
        min_size: instances with fewer members are dropped (their points get id -1).

    Returns:
        :class:`Instances` ``(ids, batch, embeddings, size)``: ids compact over the batch,
        ordered by (image, first point); an instance never spans two images. Points that
        are padding, have a non-finite or zero embedding, or fall in a dropped instance get
        -1. Not differentiable (ids are discrete; the embeddings are detached).
    """
    threshold = check.number(threshold, "threshold", minimum=-1.0, maximum=1.0)
    min_size = check.int64(check.positive_int(min_size, "min_size"), "min_size")
    x3, squeeze = _points(x)
    B, N, D = x3.shape
    device = x3.device
    lengths = _check_lengths(lengths, B, N, device)
    finite = torch.isfinite(x3).all(2)
    norms = torch.where(finite, x3.norm(dim=2), torch.zeros((), dtype=x3.dtype, device=device))
    valid = (torch.arange(N, device=device)[None, :] < lengths[:, None]) & finite & (norms > 0)
    u = torch.where(valid[..., None], x3 / norms.clamp_min(NORM_EPS)[..., None], 0.0)

    seed_of = torch.full((B, N), -1, dtype=torch.int64, device=device)
    unassigned = valid.clone()
    position = torch.arange(N, device=device).expand(B, N)
    limit = max(1, min(_MAX_SEEDS_PER_ROUND, N, _SEED_BLOCK_ELEMENTS // max(1, B * N)))
    M = 1
    more = N > 0 and bool(unassigned.any())
    while more:
        key = torch.where(unassigned, position, N)
        candidates = key.topk(M, dim=1, largest=False, sorted=True).values  # first M unassigned, in order
        candidate_ok = candidates < N
        index = candidates.clamp_max(N - 1)
        seeds_u = u.gather(1, index.unsqueeze(2).expand(B, M, D))
        claims = (torch.bmm(seeds_u, u.transpose(1, 2)) >= threshold) & unassigned[:, None, :]
        claims &= candidate_ok[:, :, None]
        # A seed always takes itself, whatever rounding does to cos(seed, seed).
        claims.scatter_(2, index.unsqueeze(2), candidate_ok.unsqueeze(2))
        is_seed = _first_seeds(claims.gather(2, index[:, None, :].expand(B, M, M)), candidate_ok)
        claims &= is_seed[:, :, None]
        claimed = claims.any(1)
        first = claims.to(torch.uint8).argmax(1)  # the earliest seed that claims the point
        seed_of = torch.where(claimed, index.gather(1, first), seed_of)
        unassigned &= ~claimed
        # Grow the round while candidates keep turning into seeds (scattered points), shrink
        # it when they are all taken by the first seed (large coinciding instances).
        # One device-to-host transfer per round for both decisions.
        left, seeds_found = torch.stack([unassigned.any().to(torch.int64), is_seed.sum(1).max()]).tolist()
        more = bool(left)
        M = max(1, min(limit, 2 * seeds_found))

    # Compact ids ordered by (image, seed index = first member).
    keys = torch.arange(B, device=device)[:, None] * N + seed_of
    flat_valid = (seed_of >= 0).reshape(-1)
    unique_keys, inverse, sizes = torch.unique(keys.reshape(-1)[flat_valid], sorted=True, return_inverse=True,
                                               return_counts=True)
    keep = sizes >= min_size
    new_index = torch.cumsum(keep.to(torch.int64), 0) - 1
    flat_ids = torch.full((B * N,), -1, dtype=torch.int64, device=device)
    flat_ids[flat_valid] = torch.where(keep[inverse], new_index[inverse], -1)
    batch = unique_keys[keep] // max(N, 1)
    sizes = sizes[keep]
    embeddings = segment_mean(u.reshape(B * N, D), flat_ids, int(sizes.numel()))
    ids = flat_ids.view(B, N)
    return Instances(ids[0] if squeeze else ids, batch, embeddings.to(x.dtype), sizes)


class Proposals(NamedTuple):
    """Output of :func:`instance_proposals`: P proposals over all bandwidths and images.

    Proposal p is the set of points whose id at bandwidth ``level[p]`` equals p; use
    :meth:`masks` for boolean masks.
    """

    ids: torch.Tensor  # (L, B, N) or (L, N) int64: per bandwidth, each point's proposal, -1 = none/duplicate
    batch: torch.Tensor  # (P,) image of each proposal
    level: torch.Tensor  # (P,) index of the bandwidth that produced it
    embeddings: torch.Tensor  # (P, D) unit mean embedding (of the input points)
    size: torch.Tensor  # (P,) members

    def masks(self, image: int = 0) -> torch.Tensor:
        """(P_b, N) bool masks of the proposals of one image, in proposal order."""
        ids = self.ids if self.ids.dim() == 3 else self.ids.unsqueeze(1)
        if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < ids.shape[1]:
            raise ValueError(f"image must be an int in [0, {ids.shape[1]}), got {image!r}")
        chosen = torch.nonzero(self.batch == image).flatten()
        return ids[self.level[chosen], image, :] == chosen[:, None]


def instance_proposals(x: torch.Tensor, bandwidths: Sequence[float], *, threshold: float, iters: int = 10,
                       eta: float = 1.0, lengths: Optional[torch.Tensor] = None, min_size: int = 1,
                       duplicate_iou: float = 1.0) -> Proposals:
    """Kong & Fowlkes' instance proposals: blurring mean shift at several bandwidths, the
    instances of each (:func:`extract_instances`), merged without duplicates.

    Bandwidths are processed in the given order; a proposal is dropped when its IoU with
    a proposal already kept from an earlier bandwidth (same image) is ``>= duplicate_iou``
    (1.0: identical point sets only). IoUs come from the joint histogram of two levels'
    ids (one sort of N keys per pair of levels), never an N x N or P x N matrix.

    Args:
        x: (B, N, D) or (N, D) embeddings.
        bandwidths: a non-empty sequence of finite bandwidths > 0 (see
            :func:`~segsort_ext.bandwidth_from_margin`).
        threshold: cosine threshold of :func:`extract_instances`.
        iters, eta, lengths: as in :func:`blurring_mean_shift`.
        min_size: as in :func:`extract_instances`.
        duplicate_iou: in (0, 1].

    Returns:
        :class:`Proposals` ``(ids, batch, level, embeddings, size)``, ordered by (level,
        image, first point); embeddings are means of the *input* unit embeddings. Runs
        without autograd. A valid point with a non-finite embedding reaches every point
        of its image through mean shift: that image has no proposal (all its ids -1);
        other images are unaffected.
    """
    if isinstance(bandwidths, (int, float)) or not isinstance(bandwidths, Sequence) or not len(bandwidths):
        raise TypeError(f"bandwidths must be a non-empty sequence of numbers, got {bandwidths!r}")
    bandwidths = [check.number(value, f"bandwidths[{i}]", minimum=0.0, strict=True)
                  for i, value in enumerate(bandwidths)]
    duplicate_iou = check.number(duplicate_iou, "duplicate_iou")
    if not 0 < duplicate_iou <= 1:
        raise ValueError(f"duplicate_iou must be in (0, 1], got {duplicate_iou!r}")
    x3, squeeze = _points(x)
    B, N, D = x3.shape
    lengths = _check_lengths(lengths, B, N, x3.device)
    levels: List[Instances] = []
    with torch.no_grad():
        for bandwidth in bandwidths:
            shifted = blurring_mean_shift(x3, bandwidth=bandwidth, iters=iters, eta=eta, lengths=lengths)
            found = extract_instances(shifted, threshold, lengths=lengths, min_size=min_size)
            # Proposal embeddings describe the input points, not their collapsed images.
            embeddings = segment_mean(F.normalize(x3, dim=2, eps=NORM_EPS).reshape(B * N, D),
                                      found.ids.reshape(-1), int(found.size.numel()))
            levels.append(found._replace(embeddings=embeddings))

    keep_masks = []
    for j, level in enumerate(levels):
        keep = torch.ones(level.size.numel(), dtype=torch.bool, device=x3.device)
        ids_j = level.ids.reshape(-1)
        for k in range(j):
            ids_k = levels[k].ids.reshape(-1)
            both = (ids_j >= 0) & (ids_k >= 0)
            count_k = levels[k].size.numel()
            if not count_k or not keep.numel():
                continue
            pairs, inter = torch.unique(ids_j[both] * count_k + ids_k[both], return_counts=True)
            p, q = pairs // count_k, pairs % count_k
            union = level.size[p] + levels[k].size[q] - inter
            duplicate = (inter.to(torch.float64) / union.to(torch.float64) >= duplicate_iou) & keep_masks[k][q]
            keep[p[duplicate]] = False
        keep_masks.append(keep)

    ids_out, batch, level_index, embeddings, sizes = [], [], [], [], []
    offset = 0
    for j, (level, keep) in enumerate(zip(levels, keep_masks)):
        renumber = torch.where(keep, torch.cumsum(keep.to(torch.int64), 0) - 1 + offset, -1)
        flat = level.ids.reshape(-1)
        ids_out.append(torch.where(flat >= 0, renumber[flat.clamp_min(0)] if renumber.numel() else -1, -1).view(B, N))
        batch.append(level.batch[keep])
        level_index.append(torch.full((int(keep.sum()),), j, dtype=torch.int64, device=x3.device))
        embeddings.append(level.embeddings[keep])
        sizes.append(level.size[keep])
        offset += int(keep.sum())
    ids = torch.stack(ids_out)
    return Proposals(ids[:, 0] if squeeze else ids, torch.cat(batch), torch.cat(level_index),
                     torch.cat(embeddings).to(x.dtype), torch.cat(sizes))
