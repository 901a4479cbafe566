"""Photometric transforms of RGB images in [0, 1]: brightness, contrast, saturation, hue,
grey and Gaussian blur. They change pixel values of images only, never label or feature
maps, and each operation has one implementation shared by:

- :func:`color_jitter`: one image (3, H, W), torchvision's ``ColorJitter`` (the enabled
  operations in a random order), for a Dataset ``transform``;
- PiCIE's views: :func:`sample_photometric` draws a :class:`Photometric` per image of a
  batch, :func:`apply_photometric` applies it to (B, 3, H, W) images (differentiable).

Random draws come from a ``torch.Generator`` on the CPU, in float64.

NaN/inf policy (every function here; float16/bfloat16 alike): a non-finite pixel stays
local. The contrast's mean grey level is taken over the finite pixels only, so a NaN or
inf pixel changes no other pixel, except through the Gaussian blur, whose window around
it comes out NaN. At its own pixel NaN stays NaN, and +inf/-inf become 1/0 under the
clamps to [0, 1] (or NaN where a factor of 0 multiplies them). Nothing is refused.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
import torch.nn.functional as F

from segsort_ext.transforms._checks import jitter_strengths
from segsort_ext.utils import checks as check

__all__ = ["color_jitter", "Photometric", "sample_photometric", "apply_photometric"]

#: ITU-R BT.601 luma weights (the grey of PIL's ``convert('L')`` and of torchvision).
GREY_WEIGHTS = (0.299, 0.587, 0.114)

# A factor: one number for every image, or a tensor (B, 1, 1, 1) with one per image.
Factor = Union[float, torch.Tensor]


def _grey(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 1, H, W) luma."""
    weights = torch.tensor(GREY_WEIGHTS, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images * weights).sum(-3, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: Factor) -> torch.Tensor:
    """``factor * images + (1 - factor) * other`` in [0, 1]: 0 gives ``other``, 1 the images,
    more than 1 moves away from ``other``."""
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def _brightness(images: torch.Tensor, factor: Factor) -> torch.Tensor:
    return (images * factor).clamp(0, 1)


def _finite_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over (H, W) of the finite values only (0 where there is none): a NaN or inf
    pixel does not reach the other pixels through the mean."""
    finite = torch.isfinite(x)
    total = torch.where(finite, x, 0).sum((-2, -1), keepdim=True)
    return total / finite.sum((-2, -1), keepdim=True).clamp_min(1).to(x.dtype)


def _contrast(images: torch.Tensor, factor: Factor) -> torch.Tensor:
    return _blend(images, _finite_mean(_grey(images)), factor)


def _saturation(images: torch.Tensor, factor: Factor) -> torch.Tensor:
    return _blend(images, _grey(images), factor)


def _rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> (..., 3, H, W) hue (turns, [0, 1)), saturation, value."""
    r, g, b = images.unbind(-3)
    value = images.amax(-3)
    delta = value - images.amin(-3)
    # Divisors clamped away from 0 where torch.where discards the quotient: no NaN, in the
    # values or in their gradients.
    tiny = torch.finfo(images.dtype).tiny
    saturation = torch.where(value > 0, delta / value.clamp_min(tiny), 0.0)
    safe = delta.clamp_min(tiny)
    hue = torch.where(value == r, (g - b) / safe, torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(delta > 0, (hue / 6) % 1, 0.0)
    return torch.stack([hue, saturation, value], -3)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    # Channel c = v - v * s * clamp(min(k, 4 - k), 0, 1) with k = (n_c + 6 h) mod 6 and
    # n = 5, 3, 1 for r, g, b: the piecewise-linear colour wheel without per-sector copies.
    hue, saturation, value = hsv.split(1, dim=-3)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device).view(3, 1, 1)
    k = (n + 6 * hue) % 6
    return value - value * saturation * torch.minimum(k, 4 - k).clamp(0, 1)


def _hue(images: torch.Tensor, shift: Factor) -> torch.Tensor:
    """Rotates the HSV hue by ``shift`` turns; saturation and value stay."""
    hsv = _rgb_to_hsv(images.clamp(0, 1))
    return _hsv_to_rgb(torch.cat([hsv[..., :1, :, :] + shift, hsv[..., 1:, :, :]], -3))


