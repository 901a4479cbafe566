"""Segment retrieval: k-nearest-neighbour search over a bank of training-set segment
prototypes (SegSort's inference by kNN voting).

:class:`SegmentIndex` keeps the prototypes, their class labels and their provenance
(image id, segment id) and answers ``search`` / ``vote`` / ``explain``. The vectors live in
one of three exact backends that return the same neighbours:

- ``faiss-gpu``: ``faiss.GpuIndexFlatIP``; CUDA tensors go to faiss without host copies.
  Used when faiss sees a GPU and the index lives on CUDA.
- ``faiss-cpu``: ``faiss.IndexFlatIP`` on host memory.
- ``torch``: blocked ``matmul`` with a running top-k, memory bounded by one block of scores.

or, optionally, an approximate faiss ``IndexIVFFlat`` (``ivf_nlist``) for banks too large
to scan exhaustively (``torch_backend``, ``faiss_backend``). With ``distributed=True``
under torch.distributed the index is sharded (``sharded``). File format: ``index_file``.

Neighbour order (all exact backends): by score descending, then by row id ascending. The
torch backend selects and orders exact ties by that rule; faiss results are re-sorted by
it, so the backends can differ only in *which* members of a group of exactly equal scores
at the k-th place are kept, never in scores or in order. Exact ties come from duplicated
prototypes or quantised data; network embeddings practically never tie.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Optional, Sequence, Union

import torch

from segsort_ext.retrieval import _checks, faiss_backend, index_file
from segsort_ext.retrieval.backend import Backend, gather_rows, unit_rows
from segsort_ext.retrieval.sharded import search_shards
from segsort_ext.retrieval.torch_backend import TorchBackend
from segsort_ext.utils import checks as check
from segsort_ext.utils import distributed as dist_utils
from segsort_ext.utils.optional import require

__all__ = ["SegmentIndex", "Neighbours"]

_ROW_FIELDS = index_file.ROW_FIELDS  # the int64 columns kept per row: labels, image ids, segment ids


class _Found(NamedTuple):
    """What a search returns internally, on the device of the queries."""

    scores: torch.Tensor  # (Q, k)
    ids: torch.Tensor  # (Q, k)
    fields: Optional[torch.Tensor]  # (Q, k, 3) of the neighbours (None unless asked for or sharded)
    max_label: int  # the largest label of the index (sharded: of all shards)
    finite_queries: torch.Tensor  # (Q,) bool: queries without NaN or inf (the others found nothing)


class Neighbours(NamedTuple):
    """Result of :meth:`SegmentIndex.explain`: the k retrieved neighbours of every query,
    best first. All fields are (Q, k); ids are -1 (and scores -inf, provenance -1) where an
    approximate (IVF) index found fewer than k neighbours, and -1 (scores NaN) in the rows
    of queries with a NaN or infinite entry."""

    scores: torch.Tensor  # (Q, k) float inner products
    ids: torch.Tensor  # (Q, k) int64 row of each neighbour, in insertion order of add()
    labels: torch.Tensor  # (Q, k) int64 class label of each neighbour
    image_ids: torch.Tensor  # (Q, k) int64 image each neighbour came from (-1: not given)
    segment_ids: torch.Tensor  # (Q, k) int64 segment id within its image (-1: not given)


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
            exact blocked matmul with a running top-k on ``device``.
        ivf_nlist: None (exact search), or the number of inverted lists of an approximate
            faiss ``IndexIVFFlat``. It is trained (k-means on the inner product) by
            :meth:`train`, or on the first ``add`` call's prototypes, which must then hold
            at least ``ivf_nlist`` rows (faiss wants ~40 per list for good centroids).
        ivf_nprobe: lists visited per query (speed/recall trade-off; settable later via
            :attr:`nprobe`). Default 16 (capped at ivf_nlist).
        search_block: (query rows, bank rows) of one score block of the torch backend;
            None picks (1024, 32768) on CPU and blocks of up to 2**26 scores on CUDA.
        distributed: shard the index over the ranks of torch.distributed (see below).
            Without an initialised process group this is the single-process index.
        process_group: the group the shards live in (None: the default group).

    Sharded (``distributed=True``): :meth:`add`, ``len()``, :attr:`labels` and the other
    row attributes, :meth:`save` and :meth:`load` are per shard (local rows, local ids,
    no communication). :meth:`search`, :meth:`explain` and :meth:`vote` are collectives
    (:mod:`~segsort_ext.retrieval.sharded`): every rank passes its own queries (any
    number, also none, of one dtype on all ranks) and gets the results of one index
    holding the rank-order concatenation of the shards, with *global* ids (a row's local
    id plus the rows of the ranks before it). k is bounded by the total number of rows;
    ``vote``'s default ``num_classes`` is 1 + the largest label of any shard. Shards must
    use the same metric and backend.

    Rows are numbered in insertion order across ``add`` calls; ``ids`` returned by
    :meth:`search` index that order, as do :attr:`labels`, :attr:`image_ids` and
    :attr:`segment_ids`.

    Storage: faiss stores float32; the torch backend stores float32, or float64 when the
    first prototypes added are float64. Provenance is kept as int64 tensors on the index
    device and round-trips exactly through :meth:`save` / :meth:`load`.

    k larger than ``len(index)`` is an error (not clamped): a silent clamp would change what
    ``vote(k=21)`` means without telling anyone.

    Bad input: prototypes must be finite (a NaN row would be every query's best match),
    labels in [0, :attr:`MAX_CLASSES`). A query with a NaN or infinite entry has no
    neighbours: its ids, labels and provenance are -1 and its scores NaN (``vote``: label
    -1, votes NaN); the other queries are unaffected. Wrong types raise TypeError, wrong
    shapes and values ValueError, each naming the argument.
    """

    #: Labels are < MAX_CLASSES, num_classes <= MAX_CLASSES: vote returns dense (Q,
    #: num_classes) votes, so a label indexes memory. 2**20 is beyond any labelled
    #: segmentation dataset (the largest have ~2 * 10**4 classes) and keeps a query's votes
    #: within a few MiB. Sparse ids belong in image_ids / segment_ids, or map them to 0..C-1.
    MAX_CLASSES = 1 << 20
    MAX_DIM = (1 << 31) - 1  #: faiss indexes dimensions as int32

    def __init__(self, dim: int, *, metric: str = "ip", device: Union[str, torch.device, None] = None,
                 backend: str = "auto", ivf_nlist: Optional[int] = None, ivf_nprobe: int = 16,
                 search_block: Optional[Sequence[int]] = None, distributed: bool = False, process_group=None):
        self._dim = check.positive_int(dim, "dim")
        if self._dim > self.MAX_DIM:
            raise ValueError(f"dim must be <= {self.MAX_DIM} (faiss indexes dims as int32), got {dim}")
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be a bool, got {type(distributed).__name__}")
        dist_utils.check_process_group(process_group)
        if metric not in ("ip", "cosine"):
            raise ValueError(f"metric must be 'ip' or 'cosine', got {metric!r}")
        if backend not in ("auto", "faiss", "torch"):
            raise ValueError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
        if backend == "faiss":
            require("faiss", "SegmentIndex(backend='faiss')")
        if ivf_nlist is not None:
            ivf_nlist = check.positive_int(ivf_nlist, "ivf_nlist")
            if backend == "torch":
                raise ValueError("ivf_nlist needs a faiss backend; backend='torch' is exact search only")
            require("faiss", "SegmentIndex(ivf_nlist=...), an IndexIVFFlat,")
        ivf_nprobe = check.positive_int(ivf_nprobe, "ivf_nprobe")
        self._metric = metric
        self._backend_request = backend
        self._ivf_nlist = ivf_nlist
        self._ivf_nprobe = ivf_nprobe
        self._search_block = _checks.search_block(search_block, "search_block")
        self._requested_device = check.device(device, "device")
        self._distributed = distributed
        self._process_group = process_group

        self._backend: Optional[Backend] = None  # chosen by the first add (or train)
        # (M, 3) int64 label, image id and segment id of every row. Rows of add() calls
        # wait in _pending and are concatenated once, at the next use, so many small
        # add() calls cost O(M) copying, not O(M^2).
        self._row_fields = torch.empty(0, len(_ROW_FIELDS), dtype=torch.int64)
        self._pending: list[torch.Tensor] = []
        self._size = 0
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
        return self._backend.kind if self._backend is not None else None

    @property
    def device(self) -> Optional[torch.device]:
        """Where the vectors and provenance are stored (None before the first add)."""
        return self._backend.device if self._backend is not None else None

    @property
    def is_exact(self) -> bool:
        return self._ivf_nlist is None

    @property
    def nprobe(self) -> int:
        return self._ivf_nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._ivf_nprobe = check.positive_int(value, "nprobe")
        if isinstance(self._backend, faiss_backend.FaissIVFBackend):
            self._backend.nprobe = self._ivf_nprobe

    @property
    def labels(self) -> torch.Tensor:
        """(M,) int64 class label of every row."""
        return self._fields()[:, 0]

    @property
    def image_ids(self) -> torch.Tensor:
        """(M,) int64 image of every row (-1 where add() was given none)."""
        return self._fields()[:, 1]

    @property
    def segment_ids(self) -> torch.Tensor:
        """(M,) int64 segment id of every row (-1 where add() was given none)."""
        return self._fields()[:, 2]

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
                f"backend={self.backend or self._backend_request!r}, device={self.device}{ivf}"
                + (", distributed=True" if self._distributed else "") + ")")

    # ---- backend and row fields -------------------------------------------------------

    def _open(self, device: torch.device, dtype: torch.dtype) -> Backend:
        """The (empty) backend for data on `device`, as ``backend`` asks (see the class
        docstring); ``dtype``: the torch backend's storage."""
        if self._ivf_nlist is not None:
            return faiss_backend.FaissIVFBackend(self._dim, device, self._ivf_nlist, self._ivf_nprobe)
        if self._backend_request == "faiss" or (
                self._backend_request == "auto" and faiss_backend.available()
                and (device.type != "cuda" or faiss_backend.gpu_count() > 0)):
            return faiss_backend.FaissFlatBackend(self._dim, device)
        return TorchBackend(self._dim, device, dtype, self._search_block)

    def _group(self) -> Optional[dist_utils.Group]:
        return dist_utils.resolve_group(self._distributed, self._process_group)

    def _fields(self) -> torch.Tensor:
        """(M, 3) label, image id and segment id of every row, on the index device."""
        if self._pending:
            self._row_fields = torch.cat([self._row_fields.to(self._backend.device), *self._pending])
            self._pending.clear()
        return self._row_fields

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        return unit_rows(x) if self._metric == "cosine" else x

    # ---- building ---------------------------------------------------------------------

    def train(self, prototypes: torch.Tensor) -> None:
        """Trains the IVF coarse quantizer on (N, D) float prototypes (N >= ivf_nlist). Only
        for an index created with ``ivf_nlist``; call before the first add, or let the first
        add train on its own prototypes."""
        if self._ivf_nlist is None:
            raise ValueError("train() is only for an IVF index (created with ivf_nlist)")
        _checks.rows(prototypes, "prototypes", self._dim)
        if not bool(torch.isfinite(prototypes).all()):
            raise ValueError("prototypes must be finite, found NaN or infinite entries")
        if self._backend is None:
            self._backend = self._open(self._requested_device or prototypes.device, torch.float32)
        self._backend.train(self._prepare(prototypes))

    def add(self, prototypes: torch.Tensor, labels: torch.Tensor, image_ids: Optional[torch.Tensor] = None,
            segment_ids: Optional[torch.Tensor] = None) -> None:
        """Appends M rows.

        Args:
            prototypes: (M, D) float prototypes (copied; any float dtype).
            labels: (M,) int64 class label of each row, in [0, MAX_CLASSES).
            image_ids: optional (M,) int64 image each prototype came from (-1 if None).
            segment_ids: optional (M,) int64 id of the segment within its image (-1 if None).

        All on the device of ``prototypes``; they are copied to the index device. The new
        rows get ids ``len(self) .. len(self) + M - 1``. Checking the labels' range and the
        prototypes' finiteness costs one sync (it also records the largest label: vote's
        default num_classes). An untrained IVF index is trained on these prototypes first.
        Nothing is added when a check fails: ValueError for non-finite prototypes, labels
        out of range, shapes that do not match or tensors on different devices; TypeError
        for a non-tensor, non-float prototypes or non-int64 labels and ids.
        """
        _checks.rows(prototypes, "prototypes", self._dim)
        num_rows = prototypes.shape[0]
        check.int64_tensor(labels, "labels")
        check.same_device(prototypes, "prototypes", labels, "labels")
        if tuple(labels.shape) != (num_rows,):
            raise ValueError(f"labels must have shape (M,) = ({num_rows},) to match prototypes, "
                             f"got {tuple(labels.shape)}")
        _checks.per_row_ids(image_ids, "image_ids", num_rows, prototypes)
        _checks.per_row_ids(segment_ids, "segment_ids", num_rows, prototypes)
        if num_rows:
            lowest, highest = torch.aminmax(labels)
            nonfinite = (~torch.isfinite(prototypes)).any()
            lowest, highest, nonfinite = torch.stack([lowest, highest, nonfinite.long()]).tolist()  # one sync
            if lowest < 0 or highest >= self.MAX_CLASSES:
                raise ValueError(f"labels must be class labels in [0, SegmentIndex.MAX_CLASSES = {self.MAX_CLASSES}),"
                                 f" found {lowest if lowest < 0 else highest}")
            if nonfinite:
                raise ValueError("prototypes must be finite, found NaN or infinite entries")
        if self._backend is None:
            dtype = torch.float64 if prototypes.dtype == torch.float64 else torch.float32
            self._backend = self._open(self._requested_device or prototypes.device, dtype)
        if num_rows == 0:
            return
        self._backend.add(self._prepare(prototypes))
        unknown = torch.full((num_rows,), -1, dtype=torch.int64, device=prototypes.device)
        fields = [labels, unknown if image_ids is None else image_ids, unknown if segment_ids is None else segment_ids]
        self._pending.append(torch.stack(fields, dim=1).to(self._backend.device))  # a copy: callers may reuse theirs
        self._max_label = max(self._max_label, highest)
        self._size += num_rows

    # ---- queries ----------------------------------------------------------------------

    def _search(self, queries: torch.Tensor, k: int, with_fields: bool) -> _Found:
        """The k neighbours of every query (see _Found). Sharded: a collective over all shards."""
        _checks.rows(queries, "queries", self._dim)
        k = check.positive_int(k, "k")
        # Non-finite queries are searched as zeros (no sync, and every rank of a sharded
        # search takes part alike), then their results are overwritten.
        finite = torch.isfinite(queries).all(dim=1)
        prepared = self._prepare(queries.masked_fill(~finite[:, None], 0))
        group = self._group()
        if group is not None:
            scores, ids, fields, max_label = search_shards(group, prepared, k, self._backend, self._fields(),
                                                           self._max_label)
        else:
            if self._size == 0:
                raise ValueError("search on an empty SegmentIndex: add() prototypes first")
            if k > self._size:
                raise ValueError(f"k = {k} is larger than the number of indexed prototypes ({self._size})")
            backend, max_label = self._backend, self._max_label
            if backend.max_k is not None and k > backend.max_k:
                raise ValueError(f"k = {k} exceeds faiss' GPU limit of {backend.max_k}; use backend='torch'")
            if prepared.shape[0] == 0:
                scores = torch.empty(0, k, dtype=backend.dtype, device=backend.device)
                ids = torch.empty(0, k, dtype=torch.int64, device=backend.device)
            else:
                scores, ids = backend.search(prepared, k)
            fields = gather_rows(self._fields(), ids).to(queries.device) if with_fields else None
            scores, ids = scores.to(queries.device), ids.to(queries.device)
        lost = ~finite[:, None]
        return _Found(scores.masked_fill(lost, float("nan")), ids.masked_fill(lost, -1),
                      None if fields is None else fields.masked_fill(lost[..., None], -1), max_label, finite)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k rows with the largest inner product with each query.

        Args:
            queries: (Q, D) float, any device (copied to the index device if elsewhere).
            k: 1 <= k <= len(self) (sharded: the rows of all shards).

        Returns:
            scores (Q, k) float (float32; float64 for a float64 torch bank) and ids (Q, k)
            int64, best first: score descending, then row id ascending. On the device of
            the queries. An IVF index may find fewer than k: those places hold id -1, score
            -inf. A query with a NaN or infinite entry gets ids -1 and scores NaN. Sharded:
            a collective; ids are global (see the class docstring).
        """
        found = self._search(queries, k, with_fields=False)
        return found.scores, found.ids

    def explain(self, queries: torch.Tensor, k: int) -> Neighbours:
        """:meth:`search` plus each neighbour's label and provenance: a :class:`Neighbours`
        of (Q, k) tensors (scores, ids, labels, image_ids, segment_ids) on the device of
        the queries. Sharded: a collective, with global ids."""
        found = self._search(queries, k, with_fields=True)
        return Neighbours(found.scores, found.ids,
                          *(found.fields[..., column].contiguous() for column in range(len(_ROW_FIELDS))))

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
            where an IVF index found no neighbour or the query is not finite. votes (Q, C)
            float (the score dtype): summed weights per class, 0 for absent classes, NaN
            for a query that is not finite. On the device of the queries.
            Sums run over neighbours in rank order, so votes are deterministic.
        """
        if weighting not in ("uniform", "similarity"):
            raise ValueError(f"weighting must be 'uniform' or 'similarity', got {weighting!r}")
        if num_classes is not None:
            num_classes = check.positive_int(num_classes, "num_classes")
            if num_classes > self.MAX_CLASSES:
                raise ValueError(f"num_classes must be <= SegmentIndex.MAX_CLASSES = {self.MAX_CLASSES}, "
                                 f"got {num_classes}")
        neighbours = self._search(queries, k, with_fields=True)
        scores, max_label = neighbours.scores, neighbours.max_label
        # The largest label is checked after the search: sharded, it is only known after
        # that collective, and the check then fails on every rank alike.
        if num_classes is None:
            num_classes = max_label + 1
        elif num_classes <= max_label:
            raise ValueError(f"num_classes = {num_classes} but the index holds label {max_label}")
        neighbour_labels = neighbours.fields[..., 0]
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
        return labels, votes.masked_fill(~neighbours.finite_queries[:, None], float("nan"))

    # ---- persistence ------------------------------------------------------------------

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Writes the index to `path`: a torch.save file of plain values and tensors,
        loadable with weights_only=True (format: :mod:`~segsort_ext.retrieval.index_file`).
        Exact indexes store their vectors, so the file loads into any exact backend; IVF
        indexes store the serialised faiss index."""
        fields = self._fields().cpu()
        state = {
            "dim": self._dim,
            "metric": self._metric,
            "backend": self._backend_request,
            "ivf_nlist": self._ivf_nlist,
            "ivf_nprobe": self._ivf_nprobe,
            "search_block": list(self._search_block) if self._search_block else None,
            "device": str(self.device) if self._backend is not None else None,
            "dtype": str(self._backend.dtype if self._backend is not None else torch.float32).replace("torch.", ""),
            "vectors": None,  # exact backends
            "faiss_ivf": None,  # IVF
            **{name: fields[:, column].contiguous() for column, name in enumerate(_ROW_FIELDS)},
        }
        if self._backend is not None:
            state.update(self._backend.state())
        index_file.write(path, state)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], *, device: Union[str, torch.device, None] = None,
             backend: Optional[str] = None, distributed: bool = False, process_group=None) -> "SegmentIndex":
        """Reads an index written by :meth:`save`. ``device`` (default: the saved one) and
        ``backend`` (default: the saved request, e.g. 'auto') pick where and how it runs;
        an exact index loaded with the same backend on the same kind of device returns the
        same search results, bit for bit. A sharded index saves and loads one shard per
        rank: pass ``distributed=True`` (and the group) to load a shard as such.

        Every field is checked first (:func:`index_file.read`: ValueError naming the path
        and the field). ValueError too when ``device`` is None and the saved device (a
        GPU) is not available here."""
        state = index_file.read(path, max_dim=cls.MAX_DIM, max_classes=cls.MAX_CLASSES)
        if device is None and state["device"] is not None:
            try:
                device = check.device(state["device"], "device")
            except ValueError as error:
                raise ValueError(f"device is None, so {path!s} would load on the device it was saved "
                                 f"on, {state['device']!r}, which is not available here: pass device='cpu' "
                                 f"(or another device)") from error
        if backend == "torch" and state["ivf_nlist"] is not None:
            raise ValueError(f"backend='torch' cannot load an IVF index (ivf_nlist = {state['ivf_nlist']}): "
                             f"use 'faiss' or 'auto'")
        backend = state["backend"] if backend is None else backend
        index = cls(state["dim"], metric=state["metric"], device=device, backend=backend,
                    ivf_nlist=state["ivf_nlist"], ivf_nprobe=state["ivf_nprobe"],
                    search_block=state["search_block"], distributed=distributed, process_group=process_group)
        if state["device"] is None:  # saved before the first add: nothing more to restore
            return index
        labels = state["labels"]
        index._backend = index._open(index._requested_device, state["dtype"])
        try:
            index._backend.load_state(state, labels.numel())
        except ValueError as error:
            raise index_file.corrupt(path, error) from None
        index._row_fields = torch.stack([state[name] for name in _ROW_FIELDS], dim=1).to(index._backend.device)
        index._size = labels.numel()
        index._max_label = int(labels.max()) if labels.numel() else -1
        return index
