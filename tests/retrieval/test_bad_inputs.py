"""Legal edge cases of segsort_ext.retrieval, and the refusals that are not one call each (several
calls on one index, one file and its variants, GPU devices): a legal edge case equals a reference
result. The refused inputs one call each are cases of tests/hostile/cases_retrieval.py, run by
tests/test_hostile_inputs.py; FINCH's catalogue is in tests/cluster/test_finch.py."""
import io

import pytest
import torch

from segsort_ext.retrieval import SegmentIndex, SegSortPredictor, add_training_segments
from segsort_ext.testing import INF, NAN, needs_cuda, needs_faiss
from tests.hostile.cases_retrieval import (
    C,
    D,
    class_map,
    embedding_map,
    filled,
    longs,
    predictor,
    rows,
    saved,
    tampered,
)

EXACT_BACKENDS = ["torch", pytest.param("faiss", marks=needs_faiss)]


@needs_cuda
def test_predict_refuses_views_on_different_devices():
    with pytest.raises(ValueError, match=r"views must be of the same images: views\[1\].*on cuda"):
        predictor().predict([(embedding_map(), False), (embedding_map().cuda(), True)])


@needs_cuda
def test_add_refuses_mixed_devices():
    index = SegmentIndex(D, backend="torch")
    with pytest.raises(ValueError, match="labels"):
        index.add(rows(3).cuda(), longs(0, 1, 2))
    with pytest.raises(ValueError, match="segment_ids"):
        index.add(rows(3).cuda(), longs(0, 1, 2).cuda(), segment_ids=longs(0, 1, 2))
    assert len(index) == 0


def test_add_edges_that_are_legal():
    """The largest label, int64-extreme provenance, float16 and stride-0 prototypes, and an
    empty add."""
    index = SegmentIndex(D, backend="torch")
    index.add(torch.empty(0, D), torch.empty(0, dtype=torch.int64))
    assert len(index) == 0
    top = SegmentIndex.MAX_CLASSES - 1
    extremes = longs(2 ** 63 - 1, -2 ** 63, 2 ** 31)
    index.add(rows(3).half(), longs(0, top, 2), image_ids=extremes, segment_ids=extremes.flip(0))
    index.add(rows(1, seed=5).expand(2, D), longs(1, 1))  # stride 0
    assert torch.equal(index.labels, longs(0, top, 2, 1, 1))
    assert torch.equal(index.image_ids, torch.cat([extremes, longs(-1, -1)]))
    query = rows(3).half().float()[1:2]
    labels, votes = index.vote(query, 1)
    assert labels.tolist() == [top] and votes.shape == (1, top + 1) and votes[0, top] == 1


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_nonfinite_query_finds_nothing_and_spares_the_others(backend, bad):
    """A query with a NaN or infinite entry: ids/labels/provenance -1, scores NaN, vote
    label -1 and a NaN votes row; the finite queries get what they get alone."""
    index = filled(backend, n=30)
    queries = rows(4, seed=1)
    queries[2, 1] = bad
    good = torch.tensor([0, 1, 3])
    found = index.explain(queries, 5)
    alone = index.explain(queries[good], 5)
    for got, want in zip(found, alone):
        assert torch.equal(got[good], want)
    assert found.scores[2].isnan().all()
    for field in (found.ids, found.labels, found.image_ids, found.segment_ids):
        assert (field[2] == -1).all()
    labels, votes = index.vote(queries, 5)
    want_labels, want_votes = index.vote(queries[good], 5)
    assert torch.equal(labels[good], want_labels) and torch.equal(votes[good], want_votes)
    assert labels[2] == -1 and votes[2].isnan().all()
    scores, ids = index.search(queries, 5)
    assert torch.equal(ids, found.ids)
    torch.testing.assert_close(scores, found.scores, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_queries_edges_that_are_legal(backend):
    """No queries, k = len(index), stride-0 and float64 queries."""
    index = filled(backend)
    scores, ids = index.search(torch.empty(0, D), 10)
    assert scores.shape == ids.shape == (0, 10)
    labels, votes = index.vote(torch.empty(0, D), 10)
    assert labels.shape == (0,) and votes.shape == (0, 3)
    query = rows(1, seed=3)
    assert torch.equal(index.search(query.expand(3, D), 10)[1], index.search(query, 10)[1].expand(3, 10))
    assert torch.equal(index.search(query.double(), 4)[1], index.search(query, 4)[1])


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_cosine_rows_far_from_unit_length(backend):
    """Rows of 1e20 and 1e-30 (float32) keep their direction under metric='cosine'
    (F.normalize alone would turn them to 0); a zero float16 query scores 0, not NaN."""
    bank = rows(20)
    scales = torch.tensor([1e20, 1e-30, 1.0, 3e15, 2e-25]).repeat(4)[:, None]
    index = SegmentIndex(D, metric="cosine", backend=backend)
    index.add(bank * scales, torch.zeros(20, dtype=torch.int64))
    reference = SegmentIndex(D, metric="cosine", backend=backend)
    reference.add(bank, torch.zeros(20, dtype=torch.int64))
    queries = rows(5, seed=2) * scales[:5]
    got, want = index.search(queries, 6), reference.search(rows(5, seed=2), 6)
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-6)
    scores, _ = index.search(torch.zeros(1, D, dtype=torch.float16), 3)
    assert torch.equal(scores, torch.zeros(1, 3))


