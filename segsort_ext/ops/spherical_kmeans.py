"""Spherical (vMF) k-means per image: SegSort's pixel sorting as one fused op (not
differentiable: labels are discrete). Dataset-level clustering is
:class:`segsort_ext.cluster.SphericalKMeans`."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from segsort_ext.ops import reference
from segsort_ext.ops._extension import HAS_EXTENSION, ops
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
        iters: iterations (>= 1).
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
    iters = check.int64(check.positive_int(iters, "iters"), "iters")
    coord_weight = check.number(coord_weight, "coord_weight")
    check.tensor(x, "x")
    for value, name in ((mask, "mask"), (init, "init")):
        if value is not None:
            check.tensor(value, name)
    if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be None or a number >= 0, got {tol!r}")
    if not HAS_EXTENSION:
        _check_fallback(x, mask, init, gh, gw)
        if x.is_meta:  # shapes only, as the extension's fake kernel gives them
            B, D, H, W = x.shape
            return KMeansResult(x.new_empty((B, H, W), dtype=torch.int64), x.new_empty((B, gh * gw, D + 2)))
        return KMeansResult(*reference.spherical_kmeans(x.detach(), (gh, gw), iters=iters, coord_weight=coord_weight,
                                                        mask=mask, init=init, tol=tol))
    return KMeansResult(*ops.spherical_kmeans(x.detach(), mask, init, gh, gw, iters, coord_weight,
                                              -1.0 if tol is None else float(tol)))


def _check_fallback(x, mask, init, gh, gw):
    """What the op checks in C++, for the pure-PyTorch fallback."""
    check.float_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, D, H, W), got {tuple(x.shape)}")
    map_shape = (x.shape[0], x.shape[2], x.shape[3])
    if mask is not None:
        check.tensor(mask, "mask")
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
    B, D, H, W = x.shape
    if max(gh * gw, H * gh, W * gw) > check.INT64_MAX:
        raise ValueError(f"grid ({gh}, {gw}) is too large for images of {H} x {W} pixels")
    # The reference's buffers: the centroids, and the one-hot (pixels, K) of each M-step.
    check.fits_in_memory(x.device, 8 * gh * gw * (B * (D + 2) + H * W), "grid")
    if init is not None and init.numel() and not init.is_meta and int(init.max()) >= gh * gw:
        raise ValueError(f"init labels must be < K = grid_h * grid_w = {gh * gw}, found {int(init.max())}")


if HAS_EXTENSION:

    @torch.library.register_fake("segsort_ext::spherical_kmeans")
    def _spherical_kmeans_fake(x, mask, init, grid_h, grid_w, iters, coord_weight, tol):
        # Meta tensors reach only this function: a mix with real ones must not pass.
        for name, value in (("mask", mask), ("init", init)):
            if value is not None:
                check.same_device(x, "x", value, name)
        B, D, H, W = x.shape
        return x.new_empty((B, H, W), dtype=torch.int64), x.new_empty((B, grid_h * grid_w, D + 2))
