"""Bad-input cases of segsort_ext.retrieval: every public function and class with wrong types,
shapes, dtypes, devices, sizes at the int32/int64 edges, NaN/inf, empty and huge inputs, and
corrupt index files. A refused input raises the exact error type with a message naming the
argument (or, for files, the path and the field). The file cases are called with a fresh
folder (``scratch``). Formerly the tables of tests/retrieval/test_bad_inputs.py (its legal edge
cases are still there); FINCH's catalogue is in tests/cluster/test_finch.py."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from segsort_ext.retrieval import SegmentIndex, SegSortPredictor, add_training_segments
from segsort_ext.retrieval.index_file import FIELDS, MAGIC
from segsort_ext.testing import INF, NAN, needs_faiss
from tests.hostile.catalogue import Case

AREA = "retrieval"
D = 4
HUGE = 2**31  # rows of stride-0 tensors: more than int32 indexes, never allocated


def rows(n, dim=D, seed=0, dtype=torch.float32):
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=1)


def filled(backend="torch", n=10, **kwargs):
    """An index of n unit rows with labels 0, 1, 2, 0, ..."""
    index = SegmentIndex(D, backend=backend, **kwargs)
    index.add(rows(n), torch.arange(n) % 3)
    return index


def longs(*values):
    return torch.tensor(values, dtype=torch.int64)


def scratch() -> Path:
    """A new empty folder, removed at exit: the setup of the file cases."""
    root = Path(tempfile.mkdtemp(prefix="segsort_bad_index_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def _named(prefix, cases):
    """The cases, their names prefixed with their table's (``add/labels float``)."""
    for case in cases:
        case.name = f"{prefix}/{case.name}"
    return cases


# ---------------------------------------------------------------------------------------
# SegmentIndex(...)
# ---------------------------------------------------------------------------------------