def color_jitter(
    image: torch.Tensor,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Random photometric change of an RGB image ``(3, H, W)`` in [0, 1] (labels are unaffected).

    As torchvision's ``ColorJitter``: factors ``b, c, s`` uniform in ``[max(0, 1 - x), 1 + x]``
    for ``x`` = brightness, contrast, saturation, and a hue shift uniform in ``[-hue, hue]``
    (fraction of the colour wheel, hue <= 0.5); the four enabled operations are applied in a
    random order drawn from ``generator``, clamping to [0, 1] after each.  Brightness scales
    the image, contrast blends it with its mean gray level (over the finite pixels),
    saturation with its gray image. NaN/inf stay at their own pixel (the module's policy).
    """
    strengths = jitter_strengths(brightness, contrast, saturation, hue)
    check.generator(generator)
    if not isinstance(image, torch.Tensor) or not image.is_floating_point() or image.dim() != 3:
        raise TypeError("image must be a floating point tensor (3, H, W)")
    if any(strengths[1:]) and image.shape[0] != 3:
        raise ValueError(f"image must be RGB (3, H, W) for contrast/saturation/hue jitter, got {tuple(image.shape)}")
    steps = []
    for operation, strength in zip((_brightness, _contrast, _saturation, _hue), strengths):
        if strength > 0:
            low, high = (-strength, strength) if operation is _hue else (max(0.0, 1 - strength), 1 + strength)
            draw = float(torch.rand((), generator=generator, dtype=torch.float64))
            steps.append((operation, low + (high - low) * draw))
    if not steps:
        return image
    for k in torch.randperm(len(steps), generator=generator).tolist():
        operation, factor = steps[k]
        image = operation(image, factor)
    return image


class Photometric(NamedTuple):
    """A batch of photometric transforms, applied in this order: brightness, contrast,
    saturation, hue (the color jitter), then grey, then blur. Identity values: factors
    1, hue 0, grey False, blur_sigma 0. All (B,) float64 / bool on the CPU.

    brightness: x * f.  contrast: f x + (1 - f) mean(grey(x)) (mean over the image).
    saturation: f x + (1 - f) grey(x).  hue: shift of the HSV hue, in turns.
    grey: replace RGB by grey(x) = 0.299 R + 0.587 G + 0.114 B in all 3 channels.
    blur_sigma: standard deviation (pixels) of a separable Gaussian blur with reflect
    padding; 0 = none. Values are clamped to [0, 1] after every jitter step.
    All values finite; the factors and blur_sigma >= 0.
    """

    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    grey: torch.Tensor
    blur_sigma: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.brightness.shape[0]


def sample_photometric(batch_size: int, *, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3,
                       hue: float = 0.1, jitter_probability: float = 0.8, grey_probability: float = 0.2,
                       blur_probability: float = 0.5, blur_sigma=(0.1, 2.0),
                       generator: Optional[torch.Generator] = None) -> Photometric:
    """Draws PiCIE-style photometric transforms. Defaults are SimCLR-style values:
    jitter (brightness, contrast, saturation, hue) = (0.3, 0.3, 0.3, 0.1) with
    p = 0.8, grey with p = 0.2, Gaussian blur sigma ~ U(0.1, 2) with p = 0.5 (our
    recollection of PiCIE's settings, not checked against its code: set them
    explicitly when reproducing a paper).

    Factors are drawn uniformly: brightness, contrast, saturation in
    [max(0, 1 - v), 1 + v]; hue in [-hue, hue] turns (hue <= 0.5). Images without
    jitter get the identity factors.

    Returns:
        :class:`Photometric` with B entries.
    """
    batch_size = check.nonnegative_int(batch_size, "batch_size")
    check.allocatable((batch_size, 8), torch.float64, "batch_size")
    brightness, contrast, saturation, hue = jitter_strengths(brightness, contrast, saturation, hue)
    jitter_probability = check.number(jitter_probability, "jitter_probability", minimum=0.0, maximum=1.0)
    grey_probability = check.number(grey_probability, "grey_probability", minimum=0.0, maximum=1.0)
    blur_probability = check.number(blur_probability, "blur_probability", minimum=0.0, maximum=1.0)
    sigma_lo, sigma_hi = check.interval(blur_sigma, "blur_sigma", minimum=0.0)
    check.generator(generator)

    draws = torch.rand((batch_size, 8), generator=generator, dtype=torch.float64)

    def factor(spread, column):
        low = max(0.0, 1.0 - spread)
        return low + (1.0 + spread - low) * draws[:, column]

    jitter = draws[:, 0] < jitter_probability
    ones = torch.ones(batch_size, dtype=torch.float64)
    brightness_f = torch.where(jitter, factor(brightness, 1), ones)
    contrast_f = torch.where(jitter, factor(contrast, 2), ones)
    saturation_f = torch.where(jitter, factor(saturation, 3), ones)
    hue_shift = torch.where(jitter, (2 * draws[:, 4] - 1) * hue, 0 * ones)
    grey = draws[:, 5] < grey_probability
    blur = draws[:, 6] < blur_probability
    sigma = torch.where(blur, sigma_lo + (sigma_hi - sigma_lo) * draws[:, 7], 0 * ones)
    return Photometric(brightness_f, contrast_f, saturation_f, hue_shift, grey, sigma)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per image (0 = identity), reflect padding."""
    B, C, H, W = images.shape
    radius = int(math.ceil(3.0 * float(sigma.max())))
    radius = max(0, min(radius, H - 1, W - 1))
    if radius == 0:
        return images
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    safe_sigma = sigma.clamp_min(1e-12).unsqueeze(1)
    kernels = torch.exp(-0.5 * (offsets / safe_sigma) ** 2)
    kernels = torch.where((sigma > 0).unsqueeze(1), kernels, (offsets == 0).double())
    kernels = (kernels / kernels.sum(1, keepdim=True)).to(images.dtype).to(images.device)
    kernels = kernels.repeat_interleave(C, 0)  # (B * C, k): one kernel per image and channel
    flat = images.reshape(1, B * C, H, W)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernels.view(B * C, 1, -1, 1), groups=B * C)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernels.view(B * C, 1, 1, -1), groups=B * C)
    return flat.view(B, C, H, W)


