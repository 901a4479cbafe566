# long-file: one list of cases per op and path (raw, public); splitting it would scatter them.
"""Bad-input cases of the op layer (issue 15).

Every public op function and every raw op (``torch.ops.segsort_ext.*``, backward ops
included) meets wrong types, shapes, dtypes and devices, sizes at the int32/int64 edges,
NaN/inf scalars and tensors, empty inputs and huge ones (expanded, stride-0 views: they
must be refused before anything is allocated). A refused input must raise the exact error
type with a message naming the argument; an accepted one must equal
``segsort_ext.ops.reference``. The raw-op cases (``RAW``: called with the ops of a backend)
run on the CPU kernels (``raw-cpu/``; without the extension the plain-PyTorch ones) and on the
CUDA code path through the emulator (``raw-cuda_emulated/``, with the extension only); the
issue's crash reproducers (``crash/``) are cases too: the runner's child-process run isolates
a crash. Formerly the tables of tests/ops/test_bad_inputs.py.
"""

import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F

import segsort_ext as se
from segsort_ext.ops import reference
from segsort_ext.ops.blurring_mean_shift import MAX_ITERS
from segsort_ext.testing import INF, NAN, needs_cuda
from tests.hostile.catalogue import Case
from tests.ops.conftest import CAN_EMULATE, EMULATION_BUILD_DIR, load_emulation_build

AREA = "ops"

MAX, MIN = torch.iinfo(torch.int64).max, torch.iinfo(torch.int64).min
FLOAT_MAX = torch.finfo(torch.float32).max
HUGE = 2**40  # elements of an expanded view; as memory, more than any machine has


def huge(*shape, dtype=torch.float64):
    """A stride-0 view of any size: nothing behind it but one element."""
    return torch.zeros((1,) * len(shape), dtype=dtype).expand(*shape)


def with_nan(t, index, value=NAN):
    t = t.clone()
    t[index] = value
    return t


g = torch.Generator().manual_seed(15)
C = torch.tensor([[[0, 0, 1], [2, -1, 1], [2, 2, 1]], [[3, 3, 3], [0, 0, 3], [-1, 0, 3]]])
L = torch.tensor([[[1, 1, 255], [0, 0, 1], [0, 4, 4]], [[2, 2, 2], [2, 255, 3], [3, 3, 3]]])
EDGES = torch.tensor([[[2**31 - 1, 2**31 - 1, 2**31], [MAX, MAX, 2**31], [-(2**31), 0, MAX]]])
EDGE_LABELS = torch.tensor([[[2**32, 2**32, MIN], [MAX, 7, 7], [0, 0, MAX]]])
X = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
IDS = torch.randint(-1, 3, (2, 4, 4), generator=g)
KX = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
E = F.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1)
SEG = torch.tensor([0, 1, 2, 0, -1, 1])
P = F.normalize(torch.randn(3, 4, generator=g, dtype=torch.float64), dim=1)
PL = torch.tensor([0, 0, 1])
MEM = F.normalize(torch.randn(2, 4, generator=g, dtype=torch.float64), dim=1)
ML = torch.tensor([0, 1])
E150 = F.normalize(torch.randn(6, 150, generator=g, dtype=torch.float64), dim=1)  # CUDA: the blocked path
P150 = F.normalize(torch.randn(3, 150, generator=g, dtype=torch.float64), dim=1)
PTS = F.normalize(torch.randn(2, 5, 3, generator=g, dtype=torch.float64), dim=2)
LENGTHS = torch.tensor([5, 3])


# ------------------------------------------------------------------------------ raw ops


def partition(clusters, labels=None, ignore_index=255, connectivity=0):
    return lambda ops: ops.segment_partition(clusters, labels, ignore_index, connectivity)


def partition_ref(clusters, labels=None, ignore_index=255, connectivity=0):
    return lambda: reference.segment_partition(
        clusters, labels, ignore_index=ignore_index, connectivity=connectivity or None
    )


def mean(x, ids, num_segments, normalize=True):
    return lambda ops: ops.segment_mean(x, ids, num_segments, normalize)[0]


def mean_ref(x, ids, num_segments, normalize=True):
    return lambda: reference.segment_mean(x, ids, num_segments, normalize=normalize)


def mean_backward(x_in, ids_in, num_segments, normalize=True, **replace):
    """_segment_mean_backward of ones, with any of its arguments replaced."""

    def call(ops):
        out, denom = ops.segment_mean(x_in, ids_in, num_segments, normalize)
        args = dict(grad_out=torch.ones_like(out), out=out, denom=denom, ids=ids_in, x_shape=list(x_in.shape))
        args.update(replace)
        return ops._segment_mean_backward(*args.values(), normalize)

    return call


def mean_grad_ref(x, ids, num_segments, normalize=True):
    def grad():
        leaf = x.clone().requires_grad_()
        return torch.autograd.grad(reference.segment_mean(leaf, ids, num_segments, normalize=normalize).sum(), leaf)[0]

    return grad


def kmeans(x=KX, mask=None, init=None, grid=(2, 2), iters=3, coord_weight=1.0, tol=-1.0):
    return lambda ops: ops.spherical_kmeans(x, mask, init, *grid, iters, coord_weight, tol)


def kmeans_ref(x=KX, mask=None, init=None, grid=(2, 2), iters=3, coord_weight=1.0, tol=-1.0):
    return lambda: reference.spherical_kmeans(
        x, grid, iters=iters, coord_weight=coord_weight, mask=mask, init=init, tol=None if tol < 0 else tol
    )


def vmf(e=E, ids=SEG, p=P, pl=None, mem=None, ml=None, concentration=10.0, nca=False):
    """The raw op's loss, averaged over the counted pixels as the public functions do."""

    def call(ops):
        loss = ops.vmf_loss(e, ids, p, pl, mem, ml, concentration, nca)[0]
        return loss.sum() / (ids >= 0).sum().clamp_min(1)

    return call


def vmf_ref(e=E, ids=SEG, p=P, pl=None, mem=None, ml=None, concentration=10.0, nca=False):
    memory = None if mem is None else (mem, ml)
    if nca:
        return lambda: reference.vmf_nca_loss(e, ids, p, pl, concentration=concentration, memory=memory)
    return lambda: reference.vmf_loss(e, ids, p, concentration=concentration, memory=memory)


def vmf_backward(e=E, ids=SEG, p=P, pl=None, mem=None, ml=None, concentration=10.0, nca=False, **replace):
    """Gradients (embeddings, prototypes) of the mean loss, from _vmf_loss_backward."""

    def call(ops):
        loss, den, num = ops.vmf_loss(e, ids, p, pl, mem, ml, concentration, nca)
        grad = (ids >= 0).to(loss.dtype) / (ids >= 0).sum().clamp_min(1)
        args = dict(grad_loss=grad, lse_den=den, lse_num=num)
        args.update(replace)
        return ops._vmf_loss_backward(
            args["grad_loss"], e, ids, p, pl, mem, ml, args["lse_den"], args["lse_num"], concentration, nca
        )

    return call


def vmf_grad_ref(e=E, ids=SEG, p=P, pl=None, mem=None, ml=None, concentration=10.0, nca=False):
    def grads():
        e_leaf, p_leaf = e.clone().requires_grad_(), p.clone().requires_grad_()
        loss = vmf_ref(e_leaf, ids, p_leaf, pl, mem, ml, concentration, nca)()
        return torch.autograd.grad(loss, (e_leaf, p_leaf))

    return grads


def step(x=PTS, lengths=LENGTHS, bandwidth=4.0, eta=0.7):
    return lambda ops: ops.blurring_mean_shift_step(x, lengths, bandwidth, eta)[0]


def step_ref(x=PTS, lengths=LENGTHS, bandwidth=4.0, eta=0.7):
    return lambda: reference.blurring_mean_shift(x, bandwidth=bandwidth, iters=1, eta=eta, lengths=lengths)