CONSTRUCTOR = [
    Case("dim=0", lambda: SegmentIndex(0), error=ValueError, arg="dim"),
    Case("dim=-1", lambda: SegmentIndex(-1), error=ValueError, arg="dim"),
    Case("dim=2**31", lambda: SegmentIndex(2**31), error=ValueError, arg="dim must be <= 2147483647"),
    Case("dim=2**63-1", lambda: SegmentIndex(2**63 - 1), error=ValueError, arg="dim"),
    Case("dim float", lambda: SegmentIndex(4.0), error=TypeError, arg="dim"),
    Case("dim bool", lambda: SegmentIndex(True), error=TypeError, arg="dim"),
    Case("dim str", lambda: SegmentIndex("4"), error=TypeError, arg="dim"),
    Case("dim None", lambda: SegmentIndex(None), error=TypeError, arg="dim"),
    Case("metric l2", lambda: SegmentIndex(D, metric="l2"), error=ValueError, arg="metric"),
    Case("metric int", lambda: SegmentIndex(D, metric=1), error=ValueError, arg="metric"),
    Case("backend unknown", lambda: SegmentIndex(D, backend="annoy"), error=ValueError, arg="backend"),
    Case("backend None", lambda: SegmentIndex(D, backend=None), error=ValueError, arg="backend"),
    Case("ivf_nlist=0", lambda: SegmentIndex(D, ivf_nlist=0), error=ValueError, arg="ivf_nlist"),
    Case("ivf_nlist float", lambda: SegmentIndex(D, ivf_nlist=2.5), error=TypeError, arg="ivf_nlist"),
    Case(
        "ivf_nlist with torch", lambda: SegmentIndex(D, backend="torch", ivf_nlist=8), error=ValueError, arg="ivf_nlist"
    ),
    Case("ivf_nprobe=0", lambda: SegmentIndex(D, ivf_nprobe=0), error=ValueError, arg="ivf_nprobe"),
    Case("ivf_nprobe str", lambda: SegmentIndex(D, ivf_nprobe="8"), error=TypeError, arg="ivf_nprobe"),
    Case("search_block int", lambda: SegmentIndex(D, search_block=5), error=TypeError, arg="search_block"),
    Case("search_block 1", lambda: SegmentIndex(D, search_block=(4,)), error=ValueError, arg="search_block"),
    Case("search_block 0", lambda: SegmentIndex(D, search_block=(4, 0)), error=ValueError, arg=r"search_block\[1\]"),
    Case(
        "search_block float", lambda: SegmentIndex(D, search_block=(4.0, 2)), error=TypeError, arg=r"search_block\[0\]"
    ),
    Case("device gpu", lambda: SegmentIndex(D, device="gpu"), error=ValueError, arg="device"),
    Case("device float", lambda: SegmentIndex(D, device=1.5), error=TypeError, arg="device"),
    Case("device -1", lambda: SegmentIndex(D, device=-1), error=ValueError, arg="device"),
    Case("device meta", lambda: SegmentIndex(D, device="meta"), error=ValueError, arg="device"),
    Case(
        "device absent cuda",
        lambda: SegmentIndex(D, device=f"cuda:{torch.cuda.device_count()}"),
        error=ValueError,
        arg="device",
    ),
    Case("distributed int", lambda: SegmentIndex(D, distributed=1), error=TypeError, arg="distributed"),
    Case(
        "process_group str",
        lambda: SegmentIndex(D, distributed=True, process_group="world"),
        error=TypeError,
        arg="process_group",
    ),
]


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
    Case("prototypes list", lambda: _add([[0.0] * D] * 3, longs(0, 1, 2)), error=TypeError, arg="prototypes"),
    Case(
        "prototypes int64",
        lambda: _add(torch.zeros(3, D, dtype=torch.int64), longs(0, 1, 2)),
        error=TypeError,
        arg="prototypes",
    ),
    Case(
        "prototypes complex",
        lambda: _add(torch.zeros(3, D, dtype=torch.complex64), longs(0, 1, 2)),
        error=TypeError,
        arg="prototypes",
    ),
    Case("prototypes 1-D", lambda: _add(torch.zeros(D), longs(0)), error=ValueError, arg="prototypes"),
    Case("prototypes 3-D", lambda: _add(torch.zeros(1, 3, D), longs(0, 1, 2)), error=ValueError, arg="prototypes"),
    Case(
        "prototypes wrong D",
        lambda: _add(torch.zeros(3, D + 1), longs(0, 1, 2)),
        error=ValueError,
        arg="prototypes.*D = 4",
    ),
    Case(
        "prototypes NaN",
        lambda: _add(_with([NAN, 0, 0, 0]), longs(0, 1, 2)),
        error=ValueError,
        arg="prototypes must be finite",
    ),
    Case(
        "prototypes inf",
        lambda: _add(_with([0, -INF, 0, 0]), longs(0, 1, 2)),
        error=ValueError,
        arg="prototypes must be finite",
    ),
    Case("labels float", lambda: _add(rows(3), torch.zeros(3)), error=TypeError, arg="labels"),
    Case("labels int32", lambda: _add(rows(3), torch.zeros(3, dtype=torch.int32)), error=TypeError, arg="labels"),
    Case("labels list", lambda: _add(rows(3), [0, 1, 2]), error=TypeError, arg="labels"),
    Case("labels short", lambda: _add(rows(3), longs(0, 1)), error=ValueError, arg="labels.*shape"),
    Case("labels 2-D", lambda: _add(rows(3), longs(0, 1, 2)[None]), error=ValueError, arg="labels.*shape"),
    Case("labels -1", lambda: _add(rows(3), longs(0, -1, 2)), error=ValueError, arg="labels must be class labels"),
    Case("labels int64 min", lambda: _add(rows(3), longs(0, -(2**63), 2)), error=ValueError, arg="labels"),
    Case(
        "labels MAX_CLASSES",
        lambda: _add(rows(3), longs(0, SegmentIndex.MAX_CLASSES, 2)),
        error=ValueError,
        arg="labels.*MAX_CLASSES = 1048576.*found 1048576",
    ),
    Case("labels 2**31", lambda: _add(rows(3), longs(0, 2**31, 2)), error=ValueError, arg="labels.*found 2147483648"),
    Case("labels 2**40", lambda: _add(rows(3), longs(0, 2**40, 2)), error=ValueError, arg="labels.*MAX_CLASSES"),
    Case("labels 2**63-1", lambda: _add(rows(3), longs(0, 2**63 - 1, 2)), error=ValueError, arg="labels.*MAX_CLASSES"),
    Case("labels on meta", lambda: _add(rows(3), longs(0, 1, 2).to("meta")), error=ValueError, arg="labels"),
    Case(
        "all on meta",
        lambda: _add(rows(3).to("meta"), longs(0, 1, 2).to("meta")),
        error=ValueError,
        arg="prototypes is on the meta device",
    ),
    Case(
        "image_ids float",
        lambda: _add(rows(3), longs(0, 1, 2), image_ids=torch.zeros(3)),
        error=TypeError,
        arg="image_ids",
    ),
    Case(
        "image_ids short",
        lambda: _add(rows(3), longs(0, 1, 2), image_ids=longs(0, 1)),
        error=ValueError,
        arg="image_ids",
    ),
    Case(
        "image_ids on meta",
        lambda: _add(rows(3), longs(0, 1, 2), image_ids=longs(0, 1, 2).to("meta")),
        error=ValueError,
        arg="image_ids",
    ),
    Case(
        "segment_ids list",
        lambda: _add(rows(3), longs(0, 1, 2), segment_ids=[0, 1, 2]),
        error=TypeError,
        arg="segment_ids",
    ),
    Case(
        "segment_ids 2-D",
        lambda: _add(rows(3), longs(0, 1, 2), segment_ids=longs(0, 1, 2)[:, None]),
        error=ValueError,
        arg="segment_ids",
    ),
    # 2**31 stride-0 rows whose labels do not match: refused before anything is allocated
    Case(
        "huge rows, short labels",
        lambda: _add(torch.zeros(1, D).expand(HUGE, D), longs(0)),
        error=ValueError,
        arg="labels.*2147483648",
    ),
    Case("train without IVF", lambda: SegmentIndex(D).train(rows(20)), error=ValueError, arg="ivf_nlist"),
    Case(
        "train NaN",
        lambda: SegmentIndex(D, ivf_nlist=2).train(_with([NAN, 0, 0, 0])),
        error=ValueError,
        arg="prototypes must be finite",
        marks=needs_faiss,
    ),
    Case("train twice", lambda: _train_twice(), error=ValueError, arg="trained already", marks=needs_faiss),
    # faiss would allocate 2**40 inverted lists up front: refused by the row count instead
    Case(
        "ivf_nlist=2**40",
        lambda: SegmentIndex(D, ivf_nlist=2**40).add(rows(10), torch.zeros(10, dtype=torch.int64)),
        error=ValueError,
        arg="ivf_nlist = 1099511627776",
        marks=needs_faiss,
    ),
]


