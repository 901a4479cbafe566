"""Kong & Fowlkes' pairwise cosine margin loss (CVPR 2018), usable at every iterate of
blurring mean shift; the hinge over pairs of different instances is an autograd.Function
that works in row blocks (no N x N matrix saved for backward)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from segsort_ext.nn._point_sets import instance_groups, point_sets, sample_rows
from segsort_ext.utils import checks as check
from segsort_ext.utils.constants import NORM_EPS

__all__ = ["pairwise_margin_loss"]

# Elements of one (B, rows, N) similarity block of the pairwise hinge (32 MiB in float64).
PAIR_BLOCK_ELEMENTS = 1 << 22


class _NegativeHinge(torch.autograd.Function):
    """Per image b: sum over ordered pixel pairs (i, j) of different instances of
    a_i a_j [offset + scale * u_i.u_j - alpha]_+, without materialising the N x N
    matrix of all images at once (rows are processed in chunks, and the backward
    recomputes each chunk)."""

    @staticmethod
    def _chunks(u):
        B, N, _ = u.shape
        rows = max(1, PAIR_BLOCK_ELEMENTS // max(1, B * N))
        return range(0, N, rows), rows

    @staticmethod
    def forward(ctx, u, group, weight, alpha, offset, scale):
        starts, rows = _NegativeHinge._chunks(u)
        total = u.new_zeros(u.shape[0])
        for start in starts:
            block = slice(start, start + rows)
            similarity = offset + scale * torch.bmm(u[:, block], u.transpose(1, 2))
            negative = ((group[:, block, None] != group[:, None, :]) & (group[:, block, None] >= 0)
                        & (group[:, None, :] >= 0))
            hinge = (similarity - alpha).clamp_min(0) * negative
            total += torch.einsum("bi,bij,bj->b", weight[:, block], hinge, weight)
        ctx.save_for_backward(u, group, weight)
        ctx.alpha, ctx.offset, ctx.scale = alpha, offset, scale
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total):
        u, group, weight = ctx.saved_tensors
        starts, rows = _NegativeHinge._chunks(u)
        grad_u = torch.zeros_like(u)
        for start in starts:
            block = slice(start, start + rows)
            similarity = ctx.offset + ctx.scale * torch.bmm(u[:, block], u.transpose(1, 2))
            active = ((group[:, block, None] != group[:, None, :]) & (group[:, block, None] >= 0)
                      & (group[:, None, :] >= 0) & (similarity > ctx.alpha))
            # d/du_k of sum_ij a_i a_j h(s_ij) = 2 * scale * a_k * sum_j a_j h'(s_kj) u_j
            # (the pair appears as (k, j) and as (j, k)).
            coefficient = active * (weight[:, block, None] * weight[:, None, :])
            coefficient = coefficient * (2.0 * ctx.scale * grad_total).view(-1, 1, 1)
            grad_u[:, block] = torch.bmm(coefficient.to(u.dtype), u)
        return grad_u, None, None, None, None, None


def pairwise_margin_loss(embeddings, instance_ids: torch.Tensor, *, alpha: float = 0.5,
                         num_samples: Optional[int] = None, generator: Optional[torch.Generator] = None,
                         calibrated: bool = True, iterate_reduction: str = "mean") -> torch.Tensor:
    """Kong & Fowlkes' pairwise cosine margin loss (CVPR 2018, "Recurrent Pixel
    Embedding for Instance Grouping", Eq. 1 with instance-aware pixel weighting).

    For each image with valid pixels V (instance id >= 0), Q instances and instance
    sizes n_q (counted among the pixels used, i.e. after sampling), unit embeddings
    u_i = x_i / |x_i| and similarity

        s_ij = (1 + u_i.u_j) / 2   (calibrated=True, the paper's calibrated cosine)
        s_ij = u_i.u_j             (calibrated=False)

    the per-pair loss is ``l_ij = 1 - s_ij`` if i and j belong to the same instance and
    ``l_ij = max(0, s_ij - alpha)`` otherwise, and the image's loss is

        L_image = sum_{i, j in V} w_ij l_ij / sum_{i, j in V} w_ij,
        w_ij = 1 / (n_{y_i} n_{y_j}),   sum_{i, j} w_ij = Q^2,

    over all ordered pairs (i = j included; those add 0), i.e. the mean over ordered
    instance pairs (q, r) of the mean pair loss between q and r: every instance counts
    the same whatever its size. The loss is the mean of L_image over the images with at
    least one valid pixel (0, with a zero gradient, when there is none). The
    normalisation by sum w_ij = Q^2 is this library's choice (the paper weights the
    pairs by inverse instance sizes; its overall scale does not change the minimiser).

    The same-instance term is computed in O(N D) from per-instance sums; the hinge
    term in row chunks with a recomputing backward (memory O(B * N * chunk), not
    O(B * N^2) saved for backward).

    Args:
        embeddings: (B, D, H, W) with instance_ids (B, H, W); (B, N, D) point sets
            with instance_ids (B, N) (the layout of ``blurring_mean_shift``); or one
            image (N, D) with instance_ids (N,). Or a list/tuple of such tensors of
            equal shape, e.g. all mean-shift iterates ``[x_0, ..., x_T]``: the loss is
            computed at every iterate on the same (sampled) pixels and reduced with
            ``iterate_reduction`` ('mean' or 'sum'). float32/float64.
        instance_ids: int64 instance of each pixel; negative = ignored.
        alpha: the margin (finite): different-instance pairs with s_ij <= alpha cost nothing.
        num_samples: None (all valid pixels) or the number of valid pixels per image
            drawn uniformly without replacement (all when fewer).
        generator: torch.Generator for the sampling.
        calibrated: use the calibrated similarity (1 + cos) / 2 (default) or cos.
        iterate_reduction: 'mean' or 'sum' over the iterates.

    Returns:
        Scalar loss, differentiable in the embeddings (first order). A non-finite
        embedding of a used pixel makes it NaN; ignored and unsampled pixels never
        reach it.
    """
    points, ids = point_sets(embeddings, instance_ids)
    alpha = check.number(alpha, "alpha")
    num_samples = check.optional_positive_int(num_samples, "num_samples")
    check.generator(generator)
    if iterate_reduction not in ("mean", "sum"):
        raise ValueError(f"iterate_reduction must be 'mean' or 'sum', got {iterate_reduction!r}")
    if num_samples is not None:
        index, taken = sample_rows(ids >= 0, num_samples, generator)
        ids = torch.where(taken, ids.gather(1, index), -1)
        points = [x.gather(1, index.unsqueeze(2).expand(-1, -1, x.shape[2])) for x in points]
    group, group_image, sizes, instances_per_image = instance_groups(ids)
    if sizes.numel() == 0:  # no valid pixel anywhere: 0, with a (zero) gradient
        return sum(x.sum() for x in points) * 0.0
    dtype = points[0].dtype
    images_used = (instances_per_image > 0).sum().clamp_min(1).to(dtype)
    # a_i = 1 / (n_{y_i} Q_b): then a_i a_j = w_ij / Q_b^2 and the double sum is L_image.
    group_weight = 1.0 / (sizes.to(dtype) * instances_per_image[group_image].to(dtype))
    weight = torch.where(group >= 0, group_weight[group.clamp_min(0)], 0.0)
    offset, scale = (0.5, 0.5) if check.boolean(calibrated, "calibrated") else (0.0, 1.0)
    valid = group >= 0
    losses = []
    for x in points:
        # Unused pixels are zeroed before normalising: their values (NaN included) reach
        # neither the loss nor the gradient.
        u = F.normalize(torch.where(valid.unsqueeze(2), x, 0.0), dim=2, eps=NORM_EPS)
        # Same-instance pairs: sum_{i, j in q} (1 - s_ij) = scale * (n_q^2 - |sum_{i in q} u_i|^2).
        sums = u.new_zeros(sizes.shape[0], u.shape[2]).index_add(0, group[valid], u[valid])
        positive = (scale * (sizes.to(dtype) ** 2 - (sums * sums).sum(1)) * group_weight ** 2).sum()
        negative = _NegativeHinge.apply(u, group, weight, alpha, offset, scale).sum()
        losses.append((positive + negative) / images_used)
    total = torch.stack(losses).sum()
    return total / len(losses) if iterate_reduction == "mean" else total
