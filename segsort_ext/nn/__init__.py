"""Losses and their state: SegSortLoss with its PrototypeMemory, Kong & Fowlkes' margin
loss, Aksoy et al.'s soft-segmentation loss, PiCIE's clustering loss."""
from segsort_ext.nn.losses import (
    PiCIEClustering,
    SegSortLoss,
    cluster_balance_weights,
    pairwise_margin_loss,
    picie_loss,
    soft_segmentation_features,
    soft_segmentation_loss,
)
from segsort_ext.nn.memory import MemoryProvenance, PrototypeMemory

__all__ = [
    "SegSortLoss",
    "PrototypeMemory",
    "MemoryProvenance",
    "pairwise_margin_loss",
    "soft_segmentation_loss",
    "soft_segmentation_features",
    "picie_loss",
    "PiCIEClustering",
    "cluster_balance_weights",
]
