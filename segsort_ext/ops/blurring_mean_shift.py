"""Recurrent vMF Gaussian-blurring mean shift (Kong & Fowlkes, CVPR 2018), differentiable,
with O(N * D) memory per iteration (the N x N kernel is never stored).

One iteration is attention with Q = K = V = X: ``y_j = (1 - eta) x_j + eta * sum_i
softmax_i(bandwidth * x_i . x_j) x_i``, then ``x = normalize(y)``. Backward of one step,
with P the row-softmax (rows = query points j) and G_m = eta * dL/dy:
``dL/dx = (1 - eta) dL/dy + P^T G_m + bandwidth * (dS^T X + dS X)`` where
``dS = P * (G_m X^T - rowsum(G_m * P X))``, recomputed tile by tile: on CUDA (D <= 128)
by fused online-softmax kernels, on CPU (and CUDA for larger D) in blocks of GEMM rows.

The op is one step, ``torch.ops.segsort_ext.blurring_mean_shift_step``, differentiable;
:func:`segsort_ext.cluster.extract_instances` groups the points afterwards.
"""
from __future__ import annotations

from typing import List, Optional, Union

import torch
import torch.nn.functional as F

from segsort_ext.ops import reference
from segsort_ext.ops._extension import HAS_EXTENSION, ops
from segsort_ext.utils import checks as check
from segsort_ext.utils.constants import NORM_EPS

__all__ = ["blurring_mean_shift", "bandwidth_from_margin", "MAX_ITERS"]

# Kong & Fowlkes unroll about 10 iterations and blurring mean shift converges in tens; the
# autograd graph keeps two copies of x per iteration. A count beyond this is a mistake (a
# pixel count, a time budget), refused instead of running for hours.
MAX_ITERS = 1000


def bandwidth_from_margin(alpha: float) -> float:
    """Kong & Fowlkes' bandwidth for a cosine margin alpha: ``3 / (1 - alpha)``."""
    alpha = check.number(alpha, "alpha", minimum=0)
    if alpha >= 1:
        raise ValueError(f"alpha must be a number in [0, 1), got {alpha!r}")
    return 3.0 / (1.0 - alpha)


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
    float16/bfloat16 compute in float32. ``bandwidth`` may be at most half the largest
    number of the compute type (the logits of unit rows stay finite); the gradient grows
    like ``bandwidth`` per iteration, so a huge bandwidth over many iterations can still
    overflow it. ``iters`` is at most :data:`MAX_ITERS`.

    NaN policy (CPU and CUDA alike, as the reference): a NaN point makes every valid point
    of its own image NaN from the first iteration on (the softmax mixes them all), and
    nothing in other images; padding past ``lengths`` is never read. A NaN, infinite or
    non-positive bandwidth, and an eta outside (0, 1], are refused.
    """
    bandwidth = check.number(bandwidth, "bandwidth", finite=False)
    iters = check.nonnegative_int(iters, "iters")
    if iters > MAX_ITERS:
        raise ValueError(f"iters must be <= MAX_ITERS = {MAX_ITERS}, got {iters}")
    eta = check.number(eta, "eta", finite=False)
    check.float_tensor(x, "x")
    compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    # The logits bandwidth * x_i . x_j of unit rows and their distances from the row max
    # (up to 2 * bandwidth) must be finite in the compute type; the op checks the same.
    max_bandwidth = torch.finfo(compute_dtype).max / 2
    if bandwidth > max_bandwidth:
        raise ValueError(f"bandwidth must be <= {max_bandwidth:g} (half the largest {compute_dtype}, the compute "
                         f"type of {x.dtype} x), got {bandwidth}")
    if lengths is not None:
        check.tensor(lengths, "lengths")
    # This function's own buffers (the normalised input, and with return_all every
    # iterate), refused before the first is allocated; the op checks its own.
    check.fits_in_memory(x.device, x.numel() * x.element_size() * (iters + 2 if return_all else 2), "x")
    if not HAS_EXTENSION:
        _check_fallback(x, lengths, bandwidth, eta)
        result = reference.blurring_mean_shift(x.to(compute_dtype), bandwidth=bandwidth, iters=iters, eta=eta,
                                               lengths=lengths, return_all=return_all)
        return [current.to(x.dtype) for current in result] if return_all else result.to(x.dtype)
    current = F.normalize(x, dim=-1, eps=NORM_EPS)
    iterates = [current]
    for _ in range(iters):
        current = ops.blurring_mean_shift_step(current, lengths, bandwidth, eta)[0]
        iterates.append(current)
    return iterates if return_all else current


def _check_fallback(x, lengths, bandwidth, eta):
    """What the op checks in C++, for the pure-PyTorch fallback."""
    check.float_tensor(x, "x")
    if x.dim() != 3:
        raise ValueError(f"x must have shape (B, N, D), got {tuple(x.shape)}")
    check.number(bandwidth, "bandwidth", minimum=0, strict=True)
    if not 0 < eta <= 1:
        raise ValueError(f"eta must be in (0, 1], got {eta}")
    if lengths is not None:
        check.int64_tensor(lengths, "lengths")
        check.same_device(x, "x", lengths, "lengths")
        if tuple(lengths.shape) != (x.shape[0],):
            raise ValueError(f"lengths must have shape (B,) = ({x.shape[0]},), got {tuple(lengths.shape)}")
        if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > x.shape[1]):
            raise ValueError(f"lengths must lie in [0, N = {x.shape[1]}]")
    B, N, D = x.shape
    # The reference's dense (B, N, N) kernel, its softmax and mask, every iteration.
    check.fits_in_memory(x.device, 24 * B * N * (N + D), "x")


if HAS_EXTENSION:

    @torch.library.register_fake("segsort_ext::blurring_mean_shift_step")
    def _blurring_mean_shift_step_fake(x, lengths, bandwidth, eta):
        # norms in the compute type: float32 for half/bfloat16, else the input dtype.
        return x.new_empty(x.shape), x.new_empty(x.shape[:2], dtype=torch.promote_types(x.dtype, torch.float32))

    @torch.library.register_fake("segsort_ext::_blurring_mean_shift_step_backward")
    def _blurring_mean_shift_step_backward_fake(grad_out, x, out, norms, lengths, bandwidth, eta):
        return x.new_empty(x.shape)

    def _setup_context(ctx, inputs, output):
        x, lengths, bandwidth, eta = inputs
        out, norms = output
        ctx.mark_non_differentiable(norms)
        ctx.save_for_backward(x, out, norms, lengths)
        ctx.bandwidth, ctx.eta = bandwidth, eta

    def _backward(ctx, grad_out, _grad_norms):
        x, out, norms, lengths = ctx.saved_tensors
        grad_x = ops._blurring_mean_shift_step_backward(grad_out, x, out, norms, lengths, ctx.bandwidth, ctx.eta)
        return grad_x, None, None, None

    torch.library.register_autograd("segsort_ext::blurring_mean_shift_step", _backward,
                                    setup_context=_setup_context)
