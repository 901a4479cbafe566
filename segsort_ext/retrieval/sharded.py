"""Search over a SegmentIndex sharded across the ranks of a torch.distributed group.

Each rank holds the rows it added (its shard: a backend plus per-row fields such as labels
and provenance). A search is a collective: the queries of all ranks are all-gathered, each
rank searches its shard for all of them, the per-shard top-k lists (scores, ids, fields)
are all-gathered, and each rank merges the lists of its own queries by score descending,
then global id ascending. A row's global id is its local id plus the rows of the ranks
before it: its row in the rank-order concatenation of the shards, so the result is that of
one index holding that concatenation. Communication per search: O(world * Q_total * k) for
the lists, plus the queries.
"""
from __future__ import annotations

from typing import Optional

import torch

from segsort_ext.retrieval.backend import Backend, gather_rows
from segsort_ext.utils import distributed as dist_utils

__all__ = ["search_shards"]

_QUERY_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def search_shards(group: dist_utils.Group, queries: torch.Tensor, k: int, backend: Optional[Backend],
                  fields: torch.Tensor, max_label: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The k best rows of all shards for each of this rank's queries (a collective).

    Args:
        queries: (Q, D) this rank's queries (any number, also none; one dtype on all
            ranks), as the backend takes them (normalised where the metric wants it).
        k: 1 <= k <= the rows of all shards.
        backend: this rank's shard; None before its first add.
        fields: (M, F) int64 per-row values of the shard (F alike on all ranks), on the
            backend's device.
        max_label: the largest label of the shard (-1: none).

    Returns:
        scores (Q, k) (float64 if any shard scores in float64, else float32), global ids
        (Q, k) int64, the neighbours' fields (Q, k, F), all on the device of the queries
        (-1 ids and fields, -inf scores where an approximate shard found too few), and the
        largest label of any shard. Every rank raises alike on a bad request.
    """
    if queries.dtype not in _QUERY_DTYPES:
        raise TypeError(f"queries must be float16, bfloat16, float32 or float64, got {queries.dtype}")
    size, num_fields = fields.shape
    local_k = min(k, size)
    shard_dtype = backend.dtype if backend is not None else torch.float32
    max_k = backend.max_k if backend is not None else None
    exceeded_max_k = max_k if max_k is not None and local_k > max_k else 0
    # One exchange of everything every rank must agree on before searching, so that a bad
    # request fails on every rank alike (never one rank alone, which would hang).
    table = dist_utils.all_gather_counts(
        [size, max_label, queries.shape[0], _QUERY_DTYPES.index(queries.dtype),
         int(shard_dtype == torch.float64), exceeded_max_k], group)
    sizes, total = table[:, 0], int(table[:, 0].sum())
    if total == 0:
        raise ValueError("search on an empty SegmentIndex: no shard holds prototypes, add() them first")
    if k > total:
        raise ValueError(f"k = {k} is larger than the number of indexed prototypes of all shards ({total})")
    if bool((table[:, 3] != table[0, 3]).any()):
        raise TypeError(f"queries must have one dtype on all ranks, got {[_QUERY_DTYPES[i] for i in table[:, 3]]}")
    if bool(table[:, 5].any()):
        raise ValueError(f"k = {k} exceeds faiss' GPU limit of {int(table[:, 5].max())} on some shard; "
                         f"use backend='torch'")
    score_dtype = torch.float64 if bool(table[:, 4].any()) else torch.float32
    query_counts = table[:, 2]
    out_device = queries.device
    work_device = backend.device if backend is not None else out_device

    (all_queries,), _ = dist_utils.all_gather_rows([queries.detach()], group, query_counts)
    num_all = all_queries.shape[0]
    # This shard's candidates for every rank's queries, padded to k columns: scores, and
    # the global id followed by the fields.
    scores = torch.full((num_all, k), float("-inf"), dtype=torch.float64, device=work_device)
    candidates = torch.full((num_all, k, 1 + num_fields), -1, dtype=torch.int64, device=work_device)
    if local_k > 0 and num_all > 0:
        shard_scores, shard_ids = backend.search(all_queries, local_k)
        offset = int(dist_utils.rank_offsets(sizes)[group.rank])
        scores[:, :local_k] = shard_scores.to(torch.float64)  # exact for float32 scores
        candidates[:, :local_k, 0] = torch.where(shard_ids >= 0, shard_ids + offset, -1)
        candidates[:, :local_k, 1:] = gather_rows(fields, shard_ids)
    (all_scores, all_candidates), _ = dist_utils.all_gather_rows(
        [scores, candidates], group, torch.full((group.world_size,), num_all, dtype=torch.int64))
    # (world * num_all, ...) -> this rank's queries, every shard's k candidates in a row.
    num_queries, width = queries.shape[0], group.world_size * k
    start = int(dist_utils.rank_offsets(query_counts)[group.rank])
    mine = slice(start, start + num_queries)
    all_scores = all_scores.view(group.world_size, num_all, k)[:, mine].permute(1, 0, 2).reshape(num_queries, width)
    all_candidates = all_candidates.view(group.world_size, num_all, k, 1 + num_fields)[:, mine]
    all_candidates = all_candidates.permute(1, 0, 2, 3).reshape(num_queries, width, 1 + num_fields)
    # Merge: score descending, then global id ascending (padding, id -1, goes last).
    ids = all_candidates[..., 0]
    key = torch.where(ids < 0, torch.iinfo(torch.int64).max, ids)
    order = key.argsort(dim=1, stable=True)
    order = order.gather(1, all_scores.gather(1, order).argsort(dim=1, descending=True, stable=True))[:, :k]
    merged_scores = all_scores.gather(1, order).to(score_dtype)
    merged = all_candidates.gather(1, order.unsqueeze(2).expand(-1, -1, 1 + num_fields))
    return (merged_scores.to(out_device), merged[..., 0].contiguous().to(out_device),
            merged[..., 1:].to(out_device), int(table[:, 1].max()))
