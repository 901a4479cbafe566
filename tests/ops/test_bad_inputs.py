# long-file: one table of cases per op and path (raw, public), each case a line; splitting it would scatter them.
"""The bad-input catalogue of the op layer (issue 15).

Every public op function and every raw op (``torch.ops.segsort_ext.*``, backward ops
included) meets wrong types, shapes, dtypes and devices, sizes at the int32/int64 edges,
NaN/inf scalars and tensors, empty inputs and huge ones (expanded, stride-0 views: they
must be refused before anything is allocated). A refused input must raise the exact error
type with a message naming the argument; an accepted one must equal
``segsort_ext.ops.reference``. The raw-op cases run on the CPU kernels and on the CUDA code
path through the emulator; the issue's crash reproducers run in a subprocess (a crash fails
its test instead of killing pytest); the public and raw-op cases run again on the
plain-PyTorch kernels, in a subprocess that hides the extension (the same ops, defined
from Python).
"""
import os
import re
import subprocess
import sys
from typing import Callable, NamedTuple

import pytest
import torch
import torch.nn.functional as F

import segsort_ext as se
from segsort_ext.ops import HAS_EXTENSION, reference
from segsort_ext.ops.blurring_mean_shift import MAX_ITERS
from segsort_ext.testing import INF, NAN, needs_cuda

MAX, MIN = torch.iinfo(torch.int64).max, torch.iinfo(torch.int64).min
FLOAT_MAX = torch.finfo(torch.float32).max
HUGE = 2**40  # elements of an expanded view; as memory, more than any machine has


class Refused(NamedTuple):
    error: type
    name: str  # the argument the message must name


class Same(NamedTuple):
    reference: Callable[[], object]  # the reference's result for this legal input


def check(call, expectation):
    if isinstance(expectation, Refused):
        with pytest.raises(Exception) as info:
            call()
        assert type(info.value) is expectation.error, f"{type(info.value).__name__}: {info.value}"
        assert re.search(rf"\b{re.escape(expectation.name)}\b", str(info.value)), str(info.value)
    else:
        assert_same(call(), expectation.reference())


def assert_same(actual, expected):
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(actual, expected, equal_nan=True)
    else:
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same(a, e)


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
    return Same(lambda: reference.segment_partition(clusters, labels, ignore_index=ignore_index,
                                                    connectivity=connectivity or None))


def mean(x, ids, num_segments, normalize=True):
    return lambda ops: ops.segment_mean(x, ids, num_segments, normalize)[0]


def mean_ref(x, ids, num_segments, normalize=True):
    return Same(lambda: reference.segment_mean(x, ids, num_segments, normalize=normalize))


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
    return Same(grad)


def kmeans(x=KX, mask=None, init=None, grid=(2, 2), iters=3, coord_weight=1.0, tol=-1.0):
    return lambda ops: ops.spherical_kmeans(x, mask, init, *grid, iters, coord_weight, tol)


def kmeans_ref(x=KX, mask=None, init=None, grid=(2, 2), iters=3, coord_weight=1.0, tol=-1.0):
    return Same(lambda: reference.spherical_kmeans(x, grid, iters=iters, coord_weight=coord_weight, mask=mask,
                                                   init=init, tol=None if tol < 0 else tol))


def vmf(e=E, ids=SEG, p=P, pl=None, mem=None, ml=None, concentration=10.0, nca=False):
    """The raw op's loss, averaged over the counted pixels as the public functions do."""
    def call(ops):
        loss = ops.vmf_loss(e, ids, p, pl, mem, ml, concentration, nca)[0]
        return loss.sum() / (ids >= 0).sum().clamp_min(1)
    return call


def vmf_ref(e=E, ids=SEG, p=P, pl=None, mem=None, ml=None, concentration=10.0, nca=False):
    memory = None if mem is None else (mem, ml)
    if nca:
        return Same(lambda: reference.vmf_nca_loss(e, ids, p, pl, concentration=concentration, memory=memory))
    return Same(lambda: reference.vmf_loss(e, ids, p, concentration=concentration, memory=memory))


def vmf_backward(e=E, ids=SEG, p=P, pl=None, mem=None, ml=None, concentration=10.0, nca=False, **replace):
    """Gradients (embeddings, prototypes) of the mean loss, from _vmf_loss_backward."""
    def call(ops):
        loss, den, num = ops.vmf_loss(e, ids, p, pl, mem, ml, concentration, nca)
        grad = (ids >= 0).to(loss.dtype) / (ids >= 0).sum().clamp_min(1)
        args = dict(grad_loss=grad, lse_den=den, lse_num=num)
        args.update(replace)
        return ops._vmf_loss_backward(args["grad_loss"], e, ids, p, pl, mem, ml, args["lse_den"], args["lse_num"],
                                      concentration, nca)
    return call


def vmf_grad_ref(e=E, ids=SEG, p=P, pl=None, mem=None, ml=None, concentration=10.0, nca=False):
    def grads():
        e_leaf, p_leaf = e.clone().requires_grad_(), p.clone().requires_grad_()
        loss = vmf_ref(e_leaf, ids, p_leaf, pl, mem, ml, concentration, nca).reference()
        return torch.autograd.grad(loss, (e_leaf, p_leaf))
    return Same(grads)


def step(x=PTS, lengths=LENGTHS, bandwidth=4.0, eta=0.7):
    return lambda ops: ops.blurring_mean_shift_step(x, lengths, bandwidth, eta)[0]


def step_ref(x=PTS, lengths=LENGTHS, bandwidth=4.0, eta=0.7):
    return Same(lambda: reference.blurring_mean_shift(x, bandwidth=bandwidth, iters=1, eta=eta, lengths=lengths))


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