# ---------------------------------------------------------------------------------------
# search / explain / vote / nprobe
# ---------------------------------------------------------------------------------------

QUERIES = [
    Case("empty index", lambda: SegmentIndex(D).search(rows(2), 1), error=ValueError, arg="empty"),
    Case("queries list", lambda: filled().search([[0.0] * D], 1), error=TypeError, arg="queries"),
    Case(
        "queries int64",
        lambda: filled().search(torch.zeros(2, D, dtype=torch.int64), 1),
        error=TypeError,
        arg="queries",
    ),
    Case(
        "queries bool", lambda: filled().search(torch.zeros(2, D, dtype=torch.bool), 1), error=TypeError, arg="queries"
    ),
    Case("queries 1-D", lambda: filled().search(torch.zeros(D), 1), error=ValueError, arg="queries.*shape"),
    Case("queries 3-D", lambda: filled().explain(torch.zeros(1, 2, D), 1), error=ValueError, arg="queries.*shape"),
    Case("queries wrong D", lambda: filled().vote(torch.zeros(2, D - 1), 1), error=ValueError, arg="queries.*D = 4"),
    Case(
        "queries on meta",
        lambda: filled().search(rows(2).to("meta"), 1),
        error=ValueError,
        arg="queries is on the meta",
    ),
    Case(
        "huge queries wrong D",
        lambda: filled().search(torch.zeros(1, D + 1).expand(HUGE, D + 1), 1),
        error=ValueError,
        arg="queries",
    ),
    Case("k=0", lambda: filled().search(rows(2), 0), error=ValueError, arg="k must be >= 1"),
    Case("k=-1", lambda: filled().explain(rows(2), -1), error=ValueError, arg="k"),
    Case("k float", lambda: filled().search(rows(2), 2.0), error=TypeError, arg="k"),
    Case("k bool", lambda: filled().search(rows(2), True), error=TypeError, arg="k"),
    Case("k None", lambda: filled().search(rows(2), None), error=TypeError, arg="k"),
    Case("k > size", lambda: filled().search(rows(2), 11), error=ValueError, arg="k = 11 is larger"),
    Case("k=2**31", lambda: filled().search(rows(2), 2**31), error=ValueError, arg="k = 2147483648 is larger"),
    Case("k=2**63-1", lambda: filled().vote(rows(2), 2**63 - 1), error=ValueError, arg="k = 9223372036854775807"),
    Case("vote default k=21 > size", lambda: filled().vote(rows(2)), error=ValueError, arg="k = 21 is larger"),
    Case("weighting", lambda: filled().vote(rows(2), 3, weighting="softmax"), error=ValueError, arg="weighting"),
    Case("weighting None", lambda: filled().vote(rows(2), 3, weighting=None), error=ValueError, arg="weighting"),
    Case("num_classes=0", lambda: filled().vote(rows(2), 3, num_classes=0), error=ValueError, arg="num_classes"),
    Case("num_classes float", lambda: filled().vote(rows(2), 3, num_classes=3.0), error=TypeError, arg="num_classes"),
    Case(
        "num_classes <= label",
        lambda: filled().vote(rows(2), 3, num_classes=2),
        error=ValueError,
        arg="num_classes = 2 but the index holds label 2",
    ),
    # (Q, num_classes) votes: refused before allocating
    Case(
        "num_classes=2**20+1",
        lambda: filled().vote(rows(2), 3, num_classes=2**20 + 1),
        error=ValueError,
        arg="num_classes must be <= SegmentIndex.MAX_CLASSES",
    ),
    Case(
        "num_classes=2**40", lambda: filled().vote(rows(2), 3, num_classes=2**40), error=ValueError, arg="num_classes"
    ),
    Case(
        "num_classes=2**63-1",
        lambda: filled().vote(rows(2), 3, num_classes=2**63 - 1),
        error=ValueError,
        arg="num_classes",
    ),
    Case("nprobe=0", lambda: setattr(filled(), "nprobe", 0), error=ValueError, arg="nprobe"),
    Case("nprobe float", lambda: setattr(filled(), "nprobe", 1.5), error=TypeError, arg="nprobe"),
]


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


