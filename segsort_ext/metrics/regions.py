"""BSDS500 region metrics of one segmentation against K human ones, as the official
benchmark computes them: segmentation covering (``evaluation_reg_image.m``,
``match_segmentations.m``), probabilistic Rand index and variation of information
(``match_segmentations2.m``, ``compare_segmentations.m``).

Region ids are arbitrary integers (files hold ids such as 10**5): every table is built from
the pairs of ids that occur together (at most one entry per pixel), never sized from the id
values, so memory stays linear in the image size.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from segsort_ext.metrics.arrays import _ground_truth_maps, _label_map
from segsort_ext.metrics.boundary import _ratio

__all__ = ["segmentation_covering", "rand_index_voi"]


def _region_map(x, name: str) -> np.ndarray:
    """A non-empty ``HxW`` integer label map as int64."""
    seg = _label_map(x, name)
    if seg.ndim != 2:
        raise ValueError(f"{name} must be an HxW label map, got shape {seg.shape}")
    if seg.size == 0:
        raise ValueError(f"{name} is empty (shape {seg.shape}): region metrics need at least one pixel")
    return seg


def _check_same_shape(seg: np.ndarray, gts: List[np.ndarray], seg_name: str, gt_name: str) -> None:
    for k, gt in enumerate(gts):
        if gt.shape != seg.shape:
            raise ValueError(f"{gt_name}[{k}] has shape {gt.shape} but {seg_name} has shape {seg.shape}")


# A dense table over a value range is used when it is at most a few times the image (linear
# time); beyond that, sorting finds the occurring values and pairs (n log n, memory still linear).
def _fits(entries: int, pixels: int) -> bool:
    return entries <= 4 * pixels + 256


def _contiguous_ids(labels: np.ndarray, keep_zero: bool = False) -> np.ndarray:
    """Flat ids numbering the distinct labels in increasing order from 0; with ``keep_zero``
    (labels >= 0) label 0 (no region) is id 0 and the regions are ``1..R`` whether or not 0
    occurs."""
    flat = labels.ravel()
    low = 0 if keep_zero else int(flat.min())
    span = int(flat.max()) - low + 1  # Python ints: no overflow for ids near the int64 limits
    if _fits(span, flat.size):
        present = np.bincount(flat - low, minlength=span) > 0
        present[0] |= keep_zero
        return (np.cumsum(present) - 1)[flat - low]
    values, ids = np.unique(flat, return_inverse=True)
    if keep_zero and values[0] != 0:
        ids += 1
    return ids.ravel()


def _region_ids(labels: np.ndarray, name: str) -> np.ndarray:
    """:func:`_contiguous_ids` with ``keep_zero`` of a label map whose 0 means "no region"."""
    if labels.min() < 0:
        raise ValueError(f"{name} must hold labels >= 0 (0: no region), got {labels.min()}")
    return _contiguous_ids(labels, keep_zero=True)


def _joint_counts(ids1: np.ndarray, ids2: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nonzero cells of the contingency table of two contiguous id maps, in row-major
    order: ``(id1, id2, count)``."""
    height, width = int(ids1.max()) + 1, int(ids2.max()) + 1
    cells = ids1 * width + ids2
    if _fits(height * width, ids1.size):
        counts = np.bincount(cells, minlength=height * width)
        cells = np.flatnonzero(counts)
        counts = counts[cells]
    else:
        cells, counts = np.unique(cells, return_counts=True)
    return cells // width, cells % width, counts


def _best_overlaps(gt_ids: np.ndarray, seg_ids: np.ndarray, gt_area: np.ndarray, seg_area: np.ndarray):
    """Best intersection-over-union of every GT region (ids 1..) with any machine region, and
    of every machine region with any GT region; id 0 counts towards the region sizes but is no
    region itself, as in ``match_segmentations.m``."""
    gt, seg, joint = _joint_counts(gt_ids, seg_ids)
    iou = joint / (gt_area[gt] + seg_area[seg] - joint)
    regions = (gt > 0) & (seg > 0)
    best_gt = np.zeros(gt_area.size)
    best_seg = np.zeros(seg_area.size)
    np.maximum.at(best_gt, gt[regions], iou[regions])
    np.maximum.at(best_seg, seg[regions], iou[regions])
    return best_gt[1:], best_seg[1:]