RAW = {
    # segment_partition
    "partition/clusters not a tensor": (partition([[[0]]]), Refused(RuntimeError, "clusters")),
    "partition/clusters float": (partition(C.float()), Refused(TypeError, "clusters")),
    "partition/clusters 2-D": (partition(C[0]), Refused(ValueError, "clusters")),
    "partition/labels int32": (partition(C, L.int()), Refused(TypeError, "labels")),
    "partition/labels shape": (partition(C, L[:1]), Refused(ValueError, "labels")),
    "partition/connectivity 6": (partition(C, connectivity=6), Refused(ValueError, "connectivity")),
    "partition/connectivity -4": (partition(C, connectivity=-4), Refused(ValueError, "connectivity")),
    "partition/ignore_index 2**63": (partition(C, L, 2**63), Refused(RuntimeError, "ignore_index")),
    "partition/huge clusters": (partition(HUGE_MAP), Refused(ValueError, "clusters")),
    "partition/huge labels": (partition(HUGE_MAP, HUGE_MAP), Refused(ValueError, "clusters")),
    "partition/cluster INT64_MAX (issue)": (partition(ISSUE_C), partition_ref(ISSUE_C)),
    "partition/label INT64_MAX (issue)": (partition(ISSUE_C2, ISSUE_L2), partition_ref(ISSUE_C2, ISSUE_L2)),
    "partition/int32 and int64 edges": (partition(EDGES, EDGE_LABELS), partition_ref(EDGES, EDGE_LABELS)),
    "partition/int edges, 4-connected": (partition(EDGES, EDGE_LABELS, connectivity=4),
                                         partition_ref(EDGES, EDGE_LABELS, connectivity=4)),
    "partition/int edges, 8-connected": (partition(EDGES, None, connectivity=8), partition_ref(EDGES, None,
                                                                                             connectivity=8)),
    "partition/ignore_index INT64_MAX": (partition(EDGES, EDGE_LABELS, MAX), partition_ref(EDGES, EDGE_LABELS, MAX)),
    "partition/ignore_index INT64_MIN": (partition(EDGES, EDGE_LABELS, MIN), partition_ref(EDGES, EDGE_LABELS, MIN)),
    "partition/all ignored": (partition(torch.full((2, 3, 3), -1)), partition_ref(torch.full((2, 3, 3), -1))),
    "partition/empty batch": (partition(C[:0], L[:0]), partition_ref(C[:0], L[:0])),
    "partition/empty images": (partition(C[:, :0], None, 255, 4), partition_ref(C[:, :0], None, 255, 4)),
    "partition/stride-0 clusters": (partition(torch.tensor([[[3]]]).expand(2, 5, 6), None, 255, 8),
                                    partition_ref(torch.tensor([[[3]]]).expand(2, 5, 6), None, 255, 8)),
    "partition/transposed": (partition(C.transpose(1, 2), L.transpose(1, 2), 255, 4),
                             partition_ref(C.transpose(1, 2), L.transpose(1, 2), 255, 4)),
    # segment_mean
    "mean/x not a tensor": (mean([[1.0]], torch.zeros(1, dtype=torch.long), 1), Refused(RuntimeError, "x")),
    "mean/x int": (mean(IDS, IDS, 3), Refused(TypeError, "x")),
    "mean/ids int32": (mean(X, IDS.int(), 3), Refused(TypeError, "ids")),
    "mean/ids shape": (mean(X, IDS[0], 3), Refused(ValueError, "ids")),
    "mean/x 3-D": (mean(X[0], IDS[0], 3), Refused(ValueError, "x")),
    "mean/num_segments -1": (mean(X, IDS, -1), Refused(ValueError, "num_segments")),
    "mean/ids >= num_segments": (mean(X, IDS + 7, 3), Refused(ValueError, "num_segments")),
    "mean/ids INT64_MAX": (mean(X, with_nan(IDS, (1, 1, 1), MAX), 3), Refused(ValueError, "ids")),
    "mean/num_segments 2**63": (mean(X, IDS, 2**63), Refused(RuntimeError, "num_segments")),
    "mean/num_segments 2**40 (issue)": (mean(X, IDS, HUGE), Refused(ValueError, "num_segments")),
    "mean/num_segments INT64_MAX": (mean(X, IDS, MAX), Refused(ValueError, "num_segments")),
    "mean/huge ids": (mean(huge(HUGE, 3), huge(HUGE, dtype=torch.long), 1), Refused(ValueError, "ids")),
    "mean/NaN feature (issue)": (mean(ISSUE_X, ISSUE_IDS, 1), mean_ref(ISSUE_X, ISSUE_IDS, 1)),
    "mean/NaN feature": (mean(X_NAN, IDS_ALL, 3), mean_ref(X_NAN, IDS_ALL, 3)),
    "mean/NaN feature, plain mean": (mean(X_NAN, IDS_ALL, 3, False), mean_ref(X_NAN, IDS_ALL, 3, False)),
    "mean/inf feature": (mean(with_nan(X, (1, 0, 2, 2), INF), IDS_ALL, 3),
                         mean_ref(with_nan(X, (1, 0, 2, 2), INF), IDS_ALL, 3)),
    "mean/NaN in ignored pixels": (mean(with_nan(X, (slice(None), slice(None), IDS[0] < 0)), IDS, 3),
                                   mean_ref(with_nan(X, (slice(None), slice(None), IDS[0] < 0)), IDS, 3)),
    "mean/ids INT64_MIN ignored": (mean(X, with_nan(IDS, (0, 0, 0), MIN), 3),
                                   mean_ref(X, with_nan(IDS, (0, 0, 0), MIN), 3)),
    "mean/empty pixels": (mean(X[:0], IDS[:0], 2), mean_ref(X[:0], IDS[:0], 2)),
    "mean/empty (N, D)": (mean(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 0),
                          mean_ref(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 0)),
    "mean/more segments than pixels": (mean(X, IDS, 40), mean_ref(X, IDS, 40)),
    "mean/stride-0 x": (mean(X[:1, :, :1, :1].expand(2, 3, 4, 4), IDS, 3),
                        mean_ref(X[:1, :, :1, :1].expand(2, 3, 4, 4), IDS, 3)),
    # _segment_mean_backward
    "mean backward/grad_out shape": (mean_backward(X, IDS, 3, grad_out=torch.ones(2, 3, dtype=torch.float64)),
                                     Refused(ValueError, "grad_out")),
    "mean backward/out dtype": (mean_backward(X, IDS, 3, out=torch.ones(3, 3)), Refused(TypeError, "out")),
    "mean backward/denom shape": (mean_backward(X, IDS, 3, denom=torch.ones(2, dtype=torch.float64)),
                                  Refused(ValueError, "denom")),
    "mean backward/ids >= S": (mean_backward(X, IDS, 3, ids=IDS + 3), Refused(ValueError, "ids")),
    "mean backward/x_shape D": (mean_backward(X, IDS, 3, x_shape=[2, 5, 4, 4]), Refused(ValueError, "x_shape")),
    "mean backward/x_shape 3-D": (mean_backward(X, IDS, 3, x_shape=[2, 3, 4]), Refused(ValueError, "x_shape")),
    "mean backward/x_shape 2**63": (mean_backward(X, IDS, 3, x_shape=[2**63, 3]), Refused(RuntimeError, "x_shape")),
    "mean backward/huge x_shape": (mean_backward(X, IDS, 3, ids=huge(HUGE, dtype=torch.long), x_shape=[HUGE, 3]),
                                   Refused(ValueError, "x_shape")),
    "mean backward/NaN feature (issue)": (mean_backward(ISSUE_X, ISSUE_IDS, 1), mean_grad_ref(ISSUE_X, ISSUE_IDS, 1)),
    "mean backward/NaN feature": (mean_backward(X_NAN, IDS_ALL, 3), mean_grad_ref(X_NAN, IDS_ALL, 3)),
    "mean backward/NaN, plain mean": (mean_backward(X_NAN, IDS_ALL, 3, False), mean_grad_ref(X_NAN, IDS_ALL, 3, False)),
    # spherical_kmeans
    "kmeans/x not a tensor": (kmeans(x=[[[[1.0]]]]), Refused(RuntimeError, "x")),
    "kmeans/x int": (kmeans(x=KX.long()), Refused(TypeError, "x")),
    "kmeans/x 3-D": (kmeans(x=KX[0]), Refused(ValueError, "x")),
    "kmeans/mask float": (kmeans(mask=torch.ones(1, 4, 4)), Refused(TypeError, "mask")),
    "kmeans/mask shape": (kmeans(mask=torch.ones(1, 4, 3, dtype=torch.bool)), Refused(ValueError, "mask")),
    "kmeans/init int32": (kmeans(init=torch.zeros(1, 4, 4, dtype=torch.int)), Refused(TypeError, "init")),
    "kmeans/init shape": (kmeans(init=torch.zeros(1, 4, 3, dtype=torch.long)), Refused(ValueError, "init")),
    "kmeans/init >= K": (kmeans(init=torch.full((1, 4, 4), 4)), Refused(ValueError, "init")),
    "kmeans/init INT64_MAX": (kmeans(init=torch.full((1, 4, 4), MAX)), Refused(ValueError, "init")),
    "kmeans/grid 0": (kmeans(grid=(0, 2)), Refused(ValueError, "grid")),
    "kmeans/grid (2**32, 2**32) (issue)": (kmeans(grid=(2**32, 2**32), iters=1), Refused(ValueError, "grid")),
    "kmeans/grid (2**62, 4) (issue)": (kmeans(grid=(2**62, 4)), Refused(ValueError, "grid")),
    "kmeans/grid (2**31, 2)": (kmeans(grid=(2**31, 2)), Refused(ValueError, "grid")),
    "kmeans/grid (INT64_MAX, 1)": (kmeans(grid=(MAX, 1)), Refused(ValueError, "grid")),
    "kmeans/grid 2**63": (kmeans(grid=(2**63, 1)), Refused(RuntimeError, "grid_h")),
    "kmeans/iters 0": (kmeans(iters=0), Refused(ValueError, "iters")),
    "kmeans/iters 2**63": (kmeans(iters=2**63), Refused(RuntimeError, "iters")),
    "kmeans/coord_weight NaN": (kmeans(coord_weight=NAN), Refused(ValueError, "coord_weight")),
    "kmeans/coord_weight inf": (kmeans(coord_weight=INF), Refused(ValueError, "coord_weight")),
    "kmeans/coord_weight -inf": (kmeans(coord_weight=-INF), Refused(ValueError, "coord_weight")),
    "kmeans/tol NaN": (kmeans(tol=NAN), Refused(ValueError, "tol")),
    "kmeans/huge image": (kmeans(x=huge(1, 3, 2**20, 2**20)), Refused(ValueError, "x")),
    "kmeans/huge batch": (kmeans(x=huge(HUGE, 3, 1, 1)), Refused(ValueError, "x")),
    "kmeans/NaN and inf pixels": (kmeans(x=with_nan(with_nan(KX, (0, 1, 2, 2)), (0, 0, 0, 3), INF)),
                                  kmeans_ref(x=with_nan(with_nan(KX, (0, 1, 2, 2)), (0, 0, 0, 3), INF))),
    "kmeans/init INT64_MIN masked": (kmeans(init=with_nan(torch.zeros(1, 4, 4, dtype=torch.long), (0, 1, 1), MIN)),
                                     kmeans_ref(init=with_nan(torch.zeros(1, 4, 4, dtype=torch.long), (0, 1, 1), MIN))),
    "kmeans/tol inf": (kmeans(tol=INF), kmeans_ref(tol=INF)),
    "kmeans/more cells than pixels": (kmeans(grid=(5, 7)), kmeans_ref(grid=(5, 7))),
    "kmeans/coord_weight -1e6": (kmeans(coord_weight=-1e6), kmeans_ref(coord_weight=-1e6)),
    "kmeans/D = 0": (kmeans(x=KX[:, :0]), kmeans_ref(x=KX[:, :0])),
    "kmeans/empty batch": (kmeans(x=KX[:0]), kmeans_ref(x=KX[:0])),
    "kmeans/empty image": (kmeans(x=KX[:, :, :0]), kmeans_ref(x=KX[:, :, :0])),
    "kmeans/all masked": (kmeans(mask=torch.zeros(1, 4, 4, dtype=torch.bool)),
                          kmeans_ref(mask=torch.zeros(1, 4, 4, dtype=torch.bool))),
    # vmf_loss
    "vmf/embeddings not a tensor": (vmf(e=[[1.0]]), Refused(RuntimeError, "embeddings")),
    "vmf/embeddings int": (vmf(e=E.long()), Refused(TypeError, "embeddings")),
    "vmf/embeddings 3-D": (vmf(e=E[None]), Refused(ValueError, "embeddings")),
    "vmf/segment_ids int32": (vmf(ids=SEG.int()), Refused(TypeError, "segment_ids")),
    "vmf/segment_ids shape": (vmf(ids=SEG[:-1]), Refused(ValueError, "segment_ids")),
    "vmf/segment_ids >= S": (vmf(ids=SEG + 3), Refused(ValueError, "segment_ids")),
    "vmf/segment_ids INT64_MAX": (vmf(ids=with_nan(SEG, 0, MAX)), Refused(ValueError, "segment_ids")),
    "vmf/prototypes dtype": (vmf(p=P.float()), Refused(TypeError, "prototypes")),
    "vmf/prototypes shape": (vmf(p=P[:, :3]), Refused(ValueError, "prototypes")),
    "vmf/prototype_labels missing": (vmf(nca=True), Refused(ValueError, "prototype_labels")),
    "vmf/prototype_labels shape": (vmf(pl=PL[:-1], nca=True), Refused(ValueError, "prototype_labels")),
    "vmf/memory int": (vmf(mem=ML), Refused(TypeError, "memory")),
    "vmf/memory shape": (vmf(mem=MEM[:, :3]), Refused(ValueError, "memory")),
    "vmf/memory_labels missing": (vmf(pl=PL, mem=MEM, nca=True), Refused(ValueError, "memory_labels")),
    "vmf/memory_labels shape": (vmf(pl=PL, mem=MEM, ml=ML[:1], nca=True), Refused(ValueError, "memory_labels")),
    "vmf/concentration NaN": (vmf(concentration=NAN), Refused(ValueError, "concentration")),
    "vmf/concentration inf": (vmf(concentration=INF, nca=True, pl=PL), Refused(ValueError, "concentration")),
    "vmf/concentration -inf": (vmf(concentration=-INF), Refused(ValueError, "concentration")),
    "vmf/huge embeddings": (vmf(e=huge(HUGE, 4), ids=huge(HUGE, dtype=torch.long)), Refused(ValueError, "embeddings")),
    "vmf/huge prototypes": (vmf(p=huge(HUGE, 4)), Refused(ValueError, "prototypes")),
    "vmf/huge memory": (vmf(mem=huge(HUGE, 4)), Refused(ValueError, "memory")),
    "vmf/NaN memory row (issue)": (vmf(mem=MEM_NAN), vmf_ref(mem=MEM_NAN)),
    "vmf-nca/NaN memory row (issue)": (vmf(pl=PL, mem=MEM_NAN, ml=ML, nca=True),
                                       vmf_ref(pl=PL, mem=MEM_NAN, ml=ML, nca=True)),
    "vmf/NaN prototype": (vmf(p=P_NAN), vmf_ref(p=P_NAN)),
    "vmf-nca/NaN prototype": (vmf(p=P_NAN, pl=PL, nca=True), vmf_ref(p=P_NAN, pl=PL, nca=True)),
    "vmf/NaN embedding": (vmf(e=E_NAN, mem=MEM), vmf_ref(e=E_NAN, mem=MEM)),
    "vmf-nca/NaN embedding": (vmf(e=E_NAN, pl=PL, nca=True), vmf_ref(e=E_NAN, pl=PL, nca=True)),
    "vmf-nca/NaN in an ignored pixel": (vmf(e=with_nan(E, (4, 0)), pl=PL, mem=MEM, ml=ML, nca=True),
                                        vmf_ref(e=with_nan(E, (4, 0)), pl=PL, mem=MEM, ml=ML, nca=True)),
    "vmf/NaN memory row, D = 150": (vmf(e=E150, p=P150, mem=with_nan(P150[:2], (1, 7))),
                                    vmf_ref(e=E150, p=P150, mem=with_nan(P150[:2], (1, 7)))),
    "vmf-nca/NaN prototype, D = 150": (vmf(e=E150, p=with_nan(P150, (0, 3)), pl=PL, nca=True),
                                       vmf_ref(e=E150, p=with_nan(P150, (0, 3)), pl=PL, nca=True)),
    "vmf/segment_ids INT64_MIN ignored": (vmf(ids=with_nan(SEG, 2, MIN)), vmf_ref(ids=with_nan(SEG, 2, MIN))),
    "vmf/no pixels": (vmf(e=E[:0], ids=SEG[:0]), vmf_ref(e=E[:0], ids=SEG[:0])),
    "vmf/no pixels of 2**62 channels": (vmf(e=torch.empty(0, 2**62), ids=SEG[:0], p=torch.empty(0, 2**62)),
                                        vmf_ref(e=torch.empty(0, 2**62), ids=SEG[:0], p=torch.empty(0, 2**62))),
    "vmf-nca/memory only": (vmf(ids=torch.full((6,), -1), p=P[:0], pl=PL[:0], mem=MEM, ml=ML, nca=True),
                            vmf_ref(ids=torch.full((6,), -1), p=P[:0], pl=PL[:0], mem=MEM, ml=ML, nca=True)),
    "vmf/concentration -1e3": (vmf(concentration=-1e3), vmf_ref(concentration=-1e3)),
    # _vmf_loss_backward
    "vmf backward/lse_den shape": (vmf_backward(lse_den=torch.zeros(5, dtype=torch.float64)),
                                   Refused(ValueError, "lse_den")),
    "vmf backward/grad_loss shape": (vmf_backward(grad_loss=torch.zeros(1, 6, dtype=torch.float64)),
                                     Refused(ValueError, "grad_loss")),
    "vmf backward/lse_num int": (vmf_backward(lse_num=SEG), Refused(TypeError, "lse_num")),
    "vmf backward/NaN memory row": (vmf_backward(mem=MEM_NAN), vmf_grad_ref(mem=MEM_NAN)),
    "vmf-nca backward/NaN memory row": (vmf_backward(pl=PL, mem=MEM_NAN, ml=ML, nca=True),
                                        vmf_grad_ref(pl=PL, mem=MEM_NAN, ml=ML, nca=True)),
    "vmf backward/NaN memory row, D = 150": (vmf_backward(e=E150, p=P150, mem=with_nan(P150[:2], (1, 7))),
                                             vmf_grad_ref(e=E150, p=P150, mem=with_nan(P150[:2], (1, 7)))),
    "vmf-nca backward/NaN prototype": (vmf_backward(p=P_NAN, pl=PL, nca=True), vmf_grad_ref(p=P_NAN, pl=PL, nca=True)),
    # blurring_mean_shift_step
    "step/x not a tensor": (step(x=[[[1.0]]], lengths=None), Refused(RuntimeError, "x")),
    "step/x int": (step(x=LENGTHS[None, :, None]), Refused(TypeError, "x")),
    "step/x 2-D": (step(x=PTS[0], lengths=None), Refused(ValueError, "x")),
    "step/lengths int32": (step(lengths=LENGTHS.int()), Refused(TypeError, "lengths")),
    "step/lengths shape": (step(lengths=LENGTHS[:1]), Refused(ValueError, "lengths")),
    "step/lengths > N": (step(lengths=torch.tensor([5, 6])), Refused(ValueError, "lengths")),
    "step/lengths -1": (step(lengths=torch.tensor([5, -1])), Refused(ValueError, "lengths")),
    "step/lengths INT64_MAX": (step(lengths=torch.tensor([MAX, 1])), Refused(ValueError, "lengths")),
    "step/bandwidth 0": (step(bandwidth=0.0), Refused(ValueError, "bandwidth")),
    "step/bandwidth -1": (step(bandwidth=-1.0), Refused(ValueError, "bandwidth")),
    "step/bandwidth NaN": (step(bandwidth=NAN), Refused(ValueError, "bandwidth")),
    "step/bandwidth inf": (step(bandwidth=INF), Refused(ValueError, "bandwidth")),
    "step/bandwidth 1e308": (step(bandwidth=1e308), Refused(ValueError, "bandwidth")),
    "step/bandwidth 2e38, float32": (step(x=PTS.float(), bandwidth=2e38), Refused(ValueError, "bandwidth")),
    "step/bandwidth 2e38, bfloat16": (step(x=PTS.bfloat16(), bandwidth=2e38), Refused(ValueError, "bandwidth")),
    "step/bandwidth float32 max / 2": (step(x=PTS.float(), bandwidth=FLOAT_MAX / 2),
                                       step_ref(x=PTS.float(), bandwidth=FLOAT_MAX / 2)),
    "step/bandwidth 1e38, float64": (step(bandwidth=1e38), step_ref(bandwidth=1e38)),
    "step/eta 0": (step(eta=0.0), Refused(ValueError, "eta")),
    "step/eta 1.5": (step(eta=1.5), Refused(ValueError, "eta")),
    "step/eta NaN": (step(eta=NAN), Refused(ValueError, "eta")),
    "step/huge x": (step(x=huge(2**20, 2**20, 8), lengths=None), Refused(ValueError, "x")),
    "step/NaN point": (step(x=PTS_NAN), step_ref(x=PTS_NAN)),
    "step/NaN in padding": (step(x=with_nan(PTS, (1, 4))), step_ref(x=with_nan(PTS, (1, 4)))),
    "step/no points": (step(x=PTS[:, :0], lengths=torch.zeros(2, dtype=torch.long)),
                       step_ref(x=PTS[:, :0], lengths=torch.zeros(2, dtype=torch.long))),
    "step/empty batch": (step(x=PTS[:0], lengths=None), step_ref(x=PTS[:0], lengths=None)),
    "step/D = 0": (step(x=PTS[..., :0]), step_ref(x=PTS[..., :0])),
    "step/lengths 0": (step(lengths=torch.tensor([0, 0])), step_ref(lengths=torch.tensor([0, 0]))),
    # _blurring_mean_shift_step_backward
    "step backward/norms shape": (step_backward(norms=torch.ones(2, 4, dtype=torch.float64)),
                                  Refused(ValueError, "norms")),
    "step backward/grad_out shape": (step_backward(grad_out=PTS[:, :4]), Refused(ValueError, "grad_out")),
    "step backward/out int": (step_backward(out=LENGTHS), Refused(TypeError, "out")),
    "step backward/bandwidth inf": (lambda ops: ops._blurring_mean_shift_step_backward(
        PTS, PTS, PTS, torch.ones(2, 5, dtype=torch.float64), LENGTHS, INF, 0.7), Refused(ValueError, "bandwidth")),
    "step backward/bandwidth 2e38, float32": (step_backward(x=PTS.float(), bandwidth=2e38),
                                              Refused(ValueError, "bandwidth")),
}


