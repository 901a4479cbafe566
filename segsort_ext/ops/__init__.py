"""The kernel ops: one module per op, each holding its public function, its plain-PyTorch
kernel, its fake kernel and its autograd registration; ``reference`` holds the
plain-PyTorch twins, ``schemas`` the operator schemas. Imports only torch (and
:mod:`segsort_ext.utils`)."""
from segsort_ext.ops._extension import HAS_EXTENSION, extension_info, has_cuda_kernels, not_supported_reasons
from segsort_ext.ops.blurring_mean_shift import bandwidth_from_margin, blurring_mean_shift
from segsort_ext.ops.group_max_scores import group_max_scores
from segsort_ext.ops.nearest_centroid import NearestCentroid  # noqa: F401 (registers the op's kernels; not exported)
from segsort_ext.ops.segment_mean import segment_label_histogram, segment_majority_mean, segment_mean
from segsort_ext.ops.segment_partition import Segments, segment_partition
from segsort_ext.ops.spherical_kmeans import KMeansResult, spherical_kmeans
from segsort_ext.ops.vmf_loss import vmf_loss, vmf_nca_loss

__all__ = [
    "HAS_EXTENSION",
    "has_cuda_kernels",
    "not_supported_reasons",
    "extension_info",
    "Segments",
    "segment_partition",
    "segment_mean",
    "segment_label_histogram",
    "segment_majority_mean",
    "KMeansResult",
    "spherical_kmeans",
    "vmf_loss",
    "vmf_nca_loss",
    "blurring_mean_shift",
    "bandwidth_from_margin",
    "group_max_scores",
]
