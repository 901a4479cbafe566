"""A contour-based segmentation hierarchy: ultrametric contour maps (UCM).

SegSort trains without labels on segments of a contour detector's hierarchy (HED edges ->
oriented watershed -> ultrametric contour map, "HED-owt-ucm").  This module builds such
hierarchies from any contour map (scipy and scikit-image); the detector is the caller's
(``segsort_ext.models.HED``, or the Sobel stand-in here):

* :func:`edge_strength`: a Sobel contour-strength map of an image;
* :func:`contour_ucm` / :func:`image_ucm`: an ultrametric contour map in the BSDS ``ucm2``
  layout from any edge-strength map (watershed over-segmentation, arcs scored by the
  contours -- thinned and orientation-weighted on request -- then greedy merging of the
  adjacent pair with the weakest mean boundary strength);
* :func:`ucm_to_labels` cuts it at a threshold or a number of regions (the regions of ``segsort_ext.metrics``
  ``kind='ucm2'``); :func:`ucm_components` is the region benchmark's unchecked cut.

The ``ucm2`` layout (as ``BSR/bench`` ``ucm2/*.mat``): an array ``(2H+1, 2W+1)``; pixel
``(y, x)`` sits at ``(2y+1, 2x+1)`` (value 0), the boundary between ``(y, x)`` and
``(y, x+1)`` at ``(2y+1, 2x+2)``, the one between ``(y, x)`` and ``(y+1, x)`` at
``(2y+2, 2x+1)``; every even-even cell (junctions and the frame) holds the maximum of its
4-neighbours, and the other frame cells are 0.  Regions at threshold ``t`` are the
8-connected components of ``ucm2 <= t`` sampled at the pixel cells.

NaN/inf policy: refused. :func:`edge_strength`, :func:`image_ucm` (``image``),
:func:`contour_ucm` (``contours``) and :func:`ucm_to_labels` (``ucm2``) raise a ValueError
naming the argument for a NaN or inf value; finite values up to float's maximum give finite
levels. Any real dtype, float16/bfloat16 included, is read exactly as float64.
"""
from __future__ import annotations

import heapq
from types import MappingProxyType
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from segsort_ext.transforms._arrays import compact_ids, image_array
from segsort_ext.transforms._checks import smoothing_sigma
from segsort_ext.transforms.edges import edge_nms, edge_orientation
from segsort_ext.utils import checks as check
from segsort_ext.utils.optional import require

__all__ = ["HED_UCM_OPTIONS", "edge_strength", "contour_ucm", "image_ucm", "ucm_to_labels", "ucm_components"]

ArrayLike = Union[torch.Tensor, np.ndarray]

#: :func:`contour_ucm` settings for HED's boundary probabilities (HED-owt-ucm):
#: ``contour_ucm(probability, **HED_UCM_OPTIONS)``.  Chosen on BSDS500 train images; see
#: :func:`contour_ucm` for what each scored.
HED_UCM_OPTIONS = MappingProxyType({"sigma": 1.0, "thin": True, "normalize": False})


def edge_strength(image: torch.Tensor, *, sigma: float = 1.0) -> torch.Tensor:
    """Sobel gradient magnitude of an image, a simple contour-strength map.

    Args:
        image: float ``(C, H, W)`` (C = 1 or 3) or ``(H, W)``, values in [0, 1].
        sigma: standard deviation of the Gaussian pre-smoothing in pixels (0: none; at
            most 2 * max(H, W)).

    Returns:
        float64 ``(H, W)``: the root mean square over channels of the per-channel Sobel
        magnitude (``skimage.filters.sobel``).
    """
    sobel = require("skimage.filters", "edge_strength").sobel
    ndimage = require("scipy.ndimage", "edge_strength")
    array = image_array(image)
    sigma = smoothing_sigma(sigma, array.shape[:2])
    channels = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[-1])]
    squares = 0.0
    for channel in channels:
        if sigma > 0:
            channel = ndimage.gaussian_filter(channel, sigma, mode="nearest")
        squares = squares + sobel(channel) ** 2
    return torch.from_numpy(np.sqrt(squares / len(channels)))


