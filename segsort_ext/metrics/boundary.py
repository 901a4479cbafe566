"""BSDS500 boundary primitives, re-implementing the official MATLAB benchmark of Arbelaez
et al. (TPAMI 2011, ``BSR/bench``): thinning (``bwmorph(..., 'thin', inf)``), boundaries
of label maps (``seg2bdry.m``), the one-to-one pixel matcher (``correspondPixels``) and
boundary precision/recall of one binary map (``evaluation_bdry_image.m`` at one threshold).

A machine boundary pixel and a human one may be paired only if they are at most
``max_dist * image diagonal`` apart; recall counts matched human pixels (summed over
annotators), precision counts machine pixels matched to *any* annotator.

Fidelity (measured on the official benchmark's sample, ``shared/data/bsds500/bench``): the
machine-pixel and human-pixel totals are reproduced exactly; the matched counts are not,
because the official matcher (the CSA solver on a graph with *randomly sampled* outlier
edges) is not deterministic -- re-running MATLAB on identical input changes P/R/F in the 4th
decimal -- and its random graph occasionally blocks a few matches.  :func:`correspond_pixels`
therefore offers the exact optimum (default, deterministic; it matches 0.04%-0.14% more human
pixels than MATLAB did) and an emulation of the random graph (``outlier_graph='official'``,
seed-dependent).  With the default the boundary files of :mod:`segsort_ext.metrics.bsds`
agree with MATLAB's to 5e-4 (``eval_bdry.txt``), 7e-4 (``eval_bdry_thr.txt``) and 1.3e-3
(``eval_bdry_img.txt``) in absolute value; two MATLAB runs on the same input differ by up to
2e-4, 6e-4 and 7e-4 on those files.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple, Union

import numpy as np

from segsort_ext.metrics.arrays import _binary_map, _ground_truth_maps, _numbers
from segsort_ext.utils import checks
from segsort_ext.utils.optional import require

sparse = require("scipy.sparse", "segsort_ext.metrics")
csgraph = require("scipy.sparse.csgraph", "segsort_ext.metrics")

__all__ = ["thin_boundaries", "seg2bdry", "correspond_pixels", "boundary_pr", "boundary_f1"]

#: The official per-image counts, the numerators and denominators of recall and precision.
_COUNT_KEYS = ("cnt_recall", "sum_recall", "cnt_precision", "sum_precision")
_OUTLIER_GRAPHS = ("exact", "official")


def _check_matching(max_dist, outlier_graph: str = "exact", seed=0) -> float:
    """The matching options of every boundary metric; returns ``max_dist`` as a float.

    ``max_dist`` is a fraction of the image diagonal in (0, 1): NaN, 0 (every pair would cost
    as much as leaving both pixels unmatched) and negative values are refused."""
    if outlier_graph not in _OUTLIER_GRAPHS:
        raise ValueError(f"outlier_graph must be one of {_OUTLIER_GRAPHS}, got {outlier_graph!r}")
    if not (seed is None or isinstance(seed, np.random.Generator)
            or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0)):
        raise TypeError(f"seed must be an int >= 0, a numpy Generator or None, got {seed!r}")
    return checks.number(max_dist, "max_dist (a fraction of the image diagonal)", minimum=0.0, maximum=1.0,
                         strict=True)


def _boundary_map(x, name: str) -> np.ndarray:
    """A 2-D "nonzero = boundary" map as bool."""
    bmap = _binary_map(x, name)
    if bmap.ndim != 2:
        raise ValueError(f"{name} must be an HxW boundary map, got shape {bmap.shape}")
    return bmap


def _fmeasure(recall, precision):
    """Official F-measure: 2PR / (P + R), defined as 0 when P + R = 0."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    denom = precision + recall
    return 2.0 * precision * recall / (denom + (denom == 0))


