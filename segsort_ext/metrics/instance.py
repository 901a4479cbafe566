"""Instance proposals scored as Kong & Fowlkes report grouping: average recall over IoU
0.5:0.05:0.95 (Hosang et al.) and VOC-style AP at IoU 0.5, class-agnostic."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from segsort_ext.metrics.arrays import _binary_map, _label_map, _numbers, _optional_label
from segsort_ext.utils import checks
from segsort_ext.utils.constants import IGNORE_INDEX
from segsort_ext.utils.optional import require

sparse = require("scipy.sparse", "segsort_ext.metrics")

__all__ = ["AR_IOU_THRESHOLDS", "instance_ious", "InstanceEvaluator", "average_recall"]

#: IoU thresholds 0.5:0.05:0.95 of the average-recall protocol (rounded: exact decimals).
AR_IOU_THRESHOLDS = np.round(np.arange(10) * 0.05 + 0.5, 2)

# Largest (P, G) matrix instance_ious returns (2 GiB of float64); InstanceEvaluator never
# builds it (it keeps the overlapping pairs only).
_MAX_DENSE_IOUS = 2**28


def _instance_sets(masks, name: str, *, ignore_index: Optional[int], background: Optional[int],
                   shape: Optional[Tuple[int, int]] = None):
    """Masks or a label map -> (K x pixels sparse 0/1 matrix, void pixels or None, shape).

    A 2-D integer array is a label map: every value other than ``background``,
    ``ignore_index`` and negatives is one instance (ascending order); its ``ignore_index``
    pixels are void.  A 2-D bool array is one mask; a 3-D array or a list are ``K`` masks.
    """
    if isinstance(masks, (list, tuple)):
        if not masks:
            if shape is None:
                raise ValueError(f"{name} is an empty list and the image size is unknown")
            return sparse.csr_matrix((0, shape[0] * shape[1])), None, shape
        masks = [_numbers(m, f"{name}[{k}]") for k, m in enumerate(masks)]
        if len({m.shape for m in masks}) > 1:
            raise ValueError(f"{name} masks must all have one shape, got {sorted({m.shape for m in masks})}")
        masks = np.stack(masks)
    arr = _numbers(masks, name)
    if arr.dtype.kind not in "iub":
        raise TypeError(f"{name} must be an integer label map or boolean masks, got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.dtype.kind != "b":
        labels = _label_map(arr, name)
        void = labels == ignore_index if ignore_index is not None else None
        keep = labels >= 0
        if ignore_index is not None:
            keep &= labels != ignore_index
        if background is not None:
            keep &= labels != background
        ids, inverse = np.unique(labels[keep], return_inverse=True)
        rows = inverse.ravel()
        cols = np.flatnonzero(keep)
        matrix = sparse.csr_matrix((np.ones(rows.size, np.float64), (rows, cols)),
                                   shape=(ids.size, labels.size))
        return matrix, void, labels.shape
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be an HxW label map or KxHxW masks, got shape {arr.shape}")
    if arr.dtype.kind != "b" and arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} masks must be boolean or 0/1")
    # reshape(K, H*W), not (K, -1): -1 is ambiguous when K = 0 (an image without proposals).
    matrix = sparse.csr_matrix(arr.reshape(arr.shape[0], arr.shape[1] * arr.shape[2]).astype(bool).astype(np.float64))
    return matrix, None, arr.shape[1:]


def _sparse_ious(proposals, gt, ignore, ignore_index, background) -> sparse.csr_matrix:
    """The nonzero entries of :func:`instance_ious` as a ``(P, G)`` sparse matrix (sorted
    indices): one entry per overlapping pair, never the dense table."""
    ignore_index = _optional_label(ignore_index, "ignore_index")
    background = _optional_label(background, "background")
    g_matrix, g_void, g_shape = _instance_sets(gt, "gt", ignore_index=ignore_index, background=background)
    p_matrix, _, p_shape = _instance_sets(proposals, "proposals", ignore_index=None, background=None,
                                          shape=g_shape)
    if tuple(p_shape) != tuple(g_shape):
        raise ValueError(f"proposals cover {tuple(p_shape)} pixels but gt covers {tuple(g_shape)}")
    void = np.zeros(g_shape, bool) if g_void is None else g_void.copy()
    if ignore is not None:
        ignore = _binary_map(ignore, "ignore")
        if ignore.shape != tuple(g_shape):
            raise ValueError(f"ignore must have the image shape {tuple(g_shape)}, got {ignore.shape}")
        void |= ignore
    if void.any():
        keep = sparse.diags((~void).ravel().astype(np.float64))
        p_matrix = p_matrix @ keep
        g_matrix = g_matrix @ keep
    g_area = np.asarray(g_matrix.sum(axis=1)).ravel()
    g_matrix = g_matrix[g_area > 0]
    g_area = g_area[g_area > 0]
    p_area = np.asarray(p_matrix.sum(axis=1)).ravel()
    inter = sparse.csr_matrix(p_matrix @ g_matrix.T)
    inter.eliminate_zeros()
    inter.sort_indices()
    rows = np.repeat(np.arange(inter.shape[0]), np.diff(inter.indptr))
    union = p_area[rows] + g_area[inter.indices] - inter.data
    return sparse.csr_matrix((inter.data / union, inter.indices, inter.indptr), shape=inter.shape)


def instance_ious(proposals, gt, *, ignore=None, ignore_index: Optional[int] = IGNORE_INDEX,
                  background: Optional[int] = 0) -> np.ndarray:
    """Intersection-over-union of every proposal with every ground-truth instance.

    Args:
        proposals: an ``HxW`` integer id map (every id >= 0 is one proposal, ascending order;
            negative = no proposal -- the layout of ``extract_instances``), or ``P`` boolean
            masks (``PxHxW`` array or a list; they may overlap).
        gt: an ``HxW`` instance id map (every value other than ``background``, ``ignore_index``
            and negatives is one instance, ascending order: VOC's ``SegmentationObject``
            layout) or ``G`` boolean masks.
        ignore: optional ``HxW`` boolean map of void pixels, added to the ``ignore_index``
            pixels of an id map; void pixels are removed from every mask before the IoU.
        ignore_index, background: the special values of id maps (``None`` disables one).

    Returns:
        float64 ``(P, G)``; ground-truth instances left empty by the void pixels are dropped.

    Raises:
        TypeError: float maps (refused, not truncated).
        ValueError: shapes that differ, a NaN ``ignore`` map, or a result of more than 2**28
            entries (use :class:`InstanceEvaluator`, which keeps only the overlapping pairs).
    """
    ious = _sparse_ious(proposals, gt, ignore, ignore_index, background)
    if ious.shape[0] * ious.shape[1] > _MAX_DENSE_IOUS:
        raise ValueError(f"proposals ({ious.shape[0]} instances) x gt ({ious.shape[1]}) is more than "
                         f"{_MAX_DENSE_IOUS} IoUs; InstanceEvaluator scores them without the dense matrix")
    return ious.toarray()


def _voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2010-2012 ``VOCap``)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


class InstanceEvaluator:
    """Dataset-level evaluation of instance proposals as Kong & Fowlkes report grouping.

    * **Average recall** (Hosang et al.'s AR): every ground-truth instance is credited with
      its best IoU over the image's proposals; recall at IoU ``t`` is the fraction of all
      instances of the data set with best IoU ``>= t``; AR is its mean over ``t`` in
      0.5:0.05:0.95.  ``max_proposals`` keeps only the first ``k`` proposals of each image
      (highest score first when scores are given), for AR@k.
    * **AP at IoU** ``ap_iou`` (0.5, "AP^r") for scored proposals, VOC style: proposals of
      the whole data set in descending score order; each is matched to the ground-truth
      instance of its image it overlaps most; it is a true positive if that IoU is
      ``>= ap_iou`` and the instance is not matched yet (each instance at most once), a false
      positive otherwise; AP is the area under the precision envelope (VOC 2010-2012).
      Ties in score keep image order, then proposal order.

    Void pixels (``ignore_index`` of a ground-truth id map, or an explicit ``ignore`` map)
    are removed from every mask before the IoU.  Class-agnostic: pass one class's
    proposals and instances per evaluator for per-class AP.
    """

    def __init__(self, *, iou_thresholds: Sequence[float] = AR_IOU_THRESHOLDS, ap_iou: float = 0.5,
                 max_proposals: Optional[int] = None, ignore_index: Optional[int] = IGNORE_INDEX,
                 background: Optional[int] = 0):
        thresholds = _numbers(iou_thresholds, "iou_thresholds").astype(np.float64).ravel()
        if thresholds.size == 0 or not ((thresholds > 0) & (thresholds <= 1)).all():  # NaN fails too
            raise ValueError(f"iou_thresholds must be a non-empty list of numbers in (0, 1], got {iou_thresholds!r}")
        self.iou_thresholds = thresholds
        self.ap_iou = checks.number(ap_iou, "ap_iou", minimum=0.0, maximum=1.0)
        if self.ap_iou == 0:
            raise ValueError("ap_iou must be in (0, 1], got 0.0")
        self.max_proposals = checks.optional_positive_int(max_proposals, "max_proposals")
        self.ignore_index = _optional_label(ignore_index, "ignore_index")
        self.background = _optional_label(background, "background")
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.best_ious: List[np.ndarray] = []  # per image: best IoU of each GT instance
        self.scores: List[np.ndarray] = []  # per image: scores of its proposals
        self.true_positive: List[np.ndarray] = []  # per image: VOC match of each proposal
        self.num_proposals = 0
        self.scored = True

    def update(self, proposals, gt, scores=None, ignore=None) -> "InstanceEvaluator":
        """Add one image: proposals and ground truth as in :func:`instance_ious`; ``scores``
        one number per proposal (same order), required for AP."""
        ious = _sparse_ious(proposals, gt, ignore, self.ignore_index, self.background)
        num = ious.shape[0]
        if scores is not None:
            scores = _numbers(scores, "scores").astype(np.float64).ravel()
            if scores.shape != (num,):
                raise ValueError(f"scores must have one entry per proposal ({num}), got shape {scores.shape}")
            if not np.isfinite(scores).all():
                raise ValueError("scores must be finite")
            order = np.argsort(-scores, kind="stable")
        else:
            self.scored = False
            scores = np.zeros(num)
            order = np.arange(num)
        if self.max_proposals is not None:
            order = order[: self.max_proposals]
        ious, scores = ious[order], scores[order]
        best = ious.max(axis=0).toarray().ravel() if ious.shape[0] else np.zeros(ious.shape[1])
        # VOC matching inside the image; it only depends on the higher-scored proposals of
        # the same image, so it can be done per image and the lists merged at the end. A
        # proposal's best instance is its first one of highest IoU (the dense argmax); one
        # that overlaps nothing is a false positive (ap_iou > 0).
        matched = np.zeros(ious.shape[1], bool)
        tp = np.zeros(ious.shape[0], bool)
        for i in range(ious.shape[0]):
            start, stop = ious.indptr[i], ious.indptr[i + 1]
            if start == stop:
                continue
            k = start + int(np.argmax(ious.data[start:stop]))
            j = ious.indices[k]
            if ious.data[k] >= self.ap_iou and not matched[j]:
                matched[j] = tp[i] = True
        self.best_ious.append(best)
        self.scores.append(scores)
        self.true_positive.append(tp)
        self.num_proposals += ious.shape[0]
        return self

    def compute(self) -> Dict:
        """Returns ``average_recall``, ``recall`` (per threshold), ``iou_thresholds``, ``ap``
        (NaN unless every image had scores), ``num_instances``, ``num_proposals``,
        ``best_ious`` (all instances, image order)."""
        best = np.concatenate(self.best_ious) if self.best_ious else np.zeros(0)
        num_instances = best.size
        if num_instances:
            recall = (best[None, :] >= self.iou_thresholds[:, None] - 1e-12).mean(axis=1)
        else:
            recall = np.full(self.iou_thresholds.shape, np.nan)
        ap = float("nan")
        if self.scored and num_instances:
            scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
            tp = np.concatenate(self.true_positive) if self.true_positive else np.zeros(0, bool)
            order = np.argsort(-scores, kind="stable")
            tp = tp[order].astype(np.float64)
            cum_tp = np.cumsum(tp)
            cum_fp = np.cumsum(1.0 - tp)
            ap = _voc_ap(cum_tp / num_instances, cum_tp / np.maximum(cum_tp + cum_fp, np.finfo(float).eps))
        return {
            "average_recall": float(np.mean(recall)),
            "recall": recall,
            "iou_thresholds": self.iou_thresholds.copy(),
            "ap": ap,
            "num_instances": int(num_instances),
            "num_proposals": int(self.num_proposals),
            "best_ious": best,
        }


def average_recall(proposals: Sequence, gts: Sequence, *, max_proposals: Optional[int] = None,
                   scores: Optional[Sequence] = None, **options) -> Dict:
    """:class:`InstanceEvaluator` over paired sequences (one entry per image); ``options``
    as its constructor.  Returns its ``compute()`` (``average_recall``, ``recall``, ``ap``...)."""
    if len(proposals) != len(gts):
        raise ValueError(f"proposals ({len(proposals)} images) and gts ({len(gts)}) must pair up")
    if scores is not None and len(scores) != len(gts):
        raise ValueError(f"scores ({len(scores)} images) and gts ({len(gts)}) must pair up")
    evaluator = InstanceEvaluator(max_proposals=max_proposals, **options)
    for i, (p, g) in enumerate(zip(proposals, gts)):
        evaluator.update(p, g, None if scores is None else scores[i])
    return evaluator.compute()