def _loads(make):
    """SegmentIndex.load of the file that ``make`` writes in the case's folder."""
    return lambda root: SegmentIndex.load(make(root))


def _not_an_index(file_name):
    return r"not a SegmentIndex file \(.*" + file_name


NOT_AN_INDEX = [
    Case("empty file", _loads(lambda p: _write(p, b"")), error=ValueError, arg=_not_an_index("file.pt")),
    Case(
        "text file", _loads(lambda p: _write(p, b"dim,labels\n4,0\n")), error=ValueError, arg=_not_an_index("file.pt")
    ),
    Case(
        "truncated",
        _loads(lambda p: _write(p, saved(p).read_bytes()[:300])),
        error=ValueError,
        arg=_not_an_index("file.pt"),
    ),
    Case(
        "truncated end",
        _loads(lambda p: _write(p, saved(p).read_bytes()[:-40])),
        error=ValueError,
        arg=_not_an_index("file.pt"),
    ),
    Case(
        "a tensor",
        _loads(lambda p: (torch.save(torch.zeros(3), p / "t.pt"), p / "t.pt")[1]),
        error=ValueError,
        arg=_not_an_index("t.pt"),
    ),
    Case(
        "a dict without magic",
        _loads(lambda p: (torch.save({"labels": torch.zeros(1)}, p / "d.pt"), p / "d.pt")[1]),
        error=ValueError,
        arg=_not_an_index("d.pt"),
    ),
    Case(
        "wrong magic",
        _loads(lambda p: tampered(p, format="segsort_ext.Other")),
        error=ValueError,
        arg=_not_an_index("tampered.pt"),
    ),
    Case("no magic", _loads(lambda p: tampered(p, format=...)), error=ValueError, arg=_not_an_index("tampered.pt")),
    Case(
        "pickled object (weights_only)",
        _loads(lambda p: (torch.save({"format": MAGIC, "x": os.stat_result((0,) * 10)}, p / "o.pt"), p / "o.pt")[1]),
        error=ValueError,
        arg=_not_an_index("o.pt"),
    ),
]

