"""SegmentIndex on every backend: exact kNN (torch blocks and ties, faiss flat), IVF
recall, vote, explain, save/load, and running without faiss. Bad inputs and corrupt
files: tests/hostile/cases_retrieval.py and test_bad_inputs.py. The sharded index is tested
in tests/utils/test_distributed.py (two gloo processes)."""
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segsort_ext.cluster import finch
from segsort_ext.retrieval import Neighbours, SegmentIndex
from segsort_ext.testing import HAS_FAISS, needs_faiss

EXACT_BACKENDS = ["torch", pytest.param("faiss", marks=needs_faiss)]


def canonical_knn(queries: torch.Tensor, bank: torch.Tensor, k: int):
    """Brute force in float64 numpy: scores and ids ordered by score desc, then id asc."""
    scores = queries.double().numpy() @ bank.double().numpy().T
    row_ids = np.broadcast_to(np.arange(bank.shape[0]), scores.shape)
    order = np.lexsort((row_ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), order


def random_bank(num_rows, dim, num_classes=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    vectors = F.normalize(torch.randn(num_rows, dim, generator=g), dim=1)
    labels = torch.randint(0, num_classes, (num_rows,), generator=g)
    return vectors, labels, g


def quantised(shape, g):
    """Small integers as float32: products and sums are exact, so ties are exact and many."""
    return torch.randint(-2, 3, shape, generator=g).float()


# ---------------------------------------------------------------------------------------
# exact search
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_search_matches_brute_force(backend):
    bank, labels, g = random_bank(3000, 16)
    queries = torch.randn(50, 16, generator=g)
    index = SegmentIndex(16, backend=backend)
    index.add(bank[:1200], labels[:1200])  # two adds: ids continue across calls
    index.add(bank[1200:], labels[1200:])
    assert len(index) == 3000
    scores, ids = index.search(queries, 21)
    ref_scores, ref_ids = canonical_knn(queries, bank, 21)
    assert scores.dtype == torch.float32 and ids.dtype == torch.int64
    assert scores.shape == ids.shape == (50, 21)
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_allclose(scores.double().numpy(), ref_scores, rtol=0, atol=1e-5)


def test_torch_search_over_many_blocks_matches_brute_force():
    """A bank of 10 blocks and 3 query blocks (forced tiny), with continuous data."""
    bank, labels, g = random_bank(600, 8)
    queries = torch.randn(20, 8, generator=g)
    index = SegmentIndex(8, backend="torch", search_block=(7, 64))
    index.add(bank, labels)
    scores, ids = index.search(queries, 21)
    ref_scores, ref_ids = canonical_knn(queries, bank, 21)
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_allclose(scores.double().numpy(), ref_scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize("search_block", [None, (7, 64), (64, 21), (5, 3)])
def test_torch_exact_ties_go_to_lowest_row(search_block):
    """Quantised data has large groups of equal scores straddling the k-th place, inside
    and across bank blocks: the torch backend must keep and order the lowest rows."""
    g = torch.Generator().manual_seed(1)
    bank, queries = quantised((600, 6), g), quantised((20, 6), g)
    index = SegmentIndex(6, backend="torch", search_block=search_block)
    index.add(bank, torch.zeros(600, dtype=torch.int64))
    scores, ids = index.search(queries, 21)
    ref_scores, ref_ids = canonical_knn(queries, bank, 21)
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_array_equal(scores.double().numpy(), ref_scores)


def test_torch_ties_across_many_filtered_blocks():
    """Blocks of 5 * 128 rows (the first one filtered by its group maxima, the next ones by
    the running k-th) over quantised data: tie groups inside groups, blocks and at the
    k-th place; every query touched in some blocks and skipped in others."""
    g = torch.Generator().manual_seed(2)
    bank, queries = quantised((12000, 6), g), quantised((30, 6), g)
    bank[7000:7300] = bank[:300]  # the same ties again, far from the first block
    for search_block in [(30, 640), (7, 3000)]:
        index = SegmentIndex(6, backend="torch", search_block=search_block)
        index.add(bank, torch.zeros(12000, dtype=torch.int64))
        scores, ids = index.search(queries, 21)
        ref_scores, ref_ids = canonical_knn(queries, bank, 21)
        np.testing.assert_array_equal(ids.numpy(), ref_ids)
        np.testing.assert_array_equal(scores.double().numpy(), ref_scores)


def test_torch_scores_that_overflow_rank_as_a_stable_sort_would():
    """Finite vectors whose inner products overflow give inf and -inf scores (metric
    'ip'), many equal: the result is the stable descending sort of the float32 scores.

    The overflowing rows have one non-zero coordinate, so each of their scores is one
    product and its float32 value (inf, -inf) does not depend on how a GEMM sums: with
    several large terms, whether a score is inf or NaN depends on the BLAS kernel, which
    differs with the matrix shape (MKL's AVX2 path gives other values for a 6-row and a
    4-row product), and the reference would not be one."""
    g = torch.Generator().manual_seed(3)
    bank = torch.randn(3000, 4, generator=g)
    huge = torch.arange(0, 3000, 11)
    bank[huge] = 0.0
    bank[huge, huge % 4] = torch.randn(huge.shape[0], generator=g).sign() * 1e38
    queries = torch.randn(6, 4, generator=g) * 10
    index = SegmentIndex(4, backend="torch", search_block=(4, 256))
    index.add(bank, torch.zeros(3000, dtype=torch.int64))
    scores, ids = index.search(queries, 21)
    full = queries @ bank.T
    assert (full == float("inf")).sum(1).min() > 21 and (full == -float("inf")).any()
    ref_scores, ref_ids = full.sort(dim=1, descending=True, stable=True)
    assert torch.equal(ids, ref_ids[:, :21]) and torch.equal(scores, ref_scores[:, :21])


def test_torch_queries_of_both_search_paths_in_one_call():
    """Ordinary queries (their top-k found among the few groups of rows whose max reaches
    their k-th largest group max) next to queries whose inner products may overflow and to
    a reduced-precision matmul setting (both take the block-merging scan)."""
    bank, labels, g = random_bank(5000, 16)
    queries = torch.randn(12, 16, generator=g)
    queries[::3] *= 1e37  # |q| |x| near float32's max: scores may overflow
    index = SegmentIndex(16, backend="torch", search_block=(12, 1000))
    index.add(bank, labels)
    scores, ids = index.search(queries, 21)
    ordinary = torch.ones(12, dtype=torch.bool)
    ordinary[::3] = False
    ref_scores, ref_ids = canonical_knn(queries[ordinary], bank, 21)
    np.testing.assert_array_equal(ids[ordinary].numpy(), ref_ids)
    np.testing.assert_allclose(scores[ordinary].double().numpy(), ref_scores, rtol=0, atol=1e-5)
    full_scores, full_ids = (queries[~ordinary] @ bank.T).sort(dim=1, descending=True, stable=True)
    assert torch.equal(ids[~ordinary], full_ids[:, :21])
    torch.testing.assert_close(scores[~ordinary], full_scores[:, :21], rtol=1e-6, atol=0)
    quantised_bank, quantised_queries = quantised((3000, 6), g), quantised((9, 6), g)
    index = SegmentIndex(6, backend="torch", search_block=(9, 500))
    index.add(quantised_bank, torch.zeros(3000, dtype=torch.int64))
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        scores, ids = index.search(quantised_queries, 21)
    finally:
        torch.set_float32_matmul_precision(previous)
    ref_scores, ref_ids = canonical_knn(quantised_queries, quantised_bank, 21)
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_array_equal(scores.double().numpy(), ref_scores)


@needs_faiss
def test_faiss_exact_ties_same_scores_and_order():
    """faiss keeps an arbitrary part of a tie group straddling the k-th place (documented);
    scores are identical, every row above the k-th score is the same, and equal scores are
    listed by ascending row."""
    g = torch.Generator().manual_seed(1)
    bank, queries = quantised((1500, 6), g), quantised((30, 6), g)
    index = SegmentIndex(6, backend="faiss")
    index.add(bank, torch.zeros(1500, dtype=torch.int64))
    scores, ids = index.search(queries, 21)
    ref_scores, ref_ids = canonical_knn(queries, bank, 21)
    np.testing.assert_array_equal(scores.double().numpy(), ref_scores)
    above_kth = ref_scores > ref_scores[:, -1:]
    np.testing.assert_array_equal(ids.numpy()[above_kth], ref_ids[above_kth])
    full = queries.double() @ bank.double().T
    assert torch.equal(full.gather(1, ids), scores.double())  # ids really have those scores
    for row_scores, row_ids in zip(scores, ids):
        for value in row_scores.unique():
            tied = row_ids[row_scores == value]
            assert torch.equal(tied, tied.sort().values)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_duplicate_rows_listed_by_ascending_id(backend):
    bank = torch.tensor([[1.0, 0.0], [0.5, 0.0], [1.0, 0.0], [1.0, 0.0], [0.25, 0.0]])
    index = SegmentIndex(2, backend=backend)
    index.add(bank, torch.arange(5))
    scores, ids = index.search(torch.tensor([[1.0, 0.0]]), 4)
    assert ids.tolist() == [[0, 2, 3, 1]]
    assert scores.tolist() == [[1.0, 1.0, 1.0, 0.5]]
    if backend == "torch":  # the tie group straddles k=2: the lowest rows are kept
        assert index.search(torch.tensor([[1.0, 0.0]]), 2)[1].tolist() == [[0, 2]]


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_search_cosine_metric_normalises(backend):
    bank, _, g = random_bank(500, 8)
    scaled = bank * torch.rand(500, 1, generator=g).add(0.1) * 10
    queries = torch.randn(9, 8, generator=g) * 3
    index = SegmentIndex(8, metric="cosine", backend=backend)
    index.add(scaled, torch.zeros(500, dtype=torch.int64))
    scores, ids = index.search(queries, 5)
    ref_scores, ref_ids = canonical_knn(F.normalize(queries, dim=1), F.normalize(scaled, dim=1), 5)
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_allclose(scores.double().numpy(), ref_scores, atol=1e-5)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_search_noncontiguous_and_empty_queries(backend):
    bank, labels, g = random_bank(300, 8)
    index = SegmentIndex(8, backend=backend)
    index.add(bank[::1], labels)
    wide = torch.randn(12, 16, generator=g)
    strided = wide[:, ::2]
    assert not strided.is_contiguous()
    scores, ids = index.search(strided, 3)
    ref_ids = canonical_knn(strided, bank, 3)[1]
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    scores, ids = index.search(torch.empty(0, 8), 3)
    assert scores.shape == ids.shape == (0, 3)


def test_torch_backend_float64_bank():
    bank, labels, g = random_bank(400, 8)
    bank = bank.double()
    queries = torch.randn(10, 8, generator=g, dtype=torch.float64)
    index = SegmentIndex(8, backend="torch", search_block=(4, 64))
    index.add(bank, labels)
    scores, ids = index.search(queries, 7)
    ref_scores, ref_ids = canonical_knn(queries, bank, 7)
    assert scores.dtype == torch.float64
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_add_copies_its_inputs(backend):
    bank, labels, _ = random_bank(50, 4)
    queries = bank[:3].clone()
    index = SegmentIndex(4, backend=backend)
    index.add(bank, labels)
    before = index.explain(queries, 2)
    bank.zero_()  # the caller reuses its buffers
    labels.fill_(5)
    after = index.explain(queries, 2)
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_backend_selection_and_repr():
    index = SegmentIndex(4)
    assert index.backend is None and len(index) == 0
    index.add(torch.randn(3, 4), torch.zeros(3, dtype=torch.int64))
    assert index.backend == ("faiss-cpu" if HAS_FAISS else "torch")
    assert index.device == torch.device("cpu")
    assert "size=3" in repr(index)
    assert SegmentIndex(4, backend="torch").backend is None


def test_cuda_matches_cpu(device):
    """On a GPU: 'auto' (faiss GPU when faiss sees one, else torch on CUDA) and the torch
    backend on CUDA return the CPU neighbours for continuous data."""
    bank, labels, g = random_bank(5000, 32)
    queries = torch.randn(64, 32, generator=g)
    cpu = SegmentIndex(32, backend="torch")
    cpu.add(bank, labels)
    ref_scores, ref_ids = cpu.search(queries, 21)
    for backend in ("auto", "torch"):
        index = SegmentIndex(32, backend=backend, device=device)
        index.add(bank.to(device), labels.to(device))
        scores, ids = index.search(queries.to(device), 21)
        assert ids.device.type == device
        assert torch.equal(ids.cpu(), ref_ids)
        torch.testing.assert_close(scores.cpu(), ref_scores, atol=1e-5, rtol=0)
        vote_labels, votes = index.vote(queries.to(device), 21)
        ref_labels, ref_votes = cpu.vote(queries, 21)
        assert torch.equal(vote_labels.cpu(), ref_labels) and torch.equal(votes.cpu(), ref_votes)


# ---------------------------------------------------------------------------------------
# approximate (IVF) search
# ---------------------------------------------------------------------------------------

def clustered(num_rows, num_queries, dim, num_centers, seed):
    g = torch.Generator().manual_seed(seed)
    centers = F.normalize(torch.randn(num_centers, dim, generator=g), dim=1)

    def sample(n):
        picks = torch.randint(0, num_centers, (n,), generator=g)
        return F.normalize(centers[picks] + 0.25 * torch.randn(n, dim, generator=g), dim=1)

    return sample(num_rows), sample(num_queries)


def recall(approximate_ids, exact_ids):
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approximate_ids, exact_ids))
    return hits / exact_ids.numel()


@needs_faiss
def test_ivf_recall_against_exact():
    """20k clustered unit vectors, 64 lists, k=10. Measured here (3 seeds) recall@10 was
    0.64 (nprobe 1), 0.80 (2), 0.89 (4), 0.95 (8); nprobe = nlist scans every list."""
    bank, queries = clustered(20000, 400, 32, 40, seed=0)
    labels = torch.zeros(20000, dtype=torch.int64)
    exact = SegmentIndex(32, backend="torch")
    exact.add(bank, labels)
    exact_ids = exact.search(queries, 10)[1]
    ivf = SegmentIndex(32, ivf_nlist=64, ivf_nprobe=8)
    ivf.add(bank, labels)
    assert not ivf.is_exact and ivf.nprobe == 8
    assert recall(ivf.search(queries, 10)[1], exact_ids) >= 0.90
    ivf.nprobe = 1
    assert 0.5 <= recall(ivf.search(queries, 10)[1], exact_ids) < 0.9
    ivf.nprobe = 64
    assert recall(ivf.search(queries, 10)[1], exact_ids) == 1.0


@needs_faiss
def test_ivf_missing_neighbours_are_marked():
    bank, queries = clustered(2000, 20, 8, 10, seed=1)
    ivf = SegmentIndex(8, ivf_nlist=32, ivf_nprobe=1)
    ivf.add(bank, torch.arange(2000) % 3)
    k = 1000  # more than one list holds
    found = ivf.explain(queries, k)
    missing = found.ids < 0
    assert missing.any() and (~missing).any()
    assert torch.isinf(found.scores[missing]).all() and (found.scores[missing] < 0).all()
    assert (found.labels[missing] == -1).all() and (found.image_ids[missing] == -1).all()
    assert (found.labels[~missing] >= 0).all()
    vote_labels, votes = ivf.vote(queries, k, num_classes=3)
    assert (vote_labels >= 0).all()
    assert torch.equal(votes.sum(1), (~missing).sum(1).float())


@needs_faiss
def test_ivf_explicit_train_and_too_few_rows():
    bank, _ = clustered(600, 1, 8, 5, seed=2)
    ivf = SegmentIndex(8, ivf_nlist=16)
    with pytest.raises(ValueError, match="ivf_nlist"):
        ivf.add(bank[:10], torch.zeros(10, dtype=torch.int64))
    ivf.train(bank)
    ivf.add(bank[:10], torch.zeros(10, dtype=torch.int64))  # trained: a small add is fine
    assert len(ivf) == 10
    with pytest.raises(ValueError, match="IVF"):
        SegmentIndex(8).train(bank)


# ---------------------------------------------------------------------------------------
# vote
# ---------------------------------------------------------------------------------------

def scored_bank(scores, labels, backend):
    """A bank whose rows score exactly `scores` against the query [1, 0]."""
    index = SegmentIndex(2, backend=backend)
    rows = torch.tensor([[s, 0.0] for s in scores])
    index.add(rows, torch.tensor(labels))
    return index, torch.tensor([[1.0, 0.0]])


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_vote_uniform_majority_and_ties_to_lowest(backend):
    index, query = scored_bank([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [2, 1, 1, 2, 0, 0], backend)
    labels, votes = index.vote(query, 3)
    assert labels.tolist() == [1] and votes.tolist() == [[0.0, 2.0, 1.0]]
    labels, votes = index.vote(query, 4)  # 1 and 2 have two votes each: the lower wins
    assert labels.tolist() == [1] and votes.tolist() == [[0.0, 2.0, 2.0]]
    labels, votes = index.vote(query, 6)  # three-way tie
    assert labels.tolist() == [0] and votes.tolist() == [[2.0, 2.0, 2.0]]
    labels, votes = index.vote(query, 1, num_classes=5)
    assert labels.tolist() == [2] and votes.tolist() == [[0.0, 0.0, 1.0, 0.0, 0.0]]


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_vote_similarity_weighting(backend):
    # dyadic scores: the sums are exact, so the tie below is a real tie
    index, query = scored_bank([1.0, 0.25, 0.125], [2, 1, 1], backend)
    assert index.vote(query, 3)[0].tolist() == [1]  # uniform: two votes beat one
    labels, votes = index.vote(query, 3, weighting="similarity")
    assert labels.tolist() == [2] and votes.tolist() == [[0.0, 0.375, 1.0]]
    index, query = scored_bank([0.75, 0.5, 0.25], [2, 1, 1], backend)
    labels, votes = index.vote(query, 3, weighting="similarity")  # 0.75 == 0.5 + 0.25
    assert labels.tolist() == [1] and votes.tolist() == [[0.0, 0.75, 0.75]]


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_vote_absent_label_never_wins(backend):
    """All similarities negative: labels 0, 2, 4 have vote 0 > the negative sums, but no
    neighbour has them, so the best present label (ties to the lowest) wins."""
    index, query = scored_bank([-0.25, -0.5, -0.75], [3, 3, 1], backend)
    labels, votes = index.vote(query, 3, weighting="similarity", num_classes=5)
    assert votes.tolist() == [[0.0, -0.75, 0.0, -0.75, 0.0]]
    assert labels.tolist() == [1]


def test_vote_many_queries_matches_loop():
    bank, labels, g = random_bank(2000, 16, num_classes=5)
    queries = torch.randn(30, 16, generator=g)
    index = SegmentIndex(16, backend="torch", search_block=(8, 300))
    index.add(bank, labels)
    for weighting in ("uniform", "similarity"):
        vote_labels, votes = index.vote(queries, 21, weighting=weighting)
        scores, ids = index.search(queries, 21)
        for q in range(30):
            expected = torch.zeros(5)
            for rank in range(21):
                expected[labels[ids[q, rank]]] += 1.0 if weighting == "uniform" else scores[q, rank]
            torch.testing.assert_close(votes[q], expected, rtol=0, atol=1e-6)
            present = torch.zeros(5, dtype=torch.bool)
            present[labels[ids[q]]] = True
            best = expected.masked_fill(~present, float("-inf"))
            assert vote_labels[q] == int(torch.nonzero(best == best.max())[0])


# ---------------------------------------------------------------------------------------
# explain, save / load
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_explain_returns_provenance(backend):
    bank, labels, g = random_bank(200, 8)
    image_ids = torch.randint(0, 1000, (120,), generator=g)
    segment_ids = torch.randint(0, 50, (120,), generator=g)
    index = SegmentIndex(8, backend=backend)
    index.add(bank[:120], labels[:120], image_ids, segment_ids)
    index.add(bank[120:], labels[120:])  # no provenance: -1
    queries = torch.randn(6, 8, generator=g)
    found = index.explain(queries, 9)
    assert isinstance(found, Neighbours)
    scores, ids = index.search(queries, 9)
    assert torch.equal(found.scores, scores) and torch.equal(found.ids, ids)
    all_images = torch.cat([image_ids, torch.full((80,), -1)])
    all_segments = torch.cat([segment_ids, torch.full((80,), -1)])
    assert torch.equal(found.labels, labels[ids])
    assert torch.equal(found.image_ids, all_images[ids])
    assert torch.equal(found.segment_ids, all_segments[ids])
    assert torch.equal(index.image_ids, all_images) and torch.equal(index.segment_ids, all_segments)
    assert torch.equal(index.labels, labels)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_save_load_round_trip(tmp_path, backend):
    bank, labels, g = random_bank(700, 12)
    image_ids = torch.randint(-5, 1 << 40, (700,), generator=g)  # large ids survive exactly
    segment_ids = torch.randint(0, 300, (700,), generator=g)
    index = SegmentIndex(12, backend=backend, search_block=(16, 100))
    index.add(bank[:300], labels[:300], image_ids[:300], segment_ids[:300])
    index.add(bank[300:], labels[300:], image_ids[300:], segment_ids[300:])
    path = tmp_path / "bank.pt"
    index.save(path)
    loaded = SegmentIndex.load(path)
    assert len(loaded) == 700 and loaded.backend == index.backend and loaded.dim == 12
    queries = torch.randn(25, 12, generator=g)
    for a, b in zip(index.explain(queries, 21), loaded.explain(queries, 21)):
        assert torch.equal(a, b)
    assert torch.equal(loaded.labels, labels) and torch.equal(loaded.image_ids, image_ids)
    assert torch.equal(loaded.segment_ids, segment_ids)
    assert all(torch.equal(a, b) for a, b in zip(index.vote(queries), loaded.vote(queries)))
    loaded.add(bank[:5], labels[:5])  # still usable
    assert len(loaded) == 705
    # weights_only loading works on the raw file (nothing but tensors and plain values)
    assert torch.load(path, weights_only=True)["format"] == "segsort_ext.SegmentIndex"


@needs_faiss
def test_save_load_across_backends_and_ivf(tmp_path):
    bank, labels, g = random_bank(2000, 16)
    queries = torch.randn(20, 16, generator=g)
    flat = SegmentIndex(16, backend="faiss")
    flat.add(bank, labels)
    flat.save(tmp_path / "flat.pt")
    as_torch = SegmentIndex.load(tmp_path / "flat.pt", backend="torch")
    assert as_torch.backend == "torch"
    assert torch.equal(as_torch.search(queries, 10)[1], flat.search(queries, 10)[1])

    ivf = SegmentIndex(16, ivf_nlist=20, ivf_nprobe=3)
    ivf.add(bank, labels, image_ids=torch.arange(2000) // 7)
    ivf.save(tmp_path / "ivf.pt")
    loaded = SegmentIndex.load(tmp_path / "ivf.pt")
    assert loaded.nprobe == 3 and not loaded.is_exact
    for a, b in zip(ivf.explain(queries, 10), loaded.explain(queries, 10)):
        assert torch.equal(a, b)


def test_save_load_empty(tmp_path):
    SegmentIndex(5, metric="cosine", backend="torch").save(tmp_path / "empty.pt")
    empty = SegmentIndex.load(tmp_path / "empty.pt")
    assert len(empty) == 0 and empty.metric == "cosine" and empty.dim == 5
    empty.add(torch.randn(4, 5), torch.arange(4))
    assert empty.search(torch.randn(1, 5), 4)[1].shape == (1, 4)


def test_without_faiss_everything_runs_on_torch(monkeypatch):
    """Where faiss is not installed, 'auto' falls back to the exact torch backend and the
    faiss-only options say what they need."""
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    bank, labels, g = random_bank(200, 8)
    index = SegmentIndex(8)
    index.add(bank, labels)
    assert index.backend == "torch"
    queries = torch.randn(5, 8, generator=g)
    np.testing.assert_array_equal(index.search(queries, 4)[1].numpy(), canonical_knn(queries, bank, 4)[1])
    assert [p.shape for p in finch(bank, max_levels=1)] == [(200,)]
    with pytest.raises(ImportError, match="faiss"):
        SegmentIndex(8, backend="faiss")
    with pytest.raises(ImportError, match="faiss"):
        SegmentIndex(8, ivf_nlist=4)
