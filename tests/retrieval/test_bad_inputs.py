"""Bad-input catalogue of segsort_ext.retrieval: every public function and class with
wrong types, shapes, dtypes, devices, sizes at the int32/int64 edges, NaN/inf, empty and
huge inputs, and corrupt index files. A refused input raises the exact error type with a
message naming the argument (or, for files, the path and the field); a legal edge case
equals a reference result. FINCH's catalogue is in tests/cluster/test_finch.py."""
import io
import os

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.retrieval import SegmentIndex, SegSortPredictor, add_training_segments
from segsort_ext.retrieval.index_file import FIELDS, MAGIC
from segsort_ext.testing import INF, NAN, needs_cuda, needs_faiss

EXACT_BACKENDS = ["torch", pytest.param("faiss", marks=needs_faiss)]
D = 4
HUGE = 2 ** 31  # rows of stride-0 tensors: more than int32 indexes, never allocated


def rows(n, dim=D, seed=0, dtype=torch.float32):
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=1)


def filled(backend="torch", n=10, **kwargs):
    """An index of n unit rows with labels 0, 1, 2, 0, ..."""
    index = SegmentIndex(D, backend=backend, **kwargs)
    index.add(rows(n), torch.arange(n) % 3)
    return index


def longs(*values):
    return torch.tensor(values, dtype=torch.int64)


def refused(cases):
    """pytest params (call, error type, message pattern) from (id, call, error, pattern[, marks])."""
    return [pytest.param(*case[1:4], id=case[0], marks=case[4] if len(case) > 4 else ()) for case in cases]