def _contour_array(contours, name: str = "contours") -> np.ndarray:
    if isinstance(contours, torch.Tensor):
        if contours.is_complex():
            raise TypeError(f"{name} must hold real numbers, got {contours.dtype}")
        # numpy has no bfloat16: float tensors become float64 here, exactly.
        contours = contours.detach().cpu()
        contours = (contours.double() if contours.is_floating_point() else contours).numpy()
    elif not isinstance(contours, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array (H, W), got {type(contours).__name__}")
    if contours.ndim != 2 or contours.shape[0] < 1 or contours.shape[1] < 1:
        raise ValueError(f"{name} must have shape (H, W), got {tuple(contours.shape)}")
    if contours.dtype == bool or not (np.issubdtype(contours.dtype, np.floating)
                                      or np.issubdtype(contours.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got {contours.dtype}")
    contours = contours.astype(np.float64)
    if not np.isfinite(contours).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (contours < 0).any():
        raise ValueError(f"{name} must be >= 0 (a boundary strength), got minimum {contours.min()}")
    return contours


def _ucm2_from_edges(horizontal: np.ndarray, vertical: np.ndarray) -> np.ndarray:
    """Assemble the ``(2H+1, 2W+1)`` ucm2 array from the strengths of the boundaries between
    horizontal neighbours ``(H, W-1)`` and vertical neighbours ``(H-1, W)``."""
    H, W = horizontal.shape[0], vertical.shape[1]
    ucm = np.zeros((2 * H + 1, 2 * W + 1), dtype=np.float64)
    ucm[1:-1:2, 2:-1:2] = horizontal
    ucm[2:-1:2, 1:-1:2] = vertical
    # Junction and frame cells take the strongest boundary they touch, so that 8-connected
    # labelling of ucm2 <= t never leaks through a junction (the official files do the same).
    padded = np.pad(ucm, 1)
    neighbours = np.maximum.reduce([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    ucm[0::2, 0::2] = neighbours[0::2, 0::2]
    return ucm


def _merge_levels(num_regions: int, pair_a: np.ndarray, pair_b: np.ndarray, strength_sum: np.ndarray,
                  strength_count: np.ndarray) -> np.ndarray:
    """Greedy agglomeration of a region adjacency graph.

    Repeatedly merges the two adjacent regions whose shared boundary has the lowest mean
    strength (sum / count over the pixel pairs on it; a merged region's boundary with a
    neighbour pools both parts).  Returns, for every input edge (adjacent pair), the level at
    which its two regions first belong to the same region.  Levels never decrease: the
    pooled mean of boundaries that were all >= the current minimum is >= it too.
    """
    num_edges = pair_a.size
    total = strength_sum.astype(np.float64).copy()
    count = strength_count.astype(np.float64).copy()
    parent = np.arange(num_edges)  # an edge absorbed into another points to it
    level = np.zeros(num_edges, dtype=np.float64)
    version = np.zeros(num_edges, dtype=np.int64)
    ends = [[int(a), int(b)] for a, b in zip(pair_a, pair_b)]
    adjacency = [dict() for _ in range(num_regions)]
    for e, (a, b) in enumerate(ends):
        adjacency[a][b] = e
        adjacency[b][a] = e
    heap = [(total[e] / count[e], e, 0) for e in range(num_edges)]
    heapq.heapify(heap)
    current = 0.0
    while heap:
        mean, e, stamp = heapq.heappop(heap)
        if parent[e] != e or stamp != version[e]:
            continue  # absorbed into another edge, or its mean changed since this entry
        current = max(current, mean)  # guards the order against rounding in the pooled means
        level[e] = current
        a, b = ends[e]
        if len(adjacency[a]) < len(adjacency[b]):
            a, b = b, a  # move the smaller neighbourhood
        del adjacency[a][b]
        for c, f in adjacency[b].items():
            if c == a:
                continue
            del adjacency[c][b]
            g = adjacency[a].get(c)
            if g is None:  # b's boundary with c becomes a's, its mean unchanged
                adjacency[a][c] = f
                adjacency[c][a] = f
                ends[f] = [a, c]
            else:  # a and b both touch c: pool the two boundaries
                total[g] += total[f]
                count[g] += count[f]
                parent[f] = g
                version[g] += 1
                heapq.heappush(heap, (total[g] / count[g], g, int(version[g])))
        adjacency[b] = {}
    # Every edge ends in exactly one popped edge; follow the (short) absorption chains.
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    return level[root]


def _pair_strengths(strength: np.ndarray, agreement: Optional[np.ndarray]):
    """Strength of the boundary between every pair of horizontal ``(H, W-1)`` and vertical
    ``(H-1, W)`` neighbours: the stronger pixel's, times that pixel's ``agreement`` when
    given."""
    if agreement is not None:
        strength = strength * agreement
    return np.maximum(strength[:, :-1], strength[:, 1:]), np.maximum(strength[:-1, :], strength[1:, :])


def _arc_agreement(regions: np.ndarray, contour_normal: torch.Tensor) -> np.ndarray:
    """``|cos|`` of the angle between the contour normal and the normal of the watershed arc
    through each pixel -- the oriented watershed transform (gPb-owt-ucm) for a detector with
    one orientation per pixel: an arc that runs along a contour keeps its strength, one that
    crosses it (a basin boundary through a contour's flank) loses it.  The arc normal comes
    from the smoothed map of arc pixels, so a staircase or zigzag of pixel pairs along a
    straight contour has that contour's normal, whatever its angle."""
    arcs = np.zeros(regions.shape)
    arcs[:, :-1] += regions[:, :-1] != regions[:, 1:]
    arcs[:, 1:] += regions[:, :-1] != regions[:, 1:]
    arcs[:-1, :] += regions[:-1, :] != regions[1:, :]
    arcs[1:, :] += regions[:-1, :] != regions[1:, :]
    arc_normal = edge_orientation(torch.from_numpy(np.minimum(arcs, 1.0)), smoothing=2)
    return torch.cos(arc_normal - contour_normal).abs().numpy()


def contour_ucm(contours: ArrayLike, *, markers: Optional[ArrayLike] = None, sigma: float = 0.0,
                oriented: bool = False, thin: bool = False, normalize: bool = True) -> torch.Tensor:
    """Ultrametric contour map (BSDS ``ucm2`` layout) from a contour-strength map.

    1. over-segmentation: watershed of ``contours`` smoothed by ``sigma`` (4-connected
       basins of its local minima, or of ``markers``);
    2. boundary strength of every pair of adjacent pixels in different basins: the larger of
       the two pixels' ``contours`` (thinned first when ``thin``), weighted by the agreement
       of the pair with the contour orientation when ``oriented`` -- the oriented watershed
       transform (OWT) of gPb-owt-ucm for a detector with one orientation per pixel;
    3. hierarchy: greedily merge the adjacent pair of regions whose shared boundary has the
       weakest mean strength, recording the level of every merge; every boundary between two
       adjacent pixels gets the level at which their regions merged (0 inside a basin).

    For HED's boundary probabilities use :data:`HED_UCM_OPTIONS` (``sigma=1, thin=True,
    normalize=False``).  On 20 BSDS500 train images at full size (every 10th; 19
    thresholds) that scored covering ODS 0.623, PRI 0.831, VOI 1.52, boundary ODS F 0.740,
    against 0.607, 0.833, 1.60, 0.707 with the defaults; ``oriented=True`` added nothing
    there (0.613, 0.833, 1.56, 0.734 with ``thin``; HED's maps are already sharp), nor did
    ``sigma=1.5`` (0.619, 0.830, 1.51, 0.737) or ``normalize=True`` (0.621, 0.834, 1.53,
    0.736).  Without ``normalize`` the levels stay probabilities, comparable across images,
    which the benchmark's dataset-wide threshold assumes.  On the blurrier Sobel map
    (:func:`edge_strength`, sigma 2) of the same images ``oriented=True`` raised boundary F
    from 0.518 to 0.544 and lowered covering from 0.540 to 0.525.  On 40 train images (every
    5th, full size, 39 thresholds) with HED averaged over scales 0.5, 1, 1.5
    (``HED.multiscale``), ``sigma=1.5`` instead of 1 scored covering 0.641 vs 0.642, PRI
    0.850 vs 0.847, VOI 1.433 vs 1.437: no reason to change.

    Args:
        contours: ``(H, W)`` non-negative finite boundary strengths (torch of any real
            dtype, bfloat16 included, or numpy), e.g. :func:`edge_strength` or a learned
            contour detector's output. NaN or inf is refused (ValueError naming
            ``contours``); finite values up to float's maximum give finite levels (no
            level exceeds the largest strength).
        markers: optional int ``(H, W)`` watershed seeds (0 = not a seed).
        sigma: standard deviation (pixels) of the Gaussian smoothing of ``contours`` for the
            watershed only: fewer spurious basins from noise in flat areas (0: none; at most
            2 * max(H, W)).
        oriented: weight every boundary pixel by ``|cos|`` of the angle between the contour
            normal (:func:`~segsort_ext.transforms.edge_orientation` of ``contours``) and the
            normal of the watershed arc through it.
        thin: take the strengths from the :func:`~segsort_ext.transforms.edge_nms` ridges of
            ``contours``, widened to 3x3 (a watershed line lies within a pixel of its ridge):
            for thick responses such as HED's, whose flanks would otherwise count.
        normalize: divide the levels by the last (largest) one, so the map lies in [0, 1] as
            the thresholds ``k / (n + 1)`` of the BSDS benchmark expect.

    Returns:
        float64 ``(2H+1, 2W+1)`` tensor.  :func:`ucm_to_labels` at threshold ``t`` gives the
        regions merged at levels ``<= t``; the partitions are nested as ``t`` rises.

    The merging is a Python loop over the watershed regions (about 0.5 s for the ~6,000 regions
    of a 481x321 BSDS image smoothed with sigma 2): meant for data preparation, not a
    training step.
    """
    watershed = require("skimage.segmentation", "contour_ucm").watershed
    strength = _contour_array(contours)
    H, W = strength.shape
    # Strengths near float's maximum would overflow the smoothing and the sums of the
    # boundary means: they are divided by a power of two (exactly), the levels multiplied
    # back at the end.
    exponent = 0
    if strength.max() > 2.0**512:
        exponent = int(np.frexp(strength.max())[1])
        strength = np.ldexp(strength, -exponent)
    sigma = smoothing_sigma(sigma, strength.shape)
    if markers is not None:
        if isinstance(markers, torch.Tensor):
            markers = markers.detach().cpu().numpy()
        if not isinstance(markers, np.ndarray) or not np.issubdtype(markers.dtype, np.integer):
            raise TypeError("markers must be an integer torch.Tensor or numpy array (H, W)")
        if markers.shape != strength.shape:
            raise ValueError(f"markers must have the shape of contours {strength.shape}, got {markers.shape}")
        if not (markers > 0).any():
            raise ValueError("markers must mark at least one seed (a value > 0)")
    relief = strength
    if sigma > 0:
        relief = require("scipy.ndimage", "contour_ucm").gaussian_filter(strength, sigma, mode="nearest")
    regions = watershed(relief, markers=markers, connectivity=1)
    regions = compact_ids(regions.astype(np.int64) - 1)  # watershed labels every pixel 1..R
    num_regions = int(regions.max()) + 1

    agreement = None
    if (oriented or thin) and min(H, W) >= 2:  # edge_orientation needs a 2-D neighbourhood
        as_tensor = torch.from_numpy(strength)
        normal = edge_orientation(as_tensor)
        if thin:
            ridges = edge_nms(as_tensor, normal, border=0)
            strength = F.max_pool2d(ridges[None, None], 3, stride=1, padding=1)[0, 0].numpy()
        if oriented:
            agreement = _arc_agreement(regions, normal)
    h_strength, v_strength = _pair_strengths(strength, agreement)

    # Boundary pixel pairs between different regions, with their strength.
    left, right = regions[:, :-1], regions[:, 1:]
    up, down = regions[:-1, :], regions[1:, :]
    h_cut, v_cut = left != right, up != down
    a = np.concatenate([left[h_cut], up[v_cut]])
    b = np.concatenate([right[h_cut], down[v_cut]])
    s = np.concatenate([h_strength[h_cut], v_strength[v_cut]])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keys, pair_of_pixel = np.unique(lo * num_regions + hi, return_inverse=True)
    pair_of_pixel = pair_of_pixel.reshape(-1)
    sums = np.bincount(pair_of_pixel, weights=s, minlength=keys.size)
    counts = np.bincount(pair_of_pixel, minlength=keys.size)
    levels = _merge_levels(num_regions, keys // num_regions, keys % num_regions, sums, counts)
    if normalize and levels.size and levels.max() > 0:
        levels = levels / levels.max()
    elif exponent:
        levels = np.ldexp(levels, exponent)  # each level <= max(contours), so finite

    pixel_levels = levels[pair_of_pixel]
    n_h = int(h_cut.sum())
    horizontal = np.zeros((H, W - 1))
    horizontal[h_cut] = pixel_levels[:n_h]
    vertical = np.zeros((H - 1, W))
    vertical[v_cut] = pixel_levels[n_h:]
    return torch.from_numpy(_ucm2_from_edges(horizontal, vertical))


def image_ucm(image: torch.Tensor, *, sigma: float = 2.0, markers: Optional[ArrayLike] = None,
              normalize: bool = True) -> torch.Tensor:
    """:func:`contour_ucm` of the :func:`edge_strength` (Sobel magnitude) of ``image``.

    The default ``sigma=2`` scored better than 1 on BSDS500 val images (segmentation covering
    0.43 vs 0.38 at the best common threshold on 5 images) and gives fewer initial regions.
    """
    return contour_ucm(edge_strength(image, sigma=sigma), markers=markers, normalize=normalize)


def ucm_components(ucm2: np.ndarray, threshold: float) -> np.ndarray:
    """The official region benchmark's ``bwlabel(ucm2 <= threshold)`` (8-connected) on the
    full-resolution ``(2H+1, 2W+1)`` map, sampled at the pixel centres: ``(H, W)`` labels
    1..N; the values are not checked (the checked, compact form is :func:`ucm_to_labels`)."""
    ndimage = require("scipy.ndimage", "ucm_components")
    if not isinstance(ucm2, np.ndarray) or ucm2.ndim != 2:
        raise TypeError(f"ucm2 must be a 2-D numpy array (2H+1, 2W+1), got "
                        f"{getattr(ucm2, 'shape', type(ucm2).__name__)}")
    threshold = check.number(threshold, "threshold")
    labels, _ = ndimage.label(ucm2 <= threshold, structure=np.ones((3, 3), dtype=bool))
    return labels[1::2, 1::2]


def ucm_to_labels(ucm2: ArrayLike, threshold: Optional[float] = None, *,
                  num_segments: Optional[int] = None) -> torch.Tensor:
    """Regions of an ultrametric contour map at one level, chosen by ``threshold`` or by
    ``num_segments`` (exactly one).

    Args:
        ucm2: ``(2H+1, 2W+1)`` map (torch or numpy), e.g. from :func:`contour_ucm` or a BSDS
            ``ucm2/*.mat`` file.
        threshold: boundaries with strength ``<= threshold`` are removed (as the BSDS
            benchmark's ``bwlabel(ucm2 <= t)``).
        num_segments: instead, the finest level of the hierarchy with at most this many
            regions (the whole image when even one boundary is too many).

    Returns:
        int64 ``(H, W)`` region ids, compact ``[0, S)`` in raster order of first appearance.
    """
    ucm = _contour_array(ucm2, "ucm2")
    if ucm.shape[0] < 3 or ucm.shape[1] < 3 or ucm.shape[0] % 2 == 0 or ucm.shape[1] % 2 == 0:
        raise ValueError(f"ucm2 must have shape (2H+1, 2W+1) with H, W >= 1, got {ucm.shape}")
    if (threshold is None) == (num_segments is None):
        raise ValueError("pass exactly one of threshold and num_segments")
    if threshold is not None:
        threshold = check.number(threshold, "threshold", minimum=0.0)
        labels = ucm_components(ucm, threshold)
    else:
        num_segments = check.positive_int(num_segments, "num_segments")
        # The number of regions falls as the threshold rises through the map's levels:
        # bisect for the lowest level that leaves at most num_segments.
        levels = np.unique(ucm)
        low, high = 0, levels.size - 1  # the highest level leaves one region
        while low < high:
            middle = (low + high) // 2
            if ucm_components(ucm, levels[middle]).max() <= num_segments:
                high = middle
            else:
                low = middle + 1
        labels = ucm_components(ucm, levels[low])
    return torch.from_numpy(compact_ids(labels.astype(np.int64) - 1))