def test_load_refuses_missing_paths_as_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        SegmentIndex.load(tmp_path / "absent.pt")
    with pytest.raises(IsADirectoryError):
        SegmentIndex.load(tmp_path)
    with pytest.raises(TypeError, match="path"):
        SegmentIndex.load(None)
    with pytest.raises(TypeError, match="path"):
        filled().save(3)


def test_save_load_through_a_file_object():
    buffer = io.BytesIO()
    filled().save(buffer)
    buffer.seek(0)
    assert torch.equal(SegmentIndex.load(buffer).labels, filled().labels)
    with pytest.raises(ValueError, match="not a SegmentIndex file"):
        SegmentIndex.load(io.BytesIO(b"\x00" * 10))


def test_load_refuses_newer_versions(tmp_path):
    with pytest.raises(ValueError, match="version 2; this segsort_ext reads up to 1"):
        SegmentIndex.load(tampered(tmp_path, version=2))


def test_load_arguments_refused(tmp_path):
    path = saved(tmp_path)
    with pytest.raises(ValueError, match="backend"):
        SegmentIndex.load(path, backend="annoy")
    with pytest.raises(ValueError, match="device"):
        SegmentIndex.load(path, device="gpu")
    with pytest.raises(TypeError, match="distributed"):
        SegmentIndex.load(path, distributed="yes")


def test_load_from_an_absent_device_needs_device(tmp_path):
    """An index saved on a GPU this machine lacks: device=None is refused, naming device;
    device='cpu' maps every tensor there and searches alike."""
    absent = f"cuda:{torch.cuda.device_count()}"
    path = tampered(tmp_path, device=absent)
    with pytest.raises(ValueError, match=f"device is None.*'{absent}'.*not available.*device='cpu'"):
        SegmentIndex.load(path)
    loaded = SegmentIndex.load(path, device="cpu")
    original = filled()
    assert loaded.device == torch.device("cpu")
    assert all(torch.equal(a, b) for a, b in zip(loaded.explain(rows(3, seed=9), 4),
                                                 original.explain(rows(3, seed=9), 4)))


def test_load_ignores_unknown_extra_fields(tmp_path):
    loaded = SegmentIndex.load(tampered(tmp_path, comment="written by hand"))
    assert len(loaded) == 10