def apply_photometric(images: torch.Tensor, photometric: Photometric) -> torch.Tensor:
    """Applies a :class:`Photometric` to RGB images (never to feature or label maps).

    Args:
        images: (B, 3, H, W) float RGB in [0, 1].
        photometric: B transforms.

    Returns:
        (B, 3, H, W) images in [0, 1], same dtype. Differentiable in the images. A NaN
        or inf pixel reaches no other pixel (the mean grey level of the contrast is over
        the finite pixels) except its blur window under a blur, which comes out NaN; at
        its own pixel NaN stays NaN and +inf/-inf are clamped to 1/0 (NaN under a zero
        factor). An identity transform returns the image unchanged, NaN included.
    """
    check.float_tensor(images, "images")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W) (RGB images; photometric transforms do not apply "
                         f"to feature maps), got {tuple(images.shape)}")
    if not isinstance(photometric, Photometric):
        raise TypeError(f"photometric must be a Photometric, got {type(photometric).__name__}")
    B = images.shape[0]
    for name in Photometric._fields:
        value = getattr(photometric, name)
        check.tensor(value, f"photometric.{name}")
        if tuple(value.shape) != (B,):
            raise ValueError(f"photometric.{name} must have shape (B,) = ({B},), got {tuple(value.shape)}")
        if name == "grey":
            if value.dtype != torch.bool:
                raise TypeError(f"photometric.grey must be a bool tensor, got {value.dtype}")
        elif value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"photometric.{name} must be a real tensor, got {value.dtype}")
        elif not bool(torch.isfinite(value).all()):
            raise ValueError(f"photometric.{name} must be finite")
        elif name != "hue" and bool((value < 0).any()):
            raise ValueError(f"photometric.{name} must be >= 0")

    def per_image(values):
        return values.to(device=images.device, dtype=images.dtype).view(B, 1, 1, 1)

    out = _brightness(images, per_image(photometric.brightness))
    out = _contrast(out, per_image(photometric.contrast))
    out = _saturation(out, per_image(photometric.saturation))
    if bool((photometric.hue != 0).any()):
        shifted = _hue(out, per_image(photometric.hue))
        out = torch.where((photometric.hue != 0).to(images.device).view(B, 1, 1, 1), shifted, out)
    grey = photometric.grey.to(images.device).view(B, 1, 1, 1)
    out = torch.where(grey, _grey(out).expand_as(out), out)
    if bool((photometric.blur_sigma > 0).any()):
        out = _gaussian_blur(out, photometric.blur_sigma.double())
    return out