CORRUPT = [
    ("version str", {"version": "1"}, "field version"),
    ("version 0", {"version": 0}, "field version"),
    ("missing version", {"version": ...}, "field version"),
    *[(f"missing {name}", {name: ...}, f"missing field {name}") for name in FIELDS],
    ("dim 0", {"dim": 0}, "field dim"),
    ("dim str", {"dim": "4"}, "field dim"),
    ("dim 2**40", {"dim": 2**40}, "field dim"),
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
    ("labels 2**40", {"labels": torch.full((10,), 2**40)}, "field labels.*found 1099511627776"),
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


def _corrupt(name, changes, match):
    """SegmentIndex.load of a valid file with ``changes``: refused, naming the file and ``match``."""
    return Case(
        name,
        lambda root: SegmentIndex.load(tampered(root, **changes)),
        error=ValueError,
        arg=r"corrupt SegmentIndex file '.*tampered\.pt': " + match,
    )


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
    Case(
        "index list",
        lambda: add_training_segments([], embedding_map(), class_map(), num_classes=C),
        error=TypeError,
        arg="index",
    ),
    Case(
        "embeddings int",
        lambda: add_training_segments(SegmentIndex(D), embedding_map().long(), class_map(), num_classes=C),
        error=TypeError,
        arg="embeddings",
    ),
    Case(
        "embeddings 3-D",
        lambda: add_training_segments(SegmentIndex(D), embedding_map()[0], class_map(), num_classes=C),
        error=ValueError,
        arg="embeddings",
    ),
    Case(
        "embeddings wrong D",
        lambda: add_training_segments(SegmentIndex(D + 1), embedding_map(), class_map(), num_classes=C),
        error=ValueError,
        arg="embeddings.*D = 5",
    ),
    Case(
        "labels float",
        lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map().float(), num_classes=C),
        error=TypeError,
        arg="labels",
    ),
    Case(
        "labels shape",
        lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map()[:, :4], num_classes=C),
        error=ValueError,
        arg="labels",
    ),
    Case(
        "labels on meta",
        lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map().to("meta"), num_classes=C),
        error=ValueError,
        arg="labels",
    ),
    Case(
        "labels >= num_classes",
        lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map() + 5, num_classes=C),
        error=ValueError,
        arg="labels",
    ),
    Case(
        "num_classes 0",
        lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map(), num_classes=0),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "num_classes 2**40",
        lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map(), num_classes=2**40),
        error=ValueError,
        arg="num_classes.*MAX_CLASSES",
    ),
    Case(
        "image_ids float",
        lambda: add_training_segments(
            SegmentIndex(D), embedding_map(), class_map(), num_classes=C, image_ids=torch.zeros(1)
        ),
        error=TypeError,
        arg="image_ids",
    ),
    Case(
        "image_ids shape",
        lambda: add_training_segments(
            SegmentIndex(D), embedding_map(), class_map(), num_classes=C, image_ids=longs(1, 2)
        ),
        error=ValueError,
        arg="image_ids",
    ),
    Case(
        "grid 0",
        lambda: add_training_segments(SegmentIndex(D), embedding_map(), class_map(), num_classes=C, grid=(0, 2)),
        error=ValueError,
        arg="grid",
    ),
]

