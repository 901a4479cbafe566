"""PiCIE's two views with exact invariance / equivariance bookkeeping, in plain torch
(no torchvision), seeded by a torch.Generator.

- Photometric transforms (color jitter, random grey, Gaussian blur) change pixel
  values of images only: :func:`sample_photometric` draws a :class:`Photometric`,
  :func:`apply_photometric` applies it to (B, 3, H, W) images.
- Geometric transforms (random resized crop, horizontal flip) are described by a
  :class:`Geometry` in resolution-independent coordinates, so the *same* transform
  applies to an image (B, 3, H, W), to a feature map (B, C, H/s, W/s) of a stride-s
  network and to label maps (nearest, never interpolated): :func:`apply_geometry`.
  Equivariance then reads ``apply_geometry(net(image), g) ~ net(apply_geometry(image, g))``.

Coordinates: an axis of n pixels spans [0, 1]; pixel i covers [i / n, (i + 1) / n] and
has its centre at (i + 0.5) / n (``align_corners=False``). A box is (top, left, bottom,
right) in these units, so it names the same region at every resolution.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from segsort_ext.utils import checks as check

__all__ = [
    "Geometry",
    "sample_geometry",
    "identity_geometry",
    "apply_geometry",
    "Photometric",
    "sample_photometric",
    "apply_photometric",
    "picie_views",
]

# ITU-R BT.601 luma (the grey of PIL and torchvision).
GREY_WEIGHTS = (0.299, 0.587, 0.114)
# A resampling position within this many pixels of a pixel centre is that centre, so
# crops aligned to the pixel grid copy pixels exactly despite float rounding.
_SNAP = 1e-9


def _size_pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list, torch.Size)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{name} must be an int or a pair of ints (H, W), got {value!r}")
    if min(value) < 1:
        raise ValueError(f"{name} must be >= 1 in each direction, got {tuple(value)}")
    return int(value[0]), int(value[1])


def _range(value, name: str, low: float = -math.inf) -> tuple[float, float]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{name} must be a pair of numbers (min, max), got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not (low <= lo <= hi) or not math.isfinite(hi):
        raise ValueError(f"{name} must satisfy {low} <= min <= max < inf, got {(lo, hi)}")
    return lo, hi


def _probability(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _nonnegative_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _uniform(shape, generator) -> torch.Tensor:
    """float64 uniform [0, 1) numbers on the CPU (parameters are tiny; drawing them on
    the CPU keeps a seeded generator reproducible across devices)."""
    return torch.rand(shape, generator=generator, dtype=torch.float64)


# ==================================================================================
# Geometry
# ==================================================================================
class Geometry(NamedTuple):
    """A batch of geometric transforms: per image, a crop box resampled to
    ``output_size``, then an optional horizontal flip of the result.

    boxes: (B, 4) float64 (top, left, bottom, right) in normalised coordinates (see
        the module docstring); 0 <= top < bottom <= 1, 0 <= left < right <= 1.
    flip: (B,) bool, flip the output left-right.
    input_size: (H, W) of the images the transform was drawn for.
    output_size: (H_out, W_out) of the transformed images.
    """

    boxes: torch.Tensor
    flip: torch.Tensor
    input_size: tuple[int, int]
    output_size: tuple[int, int]

    @property
    def batch_size(self) -> int:
        return self.boxes.shape[0]


def _check_geometry(geometry) -> None:
    if not isinstance(geometry, Geometry):
        raise TypeError(f"geometry must be a Geometry, got {type(geometry).__name__}")
    boxes, flip = geometry.boxes, geometry.flip
    check.float_tensor(boxes, "geometry.boxes")
    check.tensor(flip, "geometry.flip")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"geometry.boxes must have shape (B, 4), got {tuple(boxes.shape)}")
    if flip.dtype != torch.bool or tuple(flip.shape) != (boxes.shape[0],):
        raise ValueError(f"geometry.flip must be a bool tensor of shape (B,) = ({boxes.shape[0]},), "
                         f"got {flip.dtype} {tuple(flip.shape)}")
    top, left, bottom, right = boxes.unbind(1)
    if not bool(((0 <= top) & (top < bottom) & (bottom <= 1) & (0 <= left) & (left < right) & (right <= 1)).all()):
        raise ValueError("geometry.boxes must satisfy 0 <= top < bottom <= 1 and 0 <= left < right <= 1")
    _size_pair(geometry.input_size, "geometry.input_size")
    _size_pair(geometry.output_size, "geometry.output_size")


def identity_geometry(batch_size: int, input_size, *, flip: Optional[torch.Tensor] = None) -> Geometry:
    """The full image at its own size; with ``flip`` ((B,) bool) a pure left-right flip."""
    batch_size = check.nonnegative_int(batch_size, "batch_size")
    input_size = _size_pair(input_size, "input_size")
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64).repeat(batch_size, 1)
    if flip is None:
        flip = torch.zeros(batch_size, dtype=torch.bool)
    check.tensor(flip, "flip")
    geometry = Geometry(boxes, flip.cpu(), input_size, input_size)
    _check_geometry(geometry)
    return geometry


def sample_geometry(batch_size: int, input_size, output_size=None, *, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3),
                    flip_probability: float = 0.5, align: int = 1,
                    generator: Optional[torch.Generator] = None) -> Geometry:
    """Draws a random resized crop and flip per image (PiCIE's geometric transform).

    Per image: an area fraction a ~ U(scale) of the image and an aspect ratio
    r = exp(U(log ratio)) give a crop of a*H*W pixels with width/height r (clamped to
    the image); its position is uniform over the image. The crop is then snapped to
    the pixel grid in units of ``align`` pixels: sizes round down to a multiple of
    ``align`` (at least ``align``, at most the image rounded down to a multiple), and
    the top-left corner rounds down to a multiple of ``align``. With ``align = s``
    (the network stride) and H, W multiples of s, every box edge lies on the stride-s
    feature grid, so the crop covers whole feature cells. Unlike torchvision, no
    rejection sampling: out-of-range sizes are clamped.

    Args:
        batch_size: B.
        input_size: (H, W) (or an int) of the images.
        output_size: (H_out, W_out) of the views (default: input_size).
        scale: range of the area fraction, within (0, 1].
        ratio: range of the aspect ratio width / height (> 0).
        flip_probability: probability of a horizontal flip.
        align: grid, in image pixels, the box snaps to (>= 1).
        generator: torch.Generator (CPU) for reproducible draws.

    Returns:
        :class:`Geometry` with float64 boxes on the CPU.
    """
    batch_size = check.nonnegative_int(batch_size, "batch_size")
    H, W = _size_pair(input_size, "input_size")
    output_size = (H, W) if output_size is None else _size_pair(output_size, "output_size")
    scale = _range(scale, "scale", 0.0)
    if scale[0] <= 0 or scale[1] > 1:
        raise ValueError(f"scale must lie within (0, 1], got {scale}")
    ratio = _range(ratio, "ratio", 0.0)
    if ratio[0] <= 0:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    flip_probability = _probability(flip_probability, "flip_probability")
    align = check.nonnegative_int(align, "align")
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    if align > min(H, W):
        raise ValueError(f"align must be <= the image size {min(H, W)}, got {align}")
    _check_generator(generator)

    draws = _uniform((batch_size, 5), generator)
    area = (scale[0] + (scale[1] - scale[0]) * draws[:, 0]) * (H * W)
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * draws[:, 1]
    aspect = log_ratio.exp()
    width = (area * aspect).sqrt()
    height = (area / aspect).sqrt()
    max_h, max_w = (H // align) * align, (W // align) * align
    height = ((height / align).floor() * align).clamp(align, max_h)
    width = ((width / align).floor() * align).clamp(align, max_w)
    # Uniform over the aligned positions 0, align, ..., that keep the box inside.
    top = (draws[:, 2] * (((H - height) / align).floor() + 1)).floor() * align
    left = (draws[:, 3] * (((W - width) / align).floor() + 1)).floor() * align
    boxes = torch.stack([top / H, left / W, (top + height) / H, (left + width) / W], 1)
    flip = draws[:, 4] < flip_probability
    return Geometry(boxes, flip, (H, W), output_size)


def _sample_positions(low: torch.Tensor, high: torch.Tensor, out: int, n: int, device):
    """Sample positions of `out` output pixels over the normalised interval [low, high]
    (per image, (B,)) on an axis of n pixels: u_j = low + (j + 0.5) / out * (high - low)."""
    j = torch.arange(out, dtype=torch.float64, device=device)
    return low.to(device).unsqueeze(1) + (j + 0.5) / out * (high - low).to(device).unsqueeze(1)  # (B, out)


def _linear_taps(u: torch.Tensor, n: int):
    """Bilinear taps on an axis of n pixels for normalised positions u (B, out):
    pixel coordinate p = u n - 0.5 clamped to [0, n - 1] (border replication)."""
    p = (u * n - 0.5).clamp(0, n - 1)
    nearest = p.round()
    p = torch.where((p - nearest).abs() < _SNAP, nearest, p)
    lower = p.floor()
    fraction = p - lower
    lower = lower.long()
    upper = (lower + 1).clamp(max=n - 1)
    return lower, upper, fraction


def _nearest_taps(u: torch.Tensor, n: int) -> torch.Tensor:
    """The pixel whose cell [i / n, (i + 1) / n) contains u (clamped to the axis)."""
    return (u * n + _SNAP).floor().long().clamp(0, n - 1)


def _gather_axis(x: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """x (B, C, h, w); index (B, m) -> x resampled along dim (2 or 3) at index."""
    shape = list(x.shape)
    shape[dim] = index.shape[1]
    view = [index.shape[0], 1, 1, 1]
    view[dim] = index.shape[1]
    return x.gather(dim, index.view(view).expand(shape))


def apply_geometry(x: torch.Tensor, geometry: Geometry, *, mode: Optional[str] = None,
                   output_size=None) -> torch.Tensor:
    """Applies the same geometric transform to images, feature maps or label maps.

    Each output pixel (i, j) of image b samples the normalised position
    ``(top + (i + 0.5) / h_out * (bottom - top), left + (j + 0.5) / w_out * (right - left))``
    of its box in x, whatever x's resolution; the output is then flipped left-right
    where ``geometry.flip``. 'bilinear' interpolates between the 4 nearest pixel
    centres (positions beyond the outer centres take the border value; no
    antialiasing, like ``F.grid_sample(..., align_corners=False, padding_mode='border')``);
    'nearest' copies the pixel whose cell contains the position, so labels are never
    interpolated.

    Output size: ``output_size`` if given; else ``geometry.output_size`` when x is at
    ``geometry.input_size``; else (a feature or label map at a lower resolution h, w)
    ``geometry.output_size * (h, w) / input_size``, which must be whole numbers (e.g.
    stride-s maps with H, W and H_out, W_out multiples of s); otherwise pass
    ``output_size``.

    Exactness: a box whose edges lie on x's pixel grid, resampled to its own size in
    pixels, copies pixels exactly (positions within 1e-9 pixel of a centre snap to it);
    boxes drawn with ``sample_geometry(..., align=s)`` lie on the grid of stride-s maps.

    Args:
        x: (B, C, h, w) float (images, features: 'bilinear' by default) or integer/bool
            (labels, one channel or several: 'nearest' only); or (B, h, w) label maps.
        geometry: a :class:`Geometry` with B boxes.
        mode: 'bilinear' or 'nearest' (default: bilinear for float, nearest otherwise).
        output_size: explicit (h_out, w_out).

    Returns:
        The transformed tensor with x's dtype, (B, C, h_out, w_out) or (B, h_out, w_out).
    """
    check.tensor(x, "x")
    _check_geometry(geometry)
    if x.dim() not in (3, 4):
        raise ValueError(f"x must have shape (B, C, h, w) or (B, h, w), got {tuple(x.shape)}")
    squeeze = x.dim() == 3
    maps = x.unsqueeze(1) if squeeze else x
    B, _, h, w = maps.shape
    if B != geometry.batch_size:
        raise ValueError(f"x has batch size {B} but geometry has {geometry.batch_size} boxes")
    is_float = x.is_floating_point()
    if mode is None:
        mode = "bilinear" if is_float else "nearest"
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if mode == "bilinear" and not is_float:
        raise TypeError(f"x of dtype {x.dtype} (labels) can only be resampled with mode='nearest'")
    if output_size is not None:
        h_out, w_out = _size_pair(output_size, "output_size")
    elif (h, w) == tuple(geometry.input_size):
        h_out, w_out = geometry.output_size
    else:
        (H, W), (H_out, W_out) = geometry.input_size, geometry.output_size
        if (H_out * h) % H or (W_out * w) % W:
            raise ValueError(f"x of size {(h, w)} is not an integer scale of geometry.input_size {(H, W)} for "
                             f"output_size {(H_out, W_out)}: pass output_size explicitly")
        h_out, w_out = H_out * h // H, W_out * w // W

    top, left, bottom, right = geometry.boxes.double().unbind(1)
    u_rows = _sample_positions(top, bottom, h_out, h, x.device)
    u_cols = _sample_positions(left, right, w_out, w, x.device)
    flip = geometry.flip.to(x.device).unsqueeze(1)
    if mode == "nearest":
        rows, cols = _nearest_taps(u_rows, h), _nearest_taps(u_cols, w)
        cols = torch.where(flip, cols.flip(1), cols)
        out = _gather_axis(_gather_axis(maps, rows, 2), cols, 3)
    else:
        r0, r1, fy = _linear_taps(u_rows, h)
        c0, c1, fx = _linear_taps(u_cols, w)
        # Flipping the output = reversing the column taps (exact, no resampling).
        c0, c1, fx = (torch.where(flip, t.flip(1), t) for t in (c0, c1, fx))
        fy = fy.to(maps.dtype).view(B, 1, h_out, 1)
        fx = fx.to(maps.dtype).view(B, 1, 1, w_out)
        rows = _gather_axis(maps, r0, 2) * (1 - fy) + _gather_axis(maps, r1, 2) * fy
        out = _gather_axis(rows, c0, 3) * (1 - fx) + _gather_axis(rows, c1, 3) * fx
    return out.squeeze(1) if squeeze else out


# ==================================================================================
# Photometric
# ==================================================================================
class Photometric(NamedTuple):
    """A batch of photometric transforms, applied in this order: brightness, contrast,
    saturation, hue (the color jitter), then grey, then blur. Identity values: factors
    1, hue 0, grey False, blur_sigma 0. All (B,) float64 / bool on the CPU.

    brightness: x * f.  contrast: f x + (1 - f) mean(grey(x)) (mean over the image).
    saturation: f x + (1 - f) grey(x).  hue: shift of the HSV hue, in turns.
    grey: replace RGB by grey(x) = 0.299 R + 0.587 G + 0.114 B in all 3 channels.
    blur_sigma: standard deviation (pixels) of a separable Gaussian blur with reflect
    padding; 0 = none. Values are clamped to [0, 1] after every jitter step.
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
    brightness = _nonnegative_float(brightness, "brightness")
    contrast = _nonnegative_float(contrast, "contrast")
    saturation = _nonnegative_float(saturation, "saturation")
    hue = _nonnegative_float(hue, "hue")
    if hue > 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")
    jitter_probability = _probability(jitter_probability, "jitter_probability")
    grey_probability = _probability(grey_probability, "grey_probability")
    blur_probability = _probability(blur_probability, "blur_probability")
    sigma_lo, sigma_hi = _range(blur_sigma, "blur_sigma", 0.0)
    _check_generator(generator)

    draws = _uniform((batch_size, 8), generator)

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


def _grey(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(GREY_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _rgb_to_hsv(images: torch.Tensor):
    r, g, b = images.unbind(1)
    maxc = images.amax(1)
    minc = images.amin(1)
    delta = maxc - minc
    value = maxc
    saturation = torch.where(maxc > 0, delta / maxc.clamp_min(1e-30), 0.0)
    safe = delta.clamp_min(1e-30)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(r == maxc, bc - gc, torch.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
    return hue, saturation, value


def _hsv_to_rgb(hue, saturation, value) -> torch.Tensor:
    sector = (hue * 6.0).floor()
    fraction = hue * 6.0 - sector
    sector = sector.long() % 6
    p = value * (1 - saturation)
    q = value * (1 - saturation * fraction)
    t = value * (1 - saturation * (1 - fraction))
    # (r, g, b) per sector 0..5 of the hue circle.
    table = torch.stack([
        torch.stack([value, t, p], 0), torch.stack([q, value, p], 0), torch.stack([p, value, t], 0),
        torch.stack([p, q, value], 0), torch.stack([t, p, value], 0), torch.stack([value, p, q], 0),
    ], 0)  # (6, 3, B, H, W)
    index = sector.unsqueeze(0).unsqueeze(0).expand(1, 3, *sector.shape)
    return table.gather(0, index).squeeze(0).transpose(0, 1)  # (B, 3, H, W)


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
        (B, 3, H, W) images in [0, 1], same dtype. Differentiable in the images.
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

    def per_image(values):
        return values.to(device=images.device, dtype=images.dtype).view(B, 1, 1, 1)

    out = (images * per_image(photometric.brightness)).clamp(0, 1)
    mean_grey = _grey(out).mean((2, 3), keepdim=True)
    out = (per_image(photometric.contrast) * out + (1 - per_image(photometric.contrast)) * mean_grey).clamp(0, 1)
    out = (per_image(photometric.saturation) * out + (1 - per_image(photometric.saturation)) * _grey(out)).clamp(0, 1)
    if bool((photometric.hue != 0).any()):
        hue, saturation, value = _rgb_to_hsv(out)
        shifted = _hsv_to_rgb((hue + per_image(photometric.hue).squeeze(1)) % 1.0, saturation, value)
        out = torch.where((photometric.hue != 0).to(images.device).view(B, 1, 1, 1), shifted, out)
    grey = photometric.grey.to(images.device).view(B, 1, 1, 1)
    out = torch.where(grey, _grey(out).expand_as(out), out)
    if bool((photometric.blur_sigma > 0).any()):
        out = _gaussian_blur(out, photometric.blur_sigma.double())
    return out


def picie_views(images: torch.Tensor, *, output_size=None, generator: Optional[torch.Generator] = None,
                geometry_options: Optional[dict] = None, photometric_options: Optional[dict] = None):
    """PiCIE's two views of a batch: ``view_1 = G(P1(images))`` and
    ``view_2 = P2(images)``, with independent photometric transforms P1, P2 and one
    geometric transform G. Train with ``z1 = net(view_1)`` and
    ``z2 = apply_geometry(net(view_2), G)``: both are then feature maps of the same
    crop, so equal pseudo-labels mean invariance to P and equivariance to G.

    Args:
        images: (B, 3, H, W) float RGB in [0, 1].
        output_size: (H_out, W_out) of view_1 (default: the input size).
        generator: torch.Generator (CPU) for all draws.
        geometry_options / photometric_options: keyword arguments of
            :func:`sample_geometry` / :func:`sample_photometric`.

    Returns:
        ``(view_1 (B, 3, H_out, W_out), view_2 (B, 3, H, W), geometry)``.
    """
    check.float_tensor(images, "images")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    B, _, H, W = images.shape
    geometry = sample_geometry(B, (H, W), output_size, generator=generator, **(geometry_options or {}))
    first = sample_photometric(B, generator=generator, **(photometric_options or {}))
    second = sample_photometric(B, generator=generator, **(photometric_options or {}))
    view_1 = apply_geometry(apply_photometric(images, first), geometry)
    view_2 = apply_photometric(images, second)
    return view_1, view_2, geometry