@pytest.fixture(params=["cpu", "cuda_emulated"])
def raw_ops(request):
    """The raw ops of one backend: the CPU kernels (without the extension the plain-PyTorch
    ones), or the CUDA code path on the emulator (with the extension only)."""
    return torch.ops.segsort_ext if request.param == "cpu" else request.getfixturevalue("emu")


@pytest.mark.parametrize("case", list(RAW))
def test_raw_op(raw_ops, case):
    call, expectation = RAW[case]
    check(lambda: call(raw_ops), expectation)


# ------------------------------------------------------------------------------ public functions

def public_mean_grad(x, ids, num_segments, normalize=True):
    def call():
        leaf = x.clone().requires_grad_()
        return torch.autograd.grad(se.segment_mean(leaf, ids, num_segments, normalize=normalize).sum(), leaf)[0]
    return call


def histogram_ref(ids, labels, num_segments, num_classes, ignore_index=255):
    return Same(lambda: reference.segment_label_histogram(ids, labels, num_segments, num_classes,
                                                          ignore_index=ignore_index))


EDGE_IDS = torch.tensor([0, 0, 1, -1, MIN, 1])
EDGE_CLASSES = torch.tensor([2, MAX, 0, 1, 1, MIN])

PUBLIC = {
    # segment_partition
    "segment_partition/clusters numpy": (lambda: se.segment_partition(C.numpy()), Refused(TypeError, "clusters")),
    "segment_partition/clusters float": (lambda: se.segment_partition(C.float()), Refused(TypeError, "clusters")),
    "segment_partition/clusters 2-D": (lambda: se.segment_partition(C[0]), Refused(ValueError, "clusters")),
    "segment_partition/labels shape": (lambda: se.segment_partition(C, L[:, :2]), Refused(ValueError, "labels")),
    "segment_partition/labels int32": (lambda: se.segment_partition(C, L.int()), Refused(TypeError, "labels")),
    "segment_partition/labels list": (lambda: se.segment_partition(C, L.tolist()), Refused(TypeError, "labels")),
    "segment_partition/connectivity 6": (lambda: se.segment_partition(C, connectivity=6),
                                         Refused(ValueError, "connectivity")),
    "segment_partition/ignore_index float": (lambda: se.segment_partition(C, L, ignore_index=255.0),
                                             Refused(TypeError, "ignore_index")),
    "segment_partition/ignore_index 2**63": (lambda: se.segment_partition(C, L, ignore_index=2**63),
                                             Refused(ValueError, "ignore_index")),
    "segment_partition/huge clusters": (lambda: se.segment_partition(HUGE_MAP), Refused(ValueError, "clusters")),
    "segment_partition/cluster INT64_MAX (issue)": (lambda: se.segment_partition(ISSUE_C), partition_ref(ISSUE_C)),
    "segment_partition/label INT64_MAX (issue)": (lambda: se.segment_partition(ISSUE_C2, ISSUE_L2),
                                                  partition_ref(ISSUE_C2, ISSUE_L2)),
    "segment_partition/int edges, 8-connected": (lambda: se.segment_partition(EDGES, EDGE_LABELS, connectivity=8),
                                                 partition_ref(EDGES, EDGE_LABELS, connectivity=8)),
    # segment_mean
    "segment_mean/x not a tensor": (lambda: se.segment_mean(X.numpy(), IDS, 3), Refused(TypeError, "x")),
    "segment_mean/ids float": (lambda: se.segment_mean(X, IDS.float(), 3), Refused(TypeError, "ids")),
    "segment_mean/x int": (lambda: se.segment_mean(IDS, IDS, 3), Refused(TypeError, "x")),
    "segment_mean/x 3-D": (lambda: se.segment_mean(X[0], IDS[0], 3), Refused(ValueError, "x")),
    "segment_mean/ids shape": (lambda: se.segment_mean(X, IDS[:, :3], 3), Refused(ValueError, "ids")),
    "segment_mean/ids >= num_segments": (lambda: se.segment_mean(X, IDS + 5, 3), Refused(ValueError, "num_segments")),
    "segment_mean/num_segments -1": (lambda: se.segment_mean(X, IDS, -1), Refused(ValueError, "num_segments")),
    "segment_mean/num_segments 2.0": (lambda: se.segment_mean(X, IDS, 2.0), Refused(TypeError, "num_segments")),
    "segment_mean/num_segments True": (lambda: se.segment_mean(X, IDS, True), Refused(TypeError, "num_segments")),
    "segment_mean/num_segments 2**63": (lambda: se.segment_mean(X, IDS, 2**63), Refused(ValueError, "num_segments")),
    "segment_mean/num_segments 2**40 (issue)": (lambda: se.segment_mean(X, IDS, HUGE),
                                                Refused(ValueError, "num_segments")),
    "segment_mean/huge ids": (lambda: se.segment_mean(huge(HUGE, 3), huge(HUGE, dtype=torch.long), 1),
                              Refused(ValueError, "ids")),
    "segment_mean/NaN feature (issue)": (lambda: se.segment_mean(ISSUE_X, ISSUE_IDS, 1),
                                         mean_ref(ISSUE_X, ISSUE_IDS, 1)),
    "segment_mean/NaN feature gradient (issue)": (public_mean_grad(ISSUE_X, ISSUE_IDS, 1),
                                                  mean_grad_ref(ISSUE_X, ISSUE_IDS, 1)),
    "segment_mean/NaN feature gradient": (public_mean_grad(X_NAN, IDS_ALL, 3), mean_grad_ref(X_NAN, IDS_ALL, 3)),
    "segment_mean/empty": (lambda: se.segment_mean(X[:0], IDS[:0], 2), mean_ref(X[:0], IDS[:0], 2)),
    # segment_label_histogram, segment_majority_mean
    "segment_label_histogram/num_classes 2**40 (issue)": (
        lambda: se.segment_label_histogram(SEG, SEG.clamp_min(0), 3, HUGE), Refused(ValueError, "num_classes")),
    "segment_label_histogram/num_segments 2**40": (lambda: se.segment_label_histogram(SEG, SEG, HUGE, 3),
                                                   Refused(ValueError, "num_segments")),
    "segment_label_histogram/num_classes 2**63": (lambda: se.segment_label_histogram(SEG, SEG, 3, 2**63),
                                                  Refused(ValueError, "num_classes")),
    "segment_label_histogram/num_classes -1": (lambda: se.segment_label_histogram(SEG, SEG, 3, -1),
                                               Refused(ValueError, "num_classes")),
    "segment_label_histogram/num_classes 3.0": (lambda: se.segment_label_histogram(SEG, SEG, 3, 3.0),
                                                Refused(TypeError, "num_classes")),
    "segment_label_histogram/ignore_index str": (lambda: se.segment_label_histogram(SEG, SEG, 3, 3, ignore_index="x"),
                                                 Refused(TypeError, "ignore_index")),
    "segment_label_histogram/labels >= num_classes": (lambda: se.segment_label_histogram(SEG, SEG + 5, 3, 3),
                                                      Refused(ValueError, "num_classes")),
    "segment_label_histogram/ids >= num_segments": (lambda: se.segment_label_histogram(SEG + 3, SEG, 3, 3),
                                                    Refused(ValueError, "num_segments")),
    "segment_label_histogram/labels shape": (lambda: se.segment_label_histogram(SEG, SEG[:2], 3, 3),
                                             Refused(ValueError, "labels")),
    "segment_label_histogram/ids float": (lambda: se.segment_label_histogram(SEG.float(), SEG, 3, 3),
                                          Refused(TypeError, "ids")),
    "segment_label_histogram/huge ids": (lambda: se.segment_label_histogram(huge(HUGE, dtype=torch.long),
                                                                            huge(HUGE, dtype=torch.long), 1, 1),
                                         Refused(ValueError, "ids")),
    "segment_label_histogram/int64 labels ignored": (
        lambda: se.segment_label_histogram(EDGE_IDS, EDGE_CLASSES, 2, 3, ignore_index=MAX),
        histogram_ref(EDGE_IDS, EDGE_CLASSES, 2, 3, ignore_index=MAX)),
    "segment_label_histogram/empty": (lambda: se.segment_label_histogram(SEG[:0], SEG[:0], 2, 3),
                                      histogram_ref(SEG[:0], SEG[:0], 2, 3)),
    "segment_majority_mean/num_classes 2**40": (lambda: se.segment_majority_mean(E, SEG, SEG.clamp_min(0), 3, HUGE),
                                                Refused(ValueError, "num_classes")),
    "segment_majority_mean/x shape": (lambda: se.segment_majority_mean(E[:3], SEG, SEG.clamp_min(0), 3, 3),
                                      Refused(ValueError, "ids")),
    # spherical_kmeans
    "spherical_kmeans/x not a tensor": (lambda: se.spherical_kmeans(KX.numpy()), Refused(TypeError, "x")),
    "spherical_kmeans/x int": (lambda: se.spherical_kmeans(KX.long()), Refused(TypeError, "x")),
    "spherical_kmeans/x 3-D": (lambda: se.spherical_kmeans(KX[0]), Refused(ValueError, "x")),
    "spherical_kmeans/grid (2**32, 2**32) (issue)": (lambda: se.spherical_kmeans(KX, (2**32, 2**32)),
                                                     Refused(ValueError, "grid")),
    "spherical_kmeans/grid (2**62, 4) (issue)": (lambda: se.spherical_kmeans(KX, (2**62, 4)),
                                                 Refused(ValueError, "grid")),
    "spherical_kmeans/grid (2**31, 2)": (lambda: se.spherical_kmeans(KX, (2**31, 2)), Refused(ValueError, "grid")),
    "spherical_kmeans/grid 2**63": (lambda: se.spherical_kmeans(KX, 2**63), Refused(ValueError, "grid")),
    "spherical_kmeans/grid (0, 2)": (lambda: se.spherical_kmeans(KX, (0, 2)), Refused(ValueError, "grid")),
    "spherical_kmeans/grid (2.0, 2)": (lambda: se.spherical_kmeans(KX, (2.0, 2)), Refused(TypeError, "grid")),
    "spherical_kmeans/iters 0": (lambda: se.spherical_kmeans(KX, iters=0), Refused(ValueError, "iters")),
    "spherical_kmeans/iters 2**63": (lambda: se.spherical_kmeans(KX, iters=2**63), Refused(ValueError, "iters")),
    "spherical_kmeans/coord_weight NaN": (lambda: se.spherical_kmeans(KX, coord_weight=NAN),
                                          Refused(ValueError, "coord_weight")),
    "spherical_kmeans/coord_weight inf": (lambda: se.spherical_kmeans(KX, coord_weight=INF),
                                          Refused(ValueError, "coord_weight")),
    "spherical_kmeans/coord_weight str": (lambda: se.spherical_kmeans(KX, coord_weight="1"),
                                          Refused(TypeError, "coord_weight")),
    "spherical_kmeans/tol -1": (lambda: se.spherical_kmeans(KX, tol=-1), Refused(ValueError, "tol")),
    "spherical_kmeans/tol NaN": (lambda: se.spherical_kmeans(KX, tol=NAN), Refused(ValueError, "tol")),
    "spherical_kmeans/mask float": (lambda: se.spherical_kmeans(KX, mask=torch.ones(1, 4, 4)),
                                    Refused(TypeError, "mask")),
    "spherical_kmeans/mask shape": (lambda: se.spherical_kmeans(KX, mask=torch.ones(1, 4, 3, dtype=torch.bool)),
                                    Refused(ValueError, "mask")),
    "spherical_kmeans/init >= K": (lambda: se.spherical_kmeans(KX, (2, 2), init=torch.full((1, 4, 4), 4)),
                                   Refused(ValueError, "init")),
    "spherical_kmeans/init shape": (lambda: se.spherical_kmeans(KX, init=torch.zeros(1, 4, 5, dtype=torch.long)),
                                    Refused(ValueError, "init")),
    "spherical_kmeans/NaN pixel": (lambda: tuple(se.spherical_kmeans(with_nan(KX, (0, 1, 2, 2)), (2, 2), iters=3)),
                                   kmeans_ref(x=with_nan(KX, (0, 1, 2, 2)))),
    # vmf_loss, vmf_nca_loss
    "vmf_loss/embeddings not a tensor": (lambda: se.vmf_loss(E.tolist(), SEG, P), Refused(TypeError, "embeddings")),
    "vmf_loss/segment_ids >= S": (lambda: se.vmf_loss(E, SEG + 3, P), Refused(ValueError, "segment_ids")),
    "vmf_loss/segment_ids shape": (lambda: se.vmf_loss(E, SEG[:-1], P), Refused(ValueError, "segment_ids")),
    "vmf_loss/segment_ids int32": (lambda: se.vmf_loss(E, SEG.int(), P), Refused(TypeError, "segment_ids")),
    "vmf_loss/prototypes dtype": (lambda: se.vmf_loss(E, SEG, P.float()), Refused(TypeError, "prototypes")),
    "vmf_loss/prototypes shape": (lambda: se.vmf_loss(E, SEG, P[:, :3]), Refused(ValueError, "prototypes")),
    "vmf_loss/embeddings 3-D": (lambda: se.vmf_loss(E[None], SEG, P), Refused(ValueError, "embeddings")),
    "vmf_loss/memory not a pair": (lambda: se.vmf_loss(E, SEG, P, memory=MEM), Refused(TypeError, "memory")),
    "vmf_loss/concentration NaN": (lambda: se.vmf_loss(E, SEG, P, concentration=NAN),
                                   Refused(ValueError, "concentration")),
    "vmf_loss/concentration inf": (lambda: se.vmf_loss(E, SEG, P, concentration=INF),
                                   Refused(ValueError, "concentration")),
    "vmf_loss/concentration str": (lambda: se.vmf_loss(E, SEG, P, concentration="10"),
                                   Refused(TypeError, "concentration")),
    "vmf_loss/huge embeddings": (lambda: se.vmf_loss(huge(HUGE, 4), huge(HUGE, dtype=torch.long), P),
                                 Refused(ValueError, "embeddings")),
    "vmf_loss/NaN memory row (issue)": (lambda: se.vmf_loss(E, SEG, P, memory=(MEM_NAN, ML)), vmf_ref(mem=MEM_NAN)),
    "vmf_loss/NaN prototype": (lambda: se.vmf_loss(E, SEG, P_NAN), vmf_ref(p=P_NAN)),
    "vmf_nca_loss/NaN memory row (issue)": (lambda: se.vmf_nca_loss(E, SEG, P, PL, memory=(MEM_NAN, ML)),
                                            vmf_ref(pl=PL, mem=MEM_NAN, ml=ML, nca=True)),
    "vmf_nca_loss/NaN embedding": (lambda: se.vmf_nca_loss(E_NAN, SEG, P, PL), vmf_ref(e=E_NAN, pl=PL, nca=True)),
    "vmf_nca_loss/prototype_labels None": (lambda: se.vmf_nca_loss(E, SEG, P, None),
                                           Refused(TypeError, "prototype_labels")),
    "vmf_nca_loss/prototype_labels shape": (lambda: se.vmf_nca_loss(E, SEG, P, PL[:-1]),
                                            Refused(ValueError, "prototype_labels")),
    "vmf_nca_loss/memory_labels None": (lambda: se.vmf_nca_loss(E, SEG, P, PL, memory=(MEM, None)),
                                        Refused(ValueError, "memory_labels")),
    "vmf_nca_loss/memory_labels shape": (lambda: se.vmf_nca_loss(E, SEG, P, PL, memory=(MEM, ML[:1])),
                                         Refused(ValueError, "memory_labels")),
    "vmf_nca_loss/concentration inf": (lambda: se.vmf_nca_loss(E, SEG, P, PL, concentration=INF),
                                       Refused(ValueError, "concentration")),
    "vmf_nca_loss/no pixels": (lambda: se.vmf_nca_loss(E[:0], SEG[:0], P, PL), vmf_ref(e=E[:0], ids=SEG[:0], pl=PL,
                                                                                       nca=True)),
    # blurring_mean_shift, bandwidth_from_margin
    "blurring_mean_shift/x not a tensor": (lambda: se.blurring_mean_shift(PTS.tolist(), bandwidth=4.0),
                                           Refused(TypeError, "x")),
    "blurring_mean_shift/x 2-D": (lambda: se.blurring_mean_shift(PTS[0], bandwidth=4.0), Refused(ValueError, "x")),
    "blurring_mean_shift/bandwidth 0": (lambda: se.blurring_mean_shift(PTS, bandwidth=0.0),
                                        Refused(ValueError, "bandwidth")),
    "blurring_mean_shift/bandwidth NaN": (lambda: se.blurring_mean_shift(PTS, bandwidth=NAN),
                                          Refused(ValueError, "bandwidth")),
    "blurring_mean_shift/bandwidth inf": (lambda: se.blurring_mean_shift(PTS, bandwidth=INF),
                                          Refused(ValueError, "bandwidth")),
    "blurring_mean_shift/bandwidth str": (lambda: se.blurring_mean_shift(PTS, bandwidth="4"),
                                          Refused(TypeError, "bandwidth")),
    "blurring_mean_shift/eta 0": (lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, eta=0.0),
                                  Refused(ValueError, "eta")),
    "blurring_mean_shift/eta NaN": (lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, eta=NAN),
                                    Refused(ValueError, "eta")),
    "blurring_mean_shift/eta True": (lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, eta=True),
                                     Refused(TypeError, "eta")),
    "blurring_mean_shift/iters -1": (lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, iters=-1),
                                     Refused(ValueError, "iters")),
    "blurring_mean_shift/iters 1.5": (lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, iters=1.5),
                                      Refused(TypeError, "iters")),
    "blurring_mean_shift/iters 2**62": (lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, iters=2**62),
                                        Refused(ValueError, "iters")),
    "blurring_mean_shift/iters MAX_ITERS + 1": (lambda: se.blurring_mean_shift(PTS, bandwidth=4.0,
                                                                               iters=MAX_ITERS + 1),
                                                Refused(ValueError, "iters")),
    "blurring_mean_shift/bandwidth 1e308": (lambda: se.blurring_mean_shift(PTS, bandwidth=1e308),
                                            Refused(ValueError, "bandwidth")),
    "blurring_mean_shift/bandwidth 2e38, float32": (lambda: se.blurring_mean_shift(PTS.float(), bandwidth=2e38),
                                                    Refused(ValueError, "bandwidth")),
    "blurring_mean_shift/bandwidth 2e38, float16": (lambda: se.blurring_mean_shift(PTS.half(), bandwidth=2e38),
                                                    Refused(ValueError, "bandwidth")),
    "blurring_mean_shift/bandwidth float32 max / 2": (
        lambda: se.blurring_mean_shift(PTS.float(), bandwidth=FLOAT_MAX / 2, iters=2, lengths=LENGTHS),
        Same(lambda: reference.blurring_mean_shift(PTS.float(), bandwidth=FLOAT_MAX / 2, iters=2, lengths=LENGTHS))),
    "blurring_mean_shift/lengths float": (lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, lengths=LENGTHS.float()),
                                          Refused(TypeError, "lengths")),
    "blurring_mean_shift/lengths shape": (lambda: se.blurring_mean_shift(PTS, bandwidth=4.0, lengths=LENGTHS[:1]),
                                          Refused(ValueError, "lengths")),
    "blurring_mean_shift/lengths > N": (lambda: se.blurring_mean_shift(PTS, bandwidth=4.0,
                                                                       lengths=torch.tensor([5, 99])),
                                        Refused(ValueError, "lengths")),
    "blurring_mean_shift/huge x": (lambda: se.blurring_mean_shift(huge(2**20, 2**20, 8), bandwidth=4.0),
                                   Refused(ValueError, "x")),
    "blurring_mean_shift/NaN point": (lambda: se.blurring_mean_shift(PTS_NAN, bandwidth=4.0, iters=2, lengths=LENGTHS),
                                      Same(lambda: reference.blurring_mean_shift(PTS_NAN, bandwidth=4.0, iters=2,
                                                                                 lengths=LENGTHS))),
    "bandwidth_from_margin/alpha 1": (lambda: se.bandwidth_from_margin(1.0), Refused(ValueError, "alpha")),
    "bandwidth_from_margin/alpha -0.1": (lambda: se.bandwidth_from_margin(-0.1), Refused(ValueError, "alpha")),
    "bandwidth_from_margin/alpha NaN": (lambda: se.bandwidth_from_margin(NAN), Refused(ValueError, "alpha")),
    "bandwidth_from_margin/alpha str": (lambda: se.bandwidth_from_margin("0.5"), Refused(TypeError, "alpha")),
}


