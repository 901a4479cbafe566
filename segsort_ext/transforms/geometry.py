"""Geometric transforms: crops, flips and rescaling that move images and their label maps
(and feature maps) together.

- Per sample, for a Dataset ``transform``: :func:`random_scale`, :func:`random_crop` (padded
  with the ignore index where the image is smaller), :func:`random_hflip`;
  :func:`crop_or_pad` brings a map to a given size (as :func:`segsort_ext.datasets.collate`).
- Per batch, PiCIE's equivariance bookkeeping: a :class:`Geometry` describes a random
  resized crop and flip per image in resolution-independent coordinates, so the *same*
  transform applies to an image (B, 3, H, W), to a feature map (B, C, H/s, W/s) of a
  stride-s network and to label maps (nearest, never interpolated): :func:`apply_geometry`.
  Equivariance then reads ``apply_geometry(net(image), g) ~ net(apply_geometry(image, g))``.

Coordinates: an axis of n pixels spans [0, 1]; pixel i covers [i / n, (i + 1) / n] and
has its centre at (i + 0.5) / n (``align_corners=False``). A box is (top, left, bottom,
right) in these units, so it names the same region at every resolution. Random draws come
from a ``torch.Generator`` on the CPU, in float64, so a seed reproduces them on any device.

NaN/inf policy (every function here, any float dtype): pixel values are moved, never
checked. A NaN or inf pixel reaches only the outputs sampled from it -- itself under a
crop, pad or flip, the bilinear cell around it (at most 3x3 per upscaling by <= 1.5)
under :func:`random_scale` / :func:`apply_geometry` -- and no other output.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from segsort_ext.transforms._checks import fill_value, image_label_pair
from segsort_ext.utils import checks as check
from segsort_ext.utils.constants import IGNORE_INDEX

__all__ = [
    "Geometry",
    "sample_geometry",
    "identity_geometry",
    "apply_geometry",
    "crop_or_pad",
    "random_crop",
    "random_hflip",
    "random_scale",
]

# A resampling position within this many pixels of a pixel centre is that centre, so
# crops aligned to the pixel grid copy pixels exactly despite float rounding.
_SNAP = 1e-9


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
    check.int_pair(geometry.input_size, "geometry.input_size")
    check.int_pair(geometry.output_size, "geometry.output_size")


def identity_geometry(batch_size: int, input_size, *, flip: Optional[torch.Tensor] = None) -> Geometry:
    """The full image at its own size; with ``flip`` ((B,) bool) a pure left-right flip."""
    batch_size = check.nonnegative_int(batch_size, "batch_size")
    check.allocatable((batch_size, 4), torch.float64, "batch_size")
    input_size = check.int_pair(input_size, "input_size")
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
    check.allocatable((batch_size, 5), torch.float64, "batch_size")
    H, W = check.int_pair(input_size, "input_size")
    output_size = (H, W) if output_size is None else check.int_pair(output_size, "output_size")
    scale = check.interval(scale, "scale", minimum=0.0, maximum=1.0)
    if scale[0] == 0:
        raise ValueError(f"scale must lie within (0, 1], got {scale}")
    ratio = check.interval(ratio, "ratio", minimum=0.0, strict=True)
    flip_probability = check.number(flip_probability, "flip_probability", minimum=0.0, maximum=1.0)
    align = check.positive_int(align, "align")
    if align > min(H, W):
        raise ValueError(f"align must be <= the image size {min(H, W)}, got {align}")
    check.generator(generator)

    draws = torch.rand((batch_size, 5), generator=generator, dtype=torch.float64)
    area = (scale[0] + (scale[1] - scale[0]) * draws[:, 0]) * (float(H) * float(W))
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


def _lerp(a: torch.Tensor, b: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """a (1 - fraction) + b fraction, and exactly a where fraction is 0: a tap of weight 0
    must not turn a NaN or inf next to the sample position into NaN."""
    return torch.where(fraction == 0, a, a * (1 - fraction) + b * fraction)


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
        A NaN or inf pixel reaches exactly the outputs that sample it with a non-zero
        weight.
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
    size_name = "output_size"
    if output_size is not None:
        h_out, w_out = check.int_pair(output_size, "output_size")
    elif (h, w) == tuple(geometry.input_size):
        h_out, w_out = geometry.output_size
        size_name = "geometry.output_size"
    else:
        (H, W), (H_out, W_out) = geometry.input_size, geometry.output_size
        if (H_out * h) % H or (W_out * w) % W:
            raise ValueError(f"x of size {(h, w)} is not an integer scale of geometry.input_size {(H, W)} for "
                             f"output_size {(H_out, W_out)}: pass output_size explicitly")
        h_out, w_out = H_out * h // H, W_out * w // W
        size_name = "geometry.output_size"
    # The output and the bilinear pass's (B, C, h_out, w) rows.
    check.allocatable((B, maps.shape[1], h_out, max(w, w_out)), x.dtype, size_name, x.device)

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
        rows = _lerp(_gather_axis(maps, r0, 2), _gather_axis(maps, r1, 2), fy)
        out = _lerp(_gather_axis(rows, c0, 3), _gather_axis(rows, c1, 3), fx)
    return out.squeeze(1) if squeeze else out


def crop_or_pad(x: torch.Tensor, size: Tuple[int, int], fill: float) -> torch.Tensor:
    """``x`` (..., H, W) cropped to at most ``size = (h, w)`` (an int or a pair of ints
    >= 1) from the top-left corner, then padded at the bottom/right with ``fill`` (a value
    x's dtype holds, not NaN) to exactly ``size`` (pixel (0, 0) stays put)."""
    check.tensor(x, "x")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., H, W), got {tuple(x.shape)}")
    height, width = check.int_pair(size, "size")
    fill = fill_value(fill, x.dtype, "fill")
    check.allocatable((*x.shape[:-2], height, width), x.dtype, "size", x.device)
    x = x[..., :height, :width]
    if tuple(x.shape[-2:]) == (height, width):
        return x
    out = x.new_full((*x.shape[:-2], height, width), fill)
    out[..., :x.shape[-2], :x.shape[-1]] = x
    return out


