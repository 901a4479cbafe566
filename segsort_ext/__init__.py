"""segsort_ext: fused CPU/CUDA kernels for segmentation by pixel embeddings.

The kernel ops (:mod:`segsort_ext.ops`) load with the package; everything above them loads
on first use, so ``import segsort_ext`` imports torch and numpy only (no scipy,
scikit-image, faiss, matplotlib or scikit-learn). Layers, lowest first: ``utils``,
``ops``, ``transforms``/``retrieval``, ``cluster``/``metrics``/``datasets``, ``nn``
(see docs/DESIGN.md).
"""
from segsort_ext import _compat
from segsort_ext.ops import (
    HAS_EXTENSION,
    KMeansResult,
    Segments,
    bandwidth_from_margin,
    blurring_mean_shift,
    has_cuda_kernels,
    not_supported_reasons,
    segment_label_histogram,
    segment_majority_mean,
    segment_mean,
    segment_partition,
    spherical_kmeans,
    vmf_loss,
    vmf_nca_loss,
)
from segsort_ext.utils.lazy import lazy_exports

__version__ = "0.2.0"

_LAZY_NAMES = {
    "SphericalKMeans": "segsort_ext.cluster",
    "finch": "segsort_ext.cluster",
    "Instances": "segsort_ext.cluster",
    "Proposals": "segsort_ext.cluster",
    "cosine_threshold_from_margin": "segsort_ext.cluster",
    "extract_instances": "segsort_ext.cluster",
    "instance_proposals": "segsort_ext.cluster",
    "PiCIEClustering": "segsort_ext.nn",
    "SegSortLoss": "segsort_ext.nn",
    "pairwise_margin_loss": "segsort_ext.nn",
    "picie_loss": "segsort_ext.nn",
    "soft_segmentation_features": "segsort_ext.nn",
    "soft_segmentation_loss": "segsort_ext.nn",
    "PrototypeMemory": "segsort_ext.nn",
    "Neighbours": "segsort_ext.retrieval",
    "SegmentIndex": "segsort_ext.retrieval",
    "SegSortPredictor": "segsort_ext.retrieval",
    "add_training_segments": "segsort_ext.retrieval",
    "contour_ucm": "segsort_ext.transforms",
    "HED_UCM_OPTIONS": "segsort_ext.transforms",
    "edge_strength": "segsort_ext.transforms",
    "felzenszwalb_segments": "segsort_ext.transforms",
    "image_ucm": "segsort_ext.transforms",
    "pseudo_segments": "segsort_ext.transforms",
    "slic_segments": "segsort_ext.transforms",
    "ucm_to_labels": "segsort_ext.transforms",
    "edge_nms": "segsort_ext.transforms",
    "HED": "segsort_ext.models",
    "HEDEmbedding": "segsort_ext.models",
}
_SUBPACKAGES = ("ops", "nn", "cluster", "retrieval", "transforms", "datasets", "metrics", "models", "utils", "testing",
                "buildinfo")
# An old module path that is also a function's name (pseudo_segments) resolves to the function,
# as in 0.1; `import segsort_ext.pseudo_segments` still finds the module alias.
__getattr__, __dir__ = lazy_exports(__name__, _LAZY_NAMES,
                                    _SUBPACKAGES + tuple(m for m in _compat.MOVED_MODULES if m not in _LAZY_NAMES))
_compat.install()

__all__ = [
    "HAS_EXTENSION",
    "has_cuda_kernels",
    "not_supported_reasons",
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
    *_LAZY_NAMES,
]
