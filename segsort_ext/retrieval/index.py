"""Segment retrieval: k-nearest-neighbour search over a bank of training-set segment
prototypes (SegSort's inference by kNN voting), and FINCH clustering of prototypes.

:class:`SegmentIndex` keeps the prototypes, their class labels and their provenance
(image id, segment id) and answers ``search`` / ``vote`` / ``explain``. It runs on one of
three exact backends that return the same neighbours:

- ``faiss-gpu``: ``faiss.GpuIndexFlatIP``; CUDA tensors go to faiss through
  ``faiss.contrib.torch_utils`` (no host copies). Used when faiss sees a GPU and the
  index lives on CUDA.
- ``faiss-cpu``: ``faiss.IndexFlatIP`` on host memory.
- ``torch``: blocked ``matmul`` + ``topk`` (query blocks x bank blocks, merging a running
  top-k), so memory stays bounded by one block of scores for banks of millions of rows.

and, optionally, an approximate faiss ``IndexIVFFlat`` (``ivf_nlist``) for banks too large
to scan exhaustively.

With ``distributed=True`` under torch.distributed the index is sharded: each rank adds
its own rows, and search / explain / vote are collectives that search every shard and
merge the per-shard top-k, giving the neighbours one index over the rank-order
concatenation of the shards would give.

Neighbour order (all exact backends): by score descending, then by row id ascending. The
torch backend selects and orders exact ties by that rule. faiss orders ties as it pleases
(faiss CPU lists equal scores by descending id, and when a group of equal scores straddles
the k-th place it keeps an arbitrary subset of it); this module re-sorts what faiss returns
by the rule above, so the backends can differ only in *which* members of a group of exactly
equal scores at the k-th place are kept, never in scores or in order. Exact ties come from
duplicated prototypes or quantised data; network embeddings practically never tie.
"""
from __future__ import annotations

import contextlib
import os
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from segsort_ext.utils import checks as check
from segsort_ext.utils import distributed as dist_utils
from segsort_ext.utils.constants import NORM_EPS

__all__ = ["SegmentIndex", "Neighbours"]

_FAISS_GPU_MAX_K = 2048  # faiss' GPU k-selection handles k (and IVF nprobe) up to this
_SAVE_FORMAT = "segsort_ext.SegmentIndex"
_SAVE_VERSION = 1

_faiss_module = None
_faiss_checked = False


def _faiss():
    """The faiss module, or None where it is not installed (imported once, lazily: the
    import costs a few hundred milliseconds that users of other ops should not pay)."""
    global _faiss_module, _faiss_checked
    if not _faiss_checked:
        _faiss_checked = True
        try:
            import faiss

            _faiss_module = faiss
        except ImportError:
            _faiss_module = None
    return _faiss_module


_GPU_RESOURCES: dict[int, object] = {}


def _faiss_gpu_resources(gpu: int):
    """One faiss.StandardGpuResources per GPU, shared by every index on it: each one
    reserves its own scratch memory and streams, so one per index (or per FINCH level)
    would waste both."""
    if gpu not in _GPU_RESOURCES:
        _GPU_RESOURCES[gpu] = _faiss().StandardGpuResources()
    return _GPU_RESOURCES[gpu]


def _faiss_gpu_count() -> int:
    faiss = _faiss()
    if faiss is None or not hasattr(faiss, "get_num_gpus"):
        return 0
    return int(faiss.get_num_gpus())


class Neighbours(NamedTuple):
    """Result of :meth:`SegmentIndex.explain`: the k retrieved neighbours of every query,
    best first. All fields are (Q, k); ids are -1 (and scores -inf, provenance -1) where an
    approximate (IVF) index found fewer than k neighbours."""

    scores: torch.Tensor  # (Q, k) float inner products
    ids: torch.Tensor  # (Q, k) int64 row of each neighbour, in insertion order of add()
    labels: torch.Tensor  # (Q, k) int64 class label of each neighbour
    image_ids: torch.Tensor  # (Q, k) int64 image each neighbour came from (-1: not given)
    segment_ids: torch.Tensor  # (Q, k) int64 segment id within its image (-1: not given)


# --------------------------------------------------------------------------------------
# exact top-k by blocked matmul (the torch backend)
# --------------------------------------------------------------------------------------

def _canonical_order(scores: torch.Tensor, ids: torch.Tensor):
    """Reorders each row of (scores, ids) by score descending, then id ascending."""
    ids_sorted, perm = ids.sort(dim=1)
    scores_sorted = scores.gather(1, perm)
    scores_out, perm = scores_sorted.sort(dim=1, descending=True, stable=True)
    return scores_out, ids_sorted.gather(1, perm)