def step_backward(x=PTS, lengths=LENGTHS, bandwidth=4.0, eta=0.7, **replace):
    def call(ops):
        out, norms = ops.blurring_mean_shift_step(x, lengths, bandwidth, eta)
        args = dict(grad_out=torch.ones_like(out), x=x, out=out, norms=norms)
        args.update(replace)
        return ops._blurring_mean_shift_step_backward(*args.values(), lengths, bandwidth, eta)

    return call


ISSUE_X, ISSUE_IDS = torch.tensor([[1.0, 2.0, NAN]]), torch.tensor([0])  # the issue's segment_mean
ISSUE_C = with_nan(torch.zeros(2, 1, 1, dtype=torch.long), (0, 0, 0), MAX)  # the issue's partitions
ISSUE_C2, ISSUE_L2 = torch.zeros(1, 1, 2, dtype=torch.long), torch.tensor([[[0, MAX]]])
HUGE_MAP = huge(2**20, 2**20, 2**10, dtype=torch.long)
X_NAN = with_nan(X, (0, 2, 1, 1))
IDS_ALL = IDS.clamp_min(0)  # every pixel counted: the NaN pixel's segment is row IDS_ALL[0, 1, 1]
E_NAN, P_NAN, MEM_NAN = with_nan(E, (1, 2)), with_nan(P, (2, 0)), with_nan(MEM, (1, 3))
PTS_NAN = with_nan(PTS, (0, 2, 1))

