"""Exact kNN by scans of the bank that never form the (Q, M) score matrix, so memory
stays bounded by one block of scores for banks of millions of rows. Exact ties at the
k-th place keep the lowest row ids, so results are exactly the canonical order (score
descending, then id ascending).

The scan keeps only the max of every group of ``_GROUP`` consecutive scores: on CPU one
fused op (segsort_ext.ops.group_max_scores) whose scores never leave the registers, on
other devices one GEMM and one SIMD reduction per block. A query's top-k lies in
the groups whose max reaches (almost) its k-th largest group max: about k groups, whose
scores are then computed again, exactly ranked and returned. Queries where that does not
hold cheaply (many tied group maxima, inner products that may overflow, reduced-precision
matmul) take an exact scan that merges a running top-k block by block instead."""
from __future__ import annotations

from typing import Optional

import torch

from segsort_ext.ops.group_max_scores import group_max_scores

__all__ = ["TorchBackend"]

# Scores per group: smaller groups mean a larger (Q, M / _GROUP) maxima matrix to write
# and select from, larger ones more candidate rows to gather and score again. Measured
# with the fused op (200 queries, 1.5M x 64 bank, 2 threads, vote time / bare GEMM):
# 32 and 64 within noise (0.60-0.64), 16 0.79, 128 0.73.
_GROUP = 64
# A query with more than this many times k candidate groups (ties) takes the merging scan.
_MAX_CANDIDATES_PER_K = 2


