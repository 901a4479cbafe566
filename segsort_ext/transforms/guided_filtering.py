"""He et al.'s guided filter (ECCV 2010 / TPAMI 2013) and the feature-map preprocessing
around it in semantic soft segmentation (Aksoy et al., SIGGRAPH 2018): box means, per-image
PCA and per-channel rescaling of (B, C, H, W) maps, differentiable, in plain PyTorch.

NaN/inf policy: nothing is refused and a non-finite value stays local -- box_filter: the
windows holding it; guided_filter: the outputs within 2 * radius (NaN); pca_project and
rescale_to_unit: its own pixel (NaN, or 0/1 for -inf/+inf under rescale_to_unit), the
others computed from the finite pixels alone. float16/bfloat16 work throughout."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from segsort_ext.utils import checks as check

__all__ = ["box_filter", "guided_filter", "pca_project", "rescale_to_unit"]


def _box_sum_along(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sum over the window [i - radius, i + radius] clipped to the axis, via a cumulative
    sum (O(1) per element whatever the radius: He et al.'s fast box filter)."""
    n = x.shape[dim]
    cumulative = F.pad(x.movedim(dim, -1).cumsum(-1), (1, 0)).movedim(-1, dim)
    positions = torch.arange(n, device=x.device)
    upper = (positions + radius + 1).clamp(max=n)
    lower = (positions - radius).clamp(min=0)
    return cumulative.index_select(dim, upper) - cumulative.index_select(dim, lower)


