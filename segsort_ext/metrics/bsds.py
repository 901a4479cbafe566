"""The BSDS500 benchmark of Arbelaez et al. (TPAMI 2011, ``BSR/bench/benchmarks``) over a
data set: per-image counts at every threshold (``evaluation_bdry_image.m``,
``evaluation_reg_image.m``), their aggregation into ODS / OIS / AP (``collect_eval_bdry.m``,
with the official linear interpolation between neighbouring thresholds, and
``collect_eval_reg.m``), the official result files, and two entry points for segmentation
hierarchies (:func:`region_benchmark`, :func:`boundary_benchmark`).

Machine outputs come in the three official forms (``kind``):

``'pb'``   soft boundary map ``HxW`` in [0, 1] (uint8 images are divided by 255); threshold
           ``k`` of ``n`` is ``k / (n + 1)`` and the boundary map is ``pb >= t``.
``'ucm2'`` ultrametric contour map of size ``(2H+1) x (2W+1)``; boundaries are
           ``ucm2[2::2, 2::2] >= t`` and regions are the 8-connected components of
           ``ucm2 <= t`` sampled at ``[1::2, 1::2]``.
``'segs'`` a sequence of label maps (one per "threshold"); the thresholds are ``1..n`` and the
           boundaries are :func:`~segsort_ext.metrics.seg2bdry` of each segmentation.

Fidelity on the official sample (``shared/data/bsds500/bench``): the region files (covering,
PRI, VOI) are reproduced byte for byte; the boundary files within the matcher's own
run-to-run variation (see :mod:`segsort_ext.metrics.boundary`).
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from segsort_ext.metrics.arrays import _ground_truth_maps, to_numpy
from segsort_ext.metrics.boundary import _COUNT_KEYS, _fmeasure, _ratio, boundary_pr, seg2bdry, thin_boundaries
from segsort_ext.metrics.regions import _covering_counts, rand_index_voi
from segsort_ext.transforms import ucm_components

__all__ = [
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
]

_KINDS = ("pb", "ucm2", "segs")


def thresholds_for(kind: str, nthresh: int) -> np.ndarray:
    """Official thresholds: ``k/(n+1), k = 1..n`` for ``pb``/``ucm2``; ``1..n`` for ``segs``."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if kind == "segs":
        return np.arange(1, nthresh + 1, dtype=np.float64)
    return np.linspace(1.0 / (nthresh + 1), 1.0 - 1.0 / (nthresh + 1), nthresh)


def _soft_map(machine) -> np.ndarray:
    """Boundary strengths as float64; integer images are scaled to [0, 1] by their dtype's
    maximum (the official code reads 8-bit PNGs and divides by 255)."""
    arr = to_numpy(machine)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 65535.0
    return arr.astype(np.float64)


def _label_maps(machine) -> List[np.ndarray]:
    """A ``segs`` input (sequence of label maps, or one ``(n, H, W)`` array) as a list."""
    return [to_numpy(s).astype(np.int64) for s in machine]


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
    gts = _ground_truth_maps(gt_boundaries, "boundaries", bool)
    if kind == "segs":
        segs = _label_maps(machine)
        nthresh = len(segs)
        bmaps = (seg2bdry(s, "imageSize") for s in segs)
    else:
        soft = _soft_map(machine)
        if kind == "ucm2":
            soft = soft[2::2, 2::2]  # boundary strength at the pixel corners
        bmaps = (soft >= t for t in thresholds_for(kind, nthresh))
    thresholds = thresholds_for(kind, nthresh)
    counts = {k: np.zeros(nthresh) for k in _COUNT_KEYS}
    for t, bmap in enumerate(bmaps):
        res = boundary_pr(bmap, gts, max_dist=max_dist, thin=thin, outlier_graph=outlier_graph, seed=seed)
        for k in counts:
            counts[k][t] = res[k]
    return {"thresholds": thresholds, **counts}


def _interpolated_best_f(thresholds, recall, precision) -> Tuple[float, float, float, float]:
    """``maxF`` of ``collect_eval_bdry.m``: best F along the piecewise-linear PR curve,
    sampling each segment between consecutive thresholds at 100 points."""
    best = (thresholds[0], recall[0], precision[0], float(_fmeasure(recall[0], precision[0])))
    d = np.linspace(0.0, 1.0, 100)
    for i in range(1, len(thresholds)):
        t = thresholds[i] * d + thresholds[i - 1] * (1 - d)
        r = recall[i] * d + recall[i - 1] * (1 - d)
        p = precision[i] * d + precision[i - 1] * (1 - d)
        f = _fmeasure(r, p)
        j = int(np.argmax(f))  # first maximum, matching the strict '>' of the official loop
        if f[j] > best[3]:
            best = (float(t[j]), float(r[j]), float(p[j]), float(f[j]))
    return tuple(float(v) for v in best)


