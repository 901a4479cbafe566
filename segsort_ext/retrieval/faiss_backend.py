"""faiss backends of SegmentIndex: exact ``IndexFlatIP`` and approximate ``IndexIVFFlat``.

An index for CUDA data lives on that GPU when faiss sees one (``GpuIndexFlatIP`` /
``GpuIndexIVFFlat``; CUDA tensors go to faiss through ``faiss.contrib.torch_utils``, no
host copies), else on host memory. faiss is an optional dependency, imported on first
use: the import costs a few hundred milliseconds that users of other ops should not pay.

faiss orders tied scores as it pleases and, when a group of equal scores straddles the
k-th place, keeps an arbitrary part of it; results are re-sorted into the canonical order
(score descending, then id ascending), so they can differ from the torch backend's only in
*which* members of such a group are kept.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from segsort_ext.retrieval.backend import canonical_order
from segsort_ext.utils.optional import require

__all__ = ["FaissFlatBackend", "FaissIVFBackend", "GPU_MAX_K", "available", "gpu_count"]

GPU_MAX_K = 2048  # faiss' GPU k-selection handles k (and IVF nprobe) up to this

_GPU_RESOURCES: dict[int, object] = {}


def available() -> bool:
    """Whether faiss can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def gpu_count() -> int:
    """GPUs faiss can use: 0 without faiss or with a CPU-only build."""
    if not available():
        return 0
    import faiss

    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def _gpu_resources(faiss, gpu: int):
    """One faiss.StandardGpuResources per GPU, shared by every index on it: each one
    reserves its own scratch memory and streams, so one per index (or per FINCH level)
    would waste both."""
    if gpu not in _GPU_RESOURCES:
        _GPU_RESOURCES[gpu] = faiss.StandardGpuResources()
    return _GPU_RESOURCES[gpu]


class _FaissBackend:
    """Placement and data transfer shared by the faiss backends; subclasses create
    ``self._index`` for ``self._gpu`` (None: a host index)."""

    dtype = torch.float32  # faiss stores and scores in float32

    def __init__(self, device: torch.device):
        self._faiss = require("faiss", "SegmentIndex's faiss backends")
        if device.type == "cuda" and gpu_count() > 0:
            import faiss.contrib.torch_utils  # noqa: F401  (lets faiss take torch CUDA tensors)

            self._gpu = device.index if device.index is not None else torch.cuda.current_device()
            self.kind, self.device, self.max_k = "faiss-gpu", torch.device("cuda", self._gpu), GPU_MAX_K
            self._resources = _gpu_resources(self._faiss, self._gpu)  # must outlive the index
        else:
            self._gpu = None
            self.kind, self.device, self.max_k = "faiss-cpu", torch.device("cpu"), None

    def _on_device(self):
        """Makes the index's GPU current, so that torch_utils runs faiss on that device's
        current torch stream (ordered with the torch work around it, no extra syncs)."""
        return torch.cuda.device(self.device) if self._gpu is not None else contextlib.nullcontext()

    def _to_faiss(self, x: torch.Tensor):
        """float32 contiguous rows in the form the faiss index takes: the CUDA tensor itself
        for a GPU index (torch_utils passes its pointer), a numpy view for a host index."""
        x = x.to(self.device, torch.float32).contiguous()
        return x if self._gpu is not None else x.numpy()

    def _host_index(self):
        """The index itself, or a host copy of a GPU index."""
        return self._faiss.index_gpu_to_cpu(self._index) if self._gpu is not None else self._index

    def add(self, vectors: torch.Tensor) -> None:
        with self._on_device():
            self._index.add(self._to_faiss(vectors))

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        with self._on_device():
            scores, ids = self._index.search(self._to_faiss(queries), k)
        scores, ids = torch.as_tensor(scores), torch.as_tensor(ids)
        # An IVF index pads the neighbours it did not find with id -1.
        return canonical_order(scores.masked_fill(ids < 0, float("-inf")), ids)