def check_refused(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"


# ---------------------------------------------------------------------------------------
# SegmentIndex(...)
# ---------------------------------------------------------------------------------------

CONSTRUCTOR = [
    ("dim=0", lambda: SegmentIndex(0), ValueError, "dim"),
    ("dim=-1", lambda: SegmentIndex(-1), ValueError, "dim"),
    ("dim=2**31", lambda: SegmentIndex(2 ** 31), ValueError, "dim must be <= 2147483647"),
    ("dim=2**63-1", lambda: SegmentIndex(2 ** 63 - 1), ValueError, "dim"),
    ("dim float", lambda: SegmentIndex(4.0), TypeError, "dim"),
    ("dim bool", lambda: SegmentIndex(True), TypeError, "dim"),
    ("dim str", lambda: SegmentIndex("4"), TypeError, "dim"),
    ("dim None", lambda: SegmentIndex(None), TypeError, "dim"),
    ("metric l2", lambda: SegmentIndex(D, metric="l2"), ValueError, "metric"),
    ("metric int", lambda: SegmentIndex(D, metric=1), ValueError, "metric"),
    ("backend unknown", lambda: SegmentIndex(D, backend="annoy"), ValueError, "backend"),
    ("backend None", lambda: SegmentIndex(D, backend=None), ValueError, "backend"),
    ("ivf_nlist=0", lambda: SegmentIndex(D, ivf_nlist=0), ValueError, "ivf_nlist"),
    ("ivf_nlist float", lambda: SegmentIndex(D, ivf_nlist=2.5), TypeError, "ivf_nlist"),
    ("ivf_nlist with torch", lambda: SegmentIndex(D, backend="torch", ivf_nlist=8), ValueError, "ivf_nlist"),
    ("ivf_nprobe=0", lambda: SegmentIndex(D, ivf_nprobe=0), ValueError, "ivf_nprobe"),
    ("ivf_nprobe str", lambda: SegmentIndex(D, ivf_nprobe="8"), TypeError, "ivf_nprobe"),
    ("search_block int", lambda: SegmentIndex(D, search_block=5), TypeError, "search_block"),
    ("search_block 1", lambda: SegmentIndex(D, search_block=(4,)), ValueError, "search_block"),
    ("search_block 0", lambda: SegmentIndex(D, search_block=(4, 0)), ValueError, r"search_block\[1\]"),
    ("search_block float", lambda: SegmentIndex(D, search_block=(4.0, 2)), TypeError, r"search_block\[0\]"),
    ("device gpu", lambda: SegmentIndex(D, device="gpu"), ValueError, "device"),
    ("device float", lambda: SegmentIndex(D, device=1.5), TypeError, "device"),
    ("device -1", lambda: SegmentIndex(D, device=-1), ValueError, "device"),
    ("device meta", lambda: SegmentIndex(D, device="meta"), ValueError, "device"),
    ("device absent cuda", lambda: SegmentIndex(D, device=f"cuda:{torch.cuda.device_count()}"), ValueError,
     "device"),
    ("distributed int", lambda: SegmentIndex(D, distributed=1), TypeError, "distributed"),
    ("process_group str", lambda: SegmentIndex(D, distributed=True, process_group="world"), TypeError,
     "process_group"),
]


@pytest.mark.parametrize("call, error, match", refused(CONSTRUCTOR))
def test_constructor_refuses(call, error, match):
    check_refused(call, error, match)


# ---------------------------------------------------------------------------------------
# add / train
# ---------------------------------------------------------------------------------------

def _add(prototypes, labels, **kwargs):
    index = SegmentIndex(D, backend="torch")
    try:
        index.add(prototypes, labels, **kwargs)
    finally:
        assert len(index) == 0  # a refused add adds nothing


def _with(values, row=1):
    x = rows(3)
    x[row] = torch.tensor(values)
    return x


def _train_twice():
    index = SegmentIndex(D, ivf_nlist=2)
    index.train(rows(40))
    index.train(rows(40))  # faiss would keep its first centroids and ignore these rows


ADD = [
    ("prototypes list", lambda: _add([[0.0] * D] * 3, longs(0, 1, 2)), TypeError, "prototypes"),
    ("prototypes int64", lambda: _add(torch.zeros(3, D, dtype=torch.int64), longs(0, 1, 2)), TypeError,
     "prototypes"),
    ("prototypes complex", lambda: _add(torch.zeros(3, D, dtype=torch.complex64), longs(0, 1, 2)), TypeError,
     "prototypes"),
    ("prototypes 1-D", lambda: _add(torch.zeros(D), longs(0)), ValueError, "prototypes"),
    ("prototypes 3-D", lambda: _add(torch.zeros(1, 3, D), longs(0, 1, 2)), ValueError, "prototypes"),
    ("prototypes wrong D", lambda: _add(torch.zeros(3, D + 1), longs(0, 1, 2)), ValueError, "prototypes.*D = 4"),
    ("prototypes NaN", lambda: _add(_with([NAN, 0, 0, 0]), longs(0, 1, 2)), ValueError, "prototypes must be finite"),
    ("prototypes inf", lambda: _add(_with([0, -INF, 0, 0]), longs(0, 1, 2)), ValueError,
     "prototypes must be finite"),
    ("labels float", lambda: _add(rows(3), torch.zeros(3)), TypeError, "labels"),
    ("labels int32", lambda: _add(rows(3), torch.zeros(3, dtype=torch.int32)), TypeError, "labels"),
    ("labels list", lambda: _add(rows(3), [0, 1, 2]), TypeError, "labels"),
    ("labels short", lambda: _add(rows(3), longs(0, 1)), ValueError, "labels.*shape"),
    ("labels 2-D", lambda: _add(rows(3), longs(0, 1, 2)[None]), ValueError, "labels.*shape"),
    ("labels -1", lambda: _add(rows(3), longs(0, -1, 2)), ValueError, "labels must be class labels"),
    ("labels int64 min", lambda: _add(rows(3), longs(0, -2 ** 63, 2)), ValueError, "labels"),
    ("labels MAX_CLASSES", lambda: _add(rows(3), longs(0, SegmentIndex.MAX_CLASSES, 2)), ValueError,
     "labels.*MAX_CLASSES = 1048576.*found 1048576"),
    ("labels 2**31", lambda: _add(rows(3), longs(0, 2 ** 31, 2)), ValueError, "labels.*found 2147483648"),
    ("labels 2**40", lambda: _add(rows(3), longs(0, 2 ** 40, 2)), ValueError, "labels.*MAX_CLASSES"),
    ("labels 2**63-1", lambda: _add(rows(3), longs(0, 2 ** 63 - 1, 2)), ValueError, "labels.*MAX_CLASSES"),
    ("labels on meta", lambda: _add(rows(3), longs(0, 1, 2).to("meta")), ValueError, "labels"),
    ("all on meta", lambda: _add(rows(3).to("meta"), longs(0, 1, 2).to("meta")), ValueError,
     "prototypes is on the meta device"),
    ("image_ids float", lambda: _add(rows(3), longs(0, 1, 2), image_ids=torch.zeros(3)), TypeError, "image_ids"),
    ("image_ids short", lambda: _add(rows(3), longs(0, 1, 2), image_ids=longs(0, 1)), ValueError, "image_ids"),
    ("image_ids on meta", lambda: _add(rows(3), longs(0, 1, 2), image_ids=longs(0, 1, 2).to("meta")), ValueError,
     "image_ids"),
    ("segment_ids list", lambda: _add(rows(3), longs(0, 1, 2), segment_ids=[0, 1, 2]), TypeError, "segment_ids"),
    ("segment_ids 2-D", lambda: _add(rows(3), longs(0, 1, 2), segment_ids=longs(0, 1, 2)[:, None]), ValueError,
     "segment_ids"),
    # 2**31 stride-0 rows whose labels do not match: refused before anything is allocated
    ("huge rows, short labels", lambda: _add(torch.zeros(1, D).expand(HUGE, D), longs(0)), ValueError,
     "labels.*2147483648"),
    ("train without IVF", lambda: SegmentIndex(D).train(rows(20)), ValueError, "ivf_nlist"),
    ("train NaN", lambda: SegmentIndex(D, ivf_nlist=2).train(_with([NAN, 0, 0, 0])), ValueError,
     "prototypes must be finite", needs_faiss),
    ("train twice", lambda: _train_twice(), ValueError, "trained already", needs_faiss),
    # faiss would allocate 2**40 inverted lists up front: refused by the row count instead
    ("ivf_nlist=2**40", lambda: SegmentIndex(D, ivf_nlist=2 ** 40).add(rows(10), torch.zeros(10, dtype=torch.int64)),
     ValueError, "ivf_nlist = 1099511627776", needs_faiss),
]


@pytest.mark.parametrize("call, error, match", refused(ADD))
def test_add_refuses(call, error, match):
    check_refused(call, error, match)


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


# ---------------------------------------------------------------------------------------
# search / explain / vote / nprobe
# ---------------------------------------------------------------------------------------

QUERIES = [
    ("empty index", lambda: SegmentIndex(D).search(rows(2), 1), ValueError, "empty"),
    ("queries list", lambda: filled().search([[0.0] * D], 1), TypeError, "queries"),
    ("queries int64", lambda: filled().search(torch.zeros(2, D, dtype=torch.int64), 1), TypeError, "queries"),
    ("queries bool", lambda: filled().search(torch.zeros(2, D, dtype=torch.bool), 1), TypeError, "queries"),
    ("queries 1-D", lambda: filled().search(torch.zeros(D), 1), ValueError, "queries.*shape"),
    ("queries 3-D", lambda: filled().explain(torch.zeros(1, 2, D), 1), ValueError, "queries.*shape"),
    ("queries wrong D", lambda: filled().vote(torch.zeros(2, D - 1), 1), ValueError, "queries.*D = 4"),
    ("queries on meta", lambda: filled().search(rows(2).to("meta"), 1), ValueError, "queries is on the meta"),
    ("huge queries wrong D", lambda: filled().search(torch.zeros(1, D + 1).expand(HUGE, D + 1), 1), ValueError,
     "queries"),
    ("k=0", lambda: filled().search(rows(2), 0), ValueError, "k must be >= 1"),
    ("k=-1", lambda: filled().explain(rows(2), -1), ValueError, "k"),
    ("k float", lambda: filled().search(rows(2), 2.0), TypeError, "k"),
    ("k bool", lambda: filled().search(rows(2), True), TypeError, "k"),
    ("k None", lambda: filled().search(rows(2), None), TypeError, "k"),
    ("k > size", lambda: filled().search(rows(2), 11), ValueError, "k = 11 is larger"),
    ("k=2**31", lambda: filled().search(rows(2), 2 ** 31), ValueError, "k = 2147483648 is larger"),
    ("k=2**63-1", lambda: filled().vote(rows(2), 2 ** 63 - 1), ValueError, "k = 9223372036854775807"),
    ("vote default k=21 > size", lambda: filled().vote(rows(2)), ValueError, "k = 21 is larger"),
    ("weighting", lambda: filled().vote(rows(2), 3, weighting="softmax"), ValueError, "weighting"),
    ("weighting None", lambda: filled().vote(rows(2), 3, weighting=None), ValueError, "weighting"),
    ("num_classes=0", lambda: filled().vote(rows(2), 3, num_classes=0), ValueError, "num_classes"),
    ("num_classes float", lambda: filled().vote(rows(2), 3, num_classes=3.0), TypeError, "num_classes"),
    ("num_classes <= label", lambda: filled().vote(rows(2), 3, num_classes=2), ValueError,
     "num_classes = 2 but the index holds label 2"),
    # (Q, num_classes) votes: refused before allocating
    ("num_classes=2**20+1", lambda: filled().vote(rows(2), 3, num_classes=2 ** 20 + 1), ValueError,
     "num_classes must be <= SegmentIndex.MAX_CLASSES"),
    ("num_classes=2**40", lambda: filled().vote(rows(2), 3, num_classes=2 ** 40), ValueError, "num_classes"),
    ("num_classes=2**63-1", lambda: filled().vote(rows(2), 3, num_classes=2 ** 63 - 1), ValueError, "num_classes"),
    ("nprobe=0", lambda: setattr(filled(), "nprobe", 0), ValueError, "nprobe"),
    ("nprobe float", lambda: setattr(filled(), "nprobe", 1.5), TypeError, "nprobe"),
]


@pytest.mark.parametrize("call, error, match", refused(QUERIES))
def test_queries_refused(call, error, match):
    check_refused(call, error, match)


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


# ---------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------

def saved(tmp_path, backend="torch", name="bank.pt", **kwargs):
    index = filled(backend, **kwargs)
    path = tmp_path / name
    index.save(path)
    return path


def tampered(tmp_path, **changes):
    """A valid file with fields replaced (a value of `...` deletes the field)."""
    state = torch.load(saved(tmp_path), weights_only=True)
    for name, value in changes.items():
        if value is ...:
            del state[name]
        else:
            state[name] = value
    path = tmp_path / "tampered.pt"
    torch.save(state, path)
    return path


def _write(tmp_path, data: bytes):
    path = tmp_path / "file.pt"
    path.write_bytes(data)
    return path


NOT_AN_INDEX = [
    ("empty file", lambda p: _write(p, b"")),
    ("text file", lambda p: _write(p, b"dim,labels\n4,0\n")),
    ("truncated", lambda p: _write(p, saved(p).read_bytes()[:300])),
    ("truncated end", lambda p: _write(p, saved(p).read_bytes()[:-40])),
    ("a tensor", lambda p: (torch.save(torch.zeros(3), p / "t.pt"), p / "t.pt")[1]),
    ("a dict without magic", lambda p: (torch.save({"labels": torch.zeros(1)}, p / "d.pt"), p / "d.pt")[1]),
    ("wrong magic", lambda p: tampered(p, format="segsort_ext.Other")),
    ("no magic", lambda p: tampered(p, format=...)),
    ("pickled object (weights_only)", lambda p: (torch.save({"format": MAGIC, "x": os.stat_result((0,) * 10)},
                                                            p / "o.pt"), p / "o.pt")[1]),
]


@pytest.mark.parametrize("make", [pytest.param(make, id=name) for name, make in NOT_AN_INDEX])
def test_load_refuses_what_is_not_an_index(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=r"not a SegmentIndex file \(.*" + path.name):
        SegmentIndex.load(path)


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


CORRUPT = [
    ("version str", {"version": "1"}, "field version"),
    ("version 0", {"version": 0}, "field version"),
    ("missing version", {"version": ...}, "field version"),
    *[(f"missing {name}", {name: ...}, f"missing field {name}") for name in FIELDS],
    ("dim 0", {"dim": 0}, "field dim"),
    ("dim str", {"dim": "4"}, "field dim"),
    ("dim 2**40", {"dim": 2 ** 40}, "field dim"),
    ("dim tampered", {"dim": D + 1}, r"field vectors must have shape \(10, 5\)"),
    ("metric", {"metric": "l2"}, "field metric"),
    ("backend", {"backend": "annoy"}, "field backend"),
    ("ivf_nlist", {"ivf_nlist": 0}, "field ivf_nlist"),
    ("ivf_nprobe", {"ivf_nprobe": -3}, "field ivf_nprobe"),
    ("search_block", {"search_block": [0, 4]}, "field search_block"),
    ("search_block str", {"search_block": "ab"}, "field search_block"),
    ("device", {"device": "gpu"}, "field device"),
    ("device int", {"device": 0}, "field device"),
    ("device None with rows", {"device": None}, "field device is None"),
    ("dtype attribute", {"dtype": "Tensor"}, "field dtype"),
    ("dtype int64", {"dtype": "int64"}, "field dtype"),
    ("dtype not str", {"dtype": 3}, "field dtype"),
    ("dtype float64 vs vectors", {"dtype": "float64"}, "field vectors must be a dense torch.float64"),
    ("labels shorter", {"labels": torch.arange(9) % 3}, r"field image_ids must have shape \(9,\) \(as labels\)"),
    ("labels negative", {"labels": torch.arange(10) - 1}, "field labels.*found -1"),
    ("labels 2**40", {"labels": torch.full((10,), 2 ** 40)}, "field labels.*found 1099511627776"),
    ("labels float", {"labels": torch.zeros(10)}, "field labels must be a dense torch.int64"),
    ("labels int32", {"labels": torch.zeros(10, dtype=torch.int32)}, "field labels"),
    ("labels 2-D", {"labels": torch.zeros(2, 5, dtype=torch.int64)}, "field labels must have shape"),
    ("labels list", {"labels": [0] * 10}, "field labels"),
    ("image_ids longer", {"image_ids": torch.zeros(11, dtype=torch.int64)}, "field image_ids"),
    ("segment_ids float", {"segment_ids": torch.zeros(10)}, "field segment_ids"),
    ("vectors None", {"vectors": None}, "field vectors"),
    ("vectors float64", {"vectors": rows(10).double()}, "field vectors"),
    ("vectors rows", {"vectors": rows(11)}, "field vectors"),
    ("vectors NaN", {"vectors": torch.full((10, D), NAN)}, "field vectors holds NaN"),
    ("vectors inf", {"vectors": torch.full((10, D), INF)}, "field vectors holds NaN or infinite"),
    ("faiss_ivf on exact", {"faiss_ivf": torch.zeros(8, dtype=torch.uint8)}, "field faiss_ivf"),
]


@pytest.mark.parametrize("changes, match", [pytest.param(c, m, id=i) for i, c, m in CORRUPT])
def test_load_refuses_corrupt_fields(tmp_path, changes, match):
    path = tampered(tmp_path, **changes)
    with pytest.raises(ValueError, match=r"corrupt SegmentIndex file '.*tampered\.pt': " + match):
        SegmentIndex.load(path)


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


# ---------------------------------------------------------------------------------------
# add_training_segments / SegSortPredictor
# ---------------------------------------------------------------------------------------

C = 3


def embedding_map(B=1, H=8, W=8, seed=0):
    return torch.randn(B, D, H, W, generator=torch.Generator().manual_seed(seed))


def class_map(B=1, H=8, W=8):
    return (torch.arange(W) // (W // C)).clamp_max(C - 1).expand(B, H, W).contiguous()


def bank():
    index = SegmentIndex(D, backend="torch")
    add_training_segments(index, embedding_map(2), class_map(2), num_classes=C, grid=(2, 2))
    return index


def predictor(**kwargs):
    return SegSortPredictor(bank(), C, **{"k": 3, "grid": (2, 2), **kwargs})


TRAINING = [
    ("index list", lambda: add_training_segments([], embedding_map(), class_map(), num_classes=C), TypeError,
     "index"),
    ("embeddings int", lambda: add_training_segments(SegmentIndex(D), embedding_map().long(), class_map(),
                                                     num_classes=C), TypeError, "embeddings"),
    ("embeddings 3-D", lambda: add_training_segments(SegmentIndex(D), embedding_map()[0], class_map(),
                                                     num_classes=C), ValueError, "embeddings"),
    ("embeddings wrong D", lambda: add_training_segments(SegmentIndex(D + 1), embedding_map(), class_map(),
                                                         num_classes=C), ValueError, "embeddings.*D = 5"),
    ("labels float", lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map().float(),
                                                   num_classes=C), TypeError, "labels"),
    ("labels shape", lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map()[:, :4],
                                                   num_classes=C), ValueError, "labels"),
    ("labels on meta", lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map().to("meta"),
                                                     num_classes=C), ValueError, "labels"),
    ("labels >= num_classes", lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map() + 5,
                                                            num_classes=C), ValueError, "labels"),
    ("num_classes 0", lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map(), num_classes=0),
     ValueError, "num_classes"),
    ("num_classes 2**40", lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map(),
                                                        num_classes=2 ** 40), ValueError, "num_classes.*MAX_CLASSES"),
    ("image_ids float", lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map(), num_classes=C,
                                                      image_ids=torch.zeros(1)), TypeError, "image_ids"),
    ("image_ids shape", lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map(), num_classes=C,
                                                      image_ids=longs(1, 2)), ValueError, "image_ids"),
    ("grid 0", lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map(), num_classes=C,
                                             grid=(0, 2)), ValueError, "grid"),
]

