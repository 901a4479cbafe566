"""Dataset scores of the BSDS500 benchmark from per-image counts (``collect_eval_bdry.m``,
``collect_eval_reg.m``): ODS / OIS / AP, with the official linear interpolation between
neighbouring thresholds and the official ``%g`` round trip of the per-image numbers, and the
official result files. The per-image counts come from :mod:`segsort_ext.metrics.bsds`."""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from segsort_ext.metrics.arrays import _numbers, _sequence
from segsort_ext.metrics.boundary import _COUNT_KEYS, _fmeasure, _ratio

__all__ = ["evaluate_boundaries", "evaluate_regions", "official_tables", "write_official_tables"]


def _image_counts(per_image, curves: Sequence[str], scalars: Sequence[str] = ()) -> List[Dict[str, np.ndarray]]:
    """Checked per-image counts for the aggregation: a non-empty sequence of dicts holding
    ``thresholds`` (the same for every image), ``curves`` of the same length and ``scalars``,
    all finite."""
    _sequence(per_image, "per_image")
    if not len(per_image):
        raise ValueError("per_image is empty: no images to aggregate")
    checked = []
    for i, counts in enumerate(per_image):
        if not isinstance(counts, Mapping):
            raise TypeError(f"per_image[{i}] must be a dict of counts, got {type(counts).__name__}")
        missing = [k for k in ("thresholds", *curves, *scalars) if k not in counts]
        if missing:
            raise ValueError(f"per_image[{i}] lacks {missing}")
        entry = {k: _numbers(counts[k], f"per_image[{i}][{k!r}]").astype(np.float64)
                 for k in ("thresholds", *curves, *scalars)}
        shape = entry["thresholds"].shape if not checked else checked[0]["thresholds"].shape
        for k, value in entry.items():
            expected = () if k in scalars else shape
            if value.shape != expected or (k == "thresholds" and value.ndim != 1) or not value.size:
                raise ValueError(f"per_image[{i}][{k!r}] must have shape {expected} (non-empty), got {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"per_image[{i}][{k!r}] must be finite")
        if checked and not np.array_equal(entry["thresholds"], checked[0]["thresholds"]):
            raise ValueError(f"per_image[{i}] was evaluated at other thresholds than per_image[0]")
        checked.append(entry)
    return checked


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
    per_image = _image_counts(per_image, _COUNT_KEYS)
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
    per_image = _image_counts(per_image, (*_COUNT_KEYS, "pri", "voi"), ("cnt_recall_best",))
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
        "pri_ois": float(pri_ois / n),
        "voi_ods": {"threshold": float(thresholds[i_voi]), "value": float(voi_curve[i_voi])},
        "voi_ois": float(voi_ois / n),
        "per_image": images,
    }


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
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path (str or os.PathLike), got {type(out_dir).__name__}")
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
