"""Non-maximum suppression of soft boundary maps, after Dollar & Zitnick's structured
edges toolbox (``edgesNmsMex.cpp``, and the ``edge_nms.m`` scripts with which HED, RCF and
their successors are evaluated on BSDS500): thick boundary responses (HED's are several
pixels wide) become one-pixel ridges before the benchmark thresholds them.

The edge normal comes from the second derivatives of the map smoothed by a triangle
filter; a pixel is suppressed when its value (times a small tolerance) is below the
bilinearly interpolated value at distance ``1..radius`` along the normal on either side;
responses within ``border`` pixels of the image sides are faded linearly to zero there.

NaN/inf policy: :func:`triangle_blur` and :func:`edge_orientation` keep a non-finite pixel
local (the outputs within their window of it); :func:`edge_nms` refuses one (ValueError
naming ``edges`` or ``orientation``).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from segsort_ext.utils import checks

__all__ = ["triangle_blur", "edge_orientation", "edge_nms"]


def _edge_map(edges, name: str = "edges") -> torch.Tensor:
    checks.float_tensor(edges, name)
    if edges.dim() < 2 or edges.shape[-1] < 2 or edges.shape[-2] < 2:
        raise ValueError(f"{name} must have shape (..., H, W) with H, W >= 2, got {tuple(edges.shape)}")
    return edges


def _finite(x: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite: it holds NaN or infinite values")


def _without_overflow(edges: torch.Tensor) -> torch.Tensor:
    """``edges`` with every map whose largest finite magnitude is within 64x of the dtype's
    maximum divided by a power of two (exactly, without a sync), so that the Hessian's
    differences cannot overflow; the angles do not depend on the scale. Other maps are
    returned unchanged."""
    limit = torch.finfo(edges.dtype).max / 64
    magnitude = torch.where(torch.isfinite(edges), edges.abs(), 0).amax(dim=(-2, -1), keepdim=True)
    exponent = torch.frexp(magnitude).exponent
    scale = torch.where(magnitude > limit, torch.ldexp(torch.ones_like(magnitude), -exponent), 1)
    return edges * scale


def _symmetric_index(size: int, pad: int, device) -> torch.Tensor:
    """Indices of a length-``size`` axis padded by ``pad`` on both sides with mirror copies
    that repeat the edge sample (MATLAB's ``padarray(..., 'symmetric')``)."""
    index = torch.arange(-pad, size + pad, device=device) % (2 * size)
    return torch.where(index < size, index, 2 * size - 1 - index)


def triangle_blur(image: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable triangle filter ``[1, 2, ..., r+1, ..., 2, 1] / (r+1)^2`` along both image
    axes with symmetric padding (the toolbox's ``convTri`` for integer radii).

    Args:
        image: ``(..., H, W)`` float tensor.
        radius: ``r >= 0`` (0 returns the input).

    Returns:
        the smoothed ``(..., H, W)`` tensor. NaN/inf: a non-finite pixel makes exactly the
        outputs within ``radius`` of it (in each axis) non-finite -- NaN, or inf of its sign
        (NaN where both signs meet, or where low precision rounds a weight to 0); the
        others are untouched. Any float dtype (float16/bfloat16 computed in float32).
    """
    checks.float_tensor(image, "image")
    radius = checks.nonnegative_int(radius, "radius")
    if radius == 0:
        return image
    # float16/bfloat16 accumulate in float32 (the library's convention; torch's
    # low-precision CPU convolutions also let a NaN reach outputs outside its window).
    low_precision = image.dtype.itemsize < 4
    work = image.float() if low_precision else image
    # The padded copies ((H, W + 2r), then (H + 2r, W) per image) are refused before they
    # are allocated when they cannot fit (a radius of 10**9 had the process killed).
    height, width = image.shape[-2:] if image.dim() >= 2 else (1, 1)
    planes = image.numel() // max(height * width, 1)
    padded = planes * max(height * (width + 2 * radius), (height + 2 * radius) * width) + 2 * radius + 1
    checks.fits_in_memory(image.device, padded * work.element_size(), "radius")
    ramp = torch.arange(1, radius + 2, dtype=work.dtype, device=image.device)
    taps = torch.cat([ramp, ramp.flip(0)[1:]]) / (radius + 1) ** 2
    shape = image.shape
    x = work.reshape(-1, 1, *shape[-2:])
    x = x.index_select(3, _symmetric_index(shape[-1], radius, image.device))
    x = F.conv2d(x, taps.view(1, 1, 1, -1))
    x = x.index_select(2, _symmetric_index(shape[-2], radius, image.device))
    x = F.conv2d(x, taps.view(1, 1, -1, 1))
    return x.reshape(shape).to(image.dtype)


def edge_orientation(edges: torch.Tensor, smoothing: int = 4) -> torch.Tensor:
    """Direction of the edge normal, from the Hessian of the smoothed map.

    The normal is the Hessian's eigenvector of largest absolute eigenvalue (the direction of
    strongest curvature): across a ridge of any profile that is the ridge's normal, on its
    crest and on its flanks alike. The toolbox's closed form ``atan(Oyy * sign(-Oxy) / Oxx)``
    gives ``atan(tan(theta)^2)`` on a ridge crest (exact at 0, 45 and 135 degrees) and 0
    wherever ``Oxy`` is exactly 0, horizontal edges included; on HED's BSDS500 maps the two
    score the same to 0.001 ODS F (``benchmarks/bench_hed.py``).

    Args:
        edges: ``(..., H, W)`` float boundary strengths, ``H, W >= 2``.
        smoothing: radius of the :func:`triangle_blur` applied first.

    Returns:
        ``(..., H, W)`` angle in ``[0, pi)`` from the column axis (x, to the right) towards
        the row axis (y, downwards): 0 across a vertical edge, ``pi / 2`` across a
        horizontal one. NaN/inf: a non-finite pixel makes the angles within ``smoothing +
        2`` pixels of it NaN (the blur, then two central differences); the others are
        untouched.
    """
    smooth = triangle_blur(_without_overflow(_edge_map(edges)), smoothing)
    # Central differences inside, one-sided at the sides (MATLAB's gradient).
    dy, dx = torch.gradient(smooth, dim=(-2, -1))
    dxx = torch.gradient(dx, dim=-1)[0]
    dyy, dxy = torch.gradient(dy, dim=(-2, -1))
    # Principal axis 0.5 * atan2(2 dxy, dxx - dyy) belongs to the larger eigenvalue; flipping
    # the Hessian's sign where its trace is not positive makes it the larger |eigenvalue|.
    sign = torch.where(dxx + dyy > 0, 1.0, -1.0).to(smooth.dtype)
    return torch.remainder(0.5 * torch.atan2(2 * sign * dxy, sign * (dxx - dyy)), math.pi)


def _bilinear(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``image`` (N, H, W) at real pixel coordinates (N, H, W), clamped inside the image.
    The top-left corner of the interpolation cell stops one short of the last row/column,
    so that all four corners exist (the toolbox clamps to ``size - 1.001`` instead)."""
    n, h, w = image.shape
    x = x.clamp(0, w - 1)
    y = y.clamp(0, h - 1)
    x0, y0 = x.floor().clamp(max=w - 2), y.floor().clamp(max=h - 2)
    fx, fy = x - x0, y - y0
    flat = image.reshape(n, -1)
    corner = (y0 * w + x0).long().reshape(n, -1)

    def at(offset: int) -> torch.Tensor:
        return flat.gather(1, corner + offset).view(n, h, w)

    return (at(0) * (1 - fx) + at(1) * fx) * (1 - fy) + (at(w) * (1 - fx) + at(w + 1) * fx) * fy


def edge_nms(
    edges: torch.Tensor,
    orientation: Optional[torch.Tensor] = None,
    *,
    radius: int = 2,
    border: int = 5,
    tolerance: float = 1.01,
) -> torch.Tensor:
    """Thin a soft boundary map to one-pixel ridges (Dollar's ``edgesNmsMex``).

    Args:
        edges: ``(..., H, W)`` float boundary strengths (e.g. HED's probabilities),
            ``H, W >= 2``; any device.
        orientation: ``(..., H, W)`` edge normal angles as :func:`edge_orientation` returns
            them (computed with its defaults when ``None``).
        radius: a pixel must not be exceeded by the map at distances ``1..radius`` along the
            normal: 2, as in the BSDS500 evaluation of HED-style detectors (RCF's
            ``edge_nms.m``); the toolbox's ``edgesDetect`` uses 1 for its thinner maps.
        border: responses at distance ``d < border`` from a side are scaled by
            ``d / border`` (boundary estimates there are unreliable); 0 turns this off.
        tolerance: a pixel is suppressed only when ``tolerance * value`` is below a
            neighbour's, so plateaus and near-ties keep both pixels (the toolbox's 1.01).

    Returns:
        ``(..., H, W)``: ``edges`` with the suppressed pixels set to 0 and the border faded.

    NaN/inf: ``edges`` and ``orientation`` must be finite; a NaN or infinite value in
    either is refused with a ValueError naming the argument (the comparisons along the
    normal have no meaning for it). The check syncs a CUDA device once.
    """
    _edge_map(edges)
    _finite(edges, "edges")
    radius = checks.positive_int(radius, "radius")
    border = checks.nonnegative_int(border, "border")
    tolerance = checks.number(tolerance, "tolerance", minimum=0.0)
    if orientation is None:
        orientation = edge_orientation(edges)
    else:
        checks.float_tensor(orientation, "orientation")
        checks.same_device(edges, "edges", orientation, "orientation")
        if orientation.shape != edges.shape:
            raise ValueError(f"orientation must have the shape of edges {tuple(edges.shape)}, "
                             f"got {tuple(orientation.shape)}")
        _finite(orientation, "orientation")
    shape = edges.shape
    h, w = shape[-2:]
    e = edges.reshape(-1, h, w)
    theta = orientation.reshape(-1, h, w).to(e.dtype)
    cos, sin = torch.cos(theta), torch.sin(theta)
    y = torch.arange(h, dtype=e.dtype, device=e.device).view(1, h, 1)
    x = torch.arange(w, dtype=e.dtype, device=e.device).view(1, 1, w)
    scaled = e * tolerance
    keep = torch.ones_like(e, dtype=torch.bool)
    for d in range(1, radius + 1):
        for step in (d, -d):
            keep &= scaled >= _bilinear(e, x + step * cos, y + step * sin)
    out = e * keep
    border = min(border, h // 2, w // 2)
    if border:
        ramp = torch.arange(border, dtype=e.dtype, device=e.device) / border
        out[:, :border] *= ramp.view(-1, 1)
        out[:, h - border:] *= ramp.flip(0).view(-1, 1)
        out[:, :, :border] *= ramp
        out[:, :, w - border:] *= ramp.flip(0)
    return out.reshape(shape)