PREDICTOR = [
    Case("index list", lambda: SegSortPredictor([], C), error=TypeError, arg="index"),
    Case("index empty", lambda: SegSortPredictor(SegmentIndex(D), C), error=ValueError, arg="index is empty"),
    Case("num_classes 0", lambda: SegSortPredictor(bank(), 0), error=ValueError, arg="num_classes"),
    Case("num_classes float", lambda: SegSortPredictor(bank(), 3.0), error=TypeError, arg="num_classes"),
    Case("num_classes <= label", lambda: SegSortPredictor(bank(), C - 1), error=ValueError, arg="num_classes = 2 but"),
    Case(
        "num_classes 2**63-1",
        lambda: SegSortPredictor(bank(), 2**63 - 1),
        error=ValueError,
        arg="num_classes.*MAX_CLASSES",
    ),
    Case("k 0", lambda: SegSortPredictor(bank(), C, k=0), error=ValueError, arg="k"),
    Case("grid str", lambda: SegSortPredictor(bank(), C, grid="2x2"), error=TypeError, arg="grid"),
    Case("grid 0", lambda: SegSortPredictor(bank(), C, grid=(2, 0)), error=ValueError, arg="grid"),
    Case("iters 0", lambda: SegSortPredictor(bank(), C, iters=0), error=ValueError, arg="iters"),
    Case(
        "coord_weight NaN", lambda: SegSortPredictor(bank(), C, coord_weight=NAN), error=ValueError, arg="coord_weight"
    ),
    Case(
        "coord_weight inf", lambda: SegSortPredictor(bank(), C, coord_weight=INF), error=ValueError, arg="coord_weight"
    ),
    Case(
        "coord_weight str", lambda: SegSortPredictor(bank(), C, coord_weight="1"), error=TypeError, arg="coord_weight"
    ),
    Case("weighting", lambda: SegSortPredictor(bank(), C, weighting="softmax"), error=ValueError, arg="weighting"),
    Case("vote_map list", lambda: predictor().vote_map([[0.0]]), error=TypeError, arg="embeddings"),
    Case("vote_map int", lambda: predictor().vote_map(embedding_map().long()), error=TypeError, arg="embeddings"),
    Case("vote_map 3-D", lambda: predictor().vote_map(embedding_map()[0]), error=ValueError, arg="embeddings"),
    Case(
        "vote_map wrong D",
        lambda: predictor().vote_map(embedding_map()[:, :3]),
        error=ValueError,
        arg="embeddings.*D = 4",
    ),
    Case("vote_map flip int", lambda: predictor().vote_map(embedding_map(), flip=1), error=TypeError, arg="flip"),
    Case(
        "vote_map output_size 0",
        lambda: predictor().vote_map(embedding_map(), output_size=(0, 4)),
        error=ValueError,
        arg="output_size",
    ),
    Case(
        "vote_map output_size str",
        lambda: predictor().vote_map(embedding_map(), output_size="8"),
        error=TypeError,
        arg="output_size",
    ),
    Case("predict no views", lambda: predictor().predict([]), error=ValueError, arg="views"),
    Case("predict views str", lambda: predictor().predict("views"), error=TypeError, arg="views"),
    Case("predict view not a pair", lambda: predictor().predict([embedding_map()]), error=TypeError, arg=r"views\[0\]"),
    Case(
        "predict batch sizes differ",
        lambda: predictor().predict([(embedding_map(2), False), (embedding_map(1), True)]),
        error=ValueError,
        arg=r"views must be of the same images: views\[1\] has batch size 1",
    ),
    Case(
        "predict view on meta",
        lambda: predictor().predict([(embedding_map(), False), (embedding_map().to("meta"), False)]),
        error=ValueError,
        arg=r"views\[1\] embeddings is on the meta device",
    ),
    Case(
        "predict wrong D",
        lambda: predictor().predict([(embedding_map(), False), (embedding_map()[:, :3], False)]),
        error=ValueError,
        arg=r"views\[1\] embeddings.*D = 4",
    ),
    Case(
        "predict flipped str",
        lambda: predictor().predict([(embedding_map(), "yes")]),
        error=TypeError,
        arg=r"views\[0\] flipped",
    ),
    Case(
        "predict output_size",
        lambda: predictor().predict(embedding_map(), output_size=(4, -1)),
        error=ValueError,
        arg="output_size",
    ),
    # Vote maps beyond int64 bytes, and beyond any machine's memory.
    Case(
        "predict output_size 2**40",
        lambda: predictor().predict(embedding_map(), output_size=2**40),
        error=ValueError,
        arg="^output_size is too large",
    ),
    Case(
        "predict output_size 10**7",
        lambda: predictor().predict([(embedding_map(), False)], output_size=(10**7, 10**7)),
        error=ValueError,
        arg="^output_size is too large",
    ),
    Case(
        "vote_map output_size 10**7",
        lambda: predictor().vote_map(embedding_map(), output_size=10**7),
        error=ValueError,
        arg="^output_size is too large",
    ),
    Case("predict k > bank", lambda: predictor(k=10**6).predict(embedding_map()), error=ValueError, arg="k = 1000000"),
]


FILES = NOT_AN_INDEX + [_corrupt(*row) for row in CORRUPT]
for _case in FILES:
    _case.setup = scratch

CASES = (
    _named("constructor", CONSTRUCTOR)
    + _named("add", ADD)
    + _named("queries", QUERIES)
    + _named("not_an_index", NOT_AN_INDEX)
    + _named("corrupt", FILES[len(NOT_AN_INDEX) :])
    + _named("training", TRAINING)
    + _named("predictor", PREDICTOR)
)