def _ratio(count, total):
    """``count / total``, defined as 0 when ``total`` is 0 (as the official scripts)."""
    count = np.asarray(count, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    return count / (total + (total == 0))


# ---- thinning (MATLAB bwmorph(bw, 'thin', Inf)) ----------------------------------------------
#
# MATLAB's 'thin' is the two-subiteration parallel algorithm of Guo & Hall (1989) as described
# by Lam, Lee & Suen (1992), "Thinning methodologies", p. 879.  The 8 neighbours of p are named
# x1..x8 counter-clockwise starting east (x1=E, x2=NE, x3=N, x4=NW, x5=W, x6=SW, x7=S, x8=SE),
# and a neighbourhood is encoded as the byte sum(x_k << (k-1)).  A foreground pixel is deleted
# in subiteration 1 iff G1 & G2 & G3 hold, in subiteration 2 iff G1 & G2 & G3' hold:
#   G1:  X_H(p) = 1, X_H = #{i in 1..4 : x_{2i-1} = 0 and (x_{2i} = 1 or x_{2i+1} = 1)}
#   G2:  2 <= min(n1, n2) <= 3, n1 = sum_k (x_{2k-1} or x_{2k}), n2 = sum_k (x_{2k} or x_{2k+1})
#   G3:  (x2 or x3 or not x8) and x1 = 0      G3': (x6 or x7 or not x4) and x5 = 0
# (indices are taken modulo 8, x9 = x1).

# (dy, dx) of x1..x8.
_NEIGHBOUR_OFFSETS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _build_thinning_luts() -> Tuple[np.ndarray, np.ndarray]:
    delete_first = np.zeros(256, dtype=bool)
    delete_second = np.zeros(256, dtype=bool)
    for code in range(256):
        x = [None, *((code >> k) & 1 for k in range(8)), code & 1]  # x[1]..x[8], x[9] = x[1]
        crossing = sum(1 for i in range(1, 5) if not x[2 * i - 1] and (x[2 * i] or x[2 * i + 1]))
        n1 = sum(1 for k in range(1, 5) if x[2 * k - 1] or x[2 * k])
        n2 = sum(1 for k in range(1, 5) if x[2 * k] or x[2 * k + 1])
        g12 = crossing == 1 and 2 <= min(n1, n2) <= 3
        g3 = not ((x[2] or x[3] or not x[8]) and x[1])
        g3p = not ((x[6] or x[7] or not x[4]) and x[5])
        delete_first[code] = g12 and g3
        delete_second[code] = g12 and g3p
    return delete_first, delete_second


_THIN_LUTS = _build_thinning_luts()


def _neighbour_codes(bw: np.ndarray) -> np.ndarray:
    """Byte code of each pixel's 8-neighbourhood (pixels outside the image count as 0)."""
    padded = np.pad(bw, 1).astype(np.uint8)
    h, w = bw.shape
    code = np.zeros((h, w), dtype=np.uint8)
    for bit, (dy, dx) in enumerate(_NEIGHBOUR_OFFSETS):
        code |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] << bit
    return code
def thin_boundaries(bmap, max_iter: Optional[int] = None) -> np.ndarray:
    """Morphological thinning to 1-pixel-wide curves, equivalent to ``bwmorph(bmap,'thin',inf)``.

    Args:
        bmap: 2-D binary map (nonzero = foreground; NaN is refused).
        max_iter: number of full iterations (two subiterations each); ``None`` = until stable.

    Returns:
        bool array of the same shape.
    """
    bw = _boundary_map(bmap, "bmap")  # a copy (astype)
    if max_iter is not None:
        checks.nonnegative_int(max_iter, "max_iter")
    iteration = 0
    while max_iter is None or iteration < max_iter:
        changed = False
        for lut in _THIN_LUTS:
            # Both subiterations are parallel: decisions use the map as it was before them.
            delete = bw & lut[_neighbour_codes(bw)]
            if delete.any():
                bw &= ~delete
                changed = True
        iteration += 1
        if not changed:
            break
    return bw


