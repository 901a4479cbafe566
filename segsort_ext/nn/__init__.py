"""Losses and their state: SegSortLoss with its PrototypeMemory, Kong & Fowlkes' margin
loss, Aksoy et al.'s soft-segmentation loss, PiCIE's clustering loss."""
from segsort_ext.nn.margin import pairwise_margin_loss
from segsort_ext.nn.memory import MemoryProvenance, PrototypeMemory
from segsort_ext.nn.picie import PiCIEClustering, cluster_balance_weights, picie_loss
from segsort_ext.nn.segsort_loss import SegSortLoss
from segsort_ext.nn.soft_segmentation import soft_segmentation_features, soft_segmentation_loss

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
