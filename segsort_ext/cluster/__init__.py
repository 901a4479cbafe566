"""Clustering above the ops: dataset-level spherical k-means, FINCH, and instances and
proposals from converged mean-shift embeddings."""
from segsort_ext.cluster.finch import finch
from segsort_ext.cluster.instances import (
    Instances,
    Proposals,
    cosine_threshold_from_margin,
    extract_instances,
    instance_proposals,
)
from segsort_ext.cluster.kmeans import SphericalKMeans

__all__ = [
    "SphericalKMeans",
    "finch",
    "cosine_threshold_from_margin",
    "Instances",
    "extract_instances",
    "Proposals",
    "instance_proposals",
]