@pytest.mark.parametrize("case", list(PUBLIC))
def test_public(case):
    call, expectation = PUBLIC[case]
    check(call, expectation)


CUDA_CASES = {
    "segment_partition/labels on another device": (lambda: se.segment_partition(C.cuda(), L), "labels"),
    "segment_mean/ids on another device": (lambda: se.segment_mean(X.cuda(), IDS, 3), "ids"),
    "spherical_kmeans/mask on another device": (lambda: se.spherical_kmeans(KX.cuda(), mask=torch.ones(1, 4, 4).bool()),
                                                "mask"),
    "vmf_loss/prototypes on another device": (lambda: se.vmf_loss(E.cuda(), SEG.cuda(), P), "prototypes"),
    "vmf_nca_loss/memory on another device": (lambda: se.vmf_nca_loss(E.cuda(), SEG.cuda(), P.cuda(), PL.cuda(),
                                                                      memory=(MEM, ML)), "memory"),
    "blurring_mean_shift/lengths on another device": (lambda: se.blurring_mean_shift(PTS.cuda(), bandwidth=4.0,
                                                                                     lengths=LENGTHS), "lengths"),
}


@needs_cuda
@pytest.mark.parametrize("case", list(CUDA_CASES))
def test_public_device_mismatch(case):
    call, name = CUDA_CASES[case]
    check(call, Refused(ValueError, name))


