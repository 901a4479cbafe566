"""Prototype pooling: the (normalised) mean of each segment's pixels, and per-segment
label statistics."""
from __future__ import annotations

import torch

from segsort_ext.ops._extension import ops, python_kernel
from segsort_ext.utils import checks as check
from segsort_ext.utils.constants import NORM_EPS

__all__ = ["segment_mean", "segment_label_histogram", "segment_majority_mean"]


def segment_mean(x: torch.Tensor, ids: torch.Tensor, num_segments: int, *, normalize: bool = True) -> torch.Tensor:
    """Pools pixel features into segment prototypes.

    Args:
        x: (B, D, H, W) features with ids (B, H, W), or (N, D) with ids (N,). Any float
            dtype; half/bfloat16 accumulate in float32. Strided inputs are read in place.
        ids: int64 segment of each pixel in ``[0, num_segments)``; negative = ignored.
        num_segments: S (e.g. ``segments.num_segments``); passing it avoids a sync.
        normalize: True: the L2-normalised sum of the members (a unit prototype, as
            F.normalize with eps 1e-12). False: the arithmetic mean of the members.

    Returns:
        (S, D) prototypes; an empty segment gives a zero row, never NaN. Differentiable
        in x. Checking ``ids < num_segments`` costs one device-to-host sync.

    NaN policy (CPU and CUDA alike, as the reference): NaN in a member's features makes its
    segment's whole row NaN, and the gradient of that segment's pixels NaN; nothing else
    changes. Infinite features follow IEEE arithmetic as ``F.normalize`` does. The values
    of ignored pixels (negative ids) never reach the output. Sizes that cannot fit in the
    device's memory (``num_segments`` of 2**40, say) are refused with a ValueError before
    any allocation.

    CUDA sums with float atomics (run-to-run differences in the last bits) unless
    ``torch.use_deterministic_algorithms(True)``, which selects a sorted, deterministic path.
    """
    num_segments = check.int64(check.nonnegative_int(num_segments, "num_segments"), "num_segments")
    check.tensor(x, "x")
    check.tensor(ids, "ids")
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    return ops.segment_mean(x, ids, num_segments, normalize)[0]


def segment_label_histogram(
    ids: torch.Tensor, labels: torch.Tensor, num_segments: int, num_classes: int, *, ignore_index: int = 255
) -> torch.Tensor:
    """(S, C) int64 count of each class among each segment's pixels.

    ids and labels have the same shape ((B, H, W) or (N,)); pixels with a negative id or
    label ``ignore_index`` (or negative) are not counted. Costs one sync (the range check
    of ids and labels).
    """
    check.int64_tensor(ids, "ids")
    check.int64_tensor(labels, "labels")
    check.same_device(ids, "ids", labels, "labels")
    if labels.shape != ids.shape:
        raise ValueError(f"labels must have the shape of ids {tuple(ids.shape)}, got {tuple(labels.shape)}")
    num_segments = check.int64(check.nonnegative_int(num_segments, "num_segments"), "num_segments")
    num_classes = check.int64(check.nonnegative_int(num_classes, "num_classes"), "num_classes")
    ignore_index = check.int64(ignore_index, "ignore_index")
    # Before anything is allocated: the dense (S, C) counts, and per pixel a mask and a key.
    check.fits_in_memory(ids.device, 8 * num_segments * num_classes, "num_segments * num_classes")
    check.fits_in_memory(ids.device, 24 * ids.numel(), "ids")
    valid = (ids >= 0) & (labels != ignore_index) & (labels >= 0)
    if bool((valid & (labels >= num_classes)).any()):
        raise ValueError(f"labels must be < num_classes = {num_classes} (or ignore_index = {ignore_index})")
    if ids.numel() and int(ids.max()) >= num_segments:
        raise ValueError(f"ids must be < num_segments = {num_segments}, found id {int(ids.max())}")
    ids_v, labels_v = ids[valid], labels[valid]
    # bincount has a deterministic CUDA kernel (integer counts).
    counts = torch.bincount(ids_v * num_classes + labels_v, minlength=num_segments * num_classes)
    return counts.view(num_segments, num_classes)


