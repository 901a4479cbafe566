"""Dataset-level spherical k-means for PiCIE-style training: fit / partial_fit / predict,
streaming over data larger than device memory."""
from __future__ import annotations

from typing import Optional

import torch

from segsort_ext.ops.nearest_centroid import nearest_centroid
from segsort_ext.utils import checks as check
from segsort_ext.utils import distributed as dist_utils
from segsort_ext.utils.constants import NORM_EPS

__all__ = ["SphericalKMeans"]

# The default initialisation sample: points per cluster and cap. 64 per cluster gave the
# objective of 256 (faiss's training sample) within the spread of seeds, at a third of the
# seeding time at K=100 (benchmarks/bench_dataset_kmeans.py's points).
POINTS_PER_CLUSTER, MAX_INIT_SAMPLE = 64, 100_000


def _as_points(data, name: str) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        try:
            data = torch.as_tensor(data)
        except Exception as exc:  # re-raised with the argument's name
            raise TypeError(f"{name} must be a tensor or array of shape (N, D), got {type(data).__name__}") from exc
    if data.dim() != 2 or not data.is_floating_point() or data.shape[1] < 1:
        raise ValueError(f"{name} must be a floating point (N, D) tensor with D >= 1, got {tuple(data.shape)} "
                         f"{data.dtype}")
    return data


def _unit_rows(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit rows, (n,) bool mask of the rows with a direction) of (n, D) float rows; the
    rows without one (a NaN or infinite coordinate, or all zeros) are zeroed, so they
    score 0 against every centroid and add nothing to a cluster sum."""
    norm = torch.linalg.vector_norm(points, dim=1)
    has_direction = torch.isfinite(norm) & (norm > 0)
    unit = points / norm.unsqueeze(1)
    # The norm of a finite, non-zero float32 row underflows to 0 (entries below ~1e-19) or
    # overflows to inf (above ~1e19): those rare rows are normalised in float64.
    redo = (norm == 0) | (norm == float("inf"))
    if points.dtype != torch.float64 and bool(redo.any()):
        rows = redo.nonzero().squeeze(1)
        wide_unit, wide_has_direction = _unit_rows(points[rows].double())
        unit[rows] = wide_unit.to(unit.dtype)
        has_direction[rows] = wide_has_direction
    if not bool(has_direction.all()):
        unit[~has_direction] = 0  # touches only those rows (a broadcast masked_fill_ reads them all)
    return unit, has_direction


def _unit_rows_in(points: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """_unit_rows in `dtype`, normalised in the points' precision (at least float32)."""
    unit, has_direction = _unit_rows(points.float() if points.dtype in (torch.float16, torch.bfloat16) else points)
    return unit.to(dtype), has_direction


def _pass_dtype(data: torch.Tensor) -> torch.dtype:
    """The precision of the passes over `data`: float64 for float64 data, else float32."""
    return torch.float64 if data.dtype == torch.float64 else torch.float32


def _kmeans_plusplus(sample: torch.Tensor, num_clusters: int, generator: torch.Generator) -> list[int]:
    """Rows of `sample` ((m, D) unit rows) chosen by k-means++ with the cosine distance
    1 - cos: each next seed is drawn with probability proportional to its squared distance
    to the nearest seed chosen so far. One matrix-vector product per seed; the running
    nearest-seed cosine is kept in place (no (m, K) matrix)."""
    m = sample.shape[0]
    chosen = [int(torch.randint(m, (1,), generator=generator))]
    nearest = sample @ sample[chosen[0]]  # cosine to the nearest seed so far
    for _ in range(1, num_clusters):
        weights = torch.rsub(nearest, 1).clamp_min_(0).square_().cpu()
        if not bool(weights.sum() > 0):  # all remaining points coincide with seeds
            weights.fill_(1)
            weights[chosen] = 0
        index = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(index)
        torch.maximum(nearest, sample @ sample[index], out=nearest)
    return chosen


