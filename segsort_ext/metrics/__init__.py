"""Evaluation metrics, plain numpy/scipy (no compiled extension); inputs may be numpy arrays
or torch tensors. Needs scipy (the ``data`` extra).

Bad inputs are refused with an error naming the argument: float class/region maps (a
TypeError, never truncated), NaN in binary or soft maps, non-finite scalars; region ids are
arbitrary integers and no metric allocates more than a small multiple of its inputs (see
:mod:`~segsort_ext.metrics.arrays`).

* :mod:`~segsort_ext.metrics.semantic` -- VOC mIoU (:class:`ConfusionMatrix`), PiCIE's
  :func:`hungarian_match`, SegSort's semantic boundary F-measure (:class:`SemanticBoundaryF`);
* :mod:`~segsort_ext.metrics.boundary` -- the BSDS500 boundary primitives: thinning,
  :func:`seg2bdry`, the pixel matcher :func:`correspond_pixels`, :func:`boundary_pr`;
* :mod:`~segsort_ext.metrics.regions` -- segmentation covering, probabilistic Rand index and
  variation of information;
* :mod:`~segsort_ext.metrics.bsds` -- the BSDS500 benchmark over a data set (per-image counts,
  :func:`bsds_benchmark`, :func:`region_benchmark` / :func:`boundary_benchmark`), and
  :mod:`~segsort_ext.metrics.bsds_scores` -- its dataset scores (ODS / OIS / AP) and the
  official result files;
* :mod:`~segsort_ext.metrics.instance` -- Kong & Fowlkes' instance-proposal scores
  (:class:`InstanceEvaluator`: average recall over IoU 0.5:0.05:0.95, AP at IoU 0.5).
"""
from segsort_ext.metrics.arrays import to_numpy
from segsort_ext.metrics.boundary import boundary_f1, boundary_pr, correspond_pixels, seg2bdry, thin_boundaries
from segsort_ext.metrics.bsds import (
    boundary_benchmark,
    bsds_benchmark,
    evaluate_boundaries_image,
    evaluate_regions_image,
    region_benchmark,
    regions_from_ucm2,
    thresholds_for,
)
from segsort_ext.metrics.bsds_scores import (
    evaluate_boundaries,
    evaluate_regions,
    official_tables,
    write_official_tables,
)
from segsort_ext.metrics.instance import AR_IOU_THRESHOLDS, InstanceEvaluator, average_recall, instance_ious
from segsort_ext.metrics.regions import rand_index_voi, segmentation_covering
from segsort_ext.metrics.semantic import (
    ConfusionMatrix,
    SemanticBoundaryF,
    confusion_matrix,
    hungarian_match,
    mean_iou,
    semantic_boundary_counts,
    semantic_boundary_f,
)

__all__ = [
    "to_numpy",
    # semantic segmentation
    "ConfusionMatrix",
    "confusion_matrix",
    "mean_iou",
    "hungarian_match",
    "semantic_boundary_counts",
    "SemanticBoundaryF",
    "semantic_boundary_f",
    # BSDS500 primitives
    "thin_boundaries",
    "seg2bdry",
    "correspond_pixels",
    "boundary_pr",
    "boundary_f1",
    "segmentation_covering",
    "rand_index_voi",
    # BSDS500 benchmark
    "thresholds_for",
    "evaluate_boundaries_image",
    "evaluate_boundaries",
    "evaluate_regions_image",
    "evaluate_regions",
    "bsds_benchmark",
    "official_tables",
    "write_official_tables",
    "regions_from_ucm2",
    "region_benchmark",
    "boundary_benchmark",
    # instance proposals
    "AR_IOU_THRESHOLDS",
    "instance_ious",
    "InstanceEvaluator",
    "average_recall",
]