PREDICTOR = [
    ("index list", lambda: SegSortPredictor([], C), TypeError, "index"),
    ("index empty", lambda: SegSortPredictor(SegmentIndex(D), C), ValueError, "index is empty"),
    ("num_classes 0", lambda: SegSortPredictor(bank(), 0), ValueError, "num_classes"),
    ("num_classes float", lambda: SegSortPredictor(bank(), 3.0), TypeError, "num_classes"),
    ("num_classes <= label", lambda: SegSortPredictor(bank(), C - 1), ValueError, "num_classes = 2 but"),
    ("num_classes 2**63-1", lambda: SegSortPredictor(bank(), 2 ** 63 - 1), ValueError, "num_classes.*MAX_CLASSES"),
    ("k 0", lambda: SegSortPredictor(bank(), C, k=0), ValueError, "k"),
    ("grid str", lambda: SegSortPredictor(bank(), C, grid="2x2"), TypeError, "grid"),
    ("grid 0", lambda: SegSortPredictor(bank(), C, grid=(2, 0)), ValueError, "grid"),
    ("iters 0", lambda: SegSortPredictor(bank(), C, iters=0), ValueError, "iters"),
    ("coord_weight NaN", lambda: SegSortPredictor(bank(), C, coord_weight=NAN), ValueError, "coord_weight"),
    ("coord_weight inf", lambda: SegSortPredictor(bank(), C, coord_weight=INF), ValueError, "coord_weight"),
    ("coord_weight str", lambda: SegSortPredictor(bank(), C, coord_weight="1"), TypeError, "coord_weight"),
    ("weighting", lambda: SegSortPredictor(bank(), C, weighting="softmax"), ValueError, "weighting"),
    ("vote_map list", lambda: predictor().vote_map([[0.0]]), TypeError, "embeddings"),
    ("vote_map int", lambda: predictor().vote_map(embedding_map().long()), TypeError, "embeddings"),
    ("vote_map 3-D", lambda: predictor().vote_map(embedding_map()[0]), ValueError, "embeddings"),
    ("vote_map wrong D", lambda: predictor().vote_map(embedding_map()[:, :3]), ValueError, "embeddings.*D = 4"),
    ("vote_map flip int", lambda: predictor().vote_map(embedding_map(), flip=1), TypeError, "flip"),
    ("vote_map output_size 0", lambda: predictor().vote_map(embedding_map(), output_size=(0, 4)), ValueError,
     "output_size"),
    ("vote_map output_size str", lambda: predictor().vote_map(embedding_map(), output_size="8"), TypeError,
     "output_size"),
    ("predict no views", lambda: predictor().predict([]), ValueError, "views"),
    ("predict views str", lambda: predictor().predict("views"), TypeError, "views"),
    ("predict view not a pair", lambda: predictor().predict([embedding_map()]), TypeError, r"views\[0\]"),
    ("predict batch sizes differ", lambda: predictor().predict([(embedding_map(2), False), (embedding_map(1), True)]),
     ValueError, r"views must be of the same images: views\[1\] has batch size 1"),
    ("predict view on meta", lambda: predictor().predict([(embedding_map(), False),
                                                          (embedding_map().to("meta"), False)]),
     ValueError, r"views\[1\] embeddings is on the meta device"),
    ("predict wrong D", lambda: predictor().predict([(embedding_map(), False), (embedding_map()[:, :3], False)]),
     ValueError, r"views\[1\] embeddings.*D = 4"),
    ("predict flipped str", lambda: predictor().predict([(embedding_map(), "yes")]), TypeError,
     r"views\[0\] flipped"),
    ("predict output_size", lambda: predictor().predict(embedding_map(), output_size=(4, -1)), ValueError,
     "output_size"),
    # Vote maps beyond int64 bytes, and beyond any machine's memory.
    ("predict output_size 2**40", lambda: predictor().predict(embedding_map(), output_size=2**40), ValueError,
     "^output_size is too large"),
    ("predict output_size 10**7", lambda: predictor().predict([(embedding_map(), False)], output_size=(10**7, 10**7)),
     ValueError, "^output_size is too large"),
    ("vote_map output_size 10**7", lambda: predictor().vote_map(embedding_map(), output_size=10**7), ValueError,
     "^output_size is too large"),
    ("predict k > bank", lambda: predictor(k=10 ** 6).predict(embedding_map()), ValueError, "k = 1000000"),
]


@pytest.mark.parametrize("call, error, match", refused(TRAINING + PREDICTOR))
def test_inference_refuses(call, error, match):
    check_refused(call, error, match)


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