# ------------------------------------------------------------------------------ crashes, fallback

ISSUE_CRASHES = {  # issue 15's reproducers: memory corruption before the fix
    "partition cluster INT64_MAX": ("c = torch.zeros(2, 1, 1, dtype=torch.long); c[0, 0, 0] = 2**63 - 1",
                                    "se.segment_partition(c)", "ops.segment_partition(c, None, 255, 0)"),
    "partition label INT64_MAX": ("c = torch.zeros(1, 1, 2, dtype=torch.long); l = torch.tensor([[[0, 2**63 - 1]]])",
                                  "se.segment_partition(c, l)", "ops.segment_partition(c, l, 255, 0)"),
    "kmeans grid (2**32, 2**32)": ("x = torch.randn(1, 3, 4, 4)", "se.spherical_kmeans(x, (2**32, 2**32))",
                                   "ops.spherical_kmeans(x, None, None, 2**32, 2**32, 1, 1.0, -1.0)"),
    "kmeans grid (2**62, 4)": ("x = torch.randn(1, 3, 4, 4)", "se.spherical_kmeans(x, (2**62, 4))",
                               "ops.spherical_kmeans(x, None, None, 2**62, 4, 1, 1.0, -1.0)"),
}

_PROGRAM = """
import sys, torch
import segsort_ext as se
{setup}
{inputs}
try:
    {call}
    print("returned")
except Exception as exc:
    print(type(exc).__name__ + ": " + str(exc).splitlines()[0])
"""

