"""SegmentIndex at SegSort inference size: kNN voting (k=21) for the segments of one image
(Q=200 prototype queries) over a training-set bank of M=1.5M prototypes x D=64 with 21
classes, and the time to build the index.

Compared: faiss (GpuIndexFlatIP on a GPU when faiss sees one; IndexFlatIP on the host
otherwise, with host copies of CUDA queries), the exact torch backend (blocked matmul +
topk with a running top-k), and what research code does today (SPML): dense scores
against the whole bank, then a full torch.argsort of every row, in query chunks so the
(chunk, M) score and index matrices fit.

    SEGSORT_BENCH_BANK=1500000 pytest benchmarks/bench_retrieval.py --benchmark-group-by=group

SEGSORT_BENCH_BANK sets M (CI-size runs shrink it). On a CPU the full-argsort way takes
tens of seconds per call at the default M: add --benchmark-min-rounds=1 there.
"""
import os

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.retrieval import SegmentIndex

from conftest import run

M = int(os.environ.get("SEGSORT_BENCH_BANK", "1500000"))
D, Q, K, NUM_CLASSES = 64, 200, 21, 21

_banks = {}


def _bank(device):
    """(vectors (M, D) unit float32, labels (M,) int64, queries (Q, D) unit float32) on
    device, generated once per device (1.5M x 64 random vectors take seconds)."""
    if device not in _banks:
        g = torch.Generator().manual_seed(0)
        vectors = F.normalize(torch.randn(M, D, generator=g), dim=1)
        labels = torch.randint(0, NUM_CLASSES, (M,), generator=g)
        queries = F.normalize(torch.randn(Q, D, generator=g), dim=1)
        _banks[device] = (vectors.to(device), labels.to(device), queries.to(device))
    return _banks[device]


def _index(impl, device):
    if impl == "faiss":
        pytest.importorskip("faiss")
        return SegmentIndex(D, backend="faiss", device=device)
    return SegmentIndex(D, backend="torch", device=device)


def _full_argsort_vote(vectors, labels, queries):
    """SPML's way: all M scores per query, a full argsort, the first k, a one-hot vote.
    Query chunks keep (chunk, M) float32 scores + int64 argsort output under ~0.8 GB."""
    chunk = max(1, (1 << 26) // vectors.shape[0])
    predictions = []
    for start in range(0, queries.shape[0], chunk):
        scores = queries[start:start + chunk] @ vectors.T
        nearest = scores.argsort(dim=1, descending=True)[:, :K]
        votes = F.one_hot(labels[nearest], NUM_CLASSES).sum(dim=1)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


@pytest.mark.parametrize("impl", ["faiss", "torch_blocked", "full_argsort"])
def test_vote(benchmark, device, impl):
    benchmark.group = f"vote k={K} {device} M={M} D={D} Q={Q}"
    vectors, labels, queries = _bank(device)
    if impl == "full_argsort":
        fn = lambda: _full_argsort_vote(vectors, labels, queries)  # noqa: E731
    else:
        index = _index("faiss" if impl == "faiss" else "torch", device)
        index.add(vectors, labels)
        benchmark.extra_info["backend"] = index.backend  # faiss-gpu, or faiss-cpu without one
        fn = lambda: index.vote(queries, K, num_classes=NUM_CLASSES)  # noqa: E731
    run(benchmark, fn, device)


@pytest.mark.parametrize("impl", ["faiss", "torch_blocked"])
def test_add(benchmark, device, impl):
    """Index build: create an index and add the whole bank (faiss copies it into its own
    storage, on the GPU for a GPU index; the torch backend copies it once)."""
    benchmark.group = f"add {device} M={M} D={D}"
    vectors, labels, _ = _bank(device)
    kind = "faiss" if impl == "faiss" else "torch"
    _index(kind, device)  # skips here when faiss is missing

    def build():
        index = _index(kind, device)
        index.add(vectors, labels)
        benchmark.extra_info["backend"] = index.backend
        return index

    run(benchmark, build, device)