def segment_majority_mean(
    x: torch.Tensor,
    ids: torch.Tensor,
    labels: torch.Tensor,
    num_segments: int,
    num_classes: int,
    *,
    ignore_index: int = 255,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypes averaged over the pixels of each segment's majority label only
    (SegSort Sec. 3.3: the training-set prototypes used for kNN retrieval).

    Returns ``(prototypes (S, D), majority (S,))``; majority ties go to the lowest class,
    and a segment with no labelled pixel has majority -1 and a zero prototype.
    """
    histogram = segment_label_histogram(ids, labels, num_segments, num_classes, ignore_index=ignore_index)
    majority = torch.where(histogram.sum(1) > 0, histogram.argmax(1), -1)
    pixel_majority = majority[ids.clamp_min(0)] if num_segments else torch.full_like(ids, -1)
    keep = (ids >= 0) & (labels == pixel_majority)
    return segment_mean(x, torch.where(keep, ids, -1), num_segments, normalize=normalize), majority


@python_kernel("segment_mean")
def _segment_mean_python(x, ids, num_segments, normalize):
    """The plain-PyTorch kernel: the checks of csrc/include/segsort/segment_mean.h, then
    the reference's sums (accumulated in float32 for float16/bfloat16, as the kernels do)
    and the row formula of its ``segment_mean_row``."""
    check.float_tensor(x, "x")
    check.int64_tensor(ids, "ids")
    check.same_device(x, "x", ids, "ids")
    check.pixel_features(x, ids)
    if num_segments < 0:
        raise ValueError(f"num_segments must be >= 0, got {num_segments}")
    check.fits_in_memory(x.device, num_segments * (x.shape[1] + 1) * (x.element_size() + 8), "num_segments")
    check.fits_in_memory(ids.device, 8 * ids.numel(), "ids")
    if ids.numel() and int(ids.max()) >= num_segments:
        raise ValueError(f"ids must be < num_segments = {num_segments}, found {int(ids.max())}")
    acc = torch.promote_types(x.dtype, torch.float32)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) if x.dim() == 4 else x
    flat_ids = ids.reshape(-1)
    keep = flat_ids >= 0
    sums = pixels.new_zeros(num_segments, pixels.shape[1], dtype=acc).index_add(0, flat_ids[keep],
                                                                                pixels[keep].to(acc))
    if normalize:  # F.normalize: the sum over max(|sum|, eps)
        denom = sums.norm(dim=1)
        out = sums / denom.clamp_min(NORM_EPS).unsqueeze(1)
    else:
        denom = torch.bincount(flat_ids[keep], minlength=num_segments).to(acc)
        out = sums / denom.clamp_min(1).unsqueeze(1)
    return out.to(x.dtype), denom.to(x.dtype)


@python_kernel("_segment_mean_backward")
def _segment_mean_backward_python(grad_out, out, denom, ids, x_shape, normalize):
    """The plain-PyTorch backward: the checks and the formula of ``segment_mean_row_grad``
    (csrc/include/segsort/segment_mean.h), each pixel then taking its segment's row."""
    check.float_tensor(grad_out, "grad_out")
    check.like(out, "out", grad_out, "grad_out")
    check.like(denom, "denom", grad_out, "grad_out")
    check.int64_tensor(ids, "ids")
    check.same_device(grad_out, "grad_out", ids, "ids")
    if grad_out.shape != out.shape or out.dim() != 2:
        raise ValueError(f"grad_out must have the shape of out (S, D), got {tuple(grad_out.shape)} and "
                         f"{tuple(out.shape)}")
    S, D = out.shape
    if denom.dim() != 1 or denom.shape[0] != S:
        raise ValueError(f"denom must have shape (S,) = ({S},), got {tuple(denom.shape)}")
    x_shape = tuple(int(size) for size in x_shape)
    check.pixel_shapes(x_shape, ids.shape, "x_shape")
    if x_shape[1] != D:
        raise ValueError(f"x_shape must have D = {D} channels, got {list(x_shape)}")
    check.fits_in_memory(grad_out.device, ids.numel() * (D * grad_out.element_size() + 8), "x_shape")
    if ids.numel() and int(ids.max()) >= S:
        raise ValueError(f"ids must be < S = {S}, found {int(ids.max())}")
    if S == 0 or ids.numel() == 0:
        return grad_out.new_zeros(x_shape)
    acc = torch.promote_types(grad_out.dtype, torch.float32)
    dy, y, den = grad_out.to(acc), out.to(acc), denom.to(acc).unsqueeze(1)
    if normalize:  # d(s / max(|s|, eps)); a NaN norm takes the projection (NaN)
        ds = torch.where(den < NORM_EPS, dy / NORM_EPS, (dy - y * (y * dy).sum(1, keepdim=True)) / den)
    else:
        ds = dy / torch.where(den > 1, den, 1)
    flat_ids = ids.reshape(-1)
    grad = torch.where((flat_ids >= 0).unsqueeze(1), ds[flat_ids.clamp_min(0)], 0).to(grad_out.dtype)
    if len(x_shape) == 4:
        B, _, H, W = x_shape
        return grad.view(B, H, W, D).permute(0, 3, 1, 2).contiguous()
    return grad


@torch.library.register_fake("segsort_ext::segment_mean")
def _segment_mean_fake(x, ids, num_segments, normalize):
    # Meta tensors reach only this function: a mix with real ones must not pass.
    check.same_device(x, "x", ids, "ids")
    return x.new_empty((num_segments, x.shape[1])), x.new_empty((num_segments,))


@torch.library.register_fake("segsort_ext::_segment_mean_backward")
def _segment_mean_backward_fake(grad_out, out, denom, ids, x_shape, normalize):
    return grad_out.new_empty(x_shape)


def _setup_context(ctx, inputs, output):
    x, ids, _, normalize = inputs
    out, denom = output
    ctx.mark_non_differentiable(denom)
    ctx.save_for_backward(out, denom, ids)
    ctx.x_shape = x.shape
    ctx.normalize = normalize


def _backward(ctx, grad_out, _grad_denom):
    out, denom, ids = ctx.saved_tensors
    grad_x = ops._segment_mean_backward(grad_out, out, denom, ids, list(ctx.x_shape), ctx.normalize)
    return grad_x, None, None, None


torch.library.register_autograd("segsort_ext::segment_mean", _backward, setup_context=_setup_context)