RAW = [
    # segment_partition
    Case("partition/clusters not a tensor", partition([[[0]]]), error=RuntimeError, arg="clusters"),
    Case("partition/clusters float", partition(C.float()), error=TypeError, arg="clusters"),
    Case("partition/clusters 2-D", partition(C[0]), error=ValueError, arg="clusters"),
    Case("partition/labels int32", partition(C, L.int()), error=TypeError, arg="labels"),
    Case("partition/labels shape", partition(C, L[:1]), error=ValueError, arg="labels"),
    Case("partition/connectivity 6", partition(C, connectivity=6), error=ValueError, arg="connectivity"),
    Case("partition/connectivity -4", partition(C, connectivity=-4), error=ValueError, arg="connectivity"),
    Case("partition/ignore_index 2**63", partition(C, L, 2**63), error=RuntimeError, arg="ignore_index"),
    Case("partition/huge clusters", partition(HUGE_MAP), error=ValueError, arg="clusters"),
    Case("partition/huge labels", partition(HUGE_MAP, HUGE_MAP), error=ValueError, arg="clusters"),
    Case("partition/cluster INT64_MAX (issue)", partition(ISSUE_C), ref=partition_ref(ISSUE_C)),
    Case("partition/label INT64_MAX (issue)", partition(ISSUE_C2, ISSUE_L2), ref=partition_ref(ISSUE_C2, ISSUE_L2)),
    Case("partition/int32 and int64 edges", partition(EDGES, EDGE_LABELS), ref=partition_ref(EDGES, EDGE_LABELS)),
    Case(
        "partition/int edges, 4-connected",
        partition(EDGES, EDGE_LABELS, connectivity=4),
        ref=partition_ref(EDGES, EDGE_LABELS, connectivity=4),
    ),
    Case(
        "partition/int edges, 8-connected",
        partition(EDGES, None, connectivity=8),
        ref=partition_ref(EDGES, None, connectivity=8),
    ),
    Case(
        "partition/ignore_index INT64_MAX",
        partition(EDGES, EDGE_LABELS, MAX),
        ref=partition_ref(EDGES, EDGE_LABELS, MAX),
    ),
    Case(
        "partition/ignore_index INT64_MIN",
        partition(EDGES, EDGE_LABELS, MIN),
        ref=partition_ref(EDGES, EDGE_LABELS, MIN),
    ),
    Case("partition/all ignored", partition(torch.full((2, 3, 3), -1)), ref=partition_ref(torch.full((2, 3, 3), -1))),
    Case("partition/empty batch", partition(C[:0], L[:0]), ref=partition_ref(C[:0], L[:0])),
    Case("partition/empty images", partition(C[:, :0], None, 255, 4), ref=partition_ref(C[:, :0], None, 255, 4)),
    Case(
        "partition/stride-0 clusters",
        partition(torch.tensor([[[3]]]).expand(2, 5, 6), None, 255, 8),
        ref=partition_ref(torch.tensor([[[3]]]).expand(2, 5, 6), None, 255, 8),
    ),
    Case(
        "partition/transposed",
        partition(C.transpose(1, 2), L.transpose(1, 2), 255, 4),
        ref=partition_ref(C.transpose(1, 2), L.transpose(1, 2), 255, 4),
    ),
    # segment_mean
    Case("mean/x not a tensor", mean([[1.0]], torch.zeros(1, dtype=torch.long), 1), error=RuntimeError, arg="x"),
    Case("mean/x int", mean(IDS, IDS, 3), error=TypeError, arg="x"),
    Case("mean/ids int32", mean(X, IDS.int(), 3), error=TypeError, arg="ids"),
    Case("mean/ids shape", mean(X, IDS[0], 3), error=ValueError, arg="ids"),
    Case("mean/x 3-D", mean(X[0], IDS[0], 3), error=ValueError, arg="x"),
    Case("mean/num_segments -1", mean(X, IDS, -1), error=ValueError, arg="num_segments"),
    Case("mean/ids >= num_segments", mean(X, IDS + 7, 3), error=ValueError, arg="num_segments"),
    Case("mean/ids INT64_MAX", mean(X, with_nan(IDS, (1, 1, 1), MAX), 3), error=ValueError, arg="ids"),
    Case("mean/num_segments 2**63", mean(X, IDS, 2**63), error=RuntimeError, arg="num_segments"),
    Case("mean/num_segments 2**40 (issue)", mean(X, IDS, HUGE), error=ValueError, arg="num_segments"),
    Case("mean/num_segments INT64_MAX", mean(X, IDS, MAX), error=ValueError, arg="num_segments"),
    Case("mean/huge ids", mean(huge(HUGE, 3), huge(HUGE, dtype=torch.long), 1), error=ValueError, arg="ids"),
    Case("mean/NaN feature (issue)", mean(ISSUE_X, ISSUE_IDS, 1), ref=mean_ref(ISSUE_X, ISSUE_IDS, 1)),
    Case("mean/NaN feature", mean(X_NAN, IDS_ALL, 3), ref=mean_ref(X_NAN, IDS_ALL, 3)),
    Case("mean/NaN feature, plain mean", mean(X_NAN, IDS_ALL, 3, False), ref=mean_ref(X_NAN, IDS_ALL, 3, False)),
    Case(
        "mean/inf feature",
        mean(with_nan(X, (1, 0, 2, 2), INF), IDS_ALL, 3),
        ref=mean_ref(with_nan(X, (1, 0, 2, 2), INF), IDS_ALL, 3),
    ),
    Case(
        "mean/NaN in ignored pixels",
        mean(with_nan(X, (slice(None), slice(None), IDS[0] < 0)), IDS, 3),
        ref=mean_ref(with_nan(X, (slice(None), slice(None), IDS[0] < 0)), IDS, 3),
    ),
    Case(
        "mean/ids INT64_MIN ignored",
        mean(X, with_nan(IDS, (0, 0, 0), MIN), 3),
        ref=mean_ref(X, with_nan(IDS, (0, 0, 0), MIN), 3),
    ),
    Case("mean/empty pixels", mean(X[:0], IDS[:0], 2), ref=mean_ref(X[:0], IDS[:0], 2)),
    Case(
        "mean/empty (N, D)",
        mean(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 0),
        ref=mean_ref(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 0),
    ),
    Case("mean/more segments than pixels", mean(X, IDS, 40), ref=mean_ref(X, IDS, 40)),
    Case(
        "mean/stride-0 x",
        mean(X[:1, :, :1, :1].expand(2, 3, 4, 4), IDS, 3),
        ref=mean_ref(X[:1, :, :1, :1].expand(2, 3, 4, 4), IDS, 3),
    ),
    # _segment_mean_backward
    Case(
        "mean backward/grad_out shape",
        mean_backward(X, IDS, 3, grad_out=torch.ones(2, 3, dtype=torch.float64)),
        error=ValueError,
        arg="grad_out",
    ),
    Case("mean backward/out dtype", mean_backward(X, IDS, 3, out=torch.ones(3, 3)), error=TypeError, arg="out"),
    Case(
        "mean backward/denom shape",
        mean_backward(X, IDS, 3, denom=torch.ones(2, dtype=torch.float64)),
        error=ValueError,
        arg="denom",
    ),
    Case("mean backward/ids >= S", mean_backward(X, IDS, 3, ids=IDS + 3), error=ValueError, arg="ids"),
    Case("mean backward/x_shape D", mean_backward(X, IDS, 3, x_shape=[2, 5, 4, 4]), error=ValueError, arg="x_shape"),
    Case("mean backward/x_shape 3-D", mean_backward(X, IDS, 3, x_shape=[2, 3, 4]), error=ValueError, arg="x_shape"),
    Case(
        "mean backward/x_shape 2**63", mean_backward(X, IDS, 3, x_shape=[2**63, 3]), error=RuntimeError, arg="x_shape"
    ),
    Case(
        "mean backward/huge x_shape",
        mean_backward(X, IDS, 3, ids=huge(HUGE, dtype=torch.long), x_shape=[HUGE, 3]),
        error=ValueError,
        arg="x_shape",
    ),
    Case(
        "mean backward/NaN feature (issue)",
        mean_backward(ISSUE_X, ISSUE_IDS, 1),
        ref=mean_grad_ref(ISSUE_X, ISSUE_IDS, 1),
    ),
    Case("mean backward/NaN feature", mean_backward(X_NAN, IDS_ALL, 3), ref=mean_grad_ref(X_NAN, IDS_ALL, 3)),
    Case(
        "mean backward/NaN, plain mean",
        mean_backward(X_NAN, IDS_ALL, 3, False),
        ref=mean_grad_ref(X_NAN, IDS_ALL, 3, False),
    ),
    # spherical_kmeans
    Case("kmeans/x not a tensor", kmeans(x=[[[[1.0]]]]), error=RuntimeError, arg="x"),
    Case("kmeans/x int", kmeans(x=KX.long()), error=TypeError, arg="x"),
    Case("kmeans/x 3-D", kmeans(x=KX[0]), error=ValueError, arg="x"),
    Case("kmeans/mask float", kmeans(mask=torch.ones(1, 4, 4)), error=TypeError, arg="mask"),
    Case("kmeans/mask shape", kmeans(mask=torch.ones(1, 4, 3, dtype=torch.bool)), error=ValueError, arg="mask"),
    Case("kmeans/init int32", kmeans(init=torch.zeros(1, 4, 4, dtype=torch.int)), error=TypeError, arg="init"),
    Case("kmeans/init shape", kmeans(init=torch.zeros(1, 4, 3, dtype=torch.long)), error=ValueError, arg="init"),
    Case("kmeans/init >= K", kmeans(init=torch.full((1, 4, 4), 4)), error=ValueError, arg="init"),
    Case("kmeans/init INT64_MAX", kmeans(init=torch.full((1, 4, 4), MAX)), error=ValueError, arg="init"),
    Case("kmeans/grid 0", kmeans(grid=(0, 2)), error=ValueError, arg="grid"),
    Case("kmeans/grid (2**32, 2**32) (issue)", kmeans(grid=(2**32, 2**32), iters=1), error=ValueError, arg="grid"),
    Case("kmeans/grid (2**62, 4) (issue)", kmeans(grid=(2**62, 4)), error=ValueError, arg="grid"),
    Case("kmeans/grid (2**31, 2)", kmeans(grid=(2**31, 2)), error=ValueError, arg="grid"),
    Case("kmeans/grid (INT64_MAX, 1)", kmeans(grid=(MAX, 1)), error=ValueError, arg="grid"),
    Case("kmeans/grid 2**63", kmeans(grid=(2**63, 1)), error=RuntimeError, arg="grid_h"),
    Case("kmeans/iters 0", kmeans(iters=0), error=ValueError, arg="iters"),
    Case("kmeans/iters 2**63", kmeans(iters=2**63), error=RuntimeError, arg="iters"),
    Case("kmeans/coord_weight NaN", kmeans(coord_weight=NAN), error=ValueError, arg="coord_weight"),
    Case("kmeans/coord_weight inf", kmeans(coord_weight=INF), error=ValueError, arg="coord_weight"),
    Case("kmeans/coord_weight -inf", kmeans(coord_weight=-INF), error=ValueError, arg="coord_weight"),
    Case("kmeans/tol NaN", kmeans(tol=NAN), error=ValueError, arg="tol"),
    Case("kmeans/huge image", kmeans(x=huge(1, 3, 2**20, 2**20)), error=ValueError, arg="x"),
    Case("kmeans/huge batch", kmeans(x=huge(HUGE, 3, 1, 1)), error=ValueError, arg="x"),
    Case(
        "kmeans/NaN and inf pixels",
        kmeans(x=with_nan(with_nan(KX, (0, 1, 2, 2)), (0, 0, 0, 3), INF)),
        ref=kmeans_ref(x=with_nan(with_nan(KX, (0, 1, 2, 2)), (0, 0, 0, 3), INF)),
    ),
    Case(
        "kmeans/init INT64_MIN masked",
        kmeans(init=with_nan(torch.zeros(1, 4, 4, dtype=torch.long), (0, 1, 1), MIN)),
        ref=kmeans_ref(init=with_nan(torch.zeros(1, 4, 4, dtype=torch.long), (0, 1, 1), MIN)),
    ),
    Case("kmeans/tol inf", kmeans(tol=INF), ref=kmeans_ref(tol=INF)),
    Case("kmeans/more cells than pixels", kmeans(grid=(5, 7)), ref=kmeans_ref(grid=(5, 7))),
    Case("kmeans/coord_weight -1e6", kmeans(coord_weight=-1e6), ref=kmeans_ref(coord_weight=-1e6)),
    Case("kmeans/D = 0", kmeans(x=KX[:, :0]), ref=kmeans_ref(x=KX[:, :0])),
    Case("kmeans/empty batch", kmeans(x=KX[:0]), ref=kmeans_ref(x=KX[:0])),
    Case("kmeans/empty image", kmeans(x=KX[:, :, :0]), ref=kmeans_ref(x=KX[:, :, :0])),
    Case(
        "kmeans/all masked",
        kmeans(mask=torch.zeros(1, 4, 4, dtype=torch.bool)),
        ref=kmeans_ref(mask=torch.zeros(1, 4, 4, dtype=torch.bool)),
    ),
    # vmf_loss
    Case("vmf/embeddings not a tensor", vmf(e=[[1.0]]), error=RuntimeError, arg="embeddings"),
    Case("vmf/embeddings int", vmf(e=E.long()), error=TypeError, arg="embeddings"),
    Case("vmf/embeddings 3-D", vmf(e=E[None]), error=ValueError, arg="embeddings"),
    Case("vmf/segment_ids int32", vmf(ids=SEG.int()), error=TypeError, arg="segment_ids"),
    Case("vmf/segment_ids shape", vmf(ids=SEG[:-1]), error=ValueError, arg="segment_ids"),
    Case("vmf/segment_ids >= S", vmf(ids=SEG + 3), error=ValueError, arg="segment_ids"),
    Case("vmf/segment_ids INT64_MAX", vmf(ids=with_nan(SEG, 0, MAX)), error=ValueError, arg="segment_ids"),
    Case("vmf/prototypes dtype", vmf(p=P.float()), error=TypeError, arg="prototypes"),
    Case("vmf/prototypes shape", vmf(p=P[:, :3]), error=ValueError, arg="prototypes"),
    Case("vmf/prototype_labels missing", vmf(nca=True), error=ValueError, arg="prototype_labels"),
    Case("vmf/prototype_labels shape", vmf(pl=PL[:-1], nca=True), error=ValueError, arg="prototype_labels"),
    Case("vmf/memory int", vmf(mem=ML), error=TypeError, arg="memory"),
    Case("vmf/memory shape", vmf(mem=MEM[:, :3]), error=ValueError, arg="memory"),
    Case("vmf/memory_labels missing", vmf(pl=PL, mem=MEM, nca=True), error=ValueError, arg="memory_labels"),
    Case("vmf/memory_labels shape", vmf(pl=PL, mem=MEM, ml=ML[:1], nca=True), error=ValueError, arg="memory_labels"),
    Case("vmf/concentration NaN", vmf(concentration=NAN), error=ValueError, arg="concentration"),
    Case("vmf/concentration inf", vmf(concentration=INF, nca=True, pl=PL), error=ValueError, arg="concentration"),
    Case("vmf/concentration -inf", vmf(concentration=-INF), error=ValueError, arg="concentration"),
    Case(
        "vmf/huge embeddings",
        vmf(e=huge(HUGE, 4), ids=huge(HUGE, dtype=torch.long)),
        error=ValueError,
        arg="embeddings",
    ),
    Case("vmf/huge prototypes", vmf(p=huge(HUGE, 4)), error=ValueError, arg="prototypes"),
    Case("vmf/huge memory", vmf(mem=huge(HUGE, 4)), error=ValueError, arg="memory"),
    Case("vmf/NaN memory row (issue)", vmf(mem=MEM_NAN), ref=vmf_ref(mem=MEM_NAN)),
    Case(
        "vmf-nca/NaN memory row (issue)",
        vmf(pl=PL, mem=MEM_NAN, ml=ML, nca=True),
        ref=vmf_ref(pl=PL, mem=MEM_NAN, ml=ML, nca=True),
    ),
    Case("vmf/NaN prototype", vmf(p=P_NAN), ref=vmf_ref(p=P_NAN)),
    Case("vmf-nca/NaN prototype", vmf(p=P_NAN, pl=PL, nca=True), ref=vmf_ref(p=P_NAN, pl=PL, nca=True)),
    Case("vmf/NaN embedding", vmf(e=E_NAN, mem=MEM), ref=vmf_ref(e=E_NAN, mem=MEM)),
    Case("vmf-nca/NaN embedding", vmf(e=E_NAN, pl=PL, nca=True), ref=vmf_ref(e=E_NAN, pl=PL, nca=True)),
    Case(
        "vmf-nca/NaN in an ignored pixel",
        vmf(e=with_nan(E, (4, 0)), pl=PL, mem=MEM, ml=ML, nca=True),
        ref=vmf_ref(e=with_nan(E, (4, 0)), pl=PL, mem=MEM, ml=ML, nca=True),
    ),
    Case(
        "vmf/NaN memory row, D = 150",
        vmf(e=E150, p=P150, mem=with_nan(P150[:2], (1, 7))),
        ref=vmf_ref(e=E150, p=P150, mem=with_nan(P150[:2], (1, 7))),
    ),
    Case(
        "vmf-nca/NaN prototype, D = 150",
        vmf(e=E150, p=with_nan(P150, (0, 3)), pl=PL, nca=True),
        ref=vmf_ref(e=E150, p=with_nan(P150, (0, 3)), pl=PL, nca=True),
    ),
    Case("vmf/segment_ids INT64_MIN ignored", vmf(ids=with_nan(SEG, 2, MIN)), ref=vmf_ref(ids=with_nan(SEG, 2, MIN))),
    Case("vmf/no pixels", vmf(e=E[:0], ids=SEG[:0]), ref=vmf_ref(e=E[:0], ids=SEG[:0])),
    Case(
        "vmf/no pixels of 2**62 channels",
        vmf(e=torch.empty(0, 2**62), ids=SEG[:0], p=torch.empty(0, 2**62)),
        ref=vmf_ref(e=torch.empty(0, 2**62), ids=SEG[:0], p=torch.empty(0, 2**62)),
    ),
    Case(
        "vmf-nca/memory only",
        vmf(ids=torch.full((6,), -1), p=P[:0], pl=PL[:0], mem=MEM, ml=ML, nca=True),
        ref=vmf_ref(ids=torch.full((6,), -1), p=P[:0], pl=PL[:0], mem=MEM, ml=ML, nca=True),
    ),
    Case("vmf/concentration -1e3", vmf(concentration=-1e3), ref=vmf_ref(concentration=-1e3)),
    # _vmf_loss_backward
    Case(
        "vmf backward/lse_den shape",
        vmf_backward(lse_den=torch.zeros(5, dtype=torch.float64)),
        error=ValueError,
        arg="lse_den",
    ),
    Case(
        "vmf backward/grad_loss shape",
        vmf_backward(grad_loss=torch.zeros(1, 6, dtype=torch.float64)),
        error=ValueError,
        arg="grad_loss",
    ),
    Case("vmf backward/lse_num int", vmf_backward(lse_num=SEG), error=TypeError, arg="lse_num"),
    Case("vmf backward/NaN memory row", vmf_backward(mem=MEM_NAN), ref=vmf_grad_ref(mem=MEM_NAN)),
    Case(
        "vmf-nca backward/NaN memory row",
        vmf_backward(pl=PL, mem=MEM_NAN, ml=ML, nca=True),
        ref=vmf_grad_ref(pl=PL, mem=MEM_NAN, ml=ML, nca=True),
    ),
    Case(
        "vmf backward/NaN memory row, D = 150",
        vmf_backward(e=E150, p=P150, mem=with_nan(P150[:2], (1, 7))),
        ref=vmf_grad_ref(e=E150, p=P150, mem=with_nan(P150[:2], (1, 7))),
    ),
    Case(
        "vmf-nca backward/NaN prototype",
        vmf_backward(p=P_NAN, pl=PL, nca=True),
        ref=vmf_grad_ref(p=P_NAN, pl=PL, nca=True),
    ),
    # blurring_mean_shift_step
    Case("step/x not a tensor", step(x=[[[1.0]]], lengths=None), error=RuntimeError, arg="x"),
    Case("step/x int", step(x=LENGTHS[None, :, None]), error=TypeError, arg="x"),
    Case("step/x 2-D", step(x=PTS[0], lengths=None), error=ValueError, arg="x"),
    Case("step/lengths int32", step(lengths=LENGTHS.int()), error=TypeError, arg="lengths"),
    Case("step/lengths shape", step(lengths=LENGTHS[:1]), error=ValueError, arg="lengths"),
    Case("step/lengths > N", step(lengths=torch.tensor([5, 6])), error=ValueError, arg="lengths"),
    Case("step/lengths -1", step(lengths=torch.tensor([5, -1])), error=ValueError, arg="lengths"),
    Case("step/lengths INT64_MAX", step(lengths=torch.tensor([MAX, 1])), error=ValueError, arg="lengths"),
    Case("step/bandwidth 0", step(bandwidth=0.0), error=ValueError, arg="bandwidth"),
    Case("step/bandwidth -1", step(bandwidth=-1.0), error=ValueError, arg="bandwidth"),
    Case("step/bandwidth NaN", step(bandwidth=NAN), error=ValueError, arg="bandwidth"),
    Case("step/bandwidth inf", step(bandwidth=INF), error=ValueError, arg="bandwidth"),
    Case("step/bandwidth 1e308", step(bandwidth=1e308), error=ValueError, arg="bandwidth"),
    Case("step/bandwidth 2e38, float32", step(x=PTS.float(), bandwidth=2e38), error=ValueError, arg="bandwidth"),
    Case("step/bandwidth 2e38, bfloat16", step(x=PTS.bfloat16(), bandwidth=2e38), error=ValueError, arg="bandwidth"),
    Case(
        "step/bandwidth float32 max / 2",
        step(x=PTS.float(), bandwidth=FLOAT_MAX / 2),
        ref=step_ref(x=PTS.float(), bandwidth=FLOAT_MAX / 2),
    ),
    Case("step/bandwidth 1e38, float64", step(bandwidth=1e38), ref=step_ref(bandwidth=1e38)),
    Case("step/eta 0", step(eta=0.0), error=ValueError, arg="eta"),
    Case("step/eta 1.5", step(eta=1.5), error=ValueError, arg="eta"),
    Case("step/eta NaN", step(eta=NAN), error=ValueError, arg="eta"),
    Case("step/huge x", step(x=huge(2**20, 2**20, 8), lengths=None), error=ValueError, arg="x"),
    Case("step/NaN point", step(x=PTS_NAN), ref=step_ref(x=PTS_NAN)),
    Case("step/NaN in padding", step(x=with_nan(PTS, (1, 4))), ref=step_ref(x=with_nan(PTS, (1, 4)))),
    Case(
        "step/no points",
        step(x=PTS[:, :0], lengths=torch.zeros(2, dtype=torch.long)),
        ref=step_ref(x=PTS[:, :0], lengths=torch.zeros(2, dtype=torch.long)),
    ),
    Case("step/empty batch", step(x=PTS[:0], lengths=None), ref=step_ref(x=PTS[:0], lengths=None)),
    Case("step/D = 0", step(x=PTS[..., :0]), ref=step_ref(x=PTS[..., :0])),
    Case("step/lengths 0", step(lengths=torch.tensor([0, 0])), ref=step_ref(lengths=torch.tensor([0, 0]))),
    # _blurring_mean_shift_step_backward
    Case(
        "step backward/norms shape",
        step_backward(norms=torch.ones(2, 4, dtype=torch.float64)),
        error=ValueError,
        arg="norms",
    ),
    Case("step backward/grad_out shape", step_backward(grad_out=PTS[:, :4]), error=ValueError, arg="grad_out"),
    Case("step backward/out int", step_backward(out=LENGTHS), error=TypeError, arg="out"),
    Case(
        "step backward/bandwidth inf",
        lambda ops: ops._blurring_mean_shift_step_backward(
            PTS, PTS, PTS, torch.ones(2, 5, dtype=torch.float64), LENGTHS, INF, 0.7
        ),
        error=ValueError,
        arg="bandwidth",
    ),
    Case(
        "step backward/bandwidth 2e38, float32",
        step_backward(x=PTS.float(), bandwidth=2e38),
        error=ValueError,
        arg="bandwidth",
    ),
]


