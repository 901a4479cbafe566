"""Semantic segmentation scores of class maps against labelled ones.

* **PASCAL VOC** -- :class:`ConfusionMatrix`, :func:`confusion_matrix` and :func:`mean_iou`:
  a ``num_classes x num_classes`` confusion matrix (rows = ground truth, columns =
  prediction) accumulated over a data set, from which per-class IoU ``TP / (TP + FP + FN)``,
  the mean IoU over the classes that occur, and pixel accuracy follow.  Pixels whose target
  equals ``ignore_index`` (255, the VOC "void" border) are skipped.
* **Unsupervised segmentation (PiCIE)** -- :func:`hungarian_match`: clusters matched
  one-to-one to classes before scoring.
* **Semantic boundaries (SegSort)** -- :class:`SemanticBoundaryF`: per-class boundary
  precision / recall / F-measure with the BSDS matcher of :mod:`segsort_ext.metrics.boundary`.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from segsort_ext.metrics.arrays import _class_count, _label_map, _numbers, _optional_label
from segsort_ext.metrics.boundary import (
    _COUNT_KEYS,
    _check_matching,
    _fmeasure,
    _ratio,
    correspond_pixels,
    seg2bdry,
    thin_boundaries,
)
from segsort_ext.utils.constants import IGNORE_INDEX
from segsort_ext.utils.optional import require

__all__ = [
    "ConfusionMatrix",
    "confusion_matrix",
    "mean_iou",
    "hungarian_match",
    "semantic_boundary_counts",
    "SemanticBoundaryF",
    "semantic_boundary_f",
]


def _class_maps(pred, target) -> Tuple[np.ndarray, np.ndarray]:
    """Two integer class maps of the same shape as int64 (float maps are refused, not truncated)."""
    pred = _numbers(pred, "pred")
    target = _numbers(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    return _label_map(pred, "pred"), _label_map(target, "target")


def _check_class_ids(ids: np.ndarray, name: str, num_classes: int, bound: str = "num_classes") -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError(f"{name} holds id {bad} outside [0, {bound} = {num_classes}) at a labelled pixel")


def confusion_matrix(pred, target, num_classes: int, ignore_index: Optional[int] = IGNORE_INDEX) -> np.ndarray:
    """Confusion matrix of one prediction against its target.

    Args:
        pred: integer class map (any shape) -- e.g. the argmax of the network scores.
        target: integer ground-truth map of the same shape.
        num_classes: number of classes ``C`` in ``[1, 2**14]``; valid ids are ``0..C-1``.
        ignore_index: target value to skip (VOC uses 255 for the void border); ``None`` to
            skip nothing.

    Returns:
        ``int64`` array ``(C, C)``; entry ``[t, p]`` counts pixels of true class ``t``
        predicted as ``p``.

    Raises:
        TypeError: a float (or other non-integer) class map: it is refused, not truncated.
        ValueError: on shape mismatch or a class id outside ``0..C-1`` at a non-ignored pixel.
    """
    num_classes = _class_count(num_classes, "num_classes")
    ignore_index = _optional_label(ignore_index, "ignore_index")
    pred, target = _class_maps(pred, target)
    pred, target = pred.ravel(), target.ravel()
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    _check_class_ids(target, "target", num_classes)
    _check_class_ids(pred, "pred", num_classes)
    flat = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def mean_iou(conf, target=None, num_classes: Optional[int] = None, ignore_index: Optional[int] = IGNORE_INDEX) -> Dict:
    """IoU statistics from a confusion matrix, or from ``(pred, target, num_classes)``.

    ``mean_iou(conf)`` takes a ``(C, C)`` confusion matrix (rows = truth); ``mean_iou(pred,
    target, num_classes)`` first builds it with :func:`confusion_matrix`.

    Returns a dict with

    * ``iou``: ``(C,)`` float array, ``TP / (TP + FP + FN)``; NaN for classes absent from both
      prediction and target (their IoU is undefined, not zero),
    * ``mean_iou``: mean of ``iou`` over the classes present (non-NaN),
    * ``pixel_accuracy``: ``trace / total`` over non-ignored pixels,
    * ``mean_accuracy``: mean per-class recall over classes present in the target,
    * ``present``: boolean ``(C,)`` mask of classes with a defined IoU,
    * ``confusion``: the confusion matrix.

    A matrix ``conf`` must hold counts: finite, non-negative, integral values.
    """
    if target is not None:
        if num_classes is None:
            raise ValueError("num_classes is required when passing (pred, target)")
        conf = confusion_matrix(conf, target, num_classes, ignore_index)
    conf = _numbers(conf, "conf").astype(np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"conf must be a square (C, C) confusion matrix, got shape {conf.shape}")
    if not (np.isfinite(conf).all() and (conf >= 0).all() and (conf == np.round(conf)).all()):
        raise ValueError("conf must hold pixel counts (finite, non-negative, integral values)")
    tp = np.diag(conf)
    gt_count = conf.sum(axis=1)
    pred_count = conf.sum(axis=0)
    union = gt_count + pred_count - tp
    present = union > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, tp / np.where(present, union, 1), np.nan)
        recall = np.where(gt_count > 0, tp / np.where(gt_count > 0, gt_count, 1), np.nan)
    total = conf.sum()
    return {
        "iou": iou,
        "mean_iou": float(np.nanmean(iou)) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_accuracy": float(np.nanmean(recall)) if (gt_count > 0).any() else float("nan"),
        "present": present,
        "confusion": conf.astype(np.int64),
    }


class ConfusionMatrix:
    """Streaming confusion matrix for dataset-level mIoU (the VOC protocol).

    Example::

        cm = ConfusionMatrix(num_classes=21)
        for pred, label in loader_outputs:
            cm.update(pred, label)
        print(cm.compute()["mean_iou"])

    The VOC score is computed from the confusion matrix summed over *all* images, not as an
    average of per-image mIoUs, which is why accumulation is needed.
    """

    def __init__(self, num_classes: int, ignore_index: Optional[int] = IGNORE_INDEX):
        self.num_classes = _class_count(num_classes, "num_classes")
        self.ignore_index = _optional_label(ignore_index, "ignore_index")
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.matrix[:] = 0

    def update(self, pred, target) -> "ConfusionMatrix":
        """Add one prediction/target pair (or a batch of them: any matching shapes)."""
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        return self

    def compute(self) -> Dict:
        """IoU statistics of everything accumulated (see :func:`mean_iou`)."""
        return mean_iou(self.matrix)


def hungarian_match(pred, target, num_clusters: int, num_classes: int,
                    ignore_index: Optional[int] = IGNORE_INDEX) -> Dict:
    """Unsupervised evaluation (PiCIE): clusters are matched one-to-one to classes by the
    assignment that maximises the matched pixels (scipy linear_sum_assignment); clusters
    left without a class (num_clusters > num_classes) count as wrong.

    Returns:
        dict with ``mapping`` ((num_clusters,) class of each cluster, -1 if unmatched),
        ``pixel_accuracy``, ``mean_iou``, ``iou`` after relabelling with the mapping.
    """
    optimize = require("scipy.optimize", "segsort_ext.metrics.hungarian_match")
    num_clusters = _class_count(num_clusters, "num_clusters")
    num_classes = _class_count(num_classes, "num_classes")
    ignore_index = _optional_label(ignore_index, "ignore_index")
    pred, target = _class_maps(pred, target)
    keep = target != ignore_index if ignore_index is not None else np.ones(target.shape, bool)
    _check_class_ids(pred[keep], "pred", num_clusters, "num_clusters")
    _check_class_ids(target[keep], "target", num_classes)
    table = np.bincount(pred[keep] * num_classes + target[keep], minlength=num_clusters * num_classes)
    table = table.reshape(num_clusters, num_classes)
    rows, cols = optimize.linear_sum_assignment(table, maximize=True)
    mapping = np.full(num_clusters, -1, dtype=np.int64)
    mapping[rows] = cols
    relabelled = np.where(keep, mapping[np.clip(pred, 0, num_clusters - 1)], -1)
    # Unmatched clusters predict "no class" (id C): false negatives of the true class.
    conf = confusion_matrix(np.where(relabelled < 0, num_classes, relabelled)[keep], target[keep],
                            num_classes + 1, ignore_index=None)
    tp = np.diag(conf)[:num_classes].astype(np.float64)
    fn = conf[:num_classes].sum(1) - tp
    fp = conf[:, :num_classes].sum(0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
    return {"mapping": mapping, "pixel_accuracy": float(tp.sum()) / max(int(keep.sum()), 1),
            "mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"), "iou": iou}


def _check_boundary_options(num_classes, max_dist) -> Tuple[int, float]:
    return _class_count(num_classes, "num_classes"), _check_matching(max_dist)


def _class_boundary(mask: np.ndarray, thin: bool) -> np.ndarray:
    """Boundary pixels of one binary (or label) map, on the BSDS pixel grid (seg2bdry)."""
    bdry = seg2bdry(mask, "imageSize")
    return thin_boundaries(bdry) if thin else bdry


def semantic_boundary_counts(pred, target, num_classes: int, *, ignore_index: Optional[int] = IGNORE_INDEX,
                             max_dist: float = 0.01, class_agnostic: bool = False,
                             thin: bool = True) -> Dict[str, np.ndarray]:
    """Per-class boundary match counts of one prediction (see :class:`SemanticBoundaryF`).

    Args:
        pred, target: ``HxW`` integer class maps (or ``BxHxW`` batches, counts summed).
        num_classes: ``C``; non-ignored pixels of both maps must hold ids in ``[0, C)``.
        ignore_index: target value of unlabelled pixels (``None``: none).
        max_dist: matching tolerance as a fraction of the image diagonal, in (0, 1).
        class_agnostic: one boundary map of all label changes instead of one per class.
        thin: thin both boundary maps (``bwmorph 'thin'``) before matching, as BSDS does.

    Returns:
        dict of ``(C,)`` int64 arrays (``(1,)`` when ``class_agnostic``): ``cnt_recall``
        (matched ground-truth boundary pixels), ``sum_recall`` (ground-truth boundary
        pixels), ``cnt_precision`` (matched predicted boundary pixels), ``sum_precision``
        (predicted boundary pixels).
    """
    num_classes, max_dist = _check_boundary_options(num_classes, max_dist)
    ignore_index = _optional_label(ignore_index, "ignore_index")
    pred, target = _class_maps(pred, target)
    if pred.ndim == 3:
        total = None
        for p, t in zip(pred, target):
            counts = semantic_boundary_counts(p, t, num_classes, ignore_index=ignore_index, max_dist=max_dist,
                                              class_agnostic=class_agnostic, thin=thin)
            total = counts if total is None else {k: total[k] + v for k, v in counts.items()}
        if total is None:
            size = 1 if class_agnostic else num_classes
            total = {k: np.zeros(size, np.int64) for k in _COUNT_KEYS}
        return total
    if pred.ndim != 2:
        raise ValueError(f"pred and target must be HxW or BxHxW class maps, got shape {pred.shape}")
    valid = target != ignore_index if ignore_index is not None else np.ones(target.shape, bool)
    _check_class_ids(target[valid], "target", num_classes)
    _check_class_ids(pred[valid], "pred", num_classes)
    size = 1 if class_agnostic else num_classes
    out = {k: np.zeros(size, np.int64) for k in _COUNT_KEYS}
    # Ignored pixels are cut out of both maps (one shared void label, as DAVIS does with its
    # void masks): neither side has a boundary inside them, and the edge of the void region is
    # a boundary of both, so a prediction is judged on the labelled pixels only.
    if class_agnostic:
        pairs = [(0, np.where(valid, pred, -1), np.where(valid, target, -1))]
    else:
        present = np.union1d(np.unique(pred[valid]), np.unique(target[valid]))
        pairs = [(int(c), (pred == c) & valid, (target == c) & valid) for c in present]
    for index, p_map, t_map in pairs:
        b_pred = _class_boundary(p_map, thin)
        b_true = _class_boundary(t_map, thin)
        n_pred, n_true = int(b_pred.sum()), int(b_true.sum())
        matched_pred = matched_true = 0
        if n_pred and n_true:
            m_pred, m_true = correspond_pixels(b_pred, b_true, max_dist)
            matched_pred, matched_true = int((m_pred > 0).sum()), int((m_true > 0).sum())
        out["cnt_recall"][index] += matched_true
        out["sum_recall"][index] += n_true
        out["cnt_precision"][index] += matched_pred
        out["sum_precision"][index] += n_pred
    return out


class SemanticBoundaryF:
    """Dataset-level semantic boundary precision / recall / F-measure.

    The boundary counterpart of mIoU that SegSort reports next to it (the "semantic
    contours" protocol of Hariharan et al., ICCV 2011, with the BSDS matcher):

    * for every class ``c``, the boundary of the prediction's mask ``pred == c`` and of the
      ground truth's mask ``target == c`` (``seg2bdry`` of the binary mask, thinned) -- the
      pixels where the class starts or stops;
    * pixels whose target is ``ignore_index`` are removed from both masks first, so no
      boundary lies inside an unlabelled region and its edge counts for both sides alike
      (a prediction is judged on the labelled pixels only);
    * predicted and true boundary pixels of the same class are paired one-to-one by the
      minimum-cost bipartite matching of the BSDS benchmark (:func:`correspond_pixels`),
      only within ``max_dist`` (default 0.01) of the image diagonal;
    * counts -- matched / total true pixels (recall) and matched / total predicted pixels
      (precision) -- are summed over the data set per class, and the ratios are taken at
      the end (never averaged over images).  ``F = 2PR / (P + R)``.

    ``compute()`` reports the class-pooled (micro) ``precision``, ``recall``, ``f`` and, per
    class, ``class_precision`` / ``class_recall`` / ``class_f`` with their mean ``mean_f``
    over the classes that have a boundary pixel on either side (NaN for absent classes).
    ``class_agnostic=True`` instead matches one map of all label changes (plus the void
    edges) per image: the BSDS-style boundary F of a semantic segmentation.
    """

    def __init__(self, num_classes: int, *, ignore_index: Optional[int] = IGNORE_INDEX, max_dist: float = 0.01,
                 class_agnostic: bool = False, thin: bool = True):
        self.num_classes, self.max_dist = _check_boundary_options(num_classes, max_dist)
        self.ignore_index = ignore_index
        self.class_agnostic = bool(class_agnostic)
        self.thin = bool(thin)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        size = 1 if self.class_agnostic else self.num_classes
        self.counts = {k: np.zeros(size, np.int64) for k in _COUNT_KEYS}

    def update(self, pred, target) -> "SemanticBoundaryF":
        """Add one ``HxW`` prediction/target pair, or a ``BxHxW`` batch."""
        counts = semantic_boundary_counts(pred, target, self.num_classes, ignore_index=self.ignore_index,
                                          max_dist=self.max_dist, class_agnostic=self.class_agnostic,
                                          thin=self.thin)
        for k in _COUNT_KEYS:
            self.counts[k] += counts[k]
        return self

    def compute(self) -> Dict:
        """Scores of everything accumulated (see the class docstring)."""
        c = {k: v.astype(np.float64) for k, v in self.counts.items()}
        recall = float(_ratio(c["cnt_recall"].sum(), c["sum_recall"].sum()))
        precision = float(_ratio(c["cnt_precision"].sum(), c["sum_precision"].sum()))
        present = (c["sum_recall"] + c["sum_precision"]) > 0
        class_recall = np.where(present, _ratio(c["cnt_recall"], c["sum_recall"]), np.nan)
        class_precision = np.where(present, _ratio(c["cnt_precision"], c["sum_precision"]), np.nan)
        class_f = np.where(present, _fmeasure(np.nan_to_num(class_recall), np.nan_to_num(class_precision)), np.nan)
        return {
            "precision": precision,
            "recall": recall,
            "f": float(_fmeasure(recall, precision)),
            "class_precision": class_precision,
            "class_recall": class_recall,
            "class_f": class_f,
            "mean_f": float(np.nanmean(class_f)) if present.any() else float("nan"),
            "present": present,
            "counts": {k: v.copy() for k, v in self.counts.items()},
        }


def semantic_boundary_f(preds: Sequence, targets: Sequence, num_classes: int, **options) -> Dict:
    """:class:`SemanticBoundaryF` over paired sequences of class maps (``options`` as its
    constructor: ``ignore_index``, ``max_dist``, ``class_agnostic``, ``thin``)."""
    if len(preds) != len(targets):
        raise ValueError(f"preds ({len(preds)}) and targets ({len(targets)}) must pair up")
    metric = SemanticBoundaryF(num_classes, **options)
    for pred, target in zip(preds, targets):
        metric.update(pred, target)
    return metric.compute()


