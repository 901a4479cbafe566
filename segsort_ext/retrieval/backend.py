"""What :class:`~segsort_ext.retrieval.SegmentIndex` asks of a search backend, and the
neighbour order every backend returns.

A backend stores vectors only; labels, provenance and ids belong to the index (row ids
are insertion order, which every backend keeps). Backends: :class:`TorchBackend`
(``torch_backend``), :class:`FaissFlatBackend` and :class:`FaissIVFBackend`
(``faiss_backend``); :func:`~segsort_ext.retrieval.sharded.search_shards` runs any of
them as one shard of an index spread over a process group. Also the row normalisation of
the ``'cosine'`` metric (:func:`unit_rows`).
"""
from __future__ import annotations

from typing import Optional, Protocol

import torch
import torch.nn.functional as F

from segsort_ext.utils.constants import NORM_EPS

__all__ = ["Backend", "canonical_order", "gather_rows", "unit_rows"]


class Backend(Protocol):
    kind: str  # 'torch', 'faiss-cpu' or 'faiss-gpu': SegmentIndex.backend
    device: torch.device  # where the vectors live and search results are returned
    dtype: torch.dtype  # of the stored vectors and of the scores search returns
    max_k: Optional[int]  # the largest k search supports (None: any k <= rows)

    def add(self, vectors: torch.Tensor) -> None:
        """Appends (M, D) float rows (copied: the caller may reuse its tensor)."""

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, ids) of the k largest inner products of (Q >= 1, D) queries, in
        :func:`canonical_order`, on ``device``; id -1 and score -inf where an approximate
        index found fewer than k. 1 <= k <= rows added."""

    def state(self) -> dict[str, torch.Tensor]:
        """The stored vectors as the fields of SegmentIndex's file: ``{"vectors": (M, D)}``
        (exact search) or ``{"faiss_ivf": serialised index}`` (nothing before an IVF index
        is trained), on the host."""

    def load_state(self, state: dict, num_rows: int) -> None:
        """Restores what :meth:`state` wrote (``num_rows`` rows), into a new, empty
        backend. ``index_file`` has checked the common fields; a backend checks its own
        (ValueError ``field X ...``)."""


def canonical_order(scores: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorders each row of (scores, ids) by score descending, then id ascending."""
    ids_sorted, perm = ids.sort(dim=1)
    scores_sorted = scores.gather(1, perm)
    scores_out, perm = scores_sorted.sort(dim=1, descending=True, stable=True)
    return scores_out, ids_sorted.gather(1, perm)


def gather_rows(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """values[ids] of per-row values (M, ...) for (Q, k) ids, -1 where the id is -1 (a
    neighbour an approximate index did not find)."""
    found = (ids >= 0).view(*ids.shape, *(1,) * (values.dim() - 1))
    return values[ids.clamp_min(0)].masked_fill(~found, -1)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """``F.normalize(x, dim=1)`` of (N, D) rows without overflow or underflow: each row is
    first scaled by a power of two (exact) to a largest entry in [0.5, 1), so float32 rows
    of 1e20 or 1e-30 keep their direction instead of becoming 0 (the norm would overflow
    to inf or underflow to 0). Bit-identical to F.normalize otherwise. Half precision is
    normalised in float32 (NORM_EPS underflows to 0 in float16: a zero row gave 0 / 0)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    exponent = torch.frexp(x.abs().amax(dim=1, keepdim=True))[1]
    return F.normalize(torch.ldexp(x, -exponent), dim=1, eps=NORM_EPS)
