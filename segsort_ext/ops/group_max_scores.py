"""Group maxima of inner products: the pruning scan of exact kNN search
(:mod:`segsort_ext.retrieval`), without the (Q, M) score matrix."""
from __future__ import annotations

import torch

from segsort_ext.ops import reference
from segsort_ext.ops._extension import ops, python_kernel
from segsort_ext.utils import checks as check

__all__ = ["group_max_scores"]

# Off the fused kernel, the bank goes in blocks of whole groups whose (Q, rows) scores hold
# at most this many elements: memory stays bounded for banks of any size.
_BLOCK_SCORES = 1 << 26


def group_max_scores(queries: torch.Tensor, bank: torch.Tensor, group: int) -> torch.Tensor:
    """The largest inner product of each query with each group of ``group`` consecutive
    bank rows.

    Args:
        queries: (Q, D) float32 or float64.
        bank: (M, D), the dtype and device of ``queries``.
        group: rows per group (>= 1); the last group has the remaining ``M % group`` rows
            when ``group`` does not divide M.

    Returns:
        (Q, ceil(M / group)): ``out[i, j] = max(queries[i] @ bank[j * group:(j + 1) * group].T)``.
        A group with a NaN score reports NaN (as ``amax``). Not differentiable.

    On CPU a fused kernel computes the scores in registers and stores only the maxima
    (memory O(Q M / group)); each score is accumulated over D in order with FMAs, so it
    may differ from ``queries @ bank.T`` in the last bits (both stay within the usual
    rounding bound of a length-D inner product). Other devices, and builds without the
    extension, run the op's plain-PyTorch kernel: the reference on blocks of at most 2**26
    scores.
    """
    check.tensor(queries, "queries")
    check.tensor(bank, "bank")
    group = check.int64(check.positive_int(group, "group"), "group")
    return ops.group_max_scores(queries, bank, group)


def _check(queries: torch.Tensor, bank: torch.Tensor) -> None:
    """The compiled kernel's checks, for the plain-PyTorch kernel and the fake."""
    if queries.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"queries must be float32 or float64, got {queries.dtype}")
    if bank.dtype != queries.dtype:
        raise TypeError(f"bank must have the dtype of queries ({queries.dtype}), got {bank.dtype}")
    check.same_device(queries, "queries", bank, "bank")
    if queries.dim() != 2:
        raise ValueError(f"queries must have shape (Q, D), got {tuple(queries.shape)}")
    if bank.dim() != 2 or bank.shape[1] != queries.shape[1]:
        raise ValueError(f"bank must have shape (M, D = {queries.shape[1]}) to match queries, got {tuple(bank.shape)}")


@python_kernel("group_max_scores")
def _group_max_scores_python(queries, bank, group):
    """The plain-PyTorch kernel (every device but the CPU, and the CPU without the
    extension): ``reference.group_max_scores`` on blocks of whole groups of at most
    ``_BLOCK_SCORES`` scores."""
    _check(queries, bank)
    check.positive_int(group, "group")
    rows = max(1, _BLOCK_SCORES // max(1, queries.shape[0] * group)) * group
    if bank.shape[0] <= rows:
        return reference.group_max_scores(queries, bank, group)
    return torch.cat([reference.group_max_scores(queries, bank[start:start + rows], group)
                      for start in range(0, bank.shape[0], rows)], 1)


@torch.library.register_fake("segsort_ext::group_max_scores")
def _group_max_scores_fake(queries, bank, group):
    # Meta tensors reach only this function: a mix with real ones must not pass.
    _check(queries, bank)
    check.positive_int(group, "group")
    return queries.new_empty((queries.shape[0], -(-bank.shape[0] // group)))