class FaissFlatBackend(_FaissBackend):
    """Exact inner-product search (``IndexFlatIP``)."""

    def __init__(self, dim: int, device: torch.device):
        super().__init__(device)
        faiss = self._faiss
        if self._gpu is None:
            self._index = faiss.IndexFlatIP(dim)
        else:
            config = faiss.GpuIndexFlatConfig()
            config.device = self._gpu
            self._index = faiss.GpuIndexFlatIP(self._resources, dim, config)

    def state(self) -> dict[str, torch.Tensor]:
        index = self._host_index()
        vectors = np.empty((index.ntotal, index.d), dtype=np.float32)
        if index.ntotal:
            index.reconstruct_n(0, index.ntotal, vectors)  # a numpy buffer selects the numpy path
        return {"vectors": torch.from_numpy(vectors)}

    def load_state(self, state: dict, num_rows: int) -> None:
        if num_rows:
            self.add(state["vectors"])


class FaissIVFBackend(_FaissBackend):
    """Approximate inner-product search over ``nlist`` inverted lists (``IndexIVFFlat``),
    visiting ``nprobe`` lists per query. The coarse quantizer is trained by :meth:`train`,
    or by the first :meth:`add` on its own rows.

    The faiss index is created by :meth:`train`, once at least ``nlist`` rows are given:
    faiss allocates its ``nlist`` lists up front, so an absurd ``nlist`` is refused by the
    row count instead of by the allocator."""

    def __init__(self, dim: int, device: torch.device, nlist: int, nprobe: int):
        super().__init__(device)
        self._dim, self._nlist = dim, nlist
        self._index = None
        self.nprobe = nprobe

    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        """Capped at nlist (more lists than exist scan them all) and at faiss' GPU limit."""
        nprobe = min(value, self._nlist)
        self._nprobe = nprobe if self.max_k is None else min(nprobe, self.max_k)
        if self._index is not None:
            self._index.nprobe = self._nprobe

    def _set_index(self, index) -> None:
        self._index = index
        self._index.nprobe = self._nprobe

    def train(self, vectors: torch.Tensor) -> None:
        if self._index is not None:  # faiss would keep its centroids and ignore these rows
            raise ValueError("this IVF index is trained already: train() once, before the first add()")
        if vectors.shape[0] < self._nlist:
            raise ValueError(f"training an IVF index needs at least ivf_nlist = {self._nlist} prototypes, "
                             f"got {vectors.shape[0]}")
        faiss = self._faiss
        if self._gpu is None:
            # faiss' Python wrapper keeps a reference to the quantizer for the index's lifetime
            quantizer = faiss.IndexFlatIP(self._dim)
            index = faiss.IndexIVFFlat(quantizer, self._dim, self._nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            config = faiss.GpuIndexIVFFlatConfig()
            config.device = self._gpu
            index = faiss.GpuIndexIVFFlat(self._resources, self._dim, self._nlist, faiss.METRIC_INNER_PRODUCT,
                                          config)
        with self._on_device():
            index.train(self._to_faiss(vectors))
        self._set_index(index)

    def add(self, vectors: torch.Tensor) -> None:
        if self._index is None:
            self.train(vectors)
        super().add(vectors)

    def state(self) -> dict[str, torch.Tensor]:
        """The serialised trained index; no field before training (nothing to keep)."""
        if self._index is None:
            return {}
        return {"faiss_ivf": torch.from_numpy(self._faiss.serialize_index(self._host_index()))}

    def load_state(self, state: dict, num_rows: int) -> None:
        blob = state.get("faiss_ivf")
        if blob is None:
            if num_rows:
                raise ValueError(f"missing field faiss_ivf: an IVF index of {num_rows} rows stores its faiss index")
            return
        if not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8 or blob.dim() != 1:
            raise ValueError("field faiss_ivf must be a 1-D uint8 tensor (a serialised faiss index)")
        try:
            index = self._faiss.deserialize_index(blob.contiguous().numpy())
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise ValueError(f"field faiss_ivf: faiss cannot read it ({reason})") from None
        if not (isinstance(index, self._faiss.IndexIVFFlat) and index.d == self._dim and index.nlist == self._nlist
                and index.metric_type == self._faiss.METRIC_INNER_PRODUCT and index.is_trained):
            raise ValueError(f"field faiss_ivf: not a trained inner-product IndexIVFFlat of dim = "
                             f"{self._dim} and ivf_nlist = {self._nlist}")
        if index.ntotal != num_rows:
            raise ValueError(f"field faiss_ivf: holds {index.ntotal} rows, labels {num_rows}")
        if self._gpu is not None:
            index = self._faiss.index_cpu_to_gpu(self._resources, self._gpu, index)
        self._set_index(index)