def seg2bdry(seg, fmt: str = "imageSize") -> np.ndarray:
    """Boundary map of a label image, like the official ``seg2bdry.m``.

    The boundaries live on the doubled grid of size ``(2H+1) x (2W+1)``: pixel ``(i, j)`` sits
    at ``(2i+1, 2j+1)`` (0-based), the edge between vertically/horizontally adjacent pixels in
    between, and "corner" cells at even/even positions are on if any incident edge is on; the
    outermost rows/columns copy their inner neighbours.

    Args:
        seg: non-empty ``HxW`` label map (labels are compared, never rounded; NaN is refused).
        fmt: ``'doubleSize'`` returns the ``(2H+1) x (2W+1)`` map; ``'imageSize'`` (default)
            samples it at the corners ``[2::2, 2::2]`` giving ``HxW`` (each pixel marks the
            corner below-right of it).

    Returns:
        bool array.
    """
    if fmt not in ("imageSize", "doubleSize"):
        raise ValueError(f"fmt must be 'imageSize' or 'doubleSize', got {fmt!r}")
    seg = _numbers(seg, "seg")
    if seg.ndim != 2 or seg.size == 0:
        raise ValueError(f"seg must be a non-empty HxW label map, got shape {seg.shape}")
    if seg.dtype.kind == "f" and np.isnan(seg).any():
        raise ValueError("seg contains NaN (NaN differs from every label, itself included)")
    h, w = seg.shape
    # Edge between row i and i+1 (padded with a zero last row) / between column j and j+1.
    edge_v = np.zeros((h, w), dtype=bool)
    edge_v[:-1, :] = seg[:-1, :] != seg[1:, :]
    edge_h = np.zeros((h, w), dtype=bool)
    edge_h[:, :-1] = seg[:, :-1] != seg[:, 1:]

    bdry = np.zeros((2 * h + 1, 2 * w + 1), dtype=bool)
    bdry[2::2, 1::2] = edge_v
    bdry[1::2, 2::2] = edge_h
    bdry[2:-1:2, 2:-1:2] = (
        edge_h[:-1, :-1] | edge_h[1:, :-1] | edge_v[:-1, :-1] | edge_v[:-1, 1:]
    )
    # Order matters (rows first, then columns) to reproduce the official corner values.
    bdry[0, :] = bdry[1, :]
    bdry[:, 0] = bdry[:, 1]
    bdry[-1, :] = bdry[-2, :]
    bdry[:, -1] = bdry[:, -2]
    if fmt == "imageSize":
        return bdry[2::2, 2::2].copy()
    return bdry


# ---- pixel correspondence (correspondPixels) -------------------------------------------------

# Cost scaling of the official matcher: real edges cost rint(100 * distance), outlier edges
# ceil(100 * outlier_cost) with outlier_cost = 100 * max_dist (in pixels).
_COST_MULTIPLIER = 100.0
_OUTLIER_COST_FACTOR = 100.0