def _default_blocks(num_queries: int, device: torch.device) -> tuple[int, int]:
    """(query rows, bank rows) per block. On CPU a (Q=200, 32768) float32 score block
    (26 MiB) is still in cache when its group maxima are taken (blocks of 65536 rows
    measured 1.4x slower on an idle machine), and there are few enough blocks for a
    machine whose other load makes every parallel region wait (16384 rows: 1.6x slower
    there); on CUDA kernel launches dominate, so blocks are as large as a 256 MiB
    float32 score matrix allows."""
    if device.type == "cuda":
        query_rows = max(1, min(num_queries, 4096))
        return query_rows, max(16384, (1 << 26) // query_rows)
    return 1024, 32768


def _group_maxima(queries: torch.Tensor, bank: torch.Tensor, bank_rows: int) -> torch.Tensor:
    """(q, ceil(M / _GROUP)) largest score of every group of _GROUP consecutive bank rows:
    on CPU the op (its fused kernel, where no score reaches memory; without the extension
    its plain-PyTorch kernel, in blocks of at most 2**26 scores), elsewhere in blocks of
    bank_rows rows (rounded up to whole groups)."""
    if bank.device.type == "cpu":
        return group_max_scores(queries, bank, _GROUP)
    num_queries, num_rows = queries.shape[0], bank.shape[0]
    groups, block_groups = -(-num_rows // _GROUP), -(-bank_rows // _GROUP)
    scores = queries.new_empty(num_queries, min(groups, block_groups) * _GROUP)  # reused by every block
    maxima = []
    for first in range(0, groups, block_groups):
        block = bank[first * _GROUP:(first + block_groups) * _GROUP]
        block_scores = scores[:, :-(-block.shape[0] // _GROUP) * _GROUP]
        torch.mm(queries, block.T, out=block_scores[:, :block.shape[0]])
        if block.shape[0] < block_scores.shape[1]:
            block_scores[:, block.shape[0]:] = float("-inf")  # the tail of the last group
        maxima.append(block_scores.view(num_queries, -1, _GROUP).amax(dim=2))
    return torch.cat(maxima, 1)


def _rescore(queries: torch.Tensor, bank: torch.Tensor, k: int, group_ids: torch.Tensor, budget: int):
    """(scores, ids): the top-k of queries (q, D) among the bank rows of their candidate
    groups (q, width), ascending, padded with groups past the bank, at least k real rows
    per query, computed anew; the rows are gathered for as many queries at a time as keep
    them within `budget` elements (a block of scores)."""
    num_rows, dim = bank.shape
    # Padding groups and the tail of the last group score -inf, after every real row:
    # they never win (each query has k real candidates of finite score).
    ids = (group_ids.unsqueeze(2) * _GROUP + torch.arange(_GROUP, device=group_ids.device)).flatten(1)
    step = max(1, budget // (ids.shape[1] * dim))
    scores = torch.cat([torch.bmm(bank[ids[start:start + step].clamp_max(num_rows - 1)],
                                  queries[start:start + step].unsqueeze(2)).squeeze(2)
                        for start in range(0, ids.shape[0], step)])
    scores = scores.masked_fill_(ids >= num_rows, float("-inf"))
    scores, order = scores.sort(dim=1, descending=True, stable=True)  # ids ascending among ties
    return scores[:, :k].contiguous(), ids.gather(1, order[:, :k])


def _search_chunk(queries: torch.Tensor, bank: torch.Tensor, k: int, bank_rows: int, max_norm: float):
    """(scores, ids) of the top-k of queries (q, D) over bank (M >= k, D), canonical order.

    Let bar be a query's k-th largest group max: k distinct rows score at least bar, and
    every other row of its top-k scores at least as much, so it lies in a group whose max
    reaches bar. Computed again (a gather and a batched product instead of the fused op
    or the block GEMM, each summing in its own order), a score may differ by the rounding
    bound r of an inner product (twice gamma_D |q| |x|: each order, FMAs included, is
    within gamma_D |q| |x| of the exact value, Higham, Accuracy and Stability of
    Numerical Algorithms, 3.1). Groups
    whose max is at least bar - 2r are the candidates: a row outside them rescores below
    bar - r, below the k rows above, so the top-k of the rescored candidates, ties
    included, is the exact top-k of the rescored bank."""
    num_queries, dim = queries.shape
    maxima = _group_maxima(queries, bank, bank_rows)
    groups = maxima.shape[1]
    finfo = torch.finfo(queries.dtype)
    bound = torch.linalg.vector_norm(queries, dim=1) * max_norm  # >= every |partial sum| of a score
    gamma = dim * finfo.eps / (2 - dim * finfo.eps)
    rounding = 2 * (gamma * bound + dim * finfo.tiny)
    # The largest few group maxima: the candidates, if the first one left out is below them.
    most = _MAX_CANDIDATES_PER_K * k
    top, top_groups = maxima.topk(min(most + 1, groups), dim=1)
    floor = top[:, k - 1] - 2 * rounding if groups >= k else top.new_full((num_queries,), float("-inf"))
    candidate = ~(top < floor.unsqueeze(1))
    exact_matmul = queries.dtype != torch.float32 or torch.get_float32_matmul_precision() == "highest"
    fast = (bound < finfo.max / 2) & exact_matmul
    if groups > most:
        fast &= ~candidate[:, most]
        top_groups, candidate = top_groups[:, :most], candidate[:, :most]
    width = int(candidate.sum(1).max())
    group_ids = torch.where(candidate, top_groups, groups).sort(dim=1).values[:, :width]
    if bool(fast.all()):
        return _rescore(queries, bank, k, group_ids, num_queries * bank_rows)
    scores = queries.new_empty(num_queries, k)
    ids = torch.empty(num_queries, k, dtype=torch.int64, device=queries.device)
    fast_rows, slow_rows = fast.nonzero().squeeze(1), (~fast).nonzero().squeeze(1)
    if fast_rows.numel():
        scores[fast_rows], ids[fast_rows] = _rescore(queries[fast_rows], bank, k, group_ids[fast_rows],
                                                     num_queries * bank_rows)
    scores[slow_rows], ids[slow_rows] = _scan_bank(queries[slow_rows], bank, k, bank_rows)
    return scores, ids


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


def _exact_topk(queries: torch.Tensor, bank: torch.Tensor, k: int, max_norm: float,
                search_block: Optional[tuple[int, int]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k inner products of queries (Q, D) over bank (M, D), k <= M, in canonical
    order; max_norm: the largest norm of a bank row. Memory: one (query rows, bank rows)
    score block at a time (``search_block``; None: a default for the device)."""
    query_rows, bank_rows = search_block or _default_blocks(queries.shape[0], bank.device)
    results = [_search_chunk(queries[start:start + query_rows], bank, k, bank_rows, max_norm)
               for start in range(0, queries.shape[0], query_rows)]
    return torch.cat([scores for scores, _ in results]), torch.cat([ids for _, ids in results])


def _largest_norm(vectors: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(vectors, dim=1).max()) if vectors.shape[0] else 0.0


class TorchBackend:
    """Exact search by blocked matmul scans (see the module) over a bank of ``dtype``
    (float32, or float64) rows on ``device``, any device torch runs on."""

    kind = "torch"
    max_k = None

    def __init__(self, dim: int, device: torch.device, dtype: torch.dtype,
                 search_block: Optional[tuple[int, int]] = None):
        self.device, self.dtype = device, dtype
        self._search_block = search_block
        self._vectors = torch.empty(0, dim, dtype=dtype, device=device)
        self._max_norm = 0.0  # of a bank row: bounds the rounding error of a score
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
        self._max_norm = max(self._max_norm, _largest_norm(self._pending[-1]))

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _exact_topk(queries.to(self.device, self.dtype).contiguous(), self._bank(), k, self._max_norm,
                           self._search_block)

    def state(self) -> dict[str, torch.Tensor]:
        return {"vectors": self._bank().cpu()}

    def load_state(self, state: dict, num_rows: int) -> None:
        self._vectors = state["vectors"].to(self.device, self.dtype).contiguous()
        self._max_norm = _largest_norm(self._vectors)
