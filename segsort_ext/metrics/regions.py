"""BSDS500 region metrics of one segmentation against K human ones, as the official
benchmark computes them: segmentation covering (``evaluation_reg_image.m``,
``match_segmentations.m``), probabilistic Rand index and variation of information
(``match_segmentations2.m``, ``compare_segmentations.m``)."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from segsort_ext.metrics.arrays import _ground_truth_maps, to_numpy
from segsort_ext.metrics.boundary import _ratio

__all__ = ["segmentation_covering", "rand_index_voi"]


def _region_overlaps(seg: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Intersection-over-union of every GT region (rows, labels 1..max) with every machine
    region (columns, labels 1..max); label 0 counts towards the region sizes but is no region
    itself, as in ``match_segmentations.m``."""
    num_gt = int(gt.max()) + 1
    num_seg = int(seg.max()) + 1
    joint = np.bincount((gt + seg * num_gt).ravel(), minlength=num_gt * num_seg)
    joint = joint.reshape(num_seg, num_gt).T.astype(np.float64)  # [gt label, seg label]
    gt_sizes = joint.sum(axis=1, keepdims=True)
    seg_sizes = joint.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        overlaps = joint / (gt_sizes + seg_sizes - joint)
    return overlaps[1:, 1:]


def _check_labels(seg: np.ndarray, what: str) -> None:
    if seg.ndim != 2:
        raise ValueError(f"{what} must be a 2-D label map, got shape {seg.shape}")
    if seg.size and seg.min() < 0:
        raise ValueError(f"{what} must have non-negative labels")


def _covering_counts(seg: np.ndarray, gts: List[np.ndarray]) -> Dict:
    """Per-image covering counts (``evaluation_reg_image.m`` for one segmentation)."""
    _check_labels(seg, "seg")
    per_gt = []
    for gt in gts:
        if gt.shape != seg.shape:
            raise ValueError(f"ground truth shape {gt.shape} != seg shape {seg.shape}")
        _check_labels(gt, "ground truth")
        per_gt.append(_region_overlaps(seg, gt))
    # matches[gt region of any annotator, seg region]
    matches = np.concatenate(per_gt, axis=0)
    # NaN only arises for a label absent from both maps (zero area): count it as no overlap.
    matches = np.nan_to_num(matches, nan=0.0)
    best_per_gt = matches.max(axis=1) if matches.shape[1] else np.zeros(matches.shape[0])
    best_per_seg = matches.max(axis=0) if matches.shape[0] else np.zeros(matches.shape[1])
    gt_areas = np.concatenate([np.bincount(gt.ravel(), minlength=int(gt.max()) + 1)[1:] for gt in gts])
    gt_areas = gt_areas.astype(np.float64)
    seg_areas = np.bincount(seg.ravel(), minlength=int(seg.max()) + 1)[1:].astype(np.float64)
    return {
        "cnt_recall": float(np.dot(gt_areas, best_per_gt)),
        "sum_recall": float(gt_areas.sum()),
        "cnt_precision": float(np.dot(seg_areas, best_per_seg)),
        "sum_precision": float(seg_areas.sum()),
        "best_per_gt_region": best_per_gt,
        "gt_areas": gt_areas,
    }


def segmentation_covering(seg, gt_segmentations) -> float:
    """Covering of the human segmentations by ``seg``, averaged over annotators.

    For each annotator, every human region ``R`` is credited with the best IoU it achieves
    with a machine region, weighted by ``|R| / N``; the official benchmark sums these over
    annotators and normalises by ``K * N``.
    """
    gts = _ground_truth_maps(gt_segmentations, "segmentation", np.int64)
    counts = _covering_counts(to_numpy(seg).astype(np.int64), gts)
    return float(_ratio(counts["cnt_recall"], counts["sum_recall"]))


def _contingency(labels1: np.ndarray, labels2: np.ndarray) -> np.ndarray:
    """Joint label histogram ``n[label1, label2]`` (``compare_segmentations.m``)."""
    # Make labels non-negative for bincount (the official shifts them to start at 1); the
    # empty rows/columns such shifts create do not change RI or VOI.
    labels1 = labels1 - min(labels1.min(), 0)
    labels2 = labels2 - min(labels2.min(), 0)
    n2 = int(labels2.max()) + 1
    counts = np.bincount((labels1 * n2 + labels2).ravel(), minlength=(int(labels1.max()) + 1) * n2)
    return counts.reshape(-1, n2).astype(np.float64)


def _rand_index(n: np.ndarray) -> float:
    total = n.sum()
    rows, cols = n.sum(axis=1), n.sum(axis=0)
    pairs = total * (total - 1) / 2.0
    return float(1.0 - (np.dot(rows, rows) / 2.0 + np.dot(cols, cols) / 2.0 - (n * n).sum()) / pairs)


def _variation_of_information(n: np.ndarray) -> float:
    joint = n / n.sum()
    p1 = joint.sum(axis=1)
    p2 = joint.sum(axis=0)
    h1 = -np.sum(p1 * np.log2(p1 + (p1 == 0)))
    h2 = -np.sum(p2 * np.log2(p2 + (p2 == 0)))
    outer = np.outer(p1, p2)
    nz = joint > 0
    mutual = np.sum(joint[nz] * np.log2(joint[nz] / outer[nz]))
    return float(h1 + h2 - 2.0 * mutual)


def rand_index_voi(seg, gt_segmentations) -> Dict[str, float]:
    """Probabilistic Rand index and variation of information of ``seg`` (``match_segmentations2.m``).

    Both are averaged over the annotators; PRI is in [0, 1] (higher is better), VOI in bits
    (lower is better).

    Returns:
        ``{'pri': float, 'voi': float}``
    """
    seg = to_numpy(seg).astype(np.int64)
    gts = _ground_truth_maps(gt_segmentations, "segmentation", np.int64)
    ri_sum = voi_sum = 0.0
    for gt in gts:
        if gt.shape != seg.shape:
            raise ValueError(f"ground truth shape {gt.shape} != seg shape {seg.shape}")
        n = _contingency(seg, gt)
        ri_sum += _rand_index(n)
        voi_sum += _variation_of_information(n)
    return {"pri": ri_sum / len(gts), "voi": voi_sum / len(gts)}


