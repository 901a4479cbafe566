"""Spherical (vMF) k-means per image: SegSort's pixel sorting as one fused op (not
differentiable: labels are discrete). Dataset-level clustering is
:class:`segsort_ext.cluster.SphericalKMeans`."""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from segsort_ext.ops import reference
from segsort_ext.ops._extension import ops, python_kernel
from segsort_ext.ops.blurring_mean_shift import MAX_ITERS
from segsort_ext.utils import checks as check

__all__ = ["KMeansResult", "spherical_kmeans"]


class KMeansResult(NamedTuple):
    labels: torch.Tensor  # (B, H, W) int64 in [0, K), -1 for masked pixels
    centroids: torch.Tensor  # (B, K, D + 2) unit centroids the last E-step used


def spherical_kmeans(
    x: torch.Tensor,
    grid=(5, 5),
    *,
    iters: int = 10,
    coord_weight: float = 1.0,
    mask: Optional[torch.Tensor] = None,
    init: Optional[torch.Tensor] = None,
    tol: Optional[float] = None,
) -> KMeansResult:
    """Per-image spherical k-means on pixel embeddings and positions (SegSort's pixel
    sorting), all images of the batch in one op.

    Features ``f = normalize(cat(normalize(x), coord_weight * (ys, xs)))`` with ys, xs
    linear over [-0.5, 0.5] along H and W. Initial labels: ``init`` if given, else the
    ``grid``: pixel (y, x) starts in cell ``floor(y*gh/H)*gw + floor(x*gw/W)``;
    K = gh * gw. Each iteration is an M-step (centroid = normalised sum of its members;
    an empty cluster keeps its previous centroid, one that never had a member is the
    zero vector) then an E-step (argmax of f . centroid, ties to the lowest index).

    Args:
        x: (B, D, H, W) embeddings (float32/64; float16/bfloat16 accumulate in float32).
        grid: (gh, gw) or an int for a square grid.
        iters: iterations, 1 to ``MAX_ITERS`` (1000).
        coord_weight: weight of the position channels.
        mask: optional (B, H, W) bool, True where a pixel takes part.
        init: optional (B, H, W) int64 initial labels in [0, K); negative = masked.
        tol: None runs all ``iters``; else an image stops early once at most
            ``tol * (its valid pixels)`` labels changed in an E-step (0: a fixed point).

    Returns:
        :class:`KMeansResult` ``(labels (B, H, W) int64, centroids (B, K, D + 2))``.
        Pixels that are masked, have a negative ``init`` or a non-finite embedding get
        label -1 and take no part. Not differentiable (labels are discrete).

    NaN policy (CPU and CUDA alike): a NaN or infinite embedding masks its pixel, as above;
    a NaN or infinite ``coord_weight`` is refused. ``K = gh * gw`` and the cell arithmetic
    are overflow-checked, and a grid whose centroids cannot fit in the device's memory is
    refused with a ValueError naming ``grid`` before any allocation.
    """
    gh, gw = (check.int64(size, "grid") for size in check.grid(grid, "grid"))
    iters = check.positive_int(iters, "iters")
    if iters > MAX_ITERS:
        raise ValueError(f"iters must be <= {MAX_ITERS}, got {iters}")
    coord_weight = check.number(coord_weight, "coord_weight")
    # The squared norm of a feature, about 1 + coord_weight**2 / 2, must stay finite in
    # float32 (1e308 gave NaN centroids).
    if abs(coord_weight) > 1e18:
        raise ValueError(f"coord_weight must be within +-1e18, got {coord_weight}")
    check.tensor(x, "x")
    for value, name in ((mask, "mask"), (init, "init")):
        if value is not None:
            check.tensor(value, name)
    if tol is not None and (isinstance(tol, bool) or not (isinstance(tol, (int, float)) and tol >= 0)):
        raise ValueError(f"tol must be None or a number >= 0, got {tol!r}")
    return KMeansResult(*ops.spherical_kmeans(x.detach(), mask, init, gh, gw, iters, coord_weight,
                                              -1.0 if tol is None else float(tol)))


@python_kernel("spherical_kmeans")
def _spherical_kmeans_python(x, mask, init, grid_h, grid_w, iters, coord_weight, tol):
    """The plain-PyTorch kernel: the checks of csrc/include/segsort/spherical_kmeans.h,
    then ``reference.spherical_kmeans``."""
    check.float_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, D, H, W), got {tuple(x.shape)}")
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"grid must be two ints >= 1, got ({grid_h}, {grid_w})")
    B, D, H, W = x.shape
    K = grid_h * grid_w
    if max(K, H * grid_h, W * grid_w) > check.INT64_MAX:
        raise ValueError(f"grid ({grid_h}, {grid_w}) is too large for images of {H} x {W} pixels")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    check.number(coord_weight, "coord_weight")
    if math.isnan(tol):
        raise ValueError(f"tol must be a number (< 0: no early stop), got {tol}")
    map_shape = (B, H, W)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
        check.same_device(x, "x", mask, "mask")
        if tuple(mask.shape) != map_shape:
            raise ValueError(f"mask must have shape (B, H, W) = {map_shape}, got {tuple(mask.shape)}")
    if init is not None:
        check.int64_tensor(init, "init")
        check.same_device(x, "x", init, "init")
        if tuple(init.shape) != map_shape:
            raise ValueError(f"init must have shape (B, H, W) = {map_shape}, got {tuple(init.shape)}")
    # The kernels' buffers (per pixel, then per image and cluster), then the reference's:
    # the centroids, and the one-hot (pixels, K) of each M-step.
    acc_size = 8 if x.dtype == torch.float64 else 4
    check.fits_in_memory(x.device, B * H * W * ((D + 2) * acc_size + 17), "x")
    check.fits_in_memory(x.device, B * K * ((D + 2) * (x.element_size() + 3 * acc_size) + 8), "grid")
    check.fits_in_memory(x.device, 8 * K * (B * (D + 2) + H * W), "grid")
    if init is not None and init.numel() and int(init.max()) >= K:
        raise ValueError(f"init labels must be < K = grid_h * grid_w = {K}, found {int(init.max())}")
    labels, centroids = reference.spherical_kmeans(x, (grid_h, grid_w), iters=iters, coord_weight=coord_weight,
                                                   mask=mask, init=init, tol=None if tol < 0 else tol)
    return labels.contiguous(), centroids.contiguous()


@torch.library.register_fake("segsort_ext::spherical_kmeans")
def _spherical_kmeans_fake(x, mask, init, grid_h, grid_w, iters, coord_weight, tol):
    # Meta tensors reach only this function: a mix with real ones must not pass.
    for name, value in (("mask", mask), ("init", init)):
        if value is not None:
            check.same_device(x, "x", value, name)
    B, D, H, W = x.shape
    return x.new_empty((B, H, W), dtype=torch.int64), x.new_empty((B, grid_h * grid_w, D + 2))
