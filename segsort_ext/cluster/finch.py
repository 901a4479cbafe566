"""FINCH (Sarfraz et al., CVPR 2019): parameter-free hierarchical clustering of prototypes
by first-neighbour links, with the neighbour searches of :class:`SegmentIndex`."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from segsort_ext.retrieval import SegmentIndex
from segsort_ext.retrieval.backend import unit_rows
from segsort_ext.utils import checks as check
from segsort_ext.utils.optional import require

__all__ = ["finch"]


def _first_neighbours(points: torch.Tensor, metric: str, backend: str,
                      index: Optional[SegmentIndex] = None) -> torch.Tensor:
    """(n,) int64: each row's nearest other row (cosine similarity, or Euclidean distance).

    Euclidean runs on the inner-product index through the identity
    argmin_j |x - y_j|^2 = argmax_j (x . y_j - |y_j|^2 / 2): bank rows [y, -|y|^2/2],
    query rows [x, 1], on centred rows scaled by a power of two (exact) to entries below 1,
    so squared norms cannot overflow. In float32 (faiss) distances much smaller than the
    spread of the data (relative 1e-7 of the squared norms) are not resolved."""
    num_points = points.shape[0]
    if index is not None:
        neighbours = index.search(points, 2)[1]
    else:
        if metric == "cosine":
            bank = unit_rows(points)
            queries = bank
        else:
            # Centring first keeps |y|^2 small: the identity loses precision relative to
            # the squared norms (as does faiss' own L2 search, which uses it too).
            points = torch.ldexp(points, -torch.frexp(points.abs().amax())[1])
            points = points - points.mean(dim=0, keepdim=True)
            squared_norms = (points * points).sum(dim=1, keepdim=True)
            bank = torch.cat([points, -0.5 * squared_norms], dim=1)
            queries = torch.cat([points, torch.ones_like(squared_norms)], dim=1)
        level_index = SegmentIndex(bank.shape[1], metric="ip", device=points.device, backend=backend)
        level_index.add(bank, torch.zeros(num_points, dtype=torch.int64, device=points.device))
        neighbours = level_index.search(queries, 2)[1]
    # The best match of a row is normally itself; with duplicates it may be its twin (ties
    # go to the lower id), so take the first of the two that is not the row itself.
    own = torch.arange(num_points, device=neighbours.device)
    return torch.where(neighbours[:, 0] != own, neighbours[:, 0], neighbours[:, 1])


def _first_neighbour_components(first: torch.Tensor) -> tuple[np.ndarray, int]:
    """Connected components of FINCH's adjacency: i ~ j when j is i's first neighbour, i is
    j's, or both share one. The last case adds no connectivity beyond the first two (i and j
    both link to their shared neighbour), so the components are those of the undirected
    graph with the n edges {i, first[i]}. Components are numbered by their lowest row."""
    sparse = require("scipy.sparse", "finch")
    csgraph = require("scipy.sparse.csgraph", "finch")

    num_points = first.shape[0]
    targets = first.cpu().numpy()
    graph = sparse.coo_matrix((np.ones(num_points, dtype=np.int8), (np.arange(num_points), targets)),
                       shape=(num_points, num_points))
    num_components, labels = csgraph.connected_components(graph, directed=False)
    _, first_row = np.unique(labels, return_index=True)  # renumber by lowest member row
    renumber = np.empty(num_components, dtype=np.int64)
    renumber[np.argsort(first_row, kind="stable")] = np.arange(num_components)
    return renumber[labels], num_components


def finch(x: torch.Tensor, *, metric: str = "cosine", max_levels: Optional[int] = None,
          index: Optional[SegmentIndex] = None, backend: str = "auto") -> list[torch.Tensor]:
    """FINCH clustering (Sarfraz et al., CVPR 2019): a parameter-free hierarchy of
    partitions from first-neighbour relations.

    Level 1 links every row to its first (nearest other) neighbour and takes the connected
    components of the symmetric first-neighbour graph (i ~ j if j is i's first neighbour, i
    is j's, or they share one). Each next level does the same on the means of the previous
    level's clusters (means of the member rows of x) and merges clusters accordingly.
    Every cluster of a level has at least two members of the level below, so each level has
    at most half as many clusters as the one before: levels get strictly coarser.

    Args:
        x: (M, D) finite float rows (e.g. segment prototypes); NaN or inf is an error (a
            row without a position has no first neighbour, and would be every row's).
        metric: ``'cosine'`` (rows and means are L2-normalised before comparing) or
            ``'euclidean'``.
        max_levels: stop after this many partitions (None: until one cluster remains).
        index: optional :class:`SegmentIndex` already holding exactly the rows of x in
            order (e.g. the retrieval bank), used for the first and largest neighbour
            search instead of building a new index. It must be exact (no ``ivf_nlist``: an
            approximate search may miss the first neighbour), its metric ``'cosine'`` (or
            ``'ip'`` over unit rows), and ``metric`` must be ``'cosine'``.
        backend: SegmentIndex backend for the neighbour searches that finch builds itself.

    Returns:
        list of (M,) int64 label tensors on x's device, finest first. Cluster ids of each
        level are compact and numbered in order of their lowest row. The last partition
        may be a single cluster. M == 0 gives []; M == 1 gives [tensor([0])].
        Components are found on the host (scipy), one (n,) copy per level.
    """
    x = check.float_tensor(x, "x")
    if x.dim() != 2 or (x.shape[1] < 1 and x.shape[0] > 0):
        raise ValueError(f"x must have shape (M, D) with D >= 1, got {tuple(x.shape)}")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    if max_levels is not None:
        max_levels = check.positive_int(max_levels, "max_levels")
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
    if x.device.type == "meta":
        raise ValueError("x is on the meta device: it holds no data")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must be finite, found NaN or infinite entries")
    num_rows = x.shape[0]
    if index is not None:
        if not isinstance(index, SegmentIndex):
            raise TypeError(f"index must be a SegmentIndex, got {type(index).__name__}")
        if metric != "cosine":
            raise ValueError("index can only serve metric='cosine' (it searches by inner product)")
        if index.is_sharded:
            raise ValueError("index must not be a sharded (distributed) SegmentIndex: finch runs on one process")
        if not index.is_exact:
            raise ValueError("index must be exact (an IVF index, ivf_nlist, may miss first neighbours)")
        if index.dim != x.shape[1] or len(index) != num_rows:
            raise ValueError(f"index must hold exactly the rows of x ({num_rows} x {x.shape[1]}), "
                             f"holds {len(index)} x {index.dim}")
    if num_rows == 0:
        return []
    if num_rows == 1:
        return [torch.zeros(1, dtype=torch.int64, device=x.device)]

    x = x.detach()
    data = unit_rows(x) if metric == "cosine" else x
    partitions: list[torch.Tensor] = []
    level_points = data
    membership = None  # (M,) cluster of every row at the current level, as a numpy array
    while level_points.shape[0] > 1 and (max_levels is None or len(partitions) < max_levels):
        first = _first_neighbours(level_points, metric, backend, index if membership is None else None)
        level_labels, num_clusters = _first_neighbour_components(first)
        membership = level_labels if membership is None else level_labels[membership]
        partitions.append(torch.from_numpy(membership.copy()).to(x.device))
        if num_clusters == 1:
            break
        # means over the member rows of x (not means of means); for cosine the direction is
        # all that matters, and the normalisation happens in the next neighbour search
        cluster = partitions[-1]
        sums = data.new_zeros(num_clusters, data.shape[1]).index_add_(0, cluster, data)
        sizes = torch.bincount(cluster, minlength=num_clusters).to(data.dtype)
        level_points = sums / sizes[:, None]
    return partitions