def _disc_offsets(radius: float, height: int, width: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets within ``radius``, clipped to the image (farther ones cannot reach a pixel):
    never more than ``(2H - 1) * (2W - 1)`` of them, whatever the radius."""
    ry, rx = min(int(math.ceil(radius)), height - 1), min(int(math.ceil(radius)), width - 1)
    dy, dx = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    d2 = (dy * dy + dx * dx).ravel()
    keep = d2 <= radius * radius
    return dy.ravel()[keep], dx.ravel()[keep], np.sqrt(d2[keep].astype(np.float64))


# Candidate pairs allowed per boundary pixel (plus a constant): the official tolerances give at
# most ~60 (~170 for 0.01 of a 513x513 diagonal) even on dense maps; beyond that lie dense maps
# matched over a large max_dist, whose pairs (every pixel with every pixel) would not fit in memory.
_MAX_PAIRS_PER_PIXEL = 256


def _no_pairs():
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)


def _candidate_pairs(bmap1: np.ndarray, bmap2: np.ndarray, radius: float):
    """All (pixel of bmap1, pixel of bmap2) pairs at Euclidean distance <= radius.

    Returns flat indices into the image for both sides and the pair distances.
    """
    h, w = bmap1.shape
    ys, xs = np.nonzero(bmap1)
    if not ys.size or not bmap2.any():
        return _no_pairs()
    dys, dxs, ds = _disc_offsets(radius, h, w)
    ry, rx = int(dys.max()), int(dxs.max())
    padded2 = np.pad(bmap2, ((ry, ry), (rx, rx)))
    limit = _MAX_PAIRS_PER_PIXEL * (ys.size + int(bmap2.sum())) + 2**20
    if ys.size * dys.size > limit:  # there may be too many: count them first, storing nothing
        count = sum(int(padded2[ys + ry + dy, xs + rx + dx].sum()) for dy, dx in zip(dys, dxs))
        if count > limit:
            raise ValueError(f"max_dist reaches {count} pairs of boundary pixels ({radius:.1f} px around each of "
                             f"{ys.size}), more than {limit}: use a smaller max_dist or thinner boundary maps")
    idx1, idx2, dist = [], [], []
    for dy, dx, d in zip(dys, dxs, ds):
        hit = padded2[ys + ry + dy, xs + rx + dx]
        if hit.any():
            y1, x1 = ys[hit], xs[hit]
            idx1.append(y1 * w + x1)
            idx2.append((y1 + dy) * w + (x1 + dx))
            dist.append(np.full(y1.size, d))
    if not idx1:
        return _no_pairs()
    return np.concatenate(idx1), np.concatenate(idx2), np.concatenate(dist)


_OUTLIER_DEGREE = 6  # random outlier edges per node in the official graph (match.cc "degree")


def _random_k_subsets(rng: np.random.Generator, rows: int, k: int, n: int) -> np.ndarray:
    """``rows x k`` array whose rows are uniform random k-subsets of ``range(n)`` (kOfN)."""
    if rows == 0 or k == 0:
        return np.zeros((rows, 0), dtype=np.int64)
    if k > n:
        raise ValueError(f"cannot draw {k} distinct values from range({n})")
    if 4 * k > n:
        # Dense case (tiny n): rejection would be slow, take the first k of a permutation.
        return np.argsort(rng.random((rows, n)), axis=1)[:, :k]
    picks = rng.integers(0, n, size=(rows, k))
    while True:  # redraw the (few) rows that contain a repeated value
        ordered = np.sort(picks, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not repeated.any():
            return picks
        picks[repeated] = rng.integers(0, n, size=(int(repeated.sum()), k))


def _outlier_edges(n1: int, n2: int, a: np.ndarray, b: np.ndarray, outlier_graph: str, rng):
    """Rows, columns and weight multipliers of the outlier part of the assignment graph.

    Node layout: left = [machine pixels (n1) | outlier slots of human pixels (n2)],
    right = [human pixels (n2) | outlier slots of machine pixels (n1)].  A weight multiplier
    of 1 means "one outlier cost", ``_COST_MULTIPLIER`` marks the official fallback edges.
    """
    ar1, ar2 = np.arange(n1), np.arange(n2)
    if outlier_graph == "exact":
        # Each pixel may go to its own outlier slot, and the slots of a matched pair (a, b) can
        # pair up with each other: every matching of the real pixels extends to a perfect
        # matching, so the optimum over real matchings is reached.
        rows = np.concatenate([ar1, n1 + ar2, n1 + b])
        cols = np.concatenate([n2 + ar1, ar2, n2 + a])
        return rows, cols, np.ones(rows.size)

    # Official construction (match.cc): each machine pixel links to `degree` random outlier
    # slots of *other* machine pixels, each human pixel likewise, the outlier slots are
    # linked by a random bipartite graph of degree `degree`, and each pixel's own slot is a
    # fallback edge that costs 100 times more (it only guarantees a perfect matching exists).
    d1 = max(0, min(_OUTLIER_DEGREE, n1 - 1))
    d2 = max(0, min(_OUTLIER_DEGREE, n2 - 1))
    d3 = min(_OUTLIER_DEGREE, n1, n2)
    machine = np.repeat(ar1, d1)
    other = _random_k_subsets(rng, n1, d1, n1 - 1).ravel()
    other = other + (other >= machine)  # skip the pixel's own slot
    human = np.repeat(ar2, d2)
    other_h = _random_k_subsets(rng, n2, d2, n2 - 1).ravel()
    other_h = other_h + (other_h >= human)
    n_small, n_large = min(n1, n2), max(n1, n2)
    large = np.repeat(np.arange(n_large), d3)
    small = _random_k_subsets(rng, n_large, d3, n_small).ravel()
    slot_left, slot_right = (large, small) if n1 < n2 else (small, large)
    rows = np.concatenate([machine, n1 + other_h, n1 + slot_left, ar1, n1 + ar2])
    cols = np.concatenate([n2 + other, human, n2 + slot_right, n2 + ar1, ar2])
    mult = np.concatenate([np.ones(machine.size + human.size + large.size), np.full(n1 + n2, _COST_MULTIPLIER)])
    return rows, cols, mult


def correspond_pixels(
    bmap1,
    bmap2,
    max_dist: float = 0.0075,
    outlier_cost: float = _OUTLIER_COST_FACTOR,
    outlier_graph: str = "exact",
    seed: Union[int, np.random.Generator, None] = 0,
):
    """One-to-one correspondence between the "on" pixels of two boundary maps.

    Re-implements the official ``correspondPixels`` MEX (``match.cc``) as an assignment
    problem: a machine pixel and a human pixel can only be paired when at most
    ``max_dist * diagonal`` apart; a pair costs ``rint(100 * distance)``; every pixel left
    unmatched (either side) and every matched pair's outlier twin costs
    ``ow = ceil(100 * outlier_cost * max_dist * diagonal)``.  Since ``ow`` dwarfs any
    distance, the optimum is (nearly) a maximum-cardinality matching of minimum total distance.
    Only pixels with a partner in range become nodes, as officially.  The assignment is solved
    exactly with scipy's sparse LAPJV (the official code uses the CSA solver).

    Args:
        bmap1, bmap2: 2-D binary maps of equal shape (machine / human boundaries).
        max_dist: maximum matching distance as a fraction of the image diagonal.
        outlier_cost: outlier cost as a multiple of the pixel ``max_dist`` (official 100).
        outlier_graph: how unmatched pixels are modelled.

            * ``'exact'`` (default): outlier edges that always admit the optimum, giving the
              exact, seed-independent maximum-cardinality / minimum-distance matching.  On the
              official sample it matches 0.04%-0.14% more pixels than MATLAB's runs.
            * ``'official'``: the official sparse *random* outlier graph (degree 6 plus
              100x-cost fallback edges).  Its randomness sometimes forces a slightly worse
              matching; MATLAB's results vary between runs because of it, and this mode
              reproduces that behaviour (deterministically for a fixed ``seed``).
        seed: seed (int >= 0) or :class:`numpy.random.Generator` for the ``'official'`` random
            graph.

    Returns:
        ``(match1, match2)``: int64 arrays shaped like the inputs; ``match1[y, x]`` is
        ``1 + flat index`` (row-major) of the ``bmap2`` pixel matched to ``bmap1[y, x]``, or 0
        if unmatched; ``match2`` likewise in the other direction.

    Raises:
        ValueError: maps of different shapes, a map containing NaN, ``max_dist`` outside
            (0, 1) or NaN, ``outlier_cost`` <= 0 or not finite, an unknown ``outlier_graph``.
    """
    max_dist = _check_matching(max_dist, outlier_graph, seed)
    outlier_cost = checks.number(outlier_cost, "outlier_cost", minimum=0.0, strict=True)
    bmap1 = _boundary_map(bmap1, "bmap1")
    bmap2 = _boundary_map(bmap2, "bmap2")
    if bmap1.shape != bmap2.shape:
        raise ValueError(f"bmap1 {bmap1.shape} and bmap2 {bmap2.shape} must have the same shape")
    return _correspond(bmap1, bmap2, max_dist, outlier_cost, outlier_graph, seed)


def _correspond(bmap1: np.ndarray, bmap2: np.ndarray, max_dist: float, outlier_cost: float, outlier_graph: str,
                seed) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`correspond_pixels` of checked bool maps."""
    h, w = bmap1.shape
    radius = max_dist * math.hypot(h, w)
    match1 = np.zeros(h * w, dtype=np.int64)
    match2 = np.zeros(h * w, dtype=np.int64)

    flat1, flat2, dist = _candidate_pairs(bmap1, bmap2, radius)
    if flat1.size == 0:
        return match1.reshape(h, w), match2.reshape(h, w)
    nodes1, a = np.unique(flat1, return_inverse=True)
    nodes2, b = np.unique(flat2, return_inverse=True)
    n1, n2 = nodes1.size, nodes2.size
    n = n1 + n2

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out_rows, out_cols, out_mult = _outlier_edges(n1, n2, a, b, outlier_graph, rng)
    outlier_weight = math.ceil(_COST_MULTIPLIER * outlier_cost * radius)
    rows = np.concatenate([a, out_rows])
    cols = np.concatenate([b, out_cols])
    weights = np.concatenate([np.rint(dist * _COST_MULTIPLIER), out_mult * outlier_weight])
    # Every perfect matching has exactly n edges, so adding 1 to all weights keeps the optimum
    # and stops zero-distance pairs from being dropped as structural zeros.
    graph = sparse.csr_matrix((weights + 1.0, (rows, cols)), shape=(n, n))
    left, right = csgraph.min_weight_full_bipartite_matching(graph)

    real = (left < n1) & (right < n2)
    pix1 = nodes1[left[real]]
    pix2 = nodes2[right[real]]
    match1[pix1] = pix2 + 1
    match2[pix2] = pix1 + 1
    return match1.reshape(h, w), match2.reshape(h, w)


def boundary_pr(
    bmap,
    gt_boundaries,
    max_dist: float = 0.0075,
    thin: bool = True,
    outlier_graph: str = "exact",
    seed: Optional[int] = 0,
) -> Dict:
    """Boundary precision/recall of one binary machine map against K human annotations.

    Args:
        bmap: ``HxW`` binary machine boundary map.
        gt_boundaries: one ``HxW`` human boundary map, a list of them, or a list of
            ground-truth dicts with a ``'boundaries'`` key.
        max_dist: matching tolerance as a fraction of the image diagonal (official 0.0075).
        thin: thin the machine map first (the official default).
        outlier_graph, seed: matching variant, see :func:`correspond_pixels`.

    Returns:
        dict with the official counts ``cnt_recall`` (matched human pixels, summed over
        annotators), ``sum_recall`` (human pixels), ``cnt_precision`` (machine pixels matched
        to at least one annotator), ``sum_precision`` (machine pixels) and ``recall``,
        ``precision``, ``f``.

    Raises:
        ValueError: as :func:`correspond_pixels`; no annotation, or one of another shape.
    """
    max_dist = _check_matching(max_dist, outlier_graph, seed)
    bmap = _boundary_map(bmap, "bmap")
    gts = _ground_truth_maps(gt_boundaries, "boundaries", "gt_boundaries", _binary_map)
    for k, gt in enumerate(gts):
        if gt.shape != bmap.shape:
            raise ValueError(f"gt_boundaries[{k}] has shape {gt.shape} but bmap has shape {bmap.shape}")
    return _match_counts(bmap, gts, max_dist, thin, outlier_graph, seed)


def _match_counts(bmap: np.ndarray, gts, max_dist: float, thin: bool, outlier_graph: str, seed) -> Dict:
    """:func:`boundary_pr` of a checked bool map and checked annotations of its shape."""
    if thin:
        bmap = thin_boundaries(bmap)
    matched_machine = np.zeros(bmap.shape, dtype=bool)
    cnt_recall = sum_recall = 0
    for gt in gts:
        match_machine, match_human = _correspond(bmap, gt, max_dist, _OUTLIER_COST_FACTOR, outlier_graph, seed)
        # A machine pixel is correct if it matches any annotator.
        matched_machine |= match_machine > 0
        sum_recall += int(gt.sum())
        cnt_recall += int((match_human > 0).sum())
    cnt_precision = int(matched_machine.sum())
    sum_precision = int(bmap.sum())
    recall = float(_ratio(cnt_recall, sum_recall))
    precision = float(_ratio(cnt_precision, sum_precision))
    return {
        "cnt_recall": cnt_recall,
        "sum_recall": sum_recall,
        "cnt_precision": cnt_precision,
        "sum_precision": sum_precision,
        "recall": recall,
        "precision": precision,
        "f": float(_fmeasure(recall, precision)),
    }


def boundary_f1(bmap, gt_boundaries, max_dist: float = 0.0075, thin: bool = True, **matching) -> float:
    """F-measure of :func:`boundary_pr` (convenience for a single binary boundary map);
    ``matching`` takes ``outlier_graph`` / ``seed``."""
    return boundary_pr(bmap, gt_boundaries, max_dist, thin, **matching)["f"]