# ------------------------------------------------------------------------------ public functions


def public_mean_grad(x, ids, num_segments, normalize=True):
    def call():
        leaf = x.clone().requires_grad_()
        return torch.autograd.grad(se.segment_mean(leaf, ids, num_segments, normalize=normalize).sum(), leaf)[0]

    return call


def histogram_ref(ids, labels, num_segments, num_classes, ignore_index=255):
    return lambda: reference.segment_label_histogram(ids, labels, num_segments, num_classes, ignore_index=ignore_index)


EDGE_IDS = torch.tensor([0, 0, 1, -1, MIN, 1])
EDGE_CLASSES = torch.tensor([2, MAX, 0, 1, 1, MIN])

PUBLIC = [
    # segment_partition
    Case("segment_partition/clusters numpy", lambda: se.segment_partition(C.numpy()), error=TypeError, arg="clusters"),
    Case("segment_partition/clusters float", lambda: se.segment_partition(C.float()), error=TypeError, arg="clusters"),
    Case("segment_partition/clusters 2-D", lambda: se.segment_partition(C[0]), error=ValueError, arg="clusters"),
    Case("segment_partition/labels shape", lambda: se.segment_partition(C, L[:, :2]), error=ValueError, arg="labels"),
    Case("segment_partition/labels int32", lambda: se.segment_partition(C, L.int()), error=TypeError, arg="labels"),
    Case("segment_partition/labels list", lambda: se.segment_partition(C, L.tolist()), error=TypeError, arg="labels"),
    Case(
        "segment_partition/connectivity 6",
        lambda: se.segment_partition(C, connectivity=6),
        error=ValueError,
        arg="connectivity",
    ),
    Case(
        "segment_partition/ignore_index float",
        lambda: se.segment_partition(C, L, ignore_index=255.0),
        error=TypeError,
        arg="ignore_index",
    ),
    Case(
        "segment_partition/ignore_index 2**63",
        lambda: se.segment_partition(C, L, ignore_index=2**63),
        error=ValueError,
        arg="ignore_index",
    ),
    Case("segment_partition/huge clusters", lambda: se.segment_partition(HUGE_MAP), error=ValueError, arg="clusters"),
    Case(
        "segment_partition/cluster INT64_MAX (issue)", lambda: se.segment_partition(ISSUE_C), ref=partition_ref(ISSUE_C)
    ),
    Case(
        "segment_partition/label INT64_MAX (issue)",
        lambda: se.segment_partition(ISSUE_C2, ISSUE_L2),
        ref=partition_ref(ISSUE_C2, ISSUE_L2),
    ),
    Case(
        "segment_partition/int edges, 8-connected",
        lambda: se.segment_partition(EDGES, EDGE_LABELS, connectivity=8),
        ref=partition_ref(EDGES, EDGE_LABELS, connectivity=8),
    ),
    # segment_mean
    Case("segment_mean/x not a tensor", lambda: se.segment_mean(X.numpy(), IDS, 3), error=TypeError, arg="x"),
    Case("segment_mean/ids float", lambda: se.segment_mean(X, IDS.float(), 3), error=TypeError, arg="ids"),
    Case("segment_mean/x int", lambda: se.segment_mean(IDS, IDS, 3), error=TypeError, arg="x"),
    Case("segment_mean/x 3-D", lambda: se.segment_mean(X[0], IDS[0], 3), error=ValueError, arg="x"),
    Case("segment_mean/ids shape", lambda: se.segment_mean(X, IDS[:, :3], 3), error=ValueError, arg="ids"),
    Case(
        "segment_mean/ids >= num_segments", lambda: se.segment_mean(X, IDS + 5, 3), error=ValueError, arg="num_segments"
    ),
    Case("segment_mean/num_segments -1", lambda: se.segment_mean(X, IDS, -1), error=ValueError, arg="num_segments"),
    Case("segment_mean/num_segments 2.0", lambda: se.segment_mean(X, IDS, 2.0), error=TypeError, arg="num_segments"),
    Case("segment_mean/num_segments True", lambda: se.segment_mean(X, IDS, True), error=TypeError, arg="num_segments"),
    Case(
        "segment_mean/num_segments 2**63", lambda: se.segment_mean(X, IDS, 2**63), error=ValueError, arg="num_segments"
    ),
    Case(
        "segment_mean/num_segments 2**40 (issue)",
        lambda: se.segment_mean(X, IDS, HUGE),
        error=ValueError,
        arg="num_segments",
    ),
    Case(
        "segment_mean/huge ids",
        lambda: se.segment_mean(huge(HUGE, 3), huge(HUGE, dtype=torch.long), 1),
        error=ValueError,
        arg="ids",
    ),
    Case(
        "segment_mean/NaN feature (issue)",
        lambda: se.segment_mean(ISSUE_X, ISSUE_IDS, 1),
        ref=mean_ref(ISSUE_X, ISSUE_IDS, 1),
    ),
    Case(
        "segment_mean/NaN feature gradient (issue)",
        public_mean_grad(ISSUE_X, ISSUE_IDS, 1),
        ref=mean_grad_ref(ISSUE_X, ISSUE_IDS, 1),
    ),
    Case(
        "segment_mean/NaN feature gradient", public_mean_grad(X_NAN, IDS_ALL, 3), ref=mean_grad_ref(X_NAN, IDS_ALL, 3)
    ),
    Case("segment_mean/empty", lambda: se.segment_mean(X[:0], IDS[:0], 2), ref=mean_ref(X[:0], IDS[:0], 2)),
    # segment_label_histogram, segment_majority_mean
    Case(
        "segment_label_histogram/num_classes 2**40 (issue)",
        lambda: se.segment_label_histogram(SEG, SEG.clamp_min(0), 3, HUGE),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "segment_label_histogram/num_segments 2**40",
        lambda: se.segment_label_histogram(SEG, SEG, HUGE, 3),
        error=ValueError,
        arg="num_segments",
    ),
    Case(
        "segment_label_histogram/num_classes 2**63",
        lambda: se.segment_label_histogram(SEG, SEG, 3, 2**63),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "segment_label_histogram/num_classes -1",
        lambda: se.segment_label_histogram(SEG, SEG, 3, -1),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "segment_label_histogram/num_classes 3.0",
        lambda: se.segment_label_histogram(SEG, SEG, 3, 3.0),
        error=TypeError,
        arg="num_classes",
    ),
    Case(
        "segment_label_histogram/ignore_index str",
        lambda: se.segment_label_histogram(SEG, SEG, 3, 3, ignore_index="x"),
        error=TypeError,
        arg="ignore_index",
    ),
    Case(
        "segment_label_histogram/labels >= num_classes",
        lambda: se.segment_label_histogram(SEG, SEG + 5, 3, 3),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "segment_label_histogram/ids >= num_segments",
        lambda: se.segment_label_histogram(SEG + 3, SEG, 3, 3),
        error=ValueError,
        arg="num_segments",
    ),
    Case(
        "segment_label_histogram/labels shape",
        lambda: se.segment_label_histogram(SEG, SEG[:2], 3, 3),
        error=ValueError,
        arg="labels",
    ),
    Case(
        "segment_label_histogram/ids float",
        lambda: se.segment_label_histogram(SEG.float(), SEG, 3, 3),
        error=TypeError,
        arg="ids",
    ),
    Case(
        "segment_label_histogram/huge ids",
        lambda: se.segment_label_histogram(huge(HUGE, dtype=torch.long), huge(HUGE, dtype=torch.long), 1, 1),
        error=ValueError,
        arg="ids",
    ),
    Case(
        "segment_label_histogram/int64 labels ignored",
        lambda: se.segment_label_histogram(EDGE_IDS, EDGE_CLASSES, 2, 3, ignore_index=MAX),
        ref=histogram_ref(EDGE_IDS, EDGE_CLASSES, 2, 3, ignore_index=MAX),
    ),
    Case(
        "segment_label_histogram/empty",
        lambda: se.segment_label_histogram(SEG[:0], SEG[:0], 2, 3),
        ref=histogram_ref(SEG[:0], SEG[:0], 2, 3),
    ),
    Case(
        "segment_majority_mean/num_classes 2**40",
        lambda: se.segment_majority_mean(E, SEG, SEG.clamp_min(0), 3, HUGE),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "segment_majority_mean/x shape",
        lambda: se.segment_majority_mean(E[:3], SEG, SEG.clamp_min(0), 3, 3),
        error=ValueError,
        arg="ids",
    ),
    # spherical_kmeans
    Case("spherical_kmeans/x not a tensor", lambda: se.spherical_kmeans(KX.numpy()), error=TypeError, arg="x"),
    Case("spherical_kmeans/x int", lambda: se.spherical_kmeans(KX.long()), error=TypeError, arg="x"),
    Case("spherical_kmeans/x 3-D", lambda: se.spherical_kmeans(KX[0]), error=ValueError, arg="x"),
    Case(
        "spherical_kmeans/grid (2**32, 2**32) (issue)",
        lambda: se.spherical_kmeans(KX, (2**32, 2**32)),
        error=ValueError,
        arg="grid",
    ),
    Case(
        "spherical_kmeans/grid (2**62, 4) (issue)",
        lambda: se.spherical_kmeans(KX, (2**62, 4)),
        error=ValueError,
        arg="grid",
    ),
    Case("spherical_kmeans/grid (2**31, 2)", lambda: se.spherical_kmeans(KX, (2**31, 2)), error=ValueError, arg="grid"),
    Case("spherical_kmeans/grid 2**63", lambda: se.spherical_kmeans(KX, 2**63), error=ValueError, arg="grid"),
    Case("spherical_kmeans/grid (0, 2)", lambda: se.spherical_kmeans(KX, (0, 2)), error=ValueError, arg="grid"),
    Case("spherical_kmeans/grid (2.0, 2)", lambda: se.spherical_kmeans(KX, (2.0, 2)), error=TypeError, arg="grid"),
    Case("spherical_kmeans/iters 0", lambda: se.spherical_kmeans(KX, iters=0), error=ValueError, arg="iters"),
    Case("spherical_kmeans/iters 2**63", lambda: se.spherical_kmeans(KX, iters=2**63), error=ValueError, arg="iters"),
    Case(
        "spherical_kmeans/coord_weight NaN",
        lambda: se.spherical_kmeans(KX, coord_weight=NAN),
        error=ValueError,
        arg="coord_weight",
    ),
    Case(
        "spherical_kmeans/coord_weight inf",
        lambda: se.spherical_kmeans(KX, coord_weight=INF),
        error=ValueError,
        arg="coord_weight",
    ),
    Case(
        "spherical_kmeans/coord_weight str",
        lambda: se.spherical_kmeans(KX, coord_weight="1"),
        error=TypeError,
        arg="coord_weight",
    ),
    Case("spherical_kmeans/tol -1", lambda: se.spherical_kmeans(KX, tol=-1), error=ValueError, arg="tol"),
    Case("spherical_kmeans/tol NaN", lambda: se.spherical_kmeans(KX, tol=NAN), error=ValueError, arg="tol"),
    Case(
        "spherical_kmeans/mask float",
        lambda: se.spherical_kmeans(KX, mask=torch.ones(1, 4, 4)),
        error=TypeError,
        arg="mask",
    ),
    Case(
        "spherical_kmeans/mask shape",
        lambda: se.spherical_kmeans(KX, mask=torch.ones(1, 4, 3, dtype=torch.bool)),
        error=ValueError,
        arg="mask",
    ),
    Case(
        "spherical_kmeans/init >= K",
        lambda: se.spherical_kmeans(KX, (2, 2), init=torch.full((1, 4, 4), 4)),
        error=ValueError,
        arg="init",
    ),
    Case(
        "spherical_kmeans/init shape",
        lambda: se.spherical_kmeans(KX, init=torch.zeros(1, 4, 5, dtype=torch.long)),
        error=ValueError,
        arg="init",
    ),
    Case(
        "spherical_kmeans/NaN pixel",
        lambda: tuple(se.spherical_kmeans(with_nan(KX, (0, 1, 2, 2)), (2, 2), iters=3)),
        ref=kmeans_ref(x=with_nan(KX, (0, 1, 2, 2))),
    ),
    # vmf_loss, vmf_nca_loss
    Case(
        "vmf_loss/embeddings not a tensor", lambda: se.vmf_loss(E.tolist(), SEG, P), error=TypeError, arg="embeddings"
    ),
    Case("vmf_loss/segment_ids >= S", lambda: se.vmf_loss(E, SEG + 3, P), error=ValueError, arg="segment_ids"),
    Case("vmf_loss/segment_ids shape", lambda: se.vmf_loss(E, SEG[:-1], P), error=ValueError, arg="segment_ids"),
    Case("vmf_loss/segment_ids int32", lambda: se.vmf_loss(E, SEG.int(), P), error=TypeError, arg="segment_ids"),
    Case("vmf_loss/prototypes dtype", lambda: se.vmf_loss(E, SEG, P.float()), error=TypeError, arg="prototypes"),
    Case("vmf_loss/prototypes shape", lambda: se.vmf_loss(E, SEG, P[:, :3]), error=ValueError, arg="prototypes"),
    Case("vmf_loss/embeddings 3-D", lambda: se.vmf_loss(E[None], SEG, P), error=ValueError, arg="embeddings"),
    Case("vmf_loss/memory not a pair", lambda: se.vmf_loss(E, SEG, P, memory=MEM), error=TypeError, arg="memory"),
    Case(
        "vmf_loss/concentration NaN",
        lambda: se.vmf_loss(E, SEG, P, concentration=NAN),
        error=ValueError,
        arg="concentration",
    ),
    Case(
        "vmf_loss/concentration inf",
        lambda: se.vmf_loss(E, SEG, P, concentration=INF),
        error=ValueError,
        arg="concentration",
    ),
    Case(
        "vmf_loss/concentration str",
        lambda: se.vmf_loss(E, SEG, P, concentration="10"),
        error=TypeError,
        arg="concentration",
    ),
    Case(
        "vmf_loss/huge embeddings",
        lambda: se.vmf_loss(huge(HUGE, 4), huge(HUGE, dtype=torch.long), P),
        error=ValueError,
        arg="embeddings",
    ),
    Case(
        "vmf_loss/NaN memory row (issue)",
        lambda: se.vmf_loss(E, SEG, P, memory=(MEM_NAN, ML)),
        ref=vmf_ref(mem=MEM_NAN),
    ),
    Case("vmf_loss/NaN prototype", lambda: se.vmf_loss(E, SEG, P_NAN), ref=vmf_ref(p=P_NAN)),
    Case(
        "vmf_nca_loss/NaN memory row (issue)",
        lambda: se.vmf_nca_loss(E, SEG, P, PL, memory=(MEM_NAN, ML)),
        ref=vmf_ref(pl=PL, mem=MEM_NAN, ml=ML, nca=True),
    ),
    Case(
        "vmf_nca_loss/NaN embedding", lambda: se.vmf_nca_loss(E_NAN, SEG, P, PL), ref=vmf_ref(e=E_NAN, pl=PL, nca=True)
    ),
    Case(
        "vmf_nca_loss/prototype_labels None",
        lambda: se.vmf_nca_loss(E, SEG, P, None),
        error=TypeError,
        arg="prototype_labels",
    ),
    Case(
        "vmf_nca_loss/prototype_labels shape",
        lambda: se.vmf_nca_loss(E, SEG, P, PL[:-1]),
        error=ValueError,
        arg="prototype_labels",
    ),
    Case(
        "vmf_nca_loss/memory_labels None",
        lambda: se.vmf_nca_loss(E, SEG, P, PL, memory=(MEM, None)),
        error=ValueError,
        arg="memory_labels",
    ),
    Case(
        "vmf_nca_loss/memory_labels shape",
        lambda: se.vmf_nca_loss(E, SEG, P, PL, memory=(MEM, ML[:1])),
        error=ValueError,
        arg="memory_labels",
    ),
    Case(
        "vmf_nca_loss/concentration inf",
        lambda: se.vmf_nca_loss(E, SEG, P, PL, concentration=INF),
        error=ValueError,
        arg="concentration",
    ),
    Case(
        "vmf_nca_loss/no pixels",
        lambda: se.vmf_nca_loss(E[:0], SEG[:0], P, PL),
        ref=vmf_ref(e=E[:0], ids=SEG[:0], pl=PL, nca=True),
    ),
    # blurring_mean_shift, bandwidth_from_margin
    Case(
        "blurring_mean_shift/x not a tensor",
        lambda: se.blurring_mean_shift(PTS.tolist(), bandwidth=4.0),
        error=TypeError,
        arg="x",
    ),
    Case("blurring_mean_shift/x 2-D", lambda: se.blurring_mean_shift(PTS[0], bandwidth=4.0), error=ValueError, arg="x"),
    Case(
        "blurring_mean_shift/bandwidth 0",
        lambda: se.blurring_mean_shift(PTS, bandwidth=0.0),
        error=ValueError,
        arg="bandwidth",
    ),
    Case(
        "blurring_mean_shift/bandwidth NaN",
        lambda: se.blurring_mean_shift(PTS, bandwidth=NAN),
        error=ValueError,
        arg="bandwidth",
    ),
    Case(
        "blurring_mean_shift/bandwidth inf",
        lambda: se.blurring_mean_shift(PTS, bandwidth=INF),
        error=ValueError,
        arg="bandwidth",
    ),
    Case(
        "blurring_mean_shift/bandwidth str",
        lambda: se.blurring_mean_shift(PTS, bandwidth="4"),
        error=TypeError,
        arg="bandwidth",
    ),
    Case(
        "blurring_mean_shift/eta 0",
        lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, eta=0.0),
        error=ValueError,
        arg="eta",
    ),
    Case(
        "blurring_mean_shift/eta NaN",
        lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, eta=NAN),
        error=ValueError,
        arg="eta",
    ),
    Case(
        "blurring_mean_shift/eta True",
        lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, eta=True),
        error=TypeError,
        arg="eta",
    ),
    Case(
        "blurring_mean_shift/iters -1",
        lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, iters=-1),
        error=ValueError,
        arg="iters",
    ),
    Case(
        "blurring_mean_shift/iters 1.5",
        lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, iters=1.5),
        error=TypeError,
        arg="iters",
    ),
    Case(
        "blurring_mean_shift/iters 2**62",
        lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, iters=2**62),
        error=ValueError,
        arg="iters",
    ),
    Case(
        "blurring_mean_shift/iters MAX_ITERS + 1",
        lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, iters=MAX_ITERS + 1),
        error=ValueError,
        arg="iters",
    ),
    Case(
        "blurring_mean_shift/bandwidth 1e308",
        lambda: se.blurring_mean_shift(PTS, bandwidth=1e308),
        error=ValueError,
        arg="bandwidth",
    ),
    Case(
        "blurring_mean_shift/bandwidth 2e38, float32",
        lambda: se.blurring_mean_shift(PTS.float(), bandwidth=2e38),
        error=ValueError,
        arg="bandwidth",
    ),
    Case(
        "blurring_mean_shift/bandwidth 2e38, float16",
        lambda: se.blurring_mean_shift(PTS.half(), bandwidth=2e38),
        error=ValueError,
        arg="bandwidth",
    ),
    Case(
        "blurring_mean_shift/bandwidth float32 max / 2",
        lambda: se.blurring_mean_shift(PTS.float(), bandwidth=FLOAT_MAX / 2, iters=2, lengths=LENGTHS),
        ref=lambda: reference.blurring_mean_shift(PTS.float(), bandwidth=FLOAT_MAX / 2, iters=2, lengths=LENGTHS),
    ),
    Case(
        "blurring_mean_shift/lengths float",
        lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, lengths=LENGTHS.float()),
        error=TypeError,
        arg="lengths",
    ),
    Case(
        "blurring_mean_shift/lengths shape",
        lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, lengths=LENGTHS[:1]),
        error=ValueError,
        arg="lengths",
    ),
    Case(
        "blurring_mean_shift/lengths > N",
        lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, lengths=torch.tensor([5, 99])),
        error=ValueError,
        arg="lengths",
    ),
    Case(
        "blurring_mean_shift/huge x",
        lambda: se.blurring_mean_shift(huge(2**20, 2**20, 8), bandwidth=4.0),
        error=ValueError,
        arg="x",
    ),
    Case(
        "blurring_mean_shift/NaN point",
        lambda: se.blurring_mean_shift(PTS_NAN, bandwidth=4.0, iters=2, lengths=LENGTHS),
        ref=lambda: reference.blurring_mean_shift(PTS_NAN, bandwidth=4.0, iters=2, lengths=LENGTHS),
    ),
    Case("bandwidth_from_margin/alpha 1", lambda: se.bandwidth_from_margin(1.0), error=ValueError, arg="alpha"),
    Case("bandwidth_from_margin/alpha -0.1", lambda: se.bandwidth_from_margin(-0.1), error=ValueError, arg="alpha"),
    Case("bandwidth_from_margin/alpha NaN", lambda: se.bandwidth_from_margin(NAN), error=ValueError, arg="alpha"),
    Case("bandwidth_from_margin/alpha str", lambda: se.bandwidth_from_margin("0.5"), error=TypeError, arg="alpha"),
]