class SphericalKMeans:
    """Dataset-level spherical k-means (PiCIE-style clustering of pixel features).

    Points are L2-normalised; a point belongs to the centroid of largest cosine. Data
    may live on the CPU (or be a NumPy memmap) and exceed device memory: every pass
    streams it to ``device`` in chunks of ``chunk_size`` rows, with memory
    O(chunk_size * (D + K)); :meth:`fit` moves and normalises data of at most
    ``chunk_size`` rows once, not once per pass. Each pass over a chunk (assignment and
    cluster sums) is one :func:`~segsort_ext.ops.nearest_centroid.nearest_centroid` call,
    a fused kernel on the CPU that reads the features once, with results independent of
    the thread count.

    Points without a direction (a NaN or infinite coordinate, or all zeros) take no part,
    as in :func:`~segsort_ext.spherical_kmeans`: initialisation never picks them, they move
    no centroid, ``counts``, ``inertia_`` and :meth:`objective` leave them out, and
    :meth:`predict` gives them -1.

    Args:
        num_clusters: K.
        init: 'k-means++' (on a random subsample of ``init_sample`` points), 'random'
            (K distinct random points of that subsample) or a (K, D) float tensor of
            initial centroids (finite, non-zero rows; normalised inside).
        max_iter: full EM iterations of :meth:`fit`.
        tol: :meth:`fit` stops once the mean cosine improves by tol or less.
        chunk_size: rows per streamed chunk.
        seed: an int, seeds initialisation; results are deterministic on CPU (on CUDA
            under ``torch.use_deterministic_algorithms(True)``).
        init_sample: points drawn for the initialisation; None (default): 64 per
            cluster, at most 100,000. The iterations of :meth:`fit` always use every
            point.
        device: where the work runs (default: the data's device).
        distributed: under torch.distributed, each rank passes its own shard of the data
            and :meth:`fit`, :meth:`partial_fit` and :meth:`objective` are collectives
            over the union of the shards (see below). Without an initialised process
            group this is the single-process estimator.
        process_group: the group to work over (None: the default group).

    Distributed (``distributed=True``): the data set is the rank-order concatenation of
    the shards (shards may differ in size, one may be empty). Every iteration all-reduces
    the per-rank cluster sums, counts and cosine totals, so every rank holds the same
    centroids, ``counts``, ``inertia_`` and ``n_iter_``, equal to a single process's on
    the concatenation up to the order of floating-point summation (sums are reduced
    per rank first). The initialisation is the single-process one on the concatenation:
    every rank draws the same subsample rows (same seed, global row numbers), the ranks
    all-gather the sampled rows they own, and 'random' and 'k-means++' then run on the
    identical sample, so the initial centroids are bit-identical to a single process's
    (this costs one all-gather of at most ``init_sample`` rows). A tensor ``init`` is
    taken from rank 0 (broadcast). :meth:`predict` stays local (no communication).
    """

    def __init__(self, num_clusters: int, *, init="k-means++", max_iter: int = 20, tol: float = 1e-6,
                 chunk_size: int = 1 << 20, seed: int = 0, device=None, init_sample: Optional[int] = None,
                 distributed: bool = False, process_group=None):
        num_clusters = check.positive_int(num_clusters, "num_clusters")
        if isinstance(init, torch.Tensor):
            check.float_tensor(init, "init")
            if init.dim() != 2 or init.shape[0] != num_clusters or init.shape[1] < 1:
                raise ValueError(f"init must be 'k-means++', 'random' or a (K, D) = ({num_clusters}, D) tensor, "
                                 f"got shape {tuple(init.shape)}")
            if not bool(torch.isfinite(init).all()) or not bool((init != 0).any(1).all()):
                raise ValueError("init must hold finite, non-zero rows (centroid directions)")
            init = init.detach().clone()
        elif init not in ("k-means++", "random"):
            raise ValueError(f"init must be 'k-means++', 'random' or a (K, D) tensor, got {init!r}")
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be a bool, got {type(distributed).__name__}")
        dist_utils.check_process_group(process_group)
        self.num_clusters = num_clusters
        self.init = init
        self.max_iter = check.nonnegative_int(max_iter, "max_iter")
        self.tol = check.number(tol, "tol", finite=False)
        self.chunk_size = check.positive_int(chunk_size, "chunk_size")
        self.seed = check.seed(seed, "seed")
        self.device = check.device(device, "device")
        if init_sample is None:
            init_sample = min(POINTS_PER_CLUSTER * num_clusters, MAX_INIT_SAMPLE)
        self.init_sample = max(num_clusters, check.nonnegative_int(init_sample, "init_sample"))
        self.distributed = distributed
        self.process_group = process_group
        self.centroids: Optional[torch.Tensor] = None  # (K, D) unit rows
        self.counts: Optional[torch.Tensor] = None  # (K,) points seen per cluster (partial_fit)
        self.inertia_: Optional[float] = None  # sum over points of 1 - cos(point, its centroid)
        self.n_iter_ = 0

    # -- streaming helpers ---------------------------------------------------------
    def _device_for(self, data: torch.Tensor) -> torch.device:
        return self.device if self.device is not None else data.device

    def _where(self) -> tuple[torch.device, torch.dtype]:
        """Device and dtype of the fitted centroids: where later passes run."""
        return self.centroids.device, self.centroids.dtype

    def _group(self) -> Optional[dist_utils.Group]:
        return dist_utils.resolve_group(self.distributed, self.process_group)

    def _chunks(self, data: torch.Tensor, device, dtype: torch.dtype):
        """(unit rows, has-direction mask) of every chunk of the data (see _unit_rows), on
        `device` in `dtype` (normalised in the data's precision, at least float32)."""
        for start in range(0, data.shape[0], self.chunk_size):
            yield _unit_rows_in(data[start:start + self.chunk_size].to(device, non_blocking=True), dtype)

    def _accumulate(self, chunks, centroids, group: Optional[dist_utils.Group] = None, *, with_sums: bool = True):
        """One pass over `chunks` (from _chunks): per-cluster sums (zeros unless
        `with_sums`) and counts of the assigned points, sum of best cosines (summed over
        the ranks of `group`, one all-reduce, when given)."""
        K, D = centroids.shape
        sums = centroids.new_zeros(K, D)
        counts = torch.zeros(K, dtype=torch.int64, device=centroids.device)
        total_cos = centroids.new_zeros(())
        for unit, has_direction in chunks:
            best, labels, chunk_sums = nearest_centroid(unit, centroids, with_sums=with_sums)
            if with_sums:  # (a row without a direction is zero: it adds nothing)
                sums += chunk_sums
            # Rows without a direction (best cosine 0) are counted in an extra bin K.
            counts += torch.bincount(labels.masked_fill_(~has_direction, K), minlength=K + 1)[:K]
            total_cos += best.sum()
        if group is not None:
            # One packed all-reduce; counts stay int64 (exact) in their own.
            packed = dist_utils.all_reduce_sum(torch.cat([sums.reshape(-1), total_cos.reshape(1)]), group)
            sums, total_cos = packed[:-1].reshape(K, D), packed[-1]
            counts = dist_utils.all_reduce_sum(counts, group)
        return sums, counts, total_cos

    def _initial_centroids(self, data: torch.Tensor, device,
                           group: Optional[dist_utils.Group] = None) -> torch.Tensor:
        """(K, D) initial centroids from the (global) data, identical on every rank, in the
        dtype the passes use (float64 for float64 data, else float32)."""
        dtype = _pass_dtype(data)
        if isinstance(self.init, torch.Tensor):
            if self.init.shape[1] != data.shape[1]:
                raise ValueError(f"init has D = {self.init.shape[1]} but the data has D = {data.shape[1]}")
            centroids = torch.nn.functional.normalize(self.init.to(device, torch.float64), dim=1, eps=NORM_EPS)
            centroids = centroids.to(dtype)
            return centroids if group is None else dist_utils.broadcast_from_first(centroids, group)
        generator = torch.Generator().manual_seed(self.seed)
        if group is None:
            counts = torch.tensor([data.shape[0]])
            rank = 0
        else:
            counts = dist_utils.all_gather_counts([data.shape[0]], group)[:, 0]
            rank = group.rank
        n = int(counts.sum())
        if n < self.num_clusters:
            raise ValueError(f"data has {n} points, fewer than num_clusters = {self.num_clusters}")
        offset = int(counts[:rank].sum())
        # Global row numbers: every rank draws the same ones from the same generator.
        rows = torch.randperm(n, generator=generator)[:min(n, self.init_sample)].sort().values
        sample = self._fetch_rows(data, rows, offset, device, dtype, group)
        usable = (sample != 0).any(1)
        if self.init == "random":
            # The first K usable rows of a random order of the sample.
            order = torch.randperm(sample.shape[0], generator=generator).to(device)
            order = order[usable[order]]
            self._check_sample_size(order.numel(), sample.shape[0])
            return sample[order[:self.num_clusters]]
        sample = sample[usable]
        self._check_sample_size(sample.shape[0], rows.numel())
        centroids = sample[_kmeans_plusplus(sample, self.num_clusters, generator)]
        # Every rank computed the same thing from the same sample; the broadcast makes
        # the centroids identical even where devices would round differently.
        return centroids if group is None else dist_utils.broadcast_from_first(centroids, group)

    def _check_sample_size(self, usable: int, drawn: int) -> None:
        if usable < self.num_clusters:
            raise ValueError(f"data: only {usable} of the {drawn} points drawn to initialise the centroids are "
                             f"finite and non-zero, fewer than num_clusters = {self.num_clusters}")

    @staticmethod
    def _fetch_rows(data, rows: torch.Tensor, offset: int, device, dtype, group) -> torch.Tensor:
        """Unit rows (in `dtype`) of the global data set at the ascending global row numbers
        `rows`, in that order (gathered from the ranks that own them); rows without a
        direction come back as zeros."""
        local = rows[(rows >= offset) & (rows < offset + data.shape[0])] - offset
        picked, _ = _unit_rows_in(data[local].to(device), dtype)
        if group is None:
            return picked
        # Ranks own contiguous, ascending row ranges: rank order is ascending row order.
        (gathered,), _ = dist_utils.all_gather_rows([picked], group)
        return gathered

    # -- public API ----------------------------------------------------------------
    def fit(self, data) -> "SphericalKMeans":
        """Full-batch spherical k-means over all of ``data`` (N, D), streamed in chunks
        (distributed: over the union of the ranks' shards; a collective)."""
        data = _as_points(data, "data")
        group = self._group()
        device = self._device_for(data)
        dtype = _pass_dtype(data)
        centroids = self._initial_centroids(data, device, group)
        # Data of one chunk is moved and normalised once, not once per pass (the memory is
        # that of the one chunk a streamed pass holds anyway).
        chunks = list(self._chunks(data, device, dtype)) if data.shape[0] <= self.chunk_size else None

        def one_pass(centroids, with_sums=True):
            return self._accumulate(chunks or self._chunks(data, device, dtype), centroids, group,
                                    with_sums=with_sums)

        previous = -float("inf")
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            sums, counts, total_cos = one_pass(centroids)
            # Empty clusters keep their centroid.
            centroids = torch.where(counts.unsqueeze(1) > 0, torch.nn.functional.normalize(sums, dim=1, eps=NORM_EPS),
                                    centroids)
            self.n_iter_ += 1
            # All-reduced values, identical on every rank: all ranks stop together.
            mean_cos = float(total_cos) / max(int(counts.sum()), 1)
            if mean_cos - previous <= self.tol:  # (<=: a converged fit stops at tol=0 too)
                break
            previous = mean_cos
        self.centroids = centroids
        _, counts, total_cos = one_pass(centroids, with_sums=False)
        self.counts = counts
        self.inertia_ = int(counts.sum()) - float(total_cos)
        return self

    def partial_fit(self, batch) -> "SphericalKMeans":
        """Online update with one batch (N_b, D): every centroid moves toward the mean of its
        batch members with rate n_batch / n_total (PiCIE), then is renormalised. The first
        call initialises the centroids from the batch. Distributed, the batch is the union
        of the ranks' batches (a collective)."""
        batch = _as_points(batch, "batch")
        group = self._group()
        device = self._device_for(batch)
        if self.centroids is None:
            self.centroids = self._initial_centroids(batch, device, group)
            self.counts = torch.zeros(self.num_clusters, dtype=torch.int64, device=device)
        self._check_dim(batch)
        sums, counts, _ = self._accumulate(self._chunks(batch, *self._where()), self.centroids, group)
        self.counts = self.counts + counts
        rate = (counts / self.counts.clamp_min(1)).to(self.centroids.dtype).unsqueeze(1)
        batch_mean = sums / counts.clamp_min(1).to(sums.dtype).unsqueeze(1)
        moved = self.centroids + rate * (batch_mean - self.centroids)
        self.centroids = torch.where(counts.unsqueeze(1) > 0, torch.nn.functional.normalize(moved, dim=1, eps=NORM_EPS),
                                     self.centroids)
        return self

    def predict(self, data) -> torch.Tensor:
        """(N,) int64 cluster of each point (largest cosine, ties to the lowest index; -1
        for a point without a direction)."""
        data = _as_points(data, "data")
        self._check_fitted()
        self._check_dim(data)
        labels = [nearest_centroid(unit, self.centroids).labels.masked_fill_(~has_direction, -1)
                  for unit, has_direction in self._chunks(data, *self._where())]
        return torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64, device=self.centroids.device)

    def objective(self, data) -> float:
        """Sum over points (with a direction) of 1 - cos(point, nearest centroid) (lower
        is better); distributed, over the union of the ranks' data (a collective)."""
        data = _as_points(data, "data")
        self._check_fitted()
        self._check_dim(data)
        _, counts, total_cos = self._accumulate(self._chunks(data, *self._where()), self.centroids, self._group(),
                                                with_sums=False)
        return int(counts.sum()) - float(total_cos)

    def state_dict(self) -> dict:
        """The fitted state for checkpoints: ``centroids``, ``counts``, ``inertia`` and
        ``n_iter`` (None / 0 before fitting). The constructor's settings are not in it:
        build the estimator the same way, then :meth:`load_state_dict`."""
        return {"centroids": self.centroids, "counts": self.counts, "inertia": self.inertia_,
                "n_iter": self.n_iter_}

    def load_state_dict(self, state: dict) -> "SphericalKMeans":
        """Restores :meth:`state_dict` exactly (tensors moved to ``device`` when one was
        given); :meth:`partial_fit` then continues where the saved run stopped."""
        if not isinstance(state, dict) or set(state) != {"centroids", "counts", "inertia", "n_iter"}:
            raise ValueError("state must be a dict with keys centroids, counts, inertia, n_iter (from state_dict())")
        centroids, counts = state["centroids"], state["counts"]
        if centroids is not None:
            check.float_tensor(centroids, "state['centroids']")
            if centroids.dim() != 2 or centroids.shape[0] != self.num_clusters or centroids.shape[1] < 1:
                raise ValueError(f"state['centroids'] must have shape (K, D) with K = {self.num_clusters}, "
                                 f"got {tuple(centroids.shape)}")
            if not bool(torch.isfinite(centroids).all()):
                raise ValueError("state['centroids'] must be finite")
        if counts is not None:
            check.int64_tensor(counts, "state['counts']")
            if tuple(counts.shape) != (self.num_clusters,):
                raise ValueError(f"state['counts'] must have shape ({self.num_clusters},), got {tuple(counts.shape)}")
            if bool((counts < 0).any()):
                raise ValueError("state['counts'] must be >= 0")
        inertia = None if state["inertia"] is None else check.number(state["inertia"], "state['inertia']")
        n_iter = check.nonnegative_int(state["n_iter"], "state['n_iter']")
        if self.device is not None:
            centroids = None if centroids is None else centroids.to(self.device)
            counts = None if counts is None else counts.to(self.device)
        self.centroids, self.counts = centroids, counts
        self.inertia_, self.n_iter_ = inertia, n_iter
        return self

    def _check_fitted(self):
        if self.centroids is None:
            raise RuntimeError("SphericalKMeans is not fitted: call fit() or partial_fit() first")

    def _check_dim(self, data):
        if data.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"data has D = {data.shape[1]} but the centroids have D = {self.centroids.shape[1]}")

