"""A FIFO memory of segment prototypes from earlier batches (SegSort's prototype memory):
detached prototypes, their labels and their provenance, as module buffers so that a
checkpoint restores the memory exactly and ``.to(device)`` moves it."""
from __future__ import annotations

from collections import deque
from typing import NamedTuple, Optional

import torch
from torch import nn

from segsort_ext.utils import checks as check
from segsort_ext.utils import distributed as dist_utils

__all__ = ["PrototypeMemory", "MemoryProvenance"]


class MemoryProvenance(NamedTuple):
    """Where each memory row came from, in the order of :meth:`PrototypeMemory.tensors`."""

    image_ids: torch.Tensor  # (M,) int64 image id given to push (-1 when none was given)
    segment_ids: torch.Tensor  # (M,) int64 segment id given to push (default: row within its push)
    ranks: torch.Tensor  # (M,) int64 distributed rank that pushed the row (0 without distributed)
    batches: torch.Tensor  # (M,) int64 push number (1 = first push since construction or clear())


class PrototypeMemory(nn.Module):
    """FIFO bank of detached prototypes with labels and provenance.

    A ring buffer of ``size`` rows: :meth:`push` appends the rows of one batch and, once
    the bank is full, overwrites the oldest rows first. With ``max_batches`` set, rows
    older than the last ``max_batches`` pushes are dropped as well, so the bank holds
    exactly the prototypes of the last ``max_batches`` batches (as long as they fit in
    ``size`` rows; if not, the oldest rows go first). SegSort caches the prototypes of the
    last 2 batches: :meth:`last_batches` builds that memory.

    Under ``torch.distributed`` (when a default process group is initialised) every push
    is a collective: it all-gathers the pushed rows of all ranks (in rank order) so every
    rank holds the same memory, in the order a single process pushing the concatenated
    batch would hold it. All ranks must call push together. ``ranks`` in
    :meth:`provenance` records which rank pushed each row. Rows a caller has already
    gathered (SegSortLoss's prototypes of the global batch) go in with
    :meth:`push_gathered`, without a second all-gather.

    All state is in buffers (``prototypes``, ``labels``, ``image_ids``, ``segment_ids``,
    ``ranks``, ``batches``, ``write_position``, ``num_filled``, ``num_pushes``), so
    ``state_dict``/``load_state_dict`` restore a partially filled memory, its write
    position and its batch window exactly, and ``.to(device)`` / ``.double()`` work.

    Args:
        size: capacity in rows (>= 1).
        dim: prototype dimension D (>= 1).
        max_batches: None (keep rows until overwritten) or the number of most recent
            pushes whose rows are kept (>= 1).
        dtype: floating dtype of the stored prototypes (default float32).
        device: where the buffers live.
        gather_distributed: False keeps each rank's pushes local even under
            torch.distributed.
        process_group: the group to gather over (None: the default group). Not part of
            the state_dict (a runtime setting).
    """

    def __init__(self, size: int, dim: int, *, max_batches: Optional[int] = None, dtype: torch.dtype = torch.float32,
                 device=None, gather_distributed: bool = True, process_group=None):
        super().__init__()
        dist_utils.check_process_group(process_group)
        size = check.positive_int(size, "size")
        dim = check.positive_int(dim, "dim")
        max_batches = check.optional_positive_int(max_batches, "max_batches")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating point torch.dtype, got {dtype!r}")
        if str(device) != "meta":  # a meta memory is allowed (shapes only); SegSortLoss refuses it
            device = check.device(device, "device")
        check.allocatable((size, dim), dtype, "size x dim", device)
        self.size = size
        self.dim = dim
        self.max_batches = max_batches
        self.gather_distributed = bool(gather_distributed)
        self.process_group = process_group
        index = dict(dtype=torch.int64, device=device)
        self.register_buffer("prototypes", torch.zeros(size, dim, dtype=dtype, device=device))
        self.register_buffer("labels", torch.full((size,), -1, **index))
        self.register_buffer("image_ids", torch.full((size,), -1, **index))
        self.register_buffer("segment_ids", torch.full((size,), -1, **index))
        self.register_buffer("ranks", torch.full((size,), -1, **index))
        self.register_buffer("batches", torch.full((size,), -1, **index))
        self.register_buffer("write_position", torch.zeros((), **index))
        self.register_buffer("num_filled", torch.zeros((), **index))
        self.register_buffer("num_pushes", torch.zeros((), **index))
        # Host mirrors of the counters (reading the buffers would sync with the device on
        # every call); refreshed from the buffers after load_state_dict.
        self._write_position = 0
        self._num_filled = 0
        self._num_pushes = 0
        self._recent_push_rows: deque[int] = deque(maxlen=max_batches)  # rows kept of each recent push
        self.register_load_state_dict_post_hook(PrototypeMemory._refresh_counters)

    @classmethod
    def last_batches(cls, dim: int, *, num_batches: int = 2, max_per_batch: int, **kwargs) -> "PrototypeMemory":
        """SegSort's memory: the prototypes of the last ``num_batches`` batches (default 2).

        ``max_per_batch`` bounds the prototypes one push may bring (e.g. images per batch x
        k-means clusters x labels a cluster may split into, times the world size under
        torch.distributed); the capacity is ``num_batches * max_per_batch`` rows. Other
        keyword arguments go to the constructor.
        """
        num_batches = check.positive_int(num_batches, "num_batches")
        max_per_batch = check.positive_int(max_per_batch, "max_per_batch")
        return cls(num_batches * max_per_batch, dim, max_batches=num_batches, **kwargs)

    # -- state ---------------------------------------------------------------------
    @staticmethod
    def _refresh_counters(module: "PrototypeMemory", incompatible_keys) -> None:
        write_position, num_filled, num_pushes = (int(module.write_position), int(module.num_filled),
                                                  int(module.num_pushes))
        if not (0 <= write_position < module.size and 0 <= num_filled <= module.size and num_pushes >= 0):
            raise ValueError(f"inconsistent PrototypeMemory state: write_position={write_position}, "
                             f"num_filled={num_filled}, num_pushes={num_pushes} for size={module.size}")
        module._write_position, module._num_filled, module._num_pushes = write_position, num_filled, num_pushes
        module._recent_push_rows = deque(maxlen=module.max_batches)
        if module.max_batches is not None:
            # Rows kept of each push of the window, read back from the batch stamps (rows a
            # full bank already dropped are missing from the count, but then the bank stays
            # full exactly as it would have with the true counts).
            stamps = module.batches[module._order()].cpu()
            for push in range(max(1, num_pushes - module.max_batches + 1), num_pushes + 1):
                module._recent_push_rows.append(int((stamps == push).sum()))

    def _order(self) -> torch.Tensor:
        """Buffer rows of the stored prototypes, oldest first."""
        start = self._write_position - self._num_filled
        return (torch.arange(self._num_filled, device=self.labels.device) + start) % self.size

    def clear(self) -> None:
        """Empties the memory (capacity, dtype and device unchanged)."""
        self.labels.fill_(-1)
        self.image_ids.fill_(-1)
        self.segment_ids.fill_(-1)
        self.ranks.fill_(-1)
        self.batches.fill_(-1)
        self.prototypes.zero_()
        self._write_position = self._num_filled = self._num_pushes = 0
        self._recent_push_rows.clear()
        self._sync_counter_buffers()

    def _sync_counter_buffers(self) -> None:
        self.write_position.fill_(self._write_position)
        self.num_filled.fill_(self._num_filled)
        self.num_pushes.fill_(self._num_pushes)

    # -- public API ----------------------------------------------------------------
    def __len__(self) -> int:
        return self._num_filled

    @torch.no_grad()
    def push(self, prototypes: torch.Tensor, labels: torch.Tensor, image_ids: Optional[torch.Tensor] = None,
             segment_ids: Optional[torch.Tensor] = None) -> None:
        """Appends one batch of prototypes (detached), dropping the oldest rows first.

        Args:
            prototypes: (n, D) float prototypes; stored detached, in the memory's dtype
                (non-finite values are stored as they are).
            labels: (n,) int64 labels, required: -1 for rows without one (e.g.
                unsupervised segments).
            image_ids: optional (n,) int64 image of each prototype (e.g. a dataset index);
                -1 when not given.
            segment_ids: optional (n,) int64 segment of each prototype; default
                ``arange(n)``, the segment id when prototypes come from ``segment_mean``.

        Pushing more than ``size`` rows keeps the newest ``size`` rows (the last ones).
        A push of zero rows still counts as a batch for ``max_batches``. All tensors must
        be on the memory's device. Under torch.distributed this is a collective.
        """
        self._push_rows(*self._checked_rows(prototypes, labels, image_ids, segment_ids))

    @torch.no_grad()
    def push_gathered(self, prototypes: torch.Tensor, labels: torch.Tensor, image_ids: Optional[torch.Tensor] = None,
                      segment_ids: Optional[torch.Tensor] = None, *, counts: torch.Tensor,
                      group: dist_utils.Group) -> None:
        """Appends one batch whose rows the caller already all-gathered over ``group`` in
        rank order (as :class:`~segsort_ext.nn.SegSortLoss` does with the prototypes of the
        global batch): the memory then holds what :meth:`push` of each rank's own rows
        would give it.

        When :meth:`push` would gather over the same group, the rows are written as they
        are (no second all-gather, no communication). Otherwise this rank's rows (its slice
        by ``counts``) go through :meth:`push`: a collective over the memory's own group,
        or a local write with ``gather_distributed=False`` or without torch.distributed.

        Args:
            prototypes, labels, image_ids: as in :meth:`push`, the n rows of all ranks.
            segment_ids: as in :meth:`push`; default ``arange(n)``, the row in the
                gathered batch (the global segment id of SegSortLoss's segments).
            counts: (world_size,) int64 rows per rank, summing to n (as returned by
                :func:`~segsort_ext.utils.distributed.all_gather_rows`).
            group: the :class:`~segsort_ext.utils.distributed.Group` the rows were
                gathered over.
        """
        rows = self._checked_rows(prototypes, labels, image_ids, segment_ids)
        if not isinstance(group, dist_utils.Group):
            raise TypeError(f"group must be a segsort_ext.utils.distributed.Group, got {type(group).__name__}")
        check.int64_tensor(counts, "counts")
        n = prototypes.shape[0]
        if tuple(counts.shape) != (group.world_size,) or int(counts.sum()) != n or bool((counts < 0).any()):
            raise ValueError(f"counts must hold world_size = {group.world_size} row counts >= 0 summing to "
                             f"n = {n}, got {counts.tolist()}")
        if self.gather_distributed and dist_utils.is_initialized() and self.process_group is group.group:
            self._write_gathered(*rows, counts)
            return
        start = int(counts[:group.rank].sum())
        mine = slice(start, start + int(counts[group.rank]))
        self._push_rows(*(t[mine] for t in rows))

    def tensors(self) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """``(prototypes (M, D), labels (M,) int64)``, oldest row first, or None when empty.

        The result is a copy (pushing later does not change it, so it is safe to use in a
        loss whose backward runs after the next push) and is what ``vmf_loss`` and
        ``vmf_nca_loss`` accept as ``memory`` (None included). Prototypes are in the
        memory's dtype: cast them to the embeddings' dtype if they differ.
        """
        if self._num_filled == 0:
            return None
        order = self._order()
        return self.prototypes.index_select(0, order), self.labels.index_select(0, order)

    def provenance(self) -> MemoryProvenance:
        """:class:`MemoryProvenance` of the rows, in the order of :meth:`tensors` (length M,
        empty tensors when the memory is empty)."""
        order = self._order()
        return MemoryProvenance(*(buffer.index_select(0, order)
                                  for buffer in (self.image_ids, self.segment_ids, self.ranks, self.batches)))

    def extra_repr(self) -> str:
        return (f"size={self.size}, dim={self.dim}, max_batches={self.max_batches}, filled={self._num_filled}, "
                f"dtype={self.prototypes.dtype}")

    # -- writing -------------------------------------------------------------------
    def _checked_rows(self, prototypes, labels, image_ids, segment_ids) -> tuple[torch.Tensor, ...]:
        """The arguments of a push, checked, detached in the memory's dtype, with the
        default image ids (-1) and segment ids (``arange(n)``) filled in."""
        check.float_tensor(prototypes, "prototypes")
        if prototypes.dim() != 2 or prototypes.shape[1] != self.dim:
            raise ValueError(f"prototypes must have shape (n, {self.dim}), got {tuple(prototypes.shape)}")
        n = prototypes.shape[0]
        device = self.prototypes.device
        optional = {"image_ids": image_ids, "segment_ids": segment_ids}
        if labels is None:
            raise TypeError("labels must be an int64 tensor (n,), got None: pass -1 for rows without a label")
        for name, value in (("prototypes", prototypes), ("labels", labels), *optional.items()):
            if value is None:
                continue
            if name != "prototypes":
                check.int64_tensor(value, name)
                if tuple(value.shape) != (n,):
                    raise ValueError(f"{name} must have shape (n,) = ({n},) to match prototypes, "
                                     f"got {tuple(value.shape)}")
            if value.device != device:
                raise ValueError(f"{name} ({value.device}) must be on the memory's device ({device}); "
                                 f"move the memory with .to(device)")
        if image_ids is None:
            image_ids = torch.full((n,), -1, dtype=torch.int64, device=device)
        if segment_ids is None:
            segment_ids = torch.arange(n, dtype=torch.int64, device=device)
        return prototypes.detach().to(self.prototypes.dtype), labels, image_ids, segment_ids

    def _push_rows(self, rows, labels, image_ids, segment_ids) -> None:
        # Gathers even with world size 1 (one code path for every world size).
        group = dist_utils.resolve_group(True, self.process_group)
        if group is not None and self.gather_distributed:
            ints = torch.stack([labels, image_ids, segment_ids], 1)
            (rows, ints), counts = dist_utils.all_gather_rows([rows, ints], group)
            labels, image_ids, segment_ids = (column.contiguous() for column in ints.unbind(1))
            self._write_gathered(rows, labels, image_ids, segment_ids, counts)
            return
        rank = group.rank if group is not None else 0
        ranks = torch.full((rows.shape[0],), rank, dtype=torch.int64, device=rows.device)
        self._write(rows, labels, image_ids, segment_ids, ranks)

    def _write_gathered(self, rows, labels, image_ids, segment_ids, counts) -> None:
        """Writes rows gathered in rank order; counts (world,) rows per rank."""
        ranks = torch.repeat_interleave(torch.arange(len(counts)), counts.cpu()).to(rows.device)
        self._write(rows, labels, image_ids, segment_ids, ranks)

    def _write(self, rows, labels, image_ids, segment_ids, ranks) -> None:
        self._num_pushes += 1
        n = rows.shape[0]
        if n >= self.size:
            # Only the newest `size` rows survive; lay them out oldest first from row 0.
            keep = slice(n - self.size, n)
            positions = torch.arange(self.size, device=rows.device)
            rows, labels, image_ids, segment_ids, ranks = (t[keep] for t in (rows, labels, image_ids, segment_ids,
                                                                            ranks))
            self._write_position = 0
        else:
            positions = (torch.arange(n, device=rows.device) + self._write_position) % self.size
            self._write_position = (self._write_position + n) % self.size
        kept = min(n, self.size)
        self.prototypes.index_copy_(0, positions, rows)
        for buffer, values in ((self.labels, labels), (self.image_ids, image_ids), (self.segment_ids, segment_ids),
                               (self.ranks, ranks)):
            buffer.index_copy_(0, positions, values)
        self.batches.index_fill_(0, positions, self._num_pushes)
        if self.max_batches is None:
            self._num_filled = min(self.size, self._num_filled + kept)
        else:
            # Rows older than the window are the oldest rows of the ring: forgetting them is
            # just a smaller fill count (their buffer rows are overwritten later).
            self._recent_push_rows.append(kept)
            self._num_filled = min(self.size, sum(self._recent_push_rows))
        self._sync_counter_buffers()
