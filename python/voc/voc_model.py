"""The VOC program's network: HED's VGG16 trunk, frozen up to conv3 (its pool3 output is
computed once and cached), conv4 and conv5 trained from HED's weights, and a light
context head that fuses pool3, conv4_3, conv5_3 and an image-level pooled vector (the
image pooling branch of DeepLabv3's ASPP) at 1/8 of the image size.

Every method trains the same body; only the last 1x1 layer differs (21 class logits for
softmax, 32 unit-embedding channels for SegSort and unsupervised SegSort).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from segsort_ext.models import HED

#: The trunk's stride at the body's input (pool3) and output.
STRIDE = 8


@torch.no_grad()
def pool3_features(hed: HED, images: torch.Tensor) -> torch.Tensor:
    """(B, 256, ceil(H / 8), ceil(W / 8)) pool3 output of HED's frozen conv1-conv3 for
    RGB images (B, 3, H, W) in [0, 1] (HED's preprocessing and 'same' pooling)."""
    x = images.flip(1) * 255.0 - hed.bgr_mean
    for k in range(3):
        if k:
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = hed.stages[k](x)
    return F.max_pool2d(x, 2, 2, ceil_mode=True)


def _stage(stage: nn.Sequential, batch_norm: bool) -> nn.Sequential:
    """HED's stage, with BatchNorm after each convolution when asked (its weights kept)."""
    if not batch_norm:
        return stage
    layers = []
    for layer in stage:
        layers.append(layer)
        if isinstance(layer, nn.Conv2d):
            layers.append(nn.BatchNorm2d(layer.out_channels))
    return nn.Sequential(*layers)


class Body(nn.Module):
    """pool3 features (B, 256, h, w) -> (B, out_channels, h, w).

    conv4 (3 x 3x3, 512) and conv5 (3 x 3x3, 512, after a 2x2 max pool) start from HED's
    weights; 1x1 projections of pool3, conv4_3 and conv5_3 (upsampled) and of the image's
    average conv5_3 vector are group-normalised, concatenated, mixed by a 3x3 convolution
    and mapped to ``out_channels`` by the last 1x1 layer. HED's activations are in
    0..255-scaled units, hence the normalisation of every branch before they mix.
    """

    def __init__(self, hed: HED, out_channels: int, *, width: int = 256, dropout: float = 0.1,
                 batch_norm: bool = True):
        super().__init__()
        self.conv4 = _stage(hed.stages[3], batch_norm)
        self.conv5 = _stage(hed.stages[4], batch_norm)
        branch = width // 2
        self.project = nn.ModuleList(nn.Conv2d(c, branch, 1) for c in (256, 512, 512, 512))
        self.norm = nn.BatchNorm2d(4 * branch) if batch_norm else nn.GroupNorm(4 * 4, 4 * branch)
        self.mix = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(4 * branch, width, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(width) if batch_norm else nn.GroupNorm(8, width),
                                 nn.ReLU(inplace=True), nn.Dropout2d(dropout))
        self.last = nn.Conv2d(width, out_channels, 1)

    def trunk_parameters(self) -> List[nn.Parameter]:
        return [*self.conv4.parameters(), *self.conv5.parameters()]

    def head_parameters(self) -> List[nn.Parameter]:
        trunk = {id(p) for p in self.trunk_parameters()}
        return [p for p in self.parameters() if id(p) not in trunk]

    def forward(self, pool3: torch.Tensor) -> torch.Tensor:
        size = pool3.shape[-2:]
        conv4 = self.conv4(pool3)
        conv5 = self.conv5(F.max_pool2d(conv4, 2, 2, ceil_mode=True))
        image = conv5.mean((2, 3), keepdim=True)
        branches = [self.project[0](pool3), self.project[1](conv4),
                    F.interpolate(self.project[2](conv5), size=size, mode="bilinear", align_corners=False),
                    self.project[3](image).expand(-1, -1, *size)]
        return self.last(self.mix(self.norm(torch.cat(branches, 1))))