def _average_precision(recall, precision) -> float:
    """Area under the PR curve as in ``collect_eval_bdry.m``: precision linearly interpolated
    at recall 0, 0.01, ..., 1 (zero outside the measured recall range), times 0.01."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    unique_recall, first = np.unique(recall, return_index=True)
    if unique_recall.size < 2:
        return 0.0
    grid = np.arange(101) * 0.01
    interp = np.interp(grid, unique_recall, precision[first], left=np.nan, right=np.nan)
    return float(np.nansum(interp) * 0.01)


def _official_reader(round_like_official: bool):
    """How the aggregation reads per-image numbers: through the official ``fprintf('%10g')``
    -> ``dlmread`` round trip of its text files (6 significant digits), or as they are."""
    g10 = np.vectorize(lambda v: float("%g" % v), otypes=[np.float64])

    def read(x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return g10(x) if round_like_official else x

    return read


def evaluate_boundaries(per_image: Sequence[Mapping[str, np.ndarray]], round_like_official: bool = True) -> Dict:
    """Aggregate per-image boundary counts into the dataset scores (``collect_eval_bdry.m``).

    Args:
        per_image: outputs of :func:`evaluate_boundaries_image`, in image order, all with the
            same thresholds.
        round_like_official: pass per-image numbers through ``%g`` formatting as the official
            text files do (affects only the 6th significant digit).

    Returns:
        dict with

        * ``thresholds``, ``recall``, ``precision``, ``f``: ``(T,)`` dataset curve,
        * ``ods``: ``{'threshold', 'recall', 'precision', 'f'}`` (optimal dataset scale,
          interpolated between thresholds),
        * ``ois``: ``{'recall', 'precision', 'f'}`` (optimal image scale),
        * ``ap``: average precision,
        * ``per_image``: list of ``{'threshold', 'recall', 'precision', 'f'}`` (best per image).
    """
    if not per_image:
        raise ValueError("no images to aggregate")
    read = _official_reader(round_like_official)
    thresholds = read(per_image[0]["thresholds"])
    totals = {k: np.zeros_like(thresholds) for k in _COUNT_KEYS}
    best_totals = dict.fromkeys(totals, 0.0)
    images = []
    for counts in per_image:
        c = {k: read(counts[k]) for k in totals}
        recall = _ratio(c["cnt_recall"], c["sum_recall"])
        precision = _ratio(c["cnt_precision"], c["sum_precision"])
        t, r, p, f = _interpolated_best_f(thresholds, recall, precision)
        images.append({"threshold": t, "recall": r, "precision": p, "f": f})
        f_curve = _fmeasure(recall, precision)
        best = int(np.flatnonzero(f_curve == f_curve.max())[-1])
        for k in totals:
            totals[k] += c[k]
            best_totals[k] += c[k][best]
    recall = _ratio(totals["cnt_recall"], totals["sum_recall"])
    precision = _ratio(totals["cnt_precision"], totals["sum_precision"])
    t, r, p, f = _interpolated_best_f(thresholds, recall, precision)
    ois_r = float(_ratio(best_totals["cnt_recall"], best_totals["sum_recall"]))
    ois_p = float(_ratio(best_totals["cnt_precision"], best_totals["sum_precision"]))
    return {
        "thresholds": thresholds,
        "recall": recall,
        "precision": precision,
        "f": _fmeasure(recall, precision),
        "ods": {"threshold": t, "recall": r, "precision": p, "f": f},
        "ois": {"recall": ois_r, "precision": ois_p, "f": float(_fmeasure(ois_r, ois_p))},
        "ap": _average_precision(recall, precision),
        "per_image": images,
    }


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
    gts = _ground_truth_maps(gt_segmentations, "segmentation", np.int64)
    if kind == "segs":
        segs = _label_maps(machine)
        nthresh = len(segs)
        seg_iter = iter(segs)
    elif kind == "ucm2":
        ucm2 = _soft_map(machine)
        seg_iter = (ucm_components(ucm2, t) for t in thresholds_for(kind, nthresh))
    else:
        raise ValueError("region metrics need kind 'ucm2' or 'segs'")
    if nthresh < 1:
        raise ValueError("need at least one threshold / segmentation")
    out = {"thresholds": thresholds_for(kind, nthresh)}
    for k in (*_COUNT_KEYS, "pri", "voi"):
        out[k] = np.zeros(nthresh)
    best_per_gt_region = None
    for t, seg in enumerate(seg_iter):
        cov = _covering_counts(seg, gts)
        for k in _COUNT_KEYS:
            out[k][t] = cov[k]
        riv = rand_index_voi(seg, gts)
        out["pri"][t], out["voi"][t] = riv["pri"], riv["voi"]
        best = cov["best_per_gt_region"]
        best_per_gt_region = best if best_per_gt_region is None else np.maximum(best_per_gt_region, best)
        gt_areas = cov["gt_areas"]
    out["cnt_recall_best"] = float(np.dot(gt_areas, best_per_gt_region))
    return out


def evaluate_regions(per_image: Sequence[Mapping], round_like_official: bool = True) -> Dict:
    """Aggregate per-image region counts into dataset scores (``collect_eval_reg.m``).

    Returns:
        dict with

        * ``thresholds``, ``covering``, ``pri``, ``voi``: ``(T,)`` dataset curves (covering is
          pooled over pixels, PRI/VOI are averaged over images),
        * ``covering_ods`` ``{'threshold', 'covering'}``, ``covering_ois`` (per-image best
          threshold), ``covering_best`` (per-region best threshold),
        * ``pri_ods`` / ``voi_ods`` ``{'threshold', 'value'}``, ``pri_ois`` / ``voi_ois``
          (mean of per-image best),
        * ``per_image``: list of ``{'threshold', 'covering', 'precision', 'covering_best'}``:
          the best threshold of the image, its covering, the reverse covering (of the
          machine regions by the human ones, the official per-image 4th column) at that
          threshold, and the per-region best covering.
    """
    if not per_image:
        raise ValueError("no images to aggregate")
    read = _official_reader(round_like_official)
    thresholds = read(per_image[0]["thresholds"])
    cnt_total = np.zeros_like(thresholds)
    sum_total = np.zeros_like(thresholds)
    cnt_ois = sum_ois = cnt_best = sum_best = 0.0
    pri_total = np.zeros_like(thresholds)
    voi_total = np.zeros_like(thresholds)
    pri_ois = voi_ois = 0.0
    images = []
    for counts in per_image:
        cnt, tot = read(counts["cnt_recall"]), read(counts["sum_recall"])
        cov = _ratio(cnt, tot)
        reverse = _ratio(read(counts["cnt_precision"]), read(counts["sum_precision"]))
        first_best = int(np.argmax(cov))
        last_best = int(np.flatnonzero(cov == cov.max())[-1])
        cnt_total += cnt
        sum_total += tot
        cnt_ois += cnt[last_best]
        sum_ois += tot[last_best]
        img_best = float(read(counts["cnt_recall_best"]))
        cnt_best += img_best
        sum_best += tot[0]
        images.append({"threshold": float(thresholds[first_best]), "covering": float(cov[first_best]),
                       "precision": float(reverse[first_best]), "covering_best": float(_ratio(img_best, tot[0]))})
        pri, voi = read(counts["pri"]), read(counts["voi"])
        pri_total += pri
        voi_total += voi
        pri_ois += pri.max()
        voi_ois += voi.min()
    n = len(per_image)
    covering = _ratio(cnt_total, sum_total)
    pri_curve, voi_curve = pri_total / n, voi_total / n
    i_cov, i_pri, i_voi = int(np.argmax(covering)), int(np.argmax(pri_curve)), int(np.argmin(voi_curve))
    return {
        "thresholds": thresholds,
        "covering": covering,
        "pri": pri_curve,
        "voi": voi_curve,
        "covering_ods": {"threshold": float(thresholds[i_cov]), "covering": float(covering[i_cov])},
        "covering_ois": float(_ratio(cnt_ois, sum_ois)),
        "covering_best": float(_ratio(cnt_best, sum_best)),
        "pri_ods": {"threshold": float(thresholds[i_pri]), "value": float(pri_curve[i_pri])},
        "pri_ois": pri_ois / n,
        "voi_ods": {"threshold": float(thresholds[i_voi]), "value": float(voi_curve[i_voi])},
        "voi_ois": voi_ois / n,
        "per_image": images,
    }


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
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if len(machine_outputs) != len(ground_truths):
        raise ValueError("need one ground truth entry per machine output")
    if regions is None:
        regions = kind != "pb"
    if regions and kind == "pb":
        raise ValueError("region metrics need kind 'ucm2' or 'segs'")
    result = {}
    if boundaries:
        counts = [evaluate_boundaries_image(m, gt, kind=kind, nthresh=nthresh, max_dist=max_dist, thin=thin,
                                            outlier_graph=outlier_graph, seed=seed)
                  for m, gt in zip(machine_outputs, ground_truths)]
        result["boundary"] = evaluate_boundaries(counts, round_like_official)
        result["boundary"]["image_counts"] = counts
    if regions:
        counts = [evaluate_regions_image(m, gt, kind=kind, nthresh=nthresh)
                  for m, gt in zip(machine_outputs, ground_truths)]
        result["region"] = evaluate_regions(counts, round_like_official)
        result["region"]["image_counts"] = counts
    return result


def official_tables(result: Mapping) -> Dict[str, np.ndarray]:
    """The rows of the official result files for a :func:`bsds_benchmark` result.

    Keys are the official file names (``eval_bdry.txt``, ``eval_bdry_img.txt``,
    ``eval_bdry_thr.txt``, ``eval_cover.txt``, ``eval_cover_img.txt``, ``eval_cover_th.txt``,
    ``eval_RI_VOI.txt``, ``eval_RI_VOI_thr.txt``), values 2-D float arrays with the same
    columns (see ``shared/data/README.md`` or the official ``collect_eval_*.m``).
    """
    tables = {}
    if "boundary" in result:
        b = result["boundary"]
        ods, ois = b["ods"], b["ois"]
        tables["eval_bdry.txt"] = np.array(
            [[ods["threshold"], ods["recall"], ods["precision"], ods["f"],
              ois["recall"], ois["precision"], ois["f"], b["ap"]]]
        )
        tables["eval_bdry_img.txt"] = np.array(
            [[i + 1, s["threshold"], s["recall"], s["precision"], s["f"]] for i, s in enumerate(b["per_image"])]
        )
        tables["eval_bdry_thr.txt"] = np.column_stack([b["thresholds"], b["recall"], b["precision"], b["f"]])
    if "region" in result:
        r = result["region"]
        tables["eval_cover.txt"] = np.array(
            [[r["covering_ods"]["threshold"], r["covering_ods"]["covering"],
              r["covering_ois"], r["covering_best"]]]
        )
        tables["eval_cover_img.txt"] = np.array(
            [[i + 1, s["threshold"], s["covering"], s["precision"]] for i, s in enumerate(r["per_image"])]
        )
        tables["eval_cover_th.txt"] = np.column_stack([r["thresholds"], r["covering"]])
        tables["eval_RI_VOI.txt"] = np.array(
            [[r["pri_ods"]["threshold"], r["pri_ods"]["value"], r["pri_ois"],
              r["voi_ods"]["threshold"], r["voi_ods"]["value"], r["voi_ois"]]]
        )
        tables["eval_RI_VOI_thr.txt"] = np.column_stack([r["thresholds"], r["pri"], r["voi"]])
    return tables


def write_official_tables(result: Mapping, out_dir: Union[str, os.PathLike]) -> List[str]:
    """Write :func:`official_tables` to ``out_dir`` in the official ``%10g`` format.

    Returns the written paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, rows in official_tables(result).items():
        path = os.path.join(os.fspath(out_dir), name)
        first_is_index = name.endswith("_img.txt")  # the image number is printed with %10d
        with open(path, "w") as fh:
            for row in rows:
                cells = ["%10d" % int(v) if j == 0 and first_is_index else "%10g" % v for j, v in enumerate(row)]
                fh.write(" ".join(cells) + "\n")
        paths.append(path)
    return paths


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
    if len(candidates) != len(ground_truths):
        raise ValueError(f"candidates ({len(candidates)} images) and ground_truths ({len(ground_truths)}) differ")
    per_image = [evaluate_regions_image(levels, gt, kind="segs") for levels, gt in zip(candidates, ground_truths)]
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
    if len(candidates) != len(ground_truths):
        raise ValueError(f"candidates ({len(candidates)} images) and ground_truths ({len(ground_truths)}) differ")
    per_image = []
    for levels, gt in zip(candidates, ground_truths):
        humans = gt if isinstance(gt, Mapping) or (len(gt) and isinstance(gt[0], Mapping)) else \
            [thin_boundaries(seg2bdry(seg)) for seg in _ground_truth_maps(gt, "segmentation", np.int64)]
        per_image.append(evaluate_boundaries_image(levels, humans, kind="segs", max_dist=max_dist))
    b = evaluate_boundaries(per_image)
    return {"ods_f": b["ods"]["f"], "ois_f": b["ois"]["f"], "ap": b["ap"], "ods_recall": b["ods"]["recall"],
            "ods_precision": b["ods"]["precision"]}


def regions_from_ucm2(ucm2, threshold: float) -> np.ndarray:
    """Regions of a ``(2H+1)x(2W+1)`` ultrametric contour map at ``threshold``: the
    8-connected components of ``ucm2 <= threshold`` at the pixel centres, labelled 1..N
    (the official ``bwlabel`` step of the region benchmark)."""
    ucm2 = _soft_map(ucm2)
    if ucm2.ndim != 2 or ucm2.shape[0] % 2 == 0 or ucm2.shape[1] % 2 == 0:
        raise ValueError(f"ucm2 must be a (2H+1)x(2W+1) map, got shape {ucm2.shape}")
    return ucm_components(ucm2, threshold).astype(np.int64)