CUDA_CASES = [
    Case(
        "segment_partition/labels on another device",
        lambda: se.segment_partition(C.cuda(), L),
        error=ValueError,
        arg="labels",
        marks=(needs_cuda,),
    ),
    Case(
        "segment_mean/ids on another device",
        lambda: se.segment_mean(X.cuda(), IDS, 3),
        error=ValueError,
        arg="ids",
        marks=(needs_cuda,),
    ),
    Case(
        "spherical_kmeans/mask on another device",
        lambda: se.spherical_kmeans(KX.cuda(), mask=torch.ones(1, 4, 4).bool()),
        error=ValueError,
        arg="mask",
        marks=(needs_cuda,),
    ),
    Case(
        "vmf_loss/prototypes on another device",
        lambda: se.vmf_loss(E.cuda(), SEG.cuda(), P),
        error=ValueError,
        arg="prototypes",
        marks=(needs_cuda,),
    ),
    Case(
        "vmf_nca_loss/memory on another device",
        lambda: se.vmf_nca_loss(E.cuda(), SEG.cuda(), P.cuda(), PL.cuda(), memory=(MEM, ML)),
        error=ValueError,
        arg="memory",
        marks=(needs_cuda,),
    ),
    Case(
        "blurring_mean_shift/lengths on another device",
        lambda: se.blurring_mean_shift(PTS.cuda(), bandwidth=4.0, lengths=LENGTHS),
        error=ValueError,
        arg="lengths",
        marks=(needs_cuda,),
    ),
]


