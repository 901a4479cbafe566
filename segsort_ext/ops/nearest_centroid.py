"""The E-step (and M-step sums) of dataset-level spherical k-means as one pass over the
points: the op behind :class:`segsort_ext.cluster.SphericalKMeans` on the CPU."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from segsort_ext.ops import reference
from segsort_ext.ops._extension import ops, python_kernel
from segsort_ext.utils import checks as check

__all__ = ["NearestCentroid", "nearest_centroid"]


class NearestCentroid(NamedTuple):
    best: torch.Tensor  # (N,) largest cosine of each point
    labels: torch.Tensor  # (N,) int64 index of that centroid
    sums: Optional[torch.Tensor]  # (K, D) sum of the points of each centroid (with_sums), else None


def nearest_centroid(points: torch.Tensor, centroids: torch.Tensor, *, with_sums: bool = False) -> NearestCentroid:
    """The centroid of largest cosine of every point, and optionally each centroid's sum
    of its points, in one pass over the points.

    Args:
        points: (N, D) float32/float64 unit rows (a zero row scores 0 everywhere: label 0,
            and it adds nothing to the sums).
        centroids: (K, D) unit rows, K >= 1, the dtype and device of ``points``.
        with_sums: also return the (K, D) sums of the points of each centroid.

    Returns:
        :class:`NearestCentroid` ``(best (N,), labels (N,) int64, sums (K, D) or None)``:
        ties go to the lowest index; a point with a NaN score gets best NaN and the first
        such centroid (torch.max's rule), and its NaN reaches that centroid's sum. Not
        differentiable (labels are discrete).

    The compiled kernel is CPU only (results independent of the thread count). On other
    devices (CUDA) and without the extension the op runs its plain-PyTorch kernel, the
    reference (one GEMM, ``max``, ``index_add_``): no CUDA kernel was written, as none could
    be checked on a GPU.
    """
    check.float_tensor(points, "points")
    check.float_tensor(centroids, "centroids")
    if not isinstance(with_sums, bool):
        raise TypeError(f"with_sums must be a bool, got {type(with_sums).__name__}")
    best, labels, sums = ops.nearest_centroid(points.detach(), centroids.detach(), with_sums)
    return NearestCentroid(best, labels, sums if with_sums else None)


def _check_inputs(points, centroids):
    """What the compiled kernel checks (csrc/cpu/nearest_centroid.cpp), for the
    plain-PyTorch kernel and the fake."""
    if points.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"points must be float32 or float64, got {points.dtype}")
    if centroids.dtype != points.dtype:
        raise TypeError(f"centroids must have the dtype of points ({points.dtype}), got {centroids.dtype}")
    check.same_device(points, "points", centroids, "centroids")
    if points.dim() != 2 or points.shape[1] < 1:
        raise ValueError(f"points must have shape (N, D) with D >= 1, got {tuple(points.shape)}")
    if centroids.dim() != 2 or centroids.shape[0] < 1 or centroids.shape[1] != points.shape[1]:
        raise ValueError(f"centroids must have shape (K, D) = (K, {points.shape[1]}) with K >= 1, "
                         f"got {tuple(centroids.shape)}")


@python_kernel("nearest_centroid")
def _nearest_centroid_python(points, centroids, with_sums):
    """The plain-PyTorch kernel (every device but the CPU, and the CPU without the
    extension): the checks, then ``reference.nearest_centroid``; no sums give (0, D)."""
    _check_inputs(points, centroids)
    best, labels, sums = reference.nearest_centroid(points, centroids, with_sums=with_sums)
    return best, labels, sums if with_sums else points.new_zeros((0, points.shape[1]))


@torch.library.register_fake("segsort_ext::nearest_centroid")
def _nearest_centroid_fake(points, centroids, with_sums):
    check.same_device(points, "points", centroids, "centroids")
    N, D = points.shape
    return (points.new_empty(N), points.new_empty(N, dtype=torch.int64),
            points.new_empty(centroids.shape[0] if with_sums else 0, D))