def _covering_counts(seg_ids: np.ndarray, gt_ids: List[np.ndarray]) -> Dict:
    """Per-image covering counts (``evaluation_reg_image.m`` for one segmentation) from the
    :func:`_region_ids` of the segmentation and of each human one."""
    seg_area = np.bincount(seg_ids).astype(np.float64)
    best_per_gt, gt_areas = [], []
    best_per_seg = np.zeros(seg_area.size - 1)
    for ids in gt_ids:
        gt_area = np.bincount(ids).astype(np.float64)
        best_gt, best_seg = _best_overlaps(ids, seg_ids, gt_area, seg_area)
        best_per_gt.append(best_gt)
        gt_areas.append(gt_area[1:])
        best_per_seg = np.maximum(best_per_seg, best_seg)
    best_per_gt = np.concatenate(best_per_gt)
    gt_areas = np.concatenate(gt_areas)
    seg_areas = seg_area[1:]
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

    Args:
        seg: ``HxW`` integer label map, labels >= 0 (0: unlabelled, no region).
        gt_segmentations: one ``HxW`` human label map, a list of them, or (a list of)
            ground-truth dicts with a ``'segmentation'`` key.

    Raises:
        TypeError: a non-integer map (floats are refused, not truncated).
        ValueError: an empty map, a negative label, shapes that differ, no annotation.
    """
    seg = _region_map(seg, "seg")
    gts = _ground_truth_maps(gt_segmentations, "segmentation", "gt_segmentations", _label_map)
    _check_same_shape(seg, gts, "seg", "gt_segmentations")
    gt_ids = [_region_ids(gt, f"gt_segmentations[{k}]") for k, gt in enumerate(gts)]
    counts = _covering_counts(_region_ids(seg, "seg"), gt_ids)
    return float(_ratio(counts["cnt_recall"], counts["sum_recall"]))


def _rand_index_voi(ids1: np.ndarray, ids2: np.ndarray) -> Tuple[float, float]:
    """Rand index and variation of information (bits) of two id maps with ids ``0..R``
    (unused ids allowed), from the nonzero cells of their contingency table
    (``compare_segmentations.m``)."""
    rows_of, cols_of, n = _joint_counts(ids1, ids2)
    n = n.astype(np.float64)
    total = float(ids1.size)
    rows = np.bincount(rows_of, weights=n)
    cols = np.bincount(cols_of, weights=n)
    # Integer counts in float64: every sum below is exact (below 2**53), as in the official code.
    with np.errstate(invalid="ignore", divide="ignore"):  # one pixel: no pairs, RI is NaN
        rand_index = 1.0 - (np.dot(rows, rows) / 2.0 + np.dot(cols, cols) / 2.0 - np.dot(n, n)) / (
            total * (total - 1) / 2.0)
    joint, p1, p2 = n / total, rows / total, cols / total
    mutual = np.sum(joint * np.log2(joint / (p1[rows_of] * p2[cols_of])))
    p1, p2 = p1[p1 > 0], p2[p2 > 0]  # unused ids
    entropy1 = -np.sum(p1 * np.log2(p1))
    entropy2 = -np.sum(p2 * np.log2(p2))
    return float(rand_index), float(entropy1 + entropy2 - 2.0 * mutual)


def rand_index_voi(seg, gt_segmentations) -> Dict[str, float]:
    """Probabilistic Rand index and variation of information of ``seg`` (``match_segmentations2.m``).

    Both are averaged over the annotators; PRI is in [0, 1] (higher is better), VOI in bits
    (lower is better). Labels are any integers (negative ones included); an image of a
    single pixel has no pixel pairs, so its PRI is NaN.

    Args:
        seg: ``HxW`` integer label map.
        gt_segmentations: as :func:`segmentation_covering`.

    Returns:
        ``{'pri': float, 'voi': float}``
    """
    seg = _region_map(seg, "seg")
    gts = _ground_truth_maps(gt_segmentations, "segmentation", "gt_segmentations", _label_map)
    _check_same_shape(seg, gts, "seg", "gt_segmentations")
    seg_ids = _contiguous_ids(seg)
    ri_sum = voi_sum = 0.0
    for gt in gts:
        ri, voi = _rand_index_voi(seg_ids, _contiguous_ids(gt))
        ri_sum += ri
        voi_sum += voi
    return {"pri": ri_sum / len(gts), "voi": voi_sum / len(gts)}
