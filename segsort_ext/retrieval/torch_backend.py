"""Exact kNN in plain PyTorch: a blocked scan of the bank that keeps a running top-k per
query and never forms the (Q, M) score matrix, so memory stays bounded by one block of
scores for banks of millions of rows. Exact ties at the k-th place keep the lowest row
ids, so results are exactly the canonical order (score descending, then id ascending).

Each bank block costs one GEMM and one cheap SIMD pass (the max of every group of
``_GROUP`` consecutive scores); only the groups whose max can still enter a query's
top-k are gathered and merged. After the first blocks that is a small fraction: a
random row beats the k-th best of the n rows before it with probability k / n."""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["TorchBackend"]

# Scores per group in the filter: a group's max is one SIMD reduction, and a group that
# passes costs a gather of _GROUP scores. With 128, the maxima of a (200, 16384) block
# number under ATen's grain size (32768), so the filter's small ops run serially.
_GROUP = 128


def _default_blocks(num_queries: int, device: torch.device) -> tuple[int, int]:
    """(query rows, bank rows) per block. On CPU a (Q=200, 16384) float32 score block
    (13 MiB) is still in the last-level cache when its group maxima are taken (blocks
    of 65536 rows measured 1.5x slower); on CUDA kernel launches dominate, so blocks are
    as large as a 256 MiB float32 score matrix allows."""
    if device.type == "cuda":
        query_rows = max(1, min(num_queries, 4096))
        return query_rows, max(16384, (1 << 26) // query_rows)
    return 1024, 16384


def _reaches(values: torch.Tensor, bar: torch.Tensor, strict: bool) -> torch.Tensor:
    """values > bar (strict) or values >= bar, written `not (values <= bar)` so that NaN
    passes."""
    return ~(values <= bar) if strict else ~(values < bar)


def _scan_bank(queries: torch.Tensor, bank: torch.Tensor, k: int, bank_rows: int):
    """(scores, ids) of the top-k of queries (q, D) over bank (M >= k, D), canonical order.

    The bank is scanned in ascending row order, in blocks of bank_rows rows (the first
    one of at least k rows, so the running top-k is full after it). A score can enter a
    query's top-k only if it is at least the query's bar: in the first block the k-th
    largest group max (k scores are at least as large), later the running k-th, which it
    must beat (a tie loses to the running entry: its id is smaller). Groups whose max
    misses the bar are skipped whole; the scores that pass are merged into the running
    top-k. NaN scores (from inputs that overflow) pass the bar, and the merge's stable
    sort ranks them first, as topk does."""
    num_queries, device = queries.shape[0], queries.device
    best_scores = queries.new_empty(num_queries, 0)
    best_ids = torch.empty(num_queries, 0, dtype=torch.int64, device=device)
    first = max(k, bank_rows)
    scores = queries.new_empty(num_queries, -(-first // _GROUP) * _GROUP)  # reused by every block
    for start in [0, *range(first, bank.shape[0], bank_rows)]:
        block = bank[start:start + (first if start == 0 else bank_rows)]
        width = block.shape[0]
        block_scores = scores[:, :-(-width // _GROUP) * _GROUP]
        torch.mm(queries, block.T, out=block_scores[:, :width])
        block_scores[:, width:] = float("-inf")  # the tail of the last group never passes
        grouped = block_scores.view(num_queries, -1, _GROUP)
        maxima = grouped.amax(dim=2)
        first_block = best_scores.shape[1] < k
        if first_block:  # with fewer than k groups, all of it passes
            bar = (maxima.topk(k, dim=1).values[:, -1:] if maxima.shape[1] >= k
                   else maxima.new_full((num_queries, 1), float("-inf")))
        else:
            bar = best_scores[:, -1:]
        rows, group = _reaches(maxima, bar, strict=not first_block).nonzero().unbind(1)
        if rows.shape[0] == 0:
            continue
        values = grouped[rows, group]  # (groups that pass, _GROUP)
        pair, lane = _reaches(values, bar[rows], strict=not first_block).nonzero().unbind(1)  # ascending (query, id)
        rows, new_scores, new_ids = rows[pair], values[pair, lane], start + group[pair] * _GROUP + lane
        # The new scores of each touched query side by side, padded with -inf after them.
        touched, per_row = torch.unique_consecutive(rows, return_counts=True)
        which = torch.repeat_interleave(torch.arange(touched.shape[0], device=device), per_row)
        slot = torch.arange(rows.shape[0], device=device) - (per_row.cumsum(0) - per_row)[which]
        padded_scores = scores.new_full((touched.shape[0], int(per_row.max())), float("-inf"))
        padded_ids = torch.zeros(padded_scores.shape, dtype=torch.int64, device=device)
        padded_scores[which, slot], padded_ids[which, slot] = new_scores, new_ids
        # Running entries first, then the new ones in ascending id order: the stable sort
        # keeps equal scores in id order, and the padding (after them) never wins.
        merged, order = torch.cat([best_scores[touched], padded_scores], 1).sort(dim=1, descending=True, stable=True)
        merged_ids = torch.cat([best_ids[touched], padded_ids], 1).gather(1, order[:, :k])
        if first_block:  # every query is touched
            best_scores, best_ids = merged[:, :k].contiguous(), merged_ids
        else:
            best_scores[touched], best_ids[touched] = merged[:, :k], merged_ids
    return best_scores, best_ids


def _exact_topk(queries: torch.Tensor, bank: torch.Tensor, k: int,
                search_block: Optional[tuple[int, int]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k inner products of queries (Q, D) over bank (M, D), k <= M, in canonical
    order. Memory: one (query rows, bank rows) score block at a time (``search_block``;
    None: a default for the device)."""
    query_rows, bank_rows = search_block or _default_blocks(queries.shape[0], bank.device)
    results = [_scan_bank(queries[start:start + query_rows], bank, k, bank_rows)
               for start in range(0, queries.shape[0], query_rows)]
    return torch.cat([scores for scores, _ in results]), torch.cat([ids for _, ids in results])


class TorchBackend:
    """Exact search by a blocked matmul scan with a running top-k over a bank of ``dtype``
    (float32, or float64) rows on ``device``, any device torch runs on."""

    kind = "torch"
    max_k = None

    def __init__(self, dim: int, device: torch.device, dtype: torch.dtype,
                 search_block: Optional[tuple[int, int]] = None):
        self.device, self.dtype = device, dtype
        self._search_block = search_block
        self._vectors = torch.empty(0, dim, dtype=dtype, device=device)
        # Added rows wait here and are concatenated once, at the next search, so many
        # small add() calls cost O(M) copying, not O(M^2).
        self._pending: list[torch.Tensor] = []

    def _bank(self) -> torch.Tensor:
        if self._pending:
            parts = ([self._vectors] if self._vectors.shape[0] else []) + self._pending
            self._vectors = parts[0] if len(parts) == 1 else torch.cat(parts)
            self._pending.clear()
        return self._vectors

    def add(self, vectors: torch.Tensor) -> None:
        # copy=True: the bank must not alias a tensor the caller may change later
        self._pending.append(vectors.to(self.device, self.dtype, copy=True).contiguous())

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _exact_topk(queries.to(self.device, self.dtype).contiguous(), self._bank(), k, self._search_block)

    def state(self) -> dict[str, torch.Tensor]:
        return {"vectors": self._bank().cpu()}

    def load_state(self, state: dict, num_rows: int) -> None:
        self._vectors = state["vectors"].to(self.device, self.dtype).contiguous()
