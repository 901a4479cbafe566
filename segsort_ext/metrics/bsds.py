"""The BSDS500 benchmark of Arbelaez et al. (TPAMI 2011, ``BSR/bench/benchmarks``) over a
data set: per-image counts at every threshold (``evaluation_bdry_image.m``,
``evaluation_reg_image.m``), the whole benchmark (:func:`bsds_benchmark`, aggregated into
ODS / OIS / AP by :mod:`segsort_ext.metrics.bsds_scores`), and two entry points for
segmentation hierarchies (:func:`region_benchmark`, :func:`boundary_benchmark`).

Machine outputs come in the three official forms (``kind``):

``'pb'``   soft boundary map ``HxW`` in [0, 1] (uint8 images are divided by 255); threshold
           ``k`` of ``n`` is ``k / (n + 1)`` and the boundary map is ``pb >= t``.
``'ucm2'`` ultrametric contour map of size ``(2H+1) x (2W+1)``; boundaries are
           ``ucm2[2::2, 2::2] >= t`` and regions are the 8-connected components of
           ``ucm2 <= t`` sampled at ``[1::2, 1::2]``.
``'segs'`` a sequence of label maps (one per "threshold"); the thresholds are ``1..n`` and the
           boundaries are :func:`~segsort_ext.metrics.seg2bdry` of each segmentation.

Soft maps and UCMs with NaN or infinite strengths are refused (NaN is on neither side of a
threshold), as are float label maps; errors name the argument (``machine_outputs[i]``,
``ground_truths[i]``, ``candidates[i]`` in the benchmarks over a data set).

Fidelity on the official sample (``shared/data/bsds500/bench``): the region files (covering,
PRI, VOI) are reproduced byte for byte; the boundary files within the matcher's own
run-to-run variation (see :mod:`segsort_ext.metrics.boundary`).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from segsort_ext.metrics.arrays import _binary_map, _ground_truth_maps, _label_map, _numbers, _sequence
from segsort_ext.metrics.boundary import (
    _COUNT_KEYS,
    _check_matching,
    _match_counts,
    seg2bdry,
    thin_boundaries,
)
from segsort_ext.metrics.bsds_scores import evaluate_boundaries, evaluate_regions
from segsort_ext.metrics.regions import _covering_counts, _rand_index_voi, _region_ids, _region_map
from segsort_ext.transforms import ucm_components
from segsort_ext.utils import checks

__all__ = [
    "thresholds_for",
    "evaluate_boundaries_image",
    "evaluate_regions_image",
    "bsds_benchmark",
    "regions_from_ucm2",
    "region_benchmark",
    "boundary_benchmark",
]

_KINDS = ("pb", "ucm2", "segs")
_MAX_THRESHOLDS = 2**16  # far beyond any useful curve; bounds the (T,) count arrays


def _check_kind(kind: str, allowed: Sequence[str] = _KINDS) -> str:
    if kind not in allowed:
        raise ValueError(f"kind must be one of {tuple(allowed)}, got {kind!r}")
    return kind


def _check_nthresh(nthresh) -> int:
    nthresh = checks.positive_int(nthresh, "nthresh")
    if nthresh > _MAX_THRESHOLDS:
        raise ValueError(f"nthresh must be <= {_MAX_THRESHOLDS}, got {nthresh}")
    return nthresh


def thresholds_for(kind: str, nthresh: int) -> np.ndarray:
    """Official thresholds: ``k/(n+1), k = 1..n`` for ``pb``/``ucm2``; ``1..n`` for ``segs``
    (``nthresh`` in ``[1, 2**16]``)."""
    _check_kind(kind)
    nthresh = _check_nthresh(nthresh)
    if kind == "segs":
        return np.arange(1, nthresh + 1, dtype=np.float64)
    return np.linspace(1.0 / (nthresh + 1), 1.0 - 1.0 / (nthresh + 1), nthresh)


def _soft_map(machine, name: str) -> np.ndarray:
    """A 2-D map of boundary strengths as float64; integer images are scaled to [0, 1] by their
    dtype's maximum (the official code reads 8-bit PNGs and divides by 255). NaN or infinite
    strengths are refused: NaN is below and above every threshold at once."""
    arr = _numbers(machine, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D boundary map, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 65535.0
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite boundary strengths")
    return arr


def _ucm2_map(machine, name: str) -> np.ndarray:
    """A checked ``(2H+1) x (2W+1)`` ultrametric contour map as float64."""
    ucm2 = _soft_map(machine, name)
    if min(ucm2.shape) < 3 or ucm2.shape[0] % 2 == 0 or ucm2.shape[1] % 2 == 0:
        raise ValueError(f"{name} must be a (2H+1) x (2W+1) ultrametric contour map, got shape {ucm2.shape}")
    return ucm2


def _label_maps(machine, name: str) -> List[np.ndarray]:
    """A ``segs`` input (a non-empty sequence of label maps, or one ``(n, H, W)`` array) as a
    list of checked int64 maps."""
    if isinstance(machine, (str, bytes)) or not hasattr(machine, "__iter__"):
        raise TypeError(f"{name} must be a sequence of label maps, got {type(machine).__name__}")
    segs = [_region_map(seg, f"{name}[{t}]") for t, seg in enumerate(machine)]
    if not segs:
        raise ValueError(f"{name} is empty: at least one segmentation is needed")
    return segs


def _check_image_shape(shape, gts: List[np.ndarray], machine_name: str, gt_name: str) -> None:
    for k, gt in enumerate(gts):
        if gt.shape != tuple(shape):
            raise ValueError(f"{gt_name}[{k}] has shape {gt.shape} but {machine_name} is for images of "
                             f"shape {tuple(shape)}")


def _check_pairs(machine, machine_name: str, ground_truths) -> None:
    """One entry of ``ground_truths`` per image of ``machine``, at least one image."""
    _sequence(machine, machine_name)
    _sequence(ground_truths, "ground_truths")
    if len(machine) != len(ground_truths):
        raise ValueError(f"{machine_name} ({len(machine)} images) and ground_truths ({len(ground_truths)}) "
                         f"must pair up")
    if not len(machine):
        raise ValueError(f"{machine_name} is empty: no images to evaluate")


def evaluate_boundaries_image(
    machine,
    gt_boundaries,
    kind: str = "pb",
    nthresh: int = 99,
    max_dist: float = 0.0075,
    thin: bool = True,
    outlier_graph: str = "exact",
    seed: Optional[int] = 0,
) -> Dict[str, np.ndarray]:
    """Boundary counts of one image at every threshold (``evaluation_bdry_image.m``).

    Args:
        machine: ``HxW`` soft boundary map (``kind='pb'``), ``(2H+1)x(2W+1)`` UCM
            (``kind='ucm2'``) or a sequence of ``HxW`` label maps (``kind='segs'``).
        gt_boundaries: list of human boundary maps (or ground-truth dicts).
        kind: see the module docstring.
        nthresh: number of thresholds (ignored for ``segs``: one per segmentation).
        max_dist, thin, outlier_graph, seed: as in :func:`boundary_pr`.

    Returns:
        dict of ``(T,)`` arrays ``thresholds``, ``cnt_recall``, ``sum_recall``,
        ``cnt_precision``, ``sum_precision`` (the content of the official ``*_ev1.txt``).
    """
    max_dist = _check_matching(max_dist, outlier_graph, seed)
    gts = _ground_truth_maps(gt_boundaries, "boundaries", "gt_boundaries", _binary_map)
    return _boundary_counts(machine, gts, kind, nthresh, (max_dist, thin, outlier_graph, seed), "machine",
                            "gt_boundaries")


def _boundary_counts(machine, gts: List[np.ndarray], kind: str, nthresh: int, matching: tuple, machine_name: str,
                     gt_name: str) -> Dict[str, np.ndarray]:
    """:func:`evaluate_boundaries_image` of checked annotations and checked ``matching``
    options ``(max_dist, thin, outlier_graph, seed)``; errors name the caller's arguments."""
    _check_kind(kind)
    if kind == "segs":
        segs = _label_maps(machine, machine_name)
        for t, seg in enumerate(segs):
            _check_image_shape(seg.shape, gts, f"{machine_name}[{t}]", gt_name)
        thresholds = np.arange(1, len(segs) + 1, dtype=np.float64)
        bmaps = (seg2bdry(seg, "imageSize") for seg in segs)
    else:
        thresholds = thresholds_for(kind, nthresh)
        if kind == "ucm2":
            soft = _ucm2_map(machine, machine_name)[2::2, 2::2]  # boundary strength at the pixel corners
        else:
            soft = _soft_map(machine, machine_name)
        _check_image_shape(soft.shape, gts, machine_name, gt_name)
        bmaps = (soft >= t for t in thresholds)
    counts = {k: np.zeros(thresholds.size) for k in _COUNT_KEYS}
    for t, bmap in enumerate(bmaps):
        res = _match_counts(bmap, gts, *matching)
        for k in counts:
            counts[k][t] = res[k]
    return {"thresholds": thresholds, **counts}


