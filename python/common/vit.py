"""A DINOv2-compatible ViT-S/14 (patch 14, 12 blocks, width 384, 6 heads, layer scale):
the architecture of facebookresearch/dinov2's ``dinov2_vits14`` with the parameter names
of its released checkpoint, so that ``dinov2_vits14_pretrain.pth`` loads into it when the
hub's own code is not cached (see common.backbones)."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


class _LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.ls1 = _LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(OrderedDict(fc1=nn.Linear(dim, 4 * dim), act=nn.GELU(), fc2=nn.Linear(4 * dim, dim)))
        self.ls2 = _LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class ViTS14(nn.Module):
    """DINOv2's ViT-S/14 (patch 14, 12 blocks of width 384 with 6 heads, layer scale, a class
    token, learned position embeddings for a 37x37 grid interpolated bicubically to the
    input's) with the parameter names of ``dinov2_vits14_pretrain.pth``, so the released
    file loads into it; :meth:`forward_features` as DINOv2's."""

    patch_size = 14
    embed_dim = 384

    def __init__(self, depth: int = 12, heads: int = 6, grid: int = 37):
        super().__init__()
        dim = self.embed_dim
        self.patch_embed = _PatchEmbed(self.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # DINOv2's (masked training); unused here
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The class token's and an h x w grid's position embeddings (DINOv2's interpolation,
        its 0.1 offset included)."""
        cls_pos, grid_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        side = math.isqrt(grid_pos.shape[1])
        if (h, w) != (side, side):
            grid_pos = grid_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
            grid_pos = F.interpolate(grid_pos, scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode="bicubic")
            grid_pos = grid_pos.to(self.pos_embed.dtype).flatten(2).transpose(1, 2)
        return torch.cat([cls_pos, grid_pos], 1)

    def forward_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``x``: normalised images whose sides are multiples of 14."""
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), self.patch_embed(x)], 1)
        tokens = tokens + self.position_embedding(h, w)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        return {"x_norm_clstoken": tokens[:, 0], "x_norm_patchtokens": tokens[:, 1:]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["x_norm_clstoken"]
