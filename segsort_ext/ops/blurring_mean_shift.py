"""Recurrent vMF Gaussian-blurring mean shift (Kong & Fowlkes, CVPR 2018), differentiable,
with O(N * D) memory per iteration (the N x N kernel is never stored).

One iteration is attention with Q = K = V = X: ``y_j = (1 - eta) x_j + eta * sum_i
softmax_i(bandwidth * x_i . x_j) x_i``, then ``x = normalize(y)``. Backward of one step,
with P the row-softmax (rows = query points j) and G_m = eta * dL/dy:
``dL/dx = (1 - eta) dL/dy + P^T G_m + bandwidth * (dS^T X + dS X)`` where
``dS = P * (G_m X^T - rowsum(G_m * P X))``, recomputed tile by tile: on CUDA (D <= 128)
by fused online-softmax kernels, on CPU (and CUDA for larger D) in blocks of GEMM rows.

After mean shift, :func:`extract_instances` groups points whose embeddings coincide into
instances (greedy seeds, batched on the device) and :func:`instance_proposals` merges the
instances of several bandwidths into duplicate-free proposals.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from segsort_ext.utils import checks as check
from segsort_ext.ops import reference
from segsort_ext.ops._extension import HAS_EXTENSION, ops
from segsort_ext.ops import segment_mean
from segsort_ext.utils.constants import NORM_EPS

__all__ = [
    "blurring_mean_shift",
    "bandwidth_from_margin",
    "cosine_threshold_from_margin",
    "Instances",
    "extract_instances",
    "Proposals",
    "instance_proposals",
]


def bandwidth_from_margin(alpha: float) -> float:
    """Kong & Fowlkes' bandwidth for a cosine margin alpha: ``3 / (1 - alpha)``."""
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha < 1:
        raise ValueError(f"alpha must be a number in [0, 1), got {alpha!r}")
    return 3.0 / (1.0 - alpha)


class _MeanShiftStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lengths, bandwidth, eta):
        out, norms = ops.mean_shift_step_forward(x, lengths, bandwidth, eta)
        ctx.save_for_backward(x, out, norms, lengths)
        ctx.bandwidth, ctx.eta = bandwidth, eta
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, out, norms, lengths = ctx.saved_tensors
        grad_x = ops.mean_shift_step_backward(grad_out.contiguous(), x, out, norms, lengths, ctx.bandwidth, ctx.eta)
        return grad_x, None, None, None


def blurring_mean_shift(
    x: torch.Tensor,
    *,
    bandwidth: float,
    iters: int = 10,
    eta: float = 1.0,
    lengths: Optional[torch.Tensor] = None,
    return_all: bool = False,
) -> Union[torch.Tensor, List[torch.Tensor]]:
    """Runs ``iters`` iterations of vMF blurring mean shift on every image's points.

    Args:
        x: (B, N, D) points (pixel embeddings); L2-normalised inside.
        bandwidth: the vMF concentration delta (see :func:`bandwidth_from_margin`).
        iters: iterations T (>= 0).
        eta: step size in (0, 1]; 1 is plain blurring mean shift.
        lengths: optional (B,) int64 valid points per image (the first lengths[b] rows);
            the rest are padding, returned unchanged, and never influence valid points.
        return_all: return ``[x_0, ..., x_T]`` (for a loss at every iteration) instead of x_T.

    Differentiable in x. Memory per iteration is O(N * D) (plus, on CPU and for D > 128,
    one bounded block of kernel rows); the backward recomputes the kernel instead of
    storing N x N.
    float16/bfloat16 compute in float32.
    """
    check.float_tensor(x, "x")
    if x.dim() != 3:
        raise ValueError(f"x must have shape (B, N, D), got {tuple(x.shape)}")
    if not isinstance(bandwidth, (int, float)) or isinstance(bandwidth, bool) or not bandwidth > 0:
        raise ValueError(f"bandwidth must be a number > 0, got {bandwidth!r}")
    iters = check.nonnegative_int(iters, "iters")
    if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not 0 < eta <= 1:
        raise ValueError(f"eta must be in (0, 1], got {eta!r}")
    B, N, _ = x.shape
    if lengths is None:
        lengths = torch.full((B,), N, dtype=torch.int64, device=x.device)
    else:
        check.int64_tensor(lengths, "lengths")
        check.same_device(x, "x", lengths, "lengths")
        if tuple(lengths.shape) != (B,):
            raise ValueError(f"lengths must have shape (B,) = ({B},), got {tuple(lengths.shape)}")
        if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > N):
            raise ValueError(f"lengths must lie in [0, N = {N}]")
    if not HAS_EXTENSION:
        return reference.blurring_mean_shift(x, bandwidth=bandwidth, iters=iters, eta=eta, lengths=lengths,
                                             return_all=return_all)
    current = F.normalize(x, dim=2, eps=NORM_EPS)
    iterates = [current]
    for _ in range(iters):
        current = _MeanShiftStep.apply(current, lengths, float(bandwidth), float(eta))
        iterates.append(current)
    return iterates if return_all else current


if HAS_EXTENSION:

    @torch.library.register_fake("segsort_ext::mean_shift_step_forward")
    def _mean_shift_step_forward_fake(x, lengths, bandwidth, eta):
        dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        return torch.empty_like(x), x.new_empty(x.shape[:2], dtype=dtype)

    @torch.library.register_fake("segsort_ext::mean_shift_step_backward")
    def _mean_shift_step_backward_fake(grad_out, x, out, norms, lengths, bandwidth, eta):
        return torch.empty_like(x)