@needs_faiss
def test_load_refuses_corrupt_ivf_fields(tmp_path):
    index = SegmentIndex(D, ivf_nlist=2)
    index.add(rows(40), torch.zeros(40, dtype=torch.int64))
    index.save(tmp_path / "ivf.pt")
    state = torch.load(tmp_path / "ivf.pt", weights_only=True)
    import faiss

    flat_blob = torch.from_numpy(faiss.serialize_index(faiss.IndexFlatIP(D)))
    cases = [({"faiss_ivf": torch.arange(64, dtype=torch.uint8)}, "field faiss_ivf: faiss cannot read it"),
             ({"faiss_ivf": state["faiss_ivf"][:50]}, "field faiss_ivf: faiss cannot read it"),
             ({"faiss_ivf": state["faiss_ivf"].float()}, "field faiss_ivf must be a 1-D uint8"),
             ({"faiss_ivf": flat_blob}, "field faiss_ivf: not a trained inner-product IndexIVFFlat"),
             ({"ivf_nlist": 3}, "field faiss_ivf: not a trained"),
             ({"labels": torch.zeros(39, dtype=torch.int64), "image_ids": torch.zeros(39, dtype=torch.int64),
               "segment_ids": torch.zeros(39, dtype=torch.int64)}, "field faiss_ivf: holds 40 rows, labels 39"),
             ({"faiss_ivf": None}, "missing field faiss_ivf"),
             ({"vectors": rows(40)}, "field vectors must be None for an IVF index"),
             ({"dtype": "float64"}, "field dtype must be 'float32' for an IVF index")]
    for changes, match in cases:
        torch.save({**state, **changes}, tmp_path / "bad.pt")
        with pytest.raises(ValueError, match="corrupt SegmentIndex file .*bad.pt.*" + match):
            SegmentIndex.load(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="backend='torch' cannot load an IVF index"):
        SegmentIndex.load(tmp_path / "ivf.pt", backend="torch")


@needs_faiss
def test_ivf_saved_before_training_round_trips(tmp_path):
    index = SegmentIndex(D, ivf_nlist=2, ivf_nprobe=2)
    index.add(torch.empty(0, D), torch.empty(0, dtype=torch.int64))  # opens the backend, trains nothing
    index.save(tmp_path / "untrained.pt")
    loaded = SegmentIndex.load(tmp_path / "untrained.pt")
    assert len(loaded) == 0 and not loaded.is_exact and loaded.nprobe == 2
    loaded.add(rows(40), torch.zeros(40, dtype=torch.int64))
    assert loaded.search(rows(2), 3)[1].shape == (2, 3)


def test_inference_edges_that_are_legal():
    """No images, images without pixels, views at other sizes; a NaN pixel takes no part
    in training and gets label -1 (no vote) in prediction."""
    model = predictor()
    assert model.predict(embedding_map(B=0)).shape == (0, 8, 8)
    assert model.vote_map(embedding_map(H=0)).shape == (1, C, 0, 8)
    assert model.predict([(embedding_map(), False), (embedding_map(H=4, W=4), True)], output_size=5).shape == (1, 5, 5)

    embeddings = embedding_map(2)
    embeddings[0, :, 3, 3] = NAN
    index = SegmentIndex(D, backend="torch")
    assert add_training_segments(index, embeddings, class_map(2), num_classes=C, grid=(2, 2)) > 0
    assert len(index) > 0  # the NaN pixel was left out: every added prototype is finite
    predicted = SegSortPredictor(index, C, k=1, grid=(2, 2)).predict(embeddings)
    assert predicted[0, 3, 3] == -1
    assert ((predicted >= 0) | (torch.arange(64).view(8, 8) == 27)).all()


def test_vote_map_of_negative_similarity_votes_stays_bounded():
    """Every neighbour dissimilar (negative similarity votes): the map is the votes over
    their absolute sum, in [-1, 1], instead of a division by a clamped negative sum."""
    index = SegmentIndex(D, backend="torch")
    index.add(-(rows(1, seed=4) + 0.1 * rows(6, seed=5)), torch.arange(6) % 2)
    model = SegSortPredictor(index, 2, k=6, grid=(1, 1), weighting="similarity")
    embeddings = rows(1, seed=4)[:, :, None, None].expand(1, D, 4, 4).contiguous()
    maps = model.vote_map(embeddings)
    _, votes = index.vote(rows(1, seed=4), 6, weighting="similarity")
    assert (votes < 0).all()
    torch.testing.assert_close(maps[0, :, 0, 0], votes[0] / votes[0].abs().sum())
    assert maps.abs().max() <= 1