def _block_topk(block_scores: torch.Tensor, k: int, exact_ties: bool):
    """Top min(k, b) columns of each row of a (q, b) score block, in canonical order
    (score desc, column asc), and a (q,) bool flag of the rows whose selection may be
    wrong because a group of equal scores straddles the k-th place.

    The fast path (exact_ties=False) uses topk, which picks an arbitrary subset of such a
    tie group; asking it for one more column than needed tells us cheaply (without another
    pass over the block) whether that happened: the group straddles the boundary exactly
    when the (k+1)-th value equals the k-th. Flagged rows are recomputed with
    exact_ties=True, a stable sort of the whole row."""
    b = block_scores.shape[1]
    kk = min(k, b)
    if exact_ties:
        values, cols = block_scores.sort(dim=1, descending=True, stable=True)
        return values[:, :kk], cols[:, :kk], None
    values, cols = block_scores.topk(min(kk + 1, b), dim=1)
    if kk < b:
        straddles = values[:, kk - 1] == values[:, kk]
        values, cols = values[:, :kk], cols[:, :kk]
    else:
        straddles = torch.zeros(values.shape[0], dtype=torch.bool, device=values.device)
    values, cols = _canonical_order(values, cols)
    return values, cols, straddles


def _scan_bank(queries: torch.Tensor, bank: torch.Tensor, k: int, bank_rows: int, exact_ties: bool):
    """Top-k of queries (q, D) against the whole bank (M, D), one bank block at a time.

    Bank blocks are visited in ascending row order, so every id in the running top-k is
    smaller than every id of the block being merged: concatenating [running, block] (each
    canonical) and stable-sorting by score keeps id-ascending order among equal scores."""
    best_scores = queries.new_empty(queries.shape[0], 0)
    best_ids = torch.empty(queries.shape[0], 0, dtype=torch.int64, device=queries.device)
    any_straddles = torch.zeros(queries.shape[0], dtype=torch.bool, device=queries.device)
    for start in range(0, bank.shape[0], bank_rows):
        block = queries @ bank[start:start + bank_rows].T
        values, cols, straddles = _block_topk(block, k, exact_ties)
        if straddles is not None:
            any_straddles |= straddles
        merged_scores = torch.cat([best_scores, values], dim=1)
        merged_ids = torch.cat([best_ids, cols + start], dim=1)
        if merged_scores.shape[1] > k:
            merged_scores, order = merged_scores.sort(dim=1, descending=True, stable=True)
            best_scores = merged_scores[:, :k]
            best_ids = merged_ids.gather(1, order[:, :k])
        else:  # still fewer than k candidates: nothing to drop, only to order
            best_scores, best_ids = _canonical_order(merged_scores, merged_ids)
    return best_scores, best_ids, any_straddles