# ------------------------------------------------------------------------------ crash reproducers


def _any_result(result):
    """The reproducer returned (before the fix it corrupted memory): any result will do."""
    return True


ISSUE_CRASHES = [  # issue 15's reproducers: memory corruption before the fix (public call, raw call)
    (
        "partition cluster INT64_MAX",
        lambda: se.segment_partition(ISSUE_C),
        lambda ops: ops.segment_partition(ISSUE_C, None, 255, 0),
        dict(check=_any_result),
    ),
    (
        "partition label INT64_MAX",
        lambda: se.segment_partition(ISSUE_C2, ISSUE_L2),
        lambda ops: ops.segment_partition(ISSUE_C2, ISSUE_L2, 255, 0),
        dict(check=_any_result),
    ),
    (
        "kmeans grid (2**32, 2**32)",
        lambda: se.spherical_kmeans(torch.randn(1, 3, 4, 4), (2**32, 2**32)),
        lambda ops: ops.spherical_kmeans(torch.randn(1, 3, 4, 4), None, None, 2**32, 2**32, 1, 1.0, -1.0),
        dict(error=ValueError, arg="^grid"),
    ),
    (
        "kmeans grid (2**62, 4)",
        lambda: se.spherical_kmeans(torch.randn(1, 3, 4, 4), (2**62, 4)),
        lambda ops: ops.spherical_kmeans(torch.randn(1, 3, 4, 4), None, None, 2**62, 4, 1, 1.0, -1.0),
        dict(error=ValueError, arg="^grid"),
    ),
]


