"""segsort_ext: fused CPU/CUDA kernels for segmentation by pixel embeddings."""
from segsort_ext._ops import HAS_EXTENSION, has_cuda_kernels
from segsort_ext.inference import SegSortPredictor, add_training_segments
from segsort_ext.kmeans import KMeansResult, SphericalKMeans, spherical_kmeans
from segsort_ext.losses import (
    PiCIEClustering,
    SegSortLoss,
    pairwise_margin_loss,
    picie_loss,
    soft_segmentation_features,
    soft_segmentation_loss,
)
from segsort_ext.memory import PrototypeMemory
from segsort_ext.meanshift import (
    Instances,
    Proposals,
    bandwidth_from_margin,
    blurring_mean_shift,
    cosine_threshold_from_margin,
    extract_instances,
    instance_proposals,
)
from segsort_ext.pseudo_segments import (
    contour_ucm,
    edge_strength,
    felzenszwalb_segments,
    image_ucm,
    pseudo_segments,
    slic_segments,
    ucm_to_labels,
)
from segsort_ext.retrieval import Neighbours, SegmentIndex, finch
from segsort_ext.vmf import vmf_loss, vmf_nca_loss
from segsort_ext.segments import (
    Segments,
    segment_label_histogram,
    segment_majority_mean,
    segment_mean,
    segment_partition,
)

__version__ = "0.1.0"

__all__ = [
    "HAS_EXTENSION",
    "has_cuda_kernels",
    "Segments",
    "segment_partition",
    "segment_mean",
    "segment_label_histogram",
    "segment_majority_mean",
    "KMeansResult",
    "spherical_kmeans",
    "SphericalKMeans",
    "SegmentIndex",
    "Neighbours",
    "finch",
    "add_training_segments",
    "SegSortPredictor",
    "vmf_loss",
    "vmf_nca_loss",
    "blurring_mean_shift",
    "bandwidth_from_margin",
    "cosine_threshold_from_margin",
    "extract_instances",
    "Instances",
    "instance_proposals",
    "Proposals",
    "pseudo_segments",
    "slic_segments",
    "felzenszwalb_segments",
    "edge_strength",
    "contour_ucm",
    "image_ucm",
    "ucm_to_labels",
    "PrototypeMemory",
    "SegSortLoss",
    "pairwise_margin_loss",
    "soft_segmentation_loss",
    "soft_segmentation_features",
    "picie_loss",
    "PiCIEClustering",
]