def _default_blocks(num_queries: int, device: torch.device) -> tuple[int, int]:
    """(query rows, bank rows) per block. On CPU a 16k-row bank block keeps the (q, b)
    scores near cache size (measured fastest for q=200, D=64); on CUDA kernel launches
    dominate, so blocks are as large as a 256 MiB float32 score matrix allows."""
    if device.type == "cuda":
        query_rows = max(1, min(num_queries, 4096))
        return query_rows, max(16384, (1 << 26) // query_rows)
    return 1024, 16384


def _exact_search_torch(queries: torch.Tensor, bank: torch.Tensor, k: int,
                        search_block: Optional[tuple[int, int]]):
    """Exact top-k inner products of queries (Q, D) over bank (M, D), canonical order.
    Memory: one (query rows, bank rows) score block at a time."""
    num_queries = queries.shape[0]
    query_rows, bank_rows = search_block or _default_blocks(num_queries, bank.device)
    scores = queries.new_empty(num_queries, k)
    ids = torch.empty(num_queries, k, dtype=torch.int64, device=queries.device)
    for start in range(0, num_queries, query_rows):
        chunk = queries[start:start + query_rows]
        chunk_scores, chunk_ids, straddles = _scan_bank(chunk, bank, k, bank_rows, exact_ties=False)
        # One host sync per query block (not per bank block): rows where a tie group
        # straddled the k-th place in some bank block are redone with exact tie handling.
        if bool(straddles.any()):
            rows = straddles.nonzero().squeeze(1)
            fixed_scores, fixed_ids, _ = _scan_bank(chunk[rows], bank, k, bank_rows, exact_ties=True)
            chunk_scores[rows] = fixed_scores
            chunk_ids[rows] = fixed_ids
        scores[start:start + query_rows] = chunk_scores
        ids[start:start + query_rows] = chunk_ids
    return scores, ids


# --------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------

def _rows(x, name: str, dim: int) -> torch.Tensor:
    check.float_tensor(x, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D) = (N, {dim}), got {tuple(x.shape)}")
    if x.shape[1] != dim:
        raise ValueError(f"{name} must have D = {dim} columns (the index dim), got shape {tuple(x.shape)}")
    return x


def _per_row_ids(value, name: str, num_rows: int, like: torch.Tensor) -> Optional[torch.Tensor]:
    if value is None:
        return None
    check.int64_tensor(value, name)
    check.same_device(like, "prototypes", value, name)
    if tuple(value.shape) != (num_rows,):
        raise ValueError(f"{name} must have shape (M,) = ({num_rows},) to match prototypes, "
                         f"got {tuple(value.shape)}")
    return value


# --------------------------------------------------------------------------------------
# SegmentIndex
# --------------------------------------------------------------------------------------

class SegmentIndex:
    """kNN index over segment prototypes, with a class label and provenance per row.

    Args:
        dim: D, the prototype dimension.
        metric: ``'ip'``: inner product of the vectors as given (SegSort's prototypes are
            already unit vectors, so this is cosine similarity). ``'cosine'``: prototypes and
            queries are L2-normalised (eps 1e-12) first.
        device: where the bank lives; None: the device of the first ``add``. Results are
            returned on the device of the queries.
        backend: ``'auto'``: faiss on a GPU when faiss sees one and the index is on CUDA,
            faiss on the CPU for a CPU index, torch on CUDA when faiss has no GPU (a host
            round trip per search would cost more than the exact matmul), torch when faiss
            is not installed. ``'faiss'``: faiss (GPU index when possible, else CPU index,
            copying CUDA queries to the host); ImportError without faiss. ``'torch'``:
            exact blocked matmul + topk on ``device``.
        ivf_nlist: None (exact search), or the number of inverted lists of an approximate
            faiss ``IndexIVFFlat``. It is trained (k-means on the inner product) by
            :meth:`train`, or on the first ``add`` call's prototypes, which must then hold
            at least ``ivf_nlist`` rows (faiss wants ~40 per list for good centroids).
        ivf_nprobe: lists visited per query (speed/recall trade-off; settable later via
            :attr:`nprobe`). Default 16 (capped at ivf_nlist).
        search_block: (query rows, bank rows) of one score block of the torch backend;
            None picks (1024, 16384) on CPU and blocks of up to 2**26 scores on CUDA.
        distributed: shard the index over the ranks of torch.distributed (see below).
            Without an initialised process group this is the single-process index.
        process_group: the group the shards live in (None: the default group).

    Sharded (``distributed=True``): :meth:`add`, ``len()``, :attr:`labels` and the other
    row attributes, :meth:`save` and :meth:`load` are per shard (local rows, local ids,
    no communication). :meth:`search`, :meth:`explain` and :meth:`vote` are collectives:
    every rank passes its own queries (any number, also none, of one dtype on all
    ranks); the queries of all ranks are all-gathered, each rank searches its shard for
    all of them, the per-shard top-k lists (scores, ids, labels, provenance) are
    all-gathered, and each rank merges the lists of its own queries by the same rule
    (score descending, id ascending). Returned ids are *global*: a row's id is its local
    id plus the number of rows of the ranks before it, i.e. its row in the rank-order
    concatenation of the shards, so the results equal those of one index holding that
    concatenation (same caveat on faiss' choice among exact ties at the k-th place).
    k is bounded by the total number of rows; ``vote``'s default ``num_classes`` is
    1 + the largest label of any shard. Shards must use the same metric and backend.
    Communication per search: O(world * Q_total * k) for the lists, plus the queries.

    Rows are numbered in insertion order across ``add`` calls; ``ids`` returned by
    :meth:`search` index that order, as do :attr:`labels`, :attr:`image_ids` and
    :attr:`segment_ids`.

    Storage: faiss stores float32; the torch backend stores float32, or float64 when the
    first prototypes added are float64. Provenance is kept as int64 tensors on the index
    device and round-trips exactly through :meth:`save` / :meth:`load`.

    k larger than ``len(index)`` is an error (not clamped): a silent clamp would change what
    ``vote(k=21)`` means without telling anyone.

    NaN in prototypes or queries gives unspecified neighbours for the rows concerned.
    """

    def __init__(self, dim: int, *, metric: str = "ip", device: Union[str, torch.device, None] = None,
                 backend: str = "auto", ivf_nlist: Optional[int] = None, ivf_nprobe: int = 16,
                 search_block: Optional[Sequence[int]] = None, distributed: bool = False, process_group=None):
        self._dim = check.positive_int(dim, "dim")
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be a bool, got {type(distributed).__name__}")
        dist_utils.check_process_group(process_group)
        self._distributed = distributed
        self._process_group = process_group
        if metric not in ("ip", "cosine"):
            raise ValueError(f"metric must be 'ip' or 'cosine', got {metric!r}")
        if backend not in ("auto", "faiss", "torch"):
            raise ValueError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
        if backend == "faiss" and _faiss() is None:
            raise ImportError("backend='faiss' needs the faiss package (pip install faiss-gpu or faiss-cpu)")
        if ivf_nlist is not None:
            ivf_nlist = check.positive_int(ivf_nlist, "ivf_nlist")
            if backend == "torch":
                raise ValueError("ivf_nlist needs a faiss backend; backend='torch' is exact search only")
            if _faiss() is None:
                raise ImportError("ivf_nlist (an IndexIVFFlat) needs the faiss package")
        ivf_nprobe = check.positive_int(ivf_nprobe, "ivf_nprobe")
        if search_block is not None:
            if len(search_block) != 2:
                raise ValueError(f"search_block must be (query rows, bank rows), got {search_block!r}")
            search_block = (check.positive_int(search_block[0], "search_block[0]"),
                            check.positive_int(search_block[1], "search_block[1]"))
        self._metric = metric
        self._backend_request = backend
        self._ivf_nlist = ivf_nlist
        self._ivf_nprobe = ivf_nprobe
        self._search_block = search_block
        self._requested_device = torch.device(device) if device is not None else None

        self._kind: Optional[str] = None  # 'torch' | 'faiss-cpu' | 'faiss-gpu', set by _open
        self._device: Optional[torch.device] = None  # where vectors and provenance live
        self._faiss_index = None
        self._gpu_resources = None  # faiss.StandardGpuResources, must outlive the index
        self._dtype = torch.float32
        self._size = 0
        # Added rows wait in these lists and are concatenated once, at the next search,
        # so many small add() calls cost O(M) copying, not O(M^2).
        self._pending: dict[str, list[torch.Tensor]] = {
            name: [] for name in ("vectors", "labels", "image_ids", "segment_ids")}
        self._vectors: Optional[torch.Tensor] = None  # torch backend only
        self._labels = torch.empty(0, dtype=torch.int64)
        self._image_ids = torch.empty(0, dtype=torch.int64)
        self._segment_ids = torch.empty(0, dtype=torch.int64)
        self._max_label = -1

    # ---- properties -------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def backend(self) -> Optional[str]:
        """'torch', 'faiss-cpu' or 'faiss-gpu' once the index has a device, else None."""
        return self._kind

    @property
    def device(self) -> Optional[torch.device]:
        """Where the vectors and provenance are stored (None before the first add)."""
        return self._device

    @property
    def is_exact(self) -> bool:
        return self._ivf_nlist is None

    @property
    def nprobe(self) -> int:
        return self._ivf_nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._ivf_nprobe = check.positive_int(value, "nprobe")
        self._apply_nprobe()

    @property
    def labels(self) -> torch.Tensor:
        """(M,) int64 class label of every row."""
        self._consolidate()
        return self._labels

    @property
    def image_ids(self) -> torch.Tensor:
        """(M,) int64 image of every row (-1 where add() was given none)."""
        self._consolidate()
        return self._image_ids

    @property
    def segment_ids(self) -> torch.Tensor:
        """(M,) int64 segment id of every row (-1 where add() was given none)."""
        self._consolidate()
        return self._segment_ids

    def __len__(self) -> int:
        """Rows of this index (of this rank's shard when sharded)."""
        return self._size

    @property
    def is_sharded(self) -> bool:
        """True when searches are collectives over the shards of a process group
        (``distributed=True`` with torch.distributed initialised)."""
        return self._group() is not None

    def __repr__(self) -> str:
        ivf = f", ivf_nlist={self._ivf_nlist}, nprobe={self._ivf_nprobe}" if self._ivf_nlist else ""
        return (f"SegmentIndex(dim={self._dim}, metric={self._metric!r}, size={self._size}, "
                f"backend={self._kind or self._backend_request!r}, device={self._device}{ivf}"
                + (", distributed=True" if self._distributed else "") + ")")

    # ---- backend set-up ---------------------------------------------------------------

    def _open(self, device: torch.device) -> None:
        """Chooses the backend for data on `device` and creates the (empty) faiss index."""
        on_cuda = device.type == "cuda"
        if self._backend_request == "torch" or (self._backend_request == "auto" and _faiss() is None):
            self._kind, self._device = "torch", device
            return  # without importing faiss: backend='torch' works where faiss is absent
        faiss = _faiss()
        faiss_gpu = on_cuda and _faiss_gpu_count() > 0
        if self._backend_request == "faiss" or self._ivf_nlist is not None:
            kind = "faiss-gpu" if faiss_gpu else "faiss-cpu"
        else:  # auto with faiss installed
            kind = "faiss-gpu" if faiss_gpu else ("torch" if on_cuda else "faiss-cpu")
        self._kind = kind
        self._device = torch.device("cpu") if kind == "faiss-cpu" else device
        if kind == "torch":
            return
        if kind == "faiss-gpu":
            import faiss.contrib.torch_utils  # noqa: F401  (lets faiss take torch CUDA tensors)

            gpu = device.index if device.index is not None else torch.cuda.current_device()
            self._device = torch.device("cuda", gpu)
            self._gpu_resources = _faiss_gpu_resources(gpu)
            if self._ivf_nlist is None:
                config = faiss.GpuIndexFlatConfig()
                config.device = gpu
                self._faiss_index = faiss.GpuIndexFlatIP(self._gpu_resources, self._dim, config)
            else:
                config = faiss.GpuIndexIVFFlatConfig()
                config.device = gpu
                self._faiss_index = faiss.GpuIndexIVFFlat(self._gpu_resources, self._dim, self._ivf_nlist,
                                                          faiss.METRIC_INNER_PRODUCT, config)
        elif self._ivf_nlist is None:
            self._faiss_index = faiss.IndexFlatIP(self._dim)
        else:
            # faiss' Python wrapper keeps a reference to the quantizer for the index's lifetime
            quantizer = faiss.IndexFlatIP(self._dim)
            self._faiss_index = faiss.IndexIVFFlat(quantizer, self._dim, self._ivf_nlist, faiss.METRIC_INNER_PRODUCT)
        self._apply_nprobe()

    def _apply_nprobe(self) -> None:
        if self._faiss_index is not None and self._ivf_nlist is not None:
            nprobe = min(self._ivf_nprobe, self._ivf_nlist)
            if self._kind == "faiss-gpu":
                nprobe = min(nprobe, _FAISS_GPU_MAX_K)
            self._faiss_index.nprobe = nprobe

    def _on_faiss_gpu(self):
        """Makes the index's GPU current, so that torch_utils runs faiss on that device's
        current torch stream (ordered with the torch work around it, no extra syncs)."""
        return torch.cuda.device(self._device) if self._kind == "faiss-gpu" else contextlib.nullcontext()

    def _to_faiss(self, x: torch.Tensor):
        """float32 contiguous rows in the form the faiss index takes: the CUDA tensor itself
        for a GPU index (torch_utils passes its pointer), a numpy view for a CPU index."""
        x = x.to(self._device, torch.float32).contiguous()
        return x if self._kind == "faiss-gpu" else x.numpy()

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        if self._metric == "cosine":
            x = F.normalize(x, dim=1, eps=NORM_EPS)
        return x

    # ---- building ---------------------------------------------------------------------

    def train(self, prototypes: torch.Tensor) -> None:
        """Trains the IVF coarse quantizer on (N, D) float prototypes (N >= ivf_nlist). Only
        for an index created with ``ivf_nlist``; call before the first add, or let the first
        add train on its own prototypes."""
        if self._ivf_nlist is None:
            raise ValueError("train() is only for an IVF index (created with ivf_nlist)")
        _rows(prototypes, "prototypes", self._dim)
        if self._kind is None:
            self._open(self._requested_device or prototypes.device)
        if prototypes.shape[0] < self._ivf_nlist:
            raise ValueError(f"training an IVF index needs at least ivf_nlist = {self._ivf_nlist} prototypes, "
                             f"got {prototypes.shape[0]}")
        with self._on_faiss_gpu():
            self._faiss_index.train(self._to_faiss(self._prepare(prototypes)))

    def add(self, prototypes: torch.Tensor, labels: torch.Tensor, image_ids: Optional[torch.Tensor] = None,
            segment_ids: Optional[torch.Tensor] = None) -> None:
        """Appends M rows.

        Args:
            prototypes: (M, D) float prototypes (copied; any float dtype).
            labels: (M,) int64 class label of each row, >= 0.
            image_ids: optional (M,) int64 image each prototype came from (-1 if None).
            segment_ids: optional (M,) int64 id of the segment within its image (-1 if None).

        All on the device of ``prototypes``; they are copied to the index device. The new
        rows get ids ``len(self) .. len(self) + M - 1``. Checking ``labels >= 0`` costs one
        sync (it also records the largest label: vote's default num_classes). An untrained
        IVF index is trained on these prototypes first.
        """
        _rows(prototypes, "prototypes", self._dim)
        num_rows = prototypes.shape[0]
        check.int64_tensor(labels, "labels")
        check.same_device(prototypes, "prototypes", labels, "labels")
        if tuple(labels.shape) != (num_rows,):
            raise ValueError(f"labels must have shape (M,) = ({num_rows},) to match prototypes, "
                             f"got {tuple(labels.shape)}")
        image_ids = _per_row_ids(image_ids, "image_ids", num_rows, prototypes)
        segment_ids = _per_row_ids(segment_ids, "segment_ids", num_rows, prototypes)
        if num_rows:
            lowest, highest = (int(v) for v in torch.aminmax(labels))  # one sync for both
            if lowest < 0:
                raise ValueError(f"labels must be >= 0 (class labels), found {lowest}")
        if self._kind is None:
            self._open(self._requested_device or prototypes.device)
            if self._kind == "torch":
                self._dtype = torch.float64 if prototypes.dtype == torch.float64 else torch.float32
        if num_rows == 0:
            return
        vectors = self._prepare(prototypes)
        if self._kind == "torch":
            # copy=True: the bank must not alias a tensor the caller may change later
            self._pending["vectors"].append(vectors.to(self._device, self._dtype, copy=True).contiguous())
        else:
            if self._ivf_nlist is not None and not self._faiss_index.is_trained:
                self.train(prototypes)
            with self._on_faiss_gpu():
                self._faiss_index.add(self._to_faiss(vectors))
        self._max_label = max(self._max_label, highest)
        unknown = torch.full((num_rows,), -1, dtype=torch.int64, device=self._device)
        for name, values in (("labels", labels), ("image_ids", image_ids), ("segment_ids", segment_ids)):
            self._pending[name].append(unknown if values is None else values.to(self._device, copy=True))
        self._size += num_rows

    def _consolidate(self) -> None:
        """Concatenates the rows of pending add() calls onto the stored tensors."""
        if not self._pending["labels"]:
            return
        if self._kind == "torch":
            parts = ([self._vectors] if self._vectors is not None else []) + self._pending["vectors"]
            self._vectors = parts[0] if len(parts) == 1 else torch.cat(parts)
        for name in ("labels", "image_ids", "segment_ids"):
            stored = getattr(self, "_" + name).to(self._device)
            setattr(self, "_" + name, torch.cat([stored] + self._pending[name]))
        for parts in self._pending.values():
            parts.clear()

    # ---- queries ----------------------------------------------------------------------

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k rows with the largest inner product with each query.

        Args:
            queries: (Q, D) float, any device (copied to the index device if elsewhere).
            k: 1 <= k <= len(self) (sharded: the rows of all shards).

        Returns:
            scores (Q, k) float (float32; float64 for a float64 torch bank) and ids (Q, k)
            int64, best first: score descending, then row id ascending. On the device of
            the queries. An IVF index may find fewer than k: those places hold id -1, score
            -inf. Sharded: a collective; ids are global (see the class docstring).
        """
        _rows(queries, "queries", self._dim)
        k = check.positive_int(k, "k")
        group = self._group()
        if group is not None:
            neighbours, _ = self._search_sharded(queries, k, group)
            return neighbours.scores, neighbours.ids
        if self._size == 0:
            raise ValueError("search on an empty SegmentIndex: add() prototypes first")
        if k > self._size:
            raise ValueError(f"k = {k} is larger than the number of indexed prototypes ({self._size})")
        if self._kind == "faiss-gpu" and k > _FAISS_GPU_MAX_K:
            raise ValueError(f"k = {k} exceeds faiss' GPU limit of {_FAISS_GPU_MAX_K}; use backend='torch'")
        scores, ids = self._search_shard(queries, k)
        return scores.to(queries.device), ids.to(queries.device)

    def _group(self) -> Optional[dist_utils.Group]:
        return dist_utils.resolve_group(self._distributed, self._process_group)

    def _score_dtype(self) -> torch.dtype:
        return self._dtype if self._kind == "torch" else torch.float32

    def _search_shard(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k over this index's own rows (1 <= k <= len(self)), on the index device."""
        self._consolidate()
        queries = self._prepare(queries)
        if queries.shape[0] == 0:
            return (torch.empty(0, k, dtype=self._score_dtype(), device=self._device),
                    torch.empty(0, k, dtype=torch.int64, device=self._device))
        if self._kind == "torch":
            return _exact_search_torch(queries.to(self._device, self._dtype).contiguous(), self._vectors, k,
                                       self._search_block)
        with self._on_faiss_gpu():
            scores, ids = self._faiss_index.search(self._to_faiss(queries), k)
        scores, ids = torch.as_tensor(scores), torch.as_tensor(ids)
        if self._ivf_nlist is not None:  # faiss pads missing neighbours with id -1
            scores = scores.masked_fill(ids < 0, float("-inf"))
        return _canonical_order(scores, ids)

    def _search_sharded(self, queries: torch.Tensor, k: int,
                        group: dist_utils.Group) -> tuple[Neighbours, int]:
        """Neighbours of this rank's queries over all shards (a collective) and the
        largest label of any shard."""
        dtypes = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        if queries.dtype not in dtypes:
            raise TypeError(f"queries must be float16, bfloat16, float32 or float64, got {queries.dtype}")
        self._consolidate()
        local_k = min(k, self._size)
        too_large_for_gpu = self._kind == "faiss-gpu" and local_k > _FAISS_GPU_MAX_K
        # One exchange of everything every rank must agree on before searching, so that
        # a bad request fails on every rank alike (never one rank alone, which would hang).
        table = dist_utils.all_gather_counts(
            [self._size, self._max_label, queries.shape[0], dtypes.index(queries.dtype),
             int(self._score_dtype() == torch.float64), int(too_large_for_gpu)], group)
        sizes, total = table[:, 0], int(table[:, 0].sum())
        if total == 0:
            raise ValueError("search on an empty SegmentIndex: no shard holds prototypes, add() them first")
        if k > total:
            raise ValueError(f"k = {k} is larger than the number of indexed prototypes of all shards ({total})")
        if bool((table[:, 3] != table[0, 3]).any()):
            raise TypeError(f"queries must have one dtype on all ranks, got {[dtypes[i] for i in table[:, 3]]}")
        if bool(table[:, 5].any()):
            raise ValueError(f"k = {k} exceeds faiss' GPU limit of {_FAISS_GPU_MAX_K} on some shard; "
                             f"use backend='torch'")
        max_label = int(table[:, 1].max())
        score_dtype = torch.float64 if bool(table[:, 4].any()) else torch.float32
        query_counts = table[:, 2]
        out_device = queries.device
        work_device = self._device or out_device

        (all_queries,), _ = dist_utils.all_gather_rows([queries.detach()], group, query_counts)
        num_all = all_queries.shape[0]
        # This shard's candidates for every rank's queries, padded to k columns.
        scores = torch.full((num_all, k), float("-inf"), dtype=torch.float64, device=work_device)
        fields = torch.full((num_all, k, 4), -1, dtype=torch.int64, device=work_device)
        if local_k > 0 and num_all > 0:
            shard_scores, shard_ids = self._search_shard(all_queries, local_k)
            shard_ids = shard_ids.to(work_device)
            found = shard_ids >= 0
            offset = int(dist_utils.rank_offsets(sizes)[group.rank])
            scores[:, :local_k] = shard_scores.to(work_device, torch.float64)  # exact for float32 scores
            fields[:, :local_k, 0] = torch.where(found, shard_ids + offset, -1)
            for column, values in enumerate((self._labels, self._image_ids, self._segment_ids), 1):
                fields[:, :local_k, column] = self._gather(values, shard_ids)
        (all_scores, all_fields), _ = dist_utils.all_gather_rows(
            [scores, fields], group, torch.full((group.world_size,), num_all, dtype=torch.int64))
        # (world * num_all, ...) -> this rank's queries, every shard's k candidates in a row.
        start = int(dist_utils.rank_offsets(query_counts)[group.rank])
        mine = slice(start, start + queries.shape[0])
        candidate_scores = all_scores.view(group.world_size, num_all, k)[:, mine].permute(1, 0, 2)
        candidate_fields = all_fields.view(group.world_size, num_all, k, 4)[:, mine].permute(1, 0, 2, 3)
        candidate_scores = candidate_scores.reshape(queries.shape[0], group.world_size * k)
        candidate_fields = candidate_fields.reshape(queries.shape[0], group.world_size * k, 4)
        # Merge: score descending, then global id ascending (padding, id -1, goes last).
        ids = candidate_fields[..., 0]
        key = torch.where(ids < 0, torch.iinfo(torch.int64).max, ids)
        order = key.argsort(dim=1, stable=True)
        order = order.gather(1, candidate_scores.gather(1, order).argsort(dim=1, descending=True, stable=True))
        order = order[:, :k]
        merged_scores = candidate_scores.gather(1, order).to(score_dtype)
        merged = candidate_fields.gather(1, order.unsqueeze(2).expand(-1, -1, 4))
        neighbours = Neighbours(merged_scores.to(out_device),
                                *(merged[..., c].contiguous().to(out_device) for c in range(4)))
        return neighbours, max_label

    def _gather(self, values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """values[ids] with -1 where ids is -1 (on the device of ids)."""
        ids_here = ids.to(values.device)
        gathered = values[ids_here.clamp_min(0)].masked_fill(ids_here < 0, -1)
        return gathered.to(ids.device)

    def _neighbours(self, queries: torch.Tensor, k: int) -> tuple[Neighbours, int]:
        """Neighbours with labels and provenance, and the largest label (all shards)."""
        group = self._group()
        if group is not None:
            _rows(queries, "queries", self._dim)
            return self._search_sharded(queries, check.positive_int(k, "k"), group)
        scores, ids = self.search(queries, k)
        self._consolidate()
        return Neighbours(scores, ids, self._gather(self._labels, ids), self._gather(self._image_ids, ids),
                          self._gather(self._segment_ids, ids)), self._max_label

    def explain(self, queries: torch.Tensor, k: int) -> Neighbours:
        """:meth:`search` plus each neighbour's label and provenance: a :class:`Neighbours`
        of (Q, k) tensors (scores, ids, labels, image_ids, segment_ids) on the device of
        the queries. Sharded: a collective, with global ids."""
        return self._neighbours(queries, k)[0]

    def vote(self, queries: torch.Tensor, k: int = 21, *, weighting: str = "uniform",
             num_classes: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Classifies each query by the labels of its k nearest prototypes (SegSort's kNN
        inference, k=21).

        Args:
            queries: (Q, D) float.
            k: neighbours per query (1 <= k <= len(self); sharded: the total rows).
            weighting: ``'uniform'``: each neighbour adds 1 to its label's vote.
                ``'similarity'``: each adds its score (the inner product; with unit vectors
                in [-1, 1], so a dissimilar neighbour can lower its label's vote).
            num_classes: C; None: 1 + the largest label in the index (all shards).

        Returns:
            labels (Q,) int64: the label with the largest vote among the labels that occur
            in the neighbourhood (a label no neighbour has never wins, even when the
            similarity votes of the others are negative); ties go to the lowest label; -1
            where an IVF index found no neighbour. votes (Q, C) float (the score dtype):
            summed weights per class, 0 for absent classes. On the device of the queries.
            Sums run over neighbours in rank order, so votes are deterministic.
        """
        if weighting not in ("uniform", "similarity"):
            raise ValueError(f"weighting must be 'uniform' or 'similarity', got {weighting!r}")
        if num_classes is not None:
            num_classes = check.positive_int(num_classes, "num_classes")
        if self._group() is None and num_classes is not None and num_classes <= self._max_label:
            raise ValueError(f"num_classes = {num_classes} but the index holds label {self._max_label}")
        neighbours, max_label = self._neighbours(queries, k)
        # Sharded, the largest label is only known after the (collective) search; the
        # check then fails on every rank alike.
        if num_classes is None:
            num_classes = max_label + 1
        elif num_classes <= max_label:
            raise ValueError(f"num_classes = {num_classes} but the index holds label {max_label}")
        scores, neighbour_labels = neighbours.scores, neighbours.labels
        found = neighbour_labels >= 0
        weights = scores if weighting == "similarity" else torch.ones_like(scores)
        weights = weights.masked_fill(~found, 0)
        slots = neighbour_labels.clamp_min(0)
        num_queries = queries.shape[0]
        votes = scores.new_zeros(num_queries, num_classes)
        counts = torch.zeros(num_queries, num_classes, dtype=torch.int32, device=scores.device)
        # One scatter per rank: each writes one element per row, so no two additions meet in
        # the same cell within a call (deterministic even with CUDA atomics) and each row
        # sums its neighbours in rank order.
        for rank in range(k):
            votes.scatter_add_(1, slots[:, rank:rank + 1], weights[:, rank:rank + 1])
            counts.scatter_add_(1, slots[:, rank:rank + 1], found[:, rank:rank + 1].to(torch.int32))
        candidates = votes.masked_fill(counts == 0, float("-inf"))
        labels = candidates.argmax(dim=1)  # first maximum = lowest label among ties
        labels = labels.masked_fill(counts.sum(dim=1) == 0, -1)
        return labels, votes

    # ---- persistence ------------------------------------------------------------------

    def _flat_vectors(self) -> torch.Tensor:
        """(M, D) stored vectors of an exact index, on the CPU."""
        if self._kind == "torch":
            return self._vectors.cpu() if self._vectors is not None else torch.empty(0, self._dim, dtype=self._dtype)
        faiss = _faiss()
        index = faiss.index_gpu_to_cpu(self._faiss_index) if self._kind == "faiss-gpu" else self._faiss_index
        out = np.empty((index.ntotal, self._dim), dtype=np.float32)
        if index.ntotal:
            index.reconstruct_n(0, index.ntotal, out)  # a numpy buffer selects the numpy path
        return torch.from_numpy(out)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Writes the index to `path` (a torch.save file of tensors, loadable with
        weights_only=True). Exact indexes store their vectors, so the file loads into any
        exact backend; IVF indexes store the serialised faiss index."""
        self._consolidate()
        state = {
            "format": _SAVE_FORMAT,
            "version": _SAVE_VERSION,
            "dim": self._dim,
            "metric": self._metric,
            "backend": self._backend_request,
            "ivf_nlist": self._ivf_nlist,
            "ivf_nprobe": self._ivf_nprobe,
            "search_block": list(self._search_block) if self._search_block else None,
            "device": str(self._device) if self._device is not None else None,
            "dtype": str(self._dtype).replace("torch.", ""),
            "vectors": None,
            "faiss_ivf": None,
            "labels": self._labels.cpu(),
            "image_ids": self._image_ids.cpu(),
            "segment_ids": self._segment_ids.cpu(),
        }
        if self._kind is not None:
            if self._ivf_nlist is None:
                state["vectors"] = self._flat_vectors()
            else:
                faiss = _faiss()
                index = faiss.index_gpu_to_cpu(self._faiss_index) if self._kind == "faiss-gpu" else self._faiss_index
                state["faiss_ivf"] = torch.from_numpy(faiss.serialize_index(index))
        torch.save(state, path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], *, device: Union[str, torch.device, None] = None,
             backend: Optional[str] = None, distributed: bool = False, process_group=None) -> "SegmentIndex":
        """Reads an index written by :meth:`save`. ``device`` (default: the saved one) and
        ``backend`` (default: the saved request, e.g. 'auto') pick where and how it runs;
        an exact index loaded with the same backend on the same kind of device returns the
        same search results, bit for bit. A sharded index saves and loads one shard per
        rank: pass ``distributed=True`` (and the group) to load a shard as such."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != _SAVE_FORMAT:
            raise ValueError(f"{path} is not a SegmentIndex file")
        if state["version"] > _SAVE_VERSION:
            raise ValueError(f"{path} has format version {state['version']}; "
                             f"this segsort_ext reads up to {_SAVE_VERSION}")
        if device is None:
            device = state["device"]
        index = cls(state["dim"], metric=state["metric"], device=device, backend=backend or state["backend"],
                    ivf_nlist=state["ivf_nlist"], ivf_nprobe=state["ivf_nprobe"],
                    search_block=state["search_block"], distributed=distributed, process_group=process_group)
        if state["device"] is None:  # saved before the first add: nothing more to restore
            return index
        index._open(index._requested_device)
        if index._kind == "torch":
            index._dtype = getattr(torch, state["dtype"])
        labels = state["labels"]
        if state["faiss_ivf"] is not None:
            faiss = _faiss()
            if faiss is None:
                raise ImportError(f"{path} holds an IVF index: loading it needs the faiss package")
            cpu_index = faiss.deserialize_index(state["faiss_ivf"].numpy())
            if index._kind == "faiss-gpu":
                index._faiss_index = faiss.index_cpu_to_gpu(index._gpu_resources, index._device.index, cpu_index)
            else:
                index._faiss_index = cpu_index
            index._apply_nprobe()
        elif labels.numel():
            vectors = state["vectors"]
            if index._kind == "torch":
                index._vectors = vectors.to(index._device, index._dtype)
            else:
                with index._on_faiss_gpu():
                    index._faiss_index.add(index._to_faiss(vectors))
        index._labels = labels.to(index._device)
        index._image_ids = state["image_ids"].to(index._device)
        index._segment_ids = state["segment_ids"].to(index._device)
        index._size = labels.numel()
        index._max_label = int(labels.max()) if labels.numel() else -1
        return index