# ------------------------------------------------------------------------------ backends of the raw ops


def cpu_ops():
    """The raw ops of the CPU kernels (without the extension the plain-PyTorch ones)."""
    return torch.ops.segsort_ext


@functools.lru_cache(maxsize=None)
def emulated_ops():
    """The CUDA code paths (csrc/cuda/*.cu) built to run on the CPU (tests/ops/cuda_emulation)."""
    load_emulation_build().build(EMULATION_BUILD_DIR)
    return torch.ops.segsort_emulated


EMULATION = pytest.mark.skipif(not CAN_EMULATE, reason="needs the compiled extension and a C++ compiler on Linux")
BACKENDS = {"cpu": (cpu_ops, ()), "cuda_emulated": (emulated_ops, (EMULATION,))}


def _raw(backend, case):
    setup, marks = BACKENDS[backend]
    return dataclasses.replace(case, name=f"raw-{backend}/{case.name}", setup=setup, marks=case.marks + marks)


def _prefixed(prefix, cases):
    return [dataclasses.replace(case, name=f"{prefix}/{case.name}") for case in cases]


# An outsider's sweep (issue 25): truthy non-bools, an unbounded iteration count, and the
# lower bound a message states.
def _vmf_inputs():
    ids = se.segment_partition(torch.randint(0, 3, (1, 4, 5), generator=torch.Generator().manual_seed(0))).ids
    ids = ids.reshape(-1)
    e = F.normalize(torch.randn(20, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    return e, ids, se.segment_mean(e, ids, int(ids.max()) + 1)


OUTSIDER = [
    Case(
        "vmf_memory_labels_wrong_length",
        lambda: se.vmf_loss(*_vmf_inputs(), memory=(torch.randn(4, 3), torch.zeros(3, dtype=torch.long))),
        error=ValueError,
        arg="memory_labels",
    ),
    Case(
        "vmf_memory_labels_float",
        lambda: se.vmf_loss(*_vmf_inputs(), memory=(torch.randn(4, 3), torch.zeros(4))),
        error=TypeError,
        arg="memory_labels",
    ),
    Case(
        "kmeans_coord_weight_overflows",
        lambda: se.spherical_kmeans(torch.randn(1, 3, 4, 5), grid=2, coord_weight=1e308),
        error=ValueError,
        arg="coord_weight",
    ),
    Case(
        "vmf_concentration_overflows_float32",
        lambda: se.vmf_loss(*_vmf_inputs(), concentration=1e300),
        error=ValueError,
        arg="concentration",
    ),
    Case(
        "segsort_loss_concentration_overflows",
        lambda: se.SegSortLoss(concentration=1e300)(torch.randn(2, 4, 6, 6), torch.randint(0, 3, (2, 6, 6))),
        error=ValueError,
        arg="concentration",
    ),
    Case(
        "mean_shift_return_all_str",
        lambda: se.blurring_mean_shift(torch.randn(1, 6, 3), bandwidth=5.0, return_all="yes"),
        error=TypeError,
        arg="return_all",
    ),
    Case(
        "kmeans_iters_huge",
        lambda: se.spherical_kmeans(torch.randn(1, 3, 4, 5), grid=2, iters=10**9),
        error=ValueError,
        arg=f"iters must be <= {MAX_ITERS}",
    ),
    Case(
        "kmeans_iters_negative_says_1",
        lambda: se.spherical_kmeans(torch.randn(1, 3, 4, 5), iters=-1),
        error=ValueError,
        arg="iters must be >= 1",
    ),
    Case(
        "kmeans_tol_bool",
        lambda: se.spherical_kmeans(torch.randn(1, 3, 4, 5), grid=2, tol=True),
        error=ValueError,
        arg="tol",
    ),
]

CASES = (
    [_raw(backend, case) for backend in BACKENDS for case in RAW]
    + _prefixed("public", PUBLIC + OUTSIDER)
    + _prefixed("cuda", CUDA_CASES)
    + [Case(f"public/crash/{name}", public, **expect) for name, public, _, expect in ISSUE_CRASHES]
    + [
        _raw(backend, Case(f"crash/{name}", raw, **expect))
        for backend in BACKENDS
        for name, _, raw, expect in ISSUE_CRASHES
    ]
)