def random_crop(
    image: torch.Tensor,
    label: torch.Tensor,
    size: Tuple[int, int],
    generator: Optional[torch.Generator] = None,
    ignore_index: int = IGNORE_INDEX,
    image_fill: float = 0.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Crop the same random ``size = (h, w)`` window from ``image (C, H, W)`` and ``label (H, W)``.

    Inputs smaller than ``size`` are first padded at the bottom/right (image with
    ``image_fill``, label with ``ignore_index``: values of their dtypes).  The window
    position is drawn from ``generator`` so that a seeded generator gives a reproducible
    sequence of crops.  ``label`` may also be ``(K, H, W)``.
    """
    image_label_pair(image, label)
    height, width = check.int_pair(size, "size")
    check.generator(generator)
    ignore_index = fill_value(ignore_index, label.dtype, "ignore_index")
    image_fill = fill_value(image_fill, image.dtype, "image_fill")
    padded = (max(height, image.shape[-2]), max(width, image.shape[-1]))
    image = crop_or_pad(image, padded, image_fill)
    label = crop_or_pad(label, padded, ignore_index)
    top = int(torch.randint(padded[0] - height + 1, (1,), generator=generator))
    left = int(torch.randint(padded[1] - width + 1, (1,), generator=generator))
    return image[..., top:top + height, left:left + width], label[..., top:top + height, left:left + width]


def random_hflip(
    image: torch.Tensor,
    label: torch.Tensor,
    p: float = 0.5,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mirror ``image`` and ``label`` left-right together with probability ``p``."""
    image_label_pair(image, label)
    p = check.number(p, "p", minimum=0.0, maximum=1.0)
    check.generator(generator)
    if float(torch.rand((), generator=generator)) < p:
        return image.flip(-1), label.flip(-1)
    return image, label


def random_scale(
    image: torch.Tensor,
    label: torch.Tensor,
    scale_range: Tuple[float, float] = (0.5, 2.0),
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Resize ``image (C, H, W)`` and ``label (H, W)`` or ``(K, H, W)`` by one random factor.

    The factor is uniform in ``scale_range``; the new size is ``round(H * s), round(W * s)``
    (at least 1).  The image is resampled bilinearly (``F.interpolate``, ``align_corners=False``)
    and the label by :func:`apply_geometry`'s nearest rule on the same pixel-centre grid (the
    source pixel whose cell holds the output pixel's centre), so every label pixel is the
    source pixel nearest to where its image value was interpolated.  (Plain ``'nearest'``
    reads ``floor(y * H / h)`` and shifts labels by up to half an input pixel against the
    image.)  Follow with :func:`random_crop`, which pads with the ignore index.
    """
    image_label_pair(image, label)
    low, high = check.interval(scale_range, "scale_range", minimum=0.0, strict=True)
    check.generator(generator)
    factor = low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))
    height, width = image.shape[-2:]
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    check.allocatable((image.shape[0], *size), image.dtype, "scale_range", image.device)
    if size == (height, width):
        return image, label
    # F.interpolate's fused kernel, not apply_geometry's gathers: ten times faster on the CPU,
    # where a DataLoader runs this per sample, and the same sample positions.
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    whole_image = identity_geometry(1, (height, width))._replace(output_size=size)
    return image, apply_geometry(label[None], whole_image, mode="nearest")[0]
