"""Exact kNN in plain PyTorch: blocked ``matmul`` + ``topk`` (query blocks x bank blocks,
merging a running top-k), so memory stays bounded by one block of scores for banks of
millions of rows. Exact ties at the k-th place keep the lowest row ids, so results are
exactly the canonical order (score descending, then id ascending)."""
from __future__ import annotations

from typing import Optional

import torch

from segsort_ext.retrieval.backend import canonical_order

__all__ = ["TorchBackend"]


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
    values, cols = canonical_order(values, cols)
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
            best_scores, best_ids = canonical_order(merged_scores, merged_ids)
    return best_scores, best_ids, any_straddles


def _default_blocks(num_queries: int, device: torch.device) -> tuple[int, int]:
    """(query rows, bank rows) per block. On CPU a 16k-row bank block keeps the (q, b)
    scores near cache size (measured fastest for q=200, D=64); on CUDA kernel launches
    dominate, so blocks are as large as a 256 MiB float32 score matrix allows."""
    if device.type == "cuda":
        query_rows = max(1, min(num_queries, 4096))
        return query_rows, max(16384, (1 << 26) // query_rows)
    return 1024, 16384


def _exact_topk(queries: torch.Tensor, bank: torch.Tensor, k: int,
                search_block: Optional[tuple[int, int]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k inner products of queries (Q, D) over bank (M, D), k <= M, in canonical
    order. Memory: one (query rows, bank rows) score block at a time (``search_block``;
    None: a default for the device)."""
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


class TorchBackend:
    """Exact search by blocked matmul + topk over a bank of ``dtype`` (float32, or float64)
    rows on ``device``, any device torch runs on."""

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