_EMULATED = """
sys.path.insert(0, {here!r})
from conftest import EMULATION_BUILD_DIR, load_emulation_build
load_emulation_build().build(EMULATION_BUILD_DIR)
ops = torch.ops.segsort_emulated
"""


@pytest.mark.parametrize("path", ["public", "raw", "raw_cuda_emulated"])
@pytest.mark.parametrize("case", list(ISSUE_CRASHES))
def test_issue_crash_reproducers(case, path, request):
    inputs, public_call, raw_call = ISSUE_CRASHES[case]
    setup = "ops = torch.ops.segsort_ext"
    if path == "raw_cuda_emulated":
        request.getfixturevalue("emu")  # built once, here
        setup = _EMULATED.format(here=os.path.dirname(os.path.abspath(__file__)))
    program = _PROGRAM.format(setup=setup, inputs=inputs, call=public_call if path == "public" else raw_call)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"crashed (exit code {result.returncode}): {result.stderr[-2000:]}"
    outcome = result.stdout.strip().splitlines()[-1]
    assert outcome == "returned" if case.startswith("partition") else outcome.startswith("ValueError: grid"), outcome


@pytest.mark.skipif(not HAS_EXTENSION, reason="this run is the fallback already")
def test_public_catalogue_on_the_fallback():
    # The same public and raw-op cases, with segsort_ext._C hidden: the ops defined from
    # Python and their plain-PyTorch kernels must refuse and answer alike (the emulated
    # CUDA path and the crash cases are left out: they need the extension or a subprocess).
    program = ("import sys; sys.modules['segsort_ext._C'] = None; import pytest; "
               f"sys.exit(pytest.main([{os.path.abspath(__file__)!r}, '-q', '-p', 'no:cacheprovider', "
               "'-W', 'ignore::RuntimeWarning', '-k', '(test_public and not device) or (test_raw_op and cpu)']))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=600,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout, result.stdout[-2000:]
