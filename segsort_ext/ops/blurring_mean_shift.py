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

from segsort_ext.ops._extension import ops, python_kernel
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
    check.boolean(return_all, "return_all")
    # This function's own buffers (the normalised input, and with return_all every
    # iterate), refused before the first is allocated; the op checks its own.
    check.fits_in_memory(x.device, x.numel() * x.element_size() * (iters + 2 if return_all else 2), "x")
    current = F.normalize(x, dim=-1, eps=NORM_EPS)
    iterates = [current]
    for _ in range(iters):
        current = ops.blurring_mean_shift_step(current, lengths, bandwidth, eta)[0]
        iterates.append(current)
    return iterates if return_all else current


def _check_inputs(x, lengths, bandwidth, eta):
    """The checks of csrc/include/segsort/blurring_mean_shift.h, for the plain-PyTorch
    kernels, and the size of their dense (B, N, N) kernel."""
    check.float_tensor(x, "x")
    if x.dim() != 3:
        raise ValueError(f"x must have shape (B, N, D), got {tuple(x.shape)}")
    B, N, D = x.shape
    if lengths is not None:
        check.int64_tensor(lengths, "lengths")
        check.same_device(x, "x", lengths, "lengths")
        if tuple(lengths.shape) != (B,):
            raise ValueError(f"lengths must have shape (B,) = ({B},), got {tuple(lengths.shape)}")
    check.number(bandwidth, "bandwidth", minimum=0, strict=True)
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    max_bandwidth = torch.finfo(compute_dtype).max / 2
    if bandwidth > max_bandwidth:
        raise ValueError(f"bandwidth must be <= {max_bandwidth:g} (half the largest {compute_dtype}, the compute "
                         f"type of {x.dtype} x), got {bandwidth}")
    if not 0 < eta <= 1:
        raise ValueError(f"eta must be in (0, 1], got {eta}")
    acc_size = 8 if x.dtype == torch.float64 else 4
    check.fits_in_memory(x.device, B * N * (11 * D + 1) * acc_size, "x")
    check.fits_in_memory(x.device, 24 * B * N * (N + D), "x")  # the dense kernel, its softmax and mask
    if lengths is not None and lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > N):
        raise ValueError(f"lengths must lie in [0, N = {N}]")


def _dense_step(x, lengths, bandwidth, eta):
    """One step as the reference computes it, in the compute type: (x, the valid points
    (B, N), the row softmax P (B, N, N) of the valid points (zero rows and columns for
    padding), y and |y|), the padding rows of x zeroed so that they never reach a valid point."""
    B, N, _ = x.shape
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    if lengths is None:
        lengths = torch.full((B,), N, dtype=torch.int64, device=x.device)
    valid = torch.arange(N, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
    values = x.masked_fill(~valid.unsqueeze(2), 0)
    logits = bandwidth * values @ values.transpose(1, 2)
    logits = logits.masked_fill(~valid.unsqueeze(1), torch.finfo(logits.dtype).min)
    p = torch.softmax(logits, 2).masked_fill(~valid.unsqueeze(2), 0)
    y = (1 - eta) * values + eta * p @ values
    return x, valid, values, p, y, y.norm(dim=2)


@python_kernel("blurring_mean_shift_step")
def _blurring_mean_shift_step_python(x, lengths, bandwidth, eta):
    """The plain-PyTorch kernel: one iteration of ``reference.blurring_mean_shift`` on x as
    given (no normalisation first), with the norms |y| (1 for padding) the backward reuses."""
    _check_inputs(x, lengths, bandwidth, eta)
    x_in, valid, _, _, y, norms = _dense_step(x, lengths, bandwidth, eta)
    out = torch.where(valid.unsqueeze(2), y / norms.clamp_min(NORM_EPS).unsqueeze(2), x_in)
    return out.to(x.dtype), torch.where(valid, norms, 1)


@python_kernel("_blurring_mean_shift_step_backward")
def _blurring_mean_shift_step_backward_python(grad_out, x, out, norms, lengths, bandwidth, eta):
    """The plain-PyTorch backward of one step, on the dense kernel (the formula of this
    module's docstring; mean_shift_grad_y in csrc/include/segsort/blurring_mean_shift.h)."""
    _check_inputs(x, lengths, bandwidth, eta)
    for value, name in ((grad_out, "grad_out"), (out, "out"), (norms, "norms")):
        check.float_tensor(value, name)
        check.same_device(x, "x", value, name)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out must have the shape of x {tuple(x.shape)}, got {tuple(grad_out.shape)}")
    if out.shape != x.shape:
        raise ValueError(f"out must have the shape of x {tuple(x.shape)}, got {tuple(out.shape)}")
    if tuple(norms.shape) != tuple(x.shape[:2]):
        raise ValueError(f"norms must have shape (B, N) = {tuple(x.shape[:2])}, got {tuple(norms.shape)}")
    dtype = torch.promote_types(x.dtype, torch.float32)
    grad_out_c, out_c, n = grad_out.to(dtype), out.to(dtype), norms.to(dtype).unsqueeze(2)
    _, valid, values, p, _, _ = _dense_step(x, lengths, bandwidth, eta)
    # dL/dy of out = y / max(|y|, eps); padding rows take no part (their out is x itself).
    projected = grad_out_c - out_c * (out_c * grad_out_c).sum(2, keepdim=True)
    grad_y = torch.where(n >= NORM_EPS, projected / n, grad_out_c / NORM_EPS).masked_fill(~valid.unsqueeze(2), 0)
    grad_m = eta * grad_y  # m_j = sum_i p_ji x_i
    c = (grad_m * (p @ values)).sum(2, keepdim=True)
    ds = p * (grad_m @ values.transpose(1, 2) - c)  # the softmax backward
    grad_x = ((1 - eta) * grad_y + p.transpose(1, 2) @ grad_m
              + bandwidth * (ds.transpose(1, 2) @ values + ds @ values))
    return torch.where(valid.unsqueeze(2), grad_x, grad_out_c).to(x.dtype)


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


torch.library.register_autograd("segsort_ext::blurring_mean_shift_step", _backward, setup_context=_setup_context)