def _box_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    return _box_sum_along(_box_sum_along(x, radius, 2), radius, 3)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2 radius + 1)^2 window around each pixel, windows clipped at the
    border (divided by the number of in-image pixels, as He et al.'s boxfilter / N).

    Args:
        x: (B, C, H, W) float tensor.
        radius: window radius r >= 0.

    Returns:
        (B, C, H, W) box means. A NaN or infinite value makes exactly the windows that
        hold it non-finite (their IEEE sum: NaN, or inf of its sign).
    """
    check.float_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    radius = check.nonnegative_int(radius, "radius")
    finite = torch.isfinite(x)
    if bool(finite.all()):
        sums = _box_sum(x, radius)
    else:
        # A cumulative sum would carry a NaN or inf into every later window: sum the finite
        # values, then give each window holding non-finite values their sum.
        def anywhere(mask):
            return _box_sum(mask.to(x.dtype), radius) > 0.5

        positive, negative, nan = anywhere(x == torch.inf), anywhere(x == -torch.inf), anywhere(x.isnan())
        sums = torch.where(finite, x, 0.0)
        sums = torch.where(positive, torch.inf, torch.where(negative, -torch.inf, _box_sum(sums, radius)))
        sums = torch.where(nan | (positive & negative), torch.nan, sums)
    ones = torch.ones(1, 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
    return sums / _box_sum(ones, radius)


def guided_filter(guide_image: torch.Tensor, features: torch.Tensor, radius: int, eps: float, *,
                  channel_chunk: int = 16) -> torch.Tensor:
    """He et al.'s guided filter (ECCV 2010 / TPAMI 2013), color-guide form, applied
    to every feature channel with the same guide.

    With box means m(.) over the (2r+1)^2 window omega_k (clipped at the border), guide
    I (G channels, G = 3 for color) and one input channel p:

        Sigma_k = m(I I^T)_k - m(I)_k m(I)_k^T          (G x G)
        a_k = (Sigma_k + eps U)^-1 (m(I p)_k - m(I)_k m(p)_k)
        b_k = m(p)_k - a_k . m(I)_k
        q_i = m(a)_i . I_i + m(b)_i

    All box means use the cumulative-sum box filter (O(1) per pixel in r).

    Args:
        guide_image: (B, G, H, W) float guide (G = 3 for an RGB image, 1 for grey).
        features: (B, C, H, W) float features to filter, same B, H, W and dtype.
        radius: window radius r >= 0.
        eps: regularisation, a normal number of the inputs' dtype (so that
            ``Sigma_k + eps U`` stays invertible); larger = smoother.
        channel_chunk: feature channels filtered at once (bounds memory to
            O(B * G * chunk * H * W)).

    Returns:
        (B, C, H, W) filtered features. Differentiable in both inputs. A non-finite input
        value makes the outputs within 2 * radius of it NaN; the others are untouched.
        float16/bfloat16 work (the G x G inverses are taken in float32).
    """
    check.float_tensor(guide_image, "guide_image")
    check.float_tensor(features, "features")
    check.same_device(guide_image, "guide_image", features, "features")
    if guide_image.dim() != 4:
        raise ValueError(f"guide_image must have shape (B, G, H, W), got {tuple(guide_image.shape)}")
    if features.dim() != 4:
        raise ValueError(f"features must have shape (B, C, H, W), got {tuple(features.shape)}")
    B, G, H, W = guide_image.shape
    if (features.shape[0], features.shape[2], features.shape[3]) != (B, H, W):
        raise ValueError(f"features must have shape (B, C, H, W) with (B, H, W) = {(B, H, W)} of guide_image, "
                         f"got {tuple(features.shape)} (resize features first, e.g. F.interpolate)")
    if features.dtype != guide_image.dtype:
        raise TypeError(f"features ({features.dtype}) and guide_image ({guide_image.dtype}) must have the same dtype")
    radius = check.nonnegative_int(radius, "radius")
    dtype_range = torch.finfo(guide_image.dtype)
    eps = check.number(eps, "eps", minimum=dtype_range.tiny, maximum=dtype_range.max)
    channel_chunk = check.positive_int(channel_chunk, "channel_chunk")

    mean_guide = box_filter(guide_image, radius)  # (B, G, H, W)
    outer = (guide_image.unsqueeze(2) * guide_image.unsqueeze(1)).reshape(B, G * G, H, W)
    covariance = (box_filter(outer, radius).view(B, G, G, H, W)
                  - mean_guide.unsqueeze(2) * mean_guide.unsqueeze(1))
    identity = torch.eye(G, dtype=guide_image.dtype, device=guide_image.device)
    # (B, H, W, G, G): one small SPD system per pixel, inverted once for all channels
    # (an explicit G x G inverse, as in He et al.'s reference code).
    system = covariance.permute(0, 3, 4, 1, 2) + eps * identity
    # Non-finite systems (a NaN or inf in the window) are inverted as the identity and
    # come out NaN: linalg.inv may raise on them.
    solvable = torch.isfinite(system).flatten(-2).all(-1)[..., None, None]
    # linalg.inv has no float16/bfloat16 kernels: those invert in float32.
    solved = torch.where(solvable, system, identity)
    solved = torch.linalg.inv(solved.float() if solved.dtype.itemsize < 4 else solved).to(system.dtype)
    inverse = torch.where(solvable, solved, torch.nan)
    outputs = []
    for start in range(0, features.shape[1], channel_chunk):
        p = features[:, start:start + channel_chunk]
        C = p.shape[1]
        mean_p = box_filter(p, radius)  # (B, C, H, W)
        products = (guide_image.unsqueeze(2) * p.unsqueeze(1)).reshape(B, G * C, H, W)
        cross = box_filter(products, radius).view(B, G, C, H, W) - mean_guide.unsqueeze(2) * mean_p.unsqueeze(1)
        a = (inverse @ cross.permute(0, 3, 4, 1, 2)).permute(0, 3, 4, 1, 2)  # (B, G, C, H, W)
        b = mean_p - (a * mean_guide.unsqueeze(2)).sum(1)
        mean_a = box_filter(a.reshape(B, G * C, H, W), radius).view(B, G, C, H, W)
        outputs.append((mean_a * guide_image.unsqueeze(2)).sum(1) + box_filter(b, radius))
    if not outputs:
        return features.clone()
    return torch.cat(outputs, 1)


def pca_project(features: torch.Tensor, dims: int = 3) -> torch.Tensor:
    """Projects each image's pixel features on their top ``dims`` principal components.

    Per image: X (H*W, C) centred by its mean pixel, the eigenvectors v_1..v_dims of
    X^T X with the largest eigenvalues (equivalently the top right singular vectors of
    X), and the projection X v_k. Each v_k's sign is fixed so that its entry of largest
    magnitude is positive (the lowest index among equal magnitudes), making the result
    deterministic.

    Args:
        features: (B, C, H, W) float features.
        dims: number of components, 1 <= dims <= C.

    Returns:
        (B, dims, H, W) projections (mean zero per image and channel), ordered by
        decreasing variance. NaN/inf stay local: a pixel with a non-finite channel is left
        out of its image's mean and principal components and is projected to NaN; the other
        pixels are projected as if it were absent. float16/bfloat16 work (the C x C
        eigenproblem is solved in float32).
    """
    check.float_tensor(features, "features")
    if features.dim() != 4:
        raise ValueError(f"features must have shape (B, C, H, W), got {tuple(features.shape)}")
    B, C, H, W = features.shape
    dims = check.positive_int(dims, "dims")
    if dims > C:
        raise ValueError(f"dims must be <= the number of channels C = {C}, got {dims}")
    pixels = features.reshape(B, C, H * W).transpose(1, 2)
    valid = torch.isfinite(pixels).all(2, keepdim=True)  # (B, H*W, 1)
    if bool(valid.all()):
        centred = pixels - pixels.mean(1, keepdim=True)
        kept = centred
    else:
        # Pixels with a non-finite channel take no part in the mean or the scatter and
        # come out NaN; the other pixels are projected as if they were absent.
        count = valid.sum(1, keepdim=True).clamp_min(1).to(pixels.dtype)
        mean = torch.where(valid, pixels, 0).sum(1, keepdim=True) / count
        kept = torch.where(valid, pixels - mean, 0)
        centred = torch.where(valid, kept, torch.nan)
    low_precision = kept.dtype.itemsize < 4  # eigh has no float16/bfloat16 kernels
    work = kept.float() if low_precision else kept
    scatter = work.transpose(1, 2) @ work
    # eigh fails on non-finite matrices (finite pixels whose products overflow): such
    # images are decomposed as the identity, and their projections come out NaN.
    finite = torch.isfinite(scatter).flatten(1).all(1)[:, None, None]
    identity = torch.eye(C, dtype=scatter.dtype, device=scatter.device)
    # eigh of the C x C scatter matrix: cheaper than an SVD of the (H*W, C) pixels.
    _, vectors = torch.linalg.eigh(torch.where(finite, scatter, identity))
    components = vectors[:, :, -dims:].flip(-1)  # (B, C, dims), largest eigenvalue first
    components = _canonical_signs(components)
    projected = (centred.to(components.dtype) @ components).to(features.dtype)
    projected = torch.where(finite, projected, torch.nan)
    return projected.transpose(1, 2).reshape(B, dims, H, W)


def _canonical_signs(components: torch.Tensor) -> torch.Tensor:
    """Flips each column of (B, C, k) so that its largest-magnitude entry is positive."""
    index = components.abs().argmax(1, keepdim=True)
    signs = torch.sign(components.gather(1, index))
    return components * torch.where(signs == 0, 1.0, signs).to(components.dtype)


def rescale_to_unit(x: torch.Tensor, eps: Optional[float] = None) -> torch.Tensor:
    """Min-max rescales each channel of each image to [0, 1]:
    ``(x - min) / max(max - min, eps)`` (a constant channel becomes 0), min and max taken
    over the channel's finite values.

    Args:
        x: (B, C, H, W) float tensor (float16/bfloat16 computed in float32).
        eps: the smallest span, a normal number of x's dtype; None (default) is 1e-12,
            or the dtype's smallest normal number where that is larger (float16).
    Returns:
        (B, C, H, W) in [0, 1], x's dtype. NaN/inf stay local: a NaN stays NaN at its
        pixel, +inf/-inf become 1/0, and the other pixels are rescaled by the finite
        values alone (a channel with none is NaN where NaN, else 0 or 1).
    """
    check.float_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    dtype_range = torch.finfo(x.dtype)
    if eps is None:
        eps = max(1e-12, dtype_range.tiny)
    eps = check.number(eps, "eps", minimum=dtype_range.tiny, maximum=dtype_range.max)
    if x.numel() == 0:
        return x.clone()
    flat = x.flatten(2)
    if flat.dtype.itemsize < 4:
        flat = flat.float()  # max - min of float16 values may overflow float16
    finite = torch.isfinite(flat)
    any_finite = finite.any(2, keepdim=True)
    low = torch.where(any_finite, torch.where(finite, flat, torch.inf).amin(2, keepdim=True), 0)
    high = torch.where(any_finite, torch.where(finite, flat, -torch.inf).amax(2, keepdim=True), 0)
    # The span of finite values may itself overflow (-max .. max): the differences are of
    # halves (exact but for subnormal values), the quotient the same.
    span = (high / 2 - low / 2).clamp_min(eps / 2)
    out = ((flat / 2 - low / 2) / span).clamp(0, 1)
    return out.to(x.dtype).view_as(x)