def evaluate_regions_image(
    machine, gt_segmentations, kind: str = "ucm2", nthresh: int = 99
) -> Dict[str, np.ndarray]:
    """Region counts of one image at every threshold (``evaluation_reg_image.m``).

    Args:
        machine: ``(2H+1)x(2W+1)`` UCM (``kind='ucm2'``) or a sequence of ``HxW`` label maps
            (``kind='segs'``).
        gt_segmentations: list of human label maps (or ground-truth dicts).
        nthresh: number of UCM thresholds (ignored for ``segs``).

    Returns:
        dict of ``(T,)`` arrays ``thresholds``, covering counts ``cnt_recall``, ``sum_recall``,
        ``cnt_precision``, ``sum_precision`` (official ``*_ev2.txt``), ``pri``, ``voi``
        (``*_ev4.txt``) and the scalar ``cnt_recall_best`` (``*_ev3.txt``: every human region
        credited with its best overlap over all thresholds).
    """
    gts = _ground_truth_maps(gt_segmentations, "segmentation", "gt_segmentations", _label_map)
    return _region_counts(machine, gts, kind, nthresh, "machine", "gt_segmentations")


def _region_counts(machine, gts: List[np.ndarray], kind: str, nthresh: int, machine_name: str,
                   gt_name: str) -> Dict[str, np.ndarray]:
    """:func:`evaluate_regions_image` of checked annotations; errors name the caller's arguments."""
    _check_kind(kind, ("ucm2", "segs"))
    gt_ids = [_region_ids(gt, f"{gt_name}[{k}]") for k, gt in enumerate(gts)]
    if kind == "segs":
        segs = _label_maps(machine, machine_name)
        for t, seg in enumerate(segs):
            _check_image_shape(seg.shape, gts, f"{machine_name}[{t}]", gt_name)
        thresholds = np.arange(1, len(segs) + 1, dtype=np.float64)
        seg_iter = iter(segs)
    else:
        thresholds = thresholds_for(kind, nthresh)
        ucm2 = _ucm2_map(machine, machine_name)
        _check_image_shape((ucm2.shape[0] // 2, ucm2.shape[1] // 2), gts, machine_name, gt_name)
        seg_iter = (ucm_components(ucm2, t) for t in thresholds)
    out = {"thresholds": thresholds}
    for k in (*_COUNT_KEYS, "pri", "voi"):
        out[k] = np.zeros(thresholds.size)
    best_per_gt_region = None
    for t, seg in enumerate(seg_iter):
        seg_ids = _region_ids(seg, f"{machine_name}[{t}]")
        cov = _covering_counts(seg_ids, gt_ids)
        for k in _COUNT_KEYS:
            out[k][t] = cov[k]
        ri_sum = voi_sum = 0.0
        for ids in gt_ids:
            ri, voi = _rand_index_voi(seg_ids, ids)
            ri_sum += ri
            voi_sum += voi
        out["pri"][t], out["voi"][t] = ri_sum / len(gt_ids), voi_sum / len(gt_ids)
        best = cov["best_per_gt_region"]
        best_per_gt_region = best if best_per_gt_region is None else np.maximum(best_per_gt_region, best)
        gt_areas = cov["gt_areas"]
    out["cnt_recall_best"] = float(np.dot(gt_areas, best_per_gt_region))
    return out


def bsds_benchmark(
    machine_outputs: Sequence,
    ground_truths: Sequence,
    kind: str,
    nthresh: int = 99,
    max_dist: float = 0.0075,
    thin: bool = True,
    boundaries: bool = True,
    regions: Optional[bool] = None,
    round_like_official: bool = True,
    outlier_graph: str = "exact",
    seed: Optional[int] = 0,
) -> Dict:
    """Full BSDS500 benchmark over a set of images (``allBench`` / ``boundaryBench`` /
    ``regionBench``).

    Args:
        machine_outputs: one machine output per image (see ``kind``), in image order.
        ground_truths: per image, the list of human annotations, each a dict with
            ``'segmentation'`` (``HxW`` labels 1..N) and ``'boundaries'`` (``HxW`` 0/1) --
            the format of :func:`segsort_ext.datasets.load_bsds_ground_truth`.
        kind: ``'pb'``, ``'ucm2'`` or ``'segs'``.
        nthresh: thresholds for ``pb``/``ucm2`` (official default 99).
        max_dist, thin: boundary matching tolerance and machine-map thinning.
        boundaries: run the boundary benchmark.
        regions: run covering/PRI/VOI (default: whenever ``kind`` is not ``'pb'``).
        round_like_official: see :func:`evaluate_boundaries`.
        outlier_graph, seed: boundary matching variant, see :func:`correspond_pixels`.

    Returns:
        ``{'boundary': evaluate_boundaries(...), 'region': evaluate_regions(...)}`` (keys only
        for the parts that ran), each also holding the raw per-image counts under
        ``'image_counts'``.  :func:`official_tables` turns it into the official text files.
    """
    _check_kind(kind)
    _check_pairs(machine_outputs, "machine_outputs", ground_truths)
    if kind != "segs":
        _check_nthresh(nthresh)
    if regions is None:
        regions = kind != "pb"
    if regions and kind == "pb":
        raise ValueError("regions=True needs kind 'ucm2' or 'segs': a soft boundary map has no regions")
    result = {}
    if boundaries:
        matching = (_check_matching(max_dist, outlier_graph, seed), thin, outlier_graph, seed)
        counts = [_boundary_counts(m, _ground_truth_maps(gt, "boundaries", f"ground_truths[{i}]", _binary_map), kind,
                                   nthresh, matching, f"machine_outputs[{i}]", f"ground_truths[{i}]")
                  for i, (m, gt) in enumerate(zip(machine_outputs, ground_truths))]
        result["boundary"] = evaluate_boundaries(counts, round_like_official)
        result["boundary"]["image_counts"] = counts
    if regions:
        counts = [_region_counts(m, _ground_truth_maps(gt, "segmentation", f"ground_truths[{i}]", _label_map), kind,
                                 nthresh, f"machine_outputs[{i}]", f"ground_truths[{i}]")
                  for i, (m, gt) in enumerate(zip(machine_outputs, ground_truths))]
        result["region"] = evaluate_regions(counts, round_like_official)
        result["region"]["image_counts"] = counts
    return result


def region_benchmark(candidates: Sequence[Sequence], ground_truths: Sequence) -> Dict[str, float]:
    """BSDS500 region benchmark (covering, PRI, VOI) of segmentation hierarchies.

    Args:
        candidates: ``candidates[i][t]`` is the ``HxW`` label map of image i at level t.
        ground_truths: ``ground_truths[i]`` is the list of human label maps of image i
            (region ids 1..N; ground-truth dicts from ``segsort_ext.datasets`` work too).

    Returns:
        dict with covering_ods, covering_ois, covering_best, pri_ods, pri_ois, voi_ods,
        voi_ois (the official regionBench definitions; ODS picks one level for the data
        set, OIS the best level per image).
    """
    _check_pairs(candidates, "candidates", ground_truths)
    per_image = [_region_counts(levels, _ground_truth_maps(gt, "segmentation", f"ground_truths[{i}]", _label_map),
                                "segs", 0, f"candidates[{i}]", f"ground_truths[{i}]")
                 for i, (levels, gt) in enumerate(zip(candidates, ground_truths))]
    r = evaluate_regions(per_image)
    return {"covering_ods": r["covering_ods"]["covering"], "covering_ois": r["covering_ois"],
            "covering_best": r["covering_best"], "pri_ods": r["pri_ods"]["value"], "pri_ois": r["pri_ois"],
            "voi_ods": r["voi_ods"]["value"], "voi_ois": r["voi_ois"]}


def boundary_benchmark(candidates: Sequence[Sequence], ground_truths: Sequence,
                       max_dist: float = 0.0075) -> Dict[str, float]:
    """BSDS500 boundary benchmark of segmentation hierarchies: the boundaries of every
    level (seg2bdry) matched to each human's boundaries by min-cost bipartite assignment
    within ``max_dist`` of the image diagonal, after thinning.

    Args as :func:`region_benchmark`; human boundaries are the thinned seg2bdry of the
    human label maps (exactly how BSDS500's stored ``Boundaries`` were made: checked on
    the shipped sample), or the ``'boundaries'`` of ground-truth dicts.

    Returns:
        dict with ods_f, ois_f, ap, ods_recall, ods_precision.
    """
    _check_pairs(candidates, "candidates", ground_truths)
    matching = (_check_matching(max_dist), True, "exact", 0)
    per_image = []
    for i, (levels, gt) in enumerate(zip(candidates, ground_truths)):
        name = f"ground_truths[{i}]"
        if isinstance(gt, Mapping) or (isinstance(gt, Sequence) and len(gt) and isinstance(gt[0], Mapping)):
            humans = _ground_truth_maps(gt, "boundaries", name, _binary_map)
        else:
            segs = _ground_truth_maps(gt, "segmentation", name, _label_map)
            humans = [thin_boundaries(seg2bdry(seg)) for seg in segs]
        per_image.append(_boundary_counts(levels, humans, "segs", 0, matching, f"candidates[{i}]", name))
    b = evaluate_boundaries(per_image)
    return {"ods_f": b["ods"]["f"], "ois_f": b["ois"]["f"], "ap": b["ap"], "ods_recall": b["ods"]["recall"],
            "ods_precision": b["ods"]["precision"]}


def regions_from_ucm2(ucm2, threshold: float) -> np.ndarray:
    """Regions of a ``(2H+1)x(2W+1)`` ultrametric contour map at ``threshold``: the
    8-connected components of ``ucm2 <= threshold`` at the pixel centres, labelled 1..N
    (the official ``bwlabel`` step of the region benchmark); ``threshold`` is a finite
    number >= 0."""
    ucm2 = _ucm2_map(ucm2, "ucm2")
    threshold = checks.number(threshold, "threshold", minimum=0.0)
    return ucm_components(ucm2, threshold).astype(np.int64)
