"""SegmentIndex at SegSort inference size: kNN voting (k=21) for the segments of one image
(Q=200 prototype queries) over a training-set bank of M=1.5M prototypes x D=64 with 21
classes, and the time to build the index.

Compared: faiss (GpuIndexFlatIP on a GPU when faiss sees one; IndexFlatIP on the host
otherwise, with host copies of CUDA queries), the exact torch backend (a blocked GEMM scan
with a running top-k: no (Q, M) score matrix), and what research code does today (SPML):
dense scores against the whole bank, then a full torch.argsort of every row, in query
chunks so the (chunk, M) score and index matrices fit.

Every vote row is measured against the bare GEMM it contains, queries x bank^T into a
preallocated (Q, M) output, run alternately with it in the same test (extra_info:
``vote_s``, ``bare_gemm_s``, ``vote_over_gemm``), and the vote's GFLOP/s (2 Q M D) against
the float32 GEMM peak measured in the same test (``fraction_of_peak``). The vote's pruning
scan alone (``group_max_scores``, the max score of every 64 bank rows) has a row of its
own against the bare GEMM (``scan_over_gemm``).

    SEGSORT_BENCH_BANK=1500000 pytest benchmarks/bench_retrieval.py --benchmark-group-by=group

Environment: SEGSORT_BENCH_BANK (M; CI-size runs shrink it), SEGSORT_BENCH_THREADS (CPU
threads of torch and faiss, default 2), SEGSORT_BENCH_ROUNDS (votes per row, default 5;
the full-argsort way, tens of seconds per call on a CPU, runs once).
"""
import os
import statistics

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.ops.group_max_scores import group_max_scores
from segsort_ext.retrieval import SegmentIndex

from conftest import run
from machine_peak import interleaved, torch_threads

M = int(os.environ.get("SEGSORT_BENCH_BANK", "1500000"))
THREADS = int(os.environ.get("SEGSORT_BENCH_THREADS", 2))
ROUNDS = int(os.environ.get("SEGSORT_BENCH_ROUNDS", 5))
D, Q, K, NUM_CLASSES = 64, 200, 21, 21

_banks = {}


def bank(device, m=M):
    """(vectors (m, D) unit float32, labels (m,) int64, queries (Q, D) unit float32) on
    device, generated once per device and size (1.5M x 64 random vectors take seconds)."""
    if (device, m) not in _banks:
        g = torch.Generator().manual_seed(0)
        vectors = F.normalize(torch.randn(m, D, generator=g), dim=1)
        labels = torch.randint(0, NUM_CLASSES, (m,), generator=g)
        queries = F.normalize(torch.randn(Q, D, generator=g), dim=1)
        _banks[device, m] = (vectors.to(device), labels.to(device), queries.to(device))
    return _banks[device, m]


def _index(impl, device):
    if impl == "faiss":
        faiss = pytest.importorskip("faiss")
        faiss.omp_set_num_threads(THREADS)
        return SegmentIndex(D, backend="faiss", device=device)
    return SegmentIndex(D, backend="torch", device=device)


def full_argsort_vote(vectors, labels, queries):
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
def test_vote(benchmark, record_roofline, device, impl):
    benchmark.group = f"vote k={K} {device} M={M} D={D} Q={Q} {THREADS} threads"
    vectors, labels, queries = bank(device)
    if impl == "full_argsort":
        vote = lambda: full_argsort_vote(vectors, labels, queries)  # noqa: E731
    else:
        index = _index("faiss" if impl == "faiss" else "torch", device)
        index.add(vectors, labels)
        benchmark.extra_info["backend"] = index.backend  # faiss-gpu, or faiss-cpu without one
        vote = lambda: index.vote(queries, K, num_classes=NUM_CLASSES)  # noqa: E731
    scores = torch.empty(Q, M, device=device)
    bare_gemm = lambda: torch.mm(queries, vectors.T, out=scores)  # noqa: E731
    rounds = 1 if impl == "full_argsort" and device == "cpu" else ROUNDS
    with torch_threads(THREADS):
        vote(), bare_gemm()  # warm-up
        vote_s, gemm_s = interleaved(benchmark, vote, bare_gemm, rounds, device)
        ours, gemm, flop = statistics.median(vote_s), statistics.median(gemm_s), 2 * Q * M * D
        record_roofline(device, flop=flop, time_s=ours)  # the vote's own GFLOP/s: it does the GEMM's work
    benchmark.extra_info.update({
        "threads": THREADS, "vote_s": ours, "bare_gemm_s": gemm, "vote_over_gemm": ours / gemm,
        "vote_rounds_s": vote_s, "bare_gemm_rounds_s": gemm_s, "bare_gemm_gflops": flop / gemm / 1e9,
    })


def test_group_max_scores(benchmark, record_roofline, device):
    """The vote's pruning scan alone (segsort_ext.ops.group_max_scores: the max score of
    every 64 bank rows, no score stored), against the bare GEMM in the same test."""
    benchmark.group = f"group maxima {device} M={M} D={D} Q={Q} {THREADS} threads"
    vectors, _, queries = bank(device)
    scores = torch.empty(Q, M, device=device)
    scan = lambda: group_max_scores(queries, vectors, 64)  # noqa: E731
    bare_gemm = lambda: torch.mm(queries, vectors.T, out=scores)  # noqa: E731
    with torch_threads(THREADS):
        scan(), bare_gemm()  # warm-up
        scan_s, gemm_s = interleaved(benchmark, scan, bare_gemm, ROUNDS, device)
        ours, gemm, flop = statistics.median(scan_s), statistics.median(gemm_s), 2 * Q * M * D
        record_roofline(device, flop=flop, time_s=ours)
    benchmark.extra_info.update({"threads": THREADS, "scan_s": ours, "bare_gemm_s": gemm,
                                 "scan_over_gemm": ours / gemm})


@pytest.mark.parametrize("impl", ["faiss", "torch_blocked"])
def test_add(benchmark, record_roofline, device, impl):
    """Index build: create an index and add the whole bank (faiss copies it into its own
    storage, on the GPU for a GPU index; the torch backend copies it once): memory-bound,
    at least one copy of the vectors and labels (GB/s against the copy bandwidth)."""
    benchmark.group = f"add {device} M={M} D={D}"
    vectors, labels, _ = bank(device)
    kind = "faiss" if impl == "faiss" else "torch"
    _index(kind, device)  # skips here when faiss is missing

    def build():
        index = _index(kind, device)
        index.add(vectors, labels)
        benchmark.extra_info["backend"] = index.backend
        return index

    run(benchmark, build, device)
    record_roofline(device, nbytes=2 * (vectors.numel() * 4 + labels.numel() * 8))
