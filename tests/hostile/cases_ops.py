"""Hostile cases for segsort_ext.ops and the raw torch.ops.segsort_ext ops."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

import segsort_ext as se
from segsort_ext.ops import reference
from segsort_ext.testing import INF, NAN
from tests.hostile.catalogue import Case

AREA = "hostile"

I64 = 2**63 - 1


def rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def clusters(B=2, H=3, W=4, k=3, seed=1):
    return torch.randint(0, k, (B, H, W), generator=torch.Generator().manual_seed(seed))


def partition(*args, **kwargs):
    return tuple(se.segment_partition(*args, **kwargs))


def mean_ref(x, ids, S, normalize=True):
    """Per segment: the mean (normalised or not) of its pixels, by a Python loop."""
    pixels = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) if x.dim() == 4 else x
    flat = ids.reshape(-1)
    rows = []
    for s in range(S):
        members = pixels[flat == s].double()
        total = members.sum(0)
        rows.append(F.normalize(total, dim=0, eps=1e-12) if normalize else total / max(len(members), 1))
    return torch.stack(rows).to(x.dtype) if rows else x.new_zeros(0, x.shape[1] if x.dim() == 2 else x.shape[1])


def vmf_ref(e, ids, protos, c=10.0):
    """-log softmax of the own prototype, by the textbook formula, over valid pixels."""
    pixels = e.permute(0, 2, 3, 1).reshape(-1, e.shape[1]) if e.dim() == 4 else e
    flat = ids.reshape(-1)
    keep = flat >= 0
    logits = c * pixels[keep].double() @ protos.double().t()
    return (torch.logsumexp(logits, 1) - logits.gather(1, flat[keep, None]).squeeze(1)).mean().to(e.dtype)


ids23 = torch.tensor([[[0, 1, 1], [2, 2, -1]]])
x23 = rand(1, 4, 2, 3)
edge_labels = torch.tensor([[[I64, -1], [2**40, 255]]])
px, pids = x23.permute(0, 2, 3, 1).reshape(6, 4), ids23.reshape(6)  # the (N, D) pixel form

CASES = [
    # -- segment_partition --------------------------------------------------------------
    Case("partition bool", lambda: se.segment_partition(clusters() > 0), arg="clusters"),
    Case("partition uint8", lambda: se.segment_partition(clusters().to(torch.uint8)), arg="clusters"),
    Case("partition float", lambda: se.segment_partition(clusters().float()), arg="clusters"),
    Case("partition complex", lambda: se.segment_partition(clusters().to(torch.complex64)), arg="clusters"),
    Case("partition list", lambda: se.segment_partition([[[0, 1]]]), arg="clusters"),
    Case("partition None", lambda: se.segment_partition(None), arg="clusters"),
    Case("partition 2-d", lambda: se.segment_partition(clusters()[0]), arg="clusters"),
    Case("partition 4-d", lambda: se.segment_partition(clusters()[None]), arg="clusters"),
    Case("partition meta", lambda: se.segment_partition(clusters().to("meta")), arg="clusters"),
    Case("partition labels meta", lambda: se.segment_partition(clusters(), clusters().to("meta")), arg="labels"),
    Case("partition labels int32", lambda: se.segment_partition(clusters(), clusters().int()), arg="labels"),
    Case("partition labels shape", lambda: se.segment_partition(clusters(), clusters()[:, :2]), arg="labels"),
    Case("partition connectivity 6", lambda: se.segment_partition(clusters(), connectivity=6), arg="connectivity"),
    Case("partition connectivity str", lambda: se.segment_partition(clusters(), connectivity="4"),
         arg="connectivity"),
    Case("partition ignore_index float", lambda: se.segment_partition(clusters(), clusters(), ignore_index=2.0),
         arg="ignore_index"),
    Case("partition ignore_index 2**64", lambda: se.segment_partition(clusters(), clusters(), ignore_index=2**64),
         arg="ignore_index"),
    *[Case(f"partition zero dim {i}", functools.partial(partition, torch.zeros(shape, dtype=torch.long)),
           ref=functools.partial(reference.segment_partition, torch.zeros(shape, dtype=torch.long)))
      for i, shape in enumerate([(0, 3, 4), (2, 0, 4), (2, 3, 0)])],
    Case("partition 1x1x1", lambda: partition(torch.tensor([[[7]]])),
         ref=lambda: reference.segment_partition(torch.tensor([[[7]]]))),
    Case("partition transposed", lambda: partition(clusters(2, 4, 4).transpose(1, 2)),
         ref=lambda: reference.segment_partition(clusters(2, 4, 4).transpose(1, 2).contiguous())),
    Case("partition expanded", lambda: partition(torch.tensor([[[1, 2, 2]]]).expand(3, 4, 3)),
         ref=lambda: reference.segment_partition(torch.tensor([[[1, 2, 2]]]).expand(3, 4, 3).contiguous())),
    Case("partition int64 extremes", lambda: partition(torch.tensor([[[-(2**63), I64, I64 - 1, 0]]])),
         ref=lambda: reference.segment_partition(torch.tensor([[[-(2**63), I64, I64 - 1, 0]]]))),
    Case("partition labels extremes", lambda: partition(clusters(1, 2, 2, 1), edge_labels),
         ref=lambda: reference.segment_partition(clusters(1, 2, 2, 1), edge_labels)),
    Case("partition all ignored", lambda: partition(clusters(), torch.full((2, 3, 4), 255)),
         ref=lambda: reference.segment_partition(clusters(), torch.full((2, 3, 4), 255))),
    Case("partition connectivity 8 diagonal", lambda: partition(torch.eye(3, dtype=torch.long)[None], connectivity=8),
         ref=lambda: reference.segment_partition(torch.eye(3, dtype=torch.long)[None], connectivity=8)),
    Case("partition float requires_grad", lambda: se.segment_partition(clusters().float().requires_grad_()),
         arg="clusters"),
    # -- segment_mean ------------------------------------------------------------------
    Case("mean x int", lambda: se.segment_mean(torch.ones(1, 4, 2, 3, dtype=torch.long), ids23, 3), arg="x"),
    Case("mean x bool", lambda: se.segment_mean(torch.ones(1, 4, 2, 3, dtype=torch.bool), ids23, 3), arg="x"),
    Case("mean x complex", lambda: se.segment_mean(x23.to(torch.complex64), ids23, 3), arg="x"),
    Case("mean ids int32", lambda: se.segment_mean(x23, ids23.int(), 3), arg="ids"),
    Case("mean ids float", lambda: se.segment_mean(x23, ids23.float(), 3), arg="ids"),
    Case("mean ids >= S", lambda: se.segment_mean(x23, ids23, 2), arg="ids|num_segments"),
    Case("mean ids -2", lambda: se.segment_mean(x23, torch.tensor([[[0, -2, 1], [1, 1, 1]]]), 2),
         arg="ids", ref=lambda: mean_ref(x23, torch.tensor([[[0, -1, 1], [1, 1, 1]]]), 2)),
    Case("mean S negative", lambda: se.segment_mean(x23, ids23, -1), arg="num_segments"),
    Case("mean S float", lambda: se.segment_mean(x23, ids23, 3.0), arg="num_segments"),
    Case("mean S 2**63", lambda: se.segment_mean(x23, ids23, 2**63), arg="num_segments"),
    Case("mean S 2**45", lambda: se.segment_mean(x23, ids23, 2**45), arg="num_segments"),
    Case("mean normalize str", lambda: se.segment_mean(x23, ids23, 3, normalize="no"), arg="normalize"),
    Case("mean ids shape", lambda: se.segment_mean(x23, ids23[:, :1], 3), arg="ids"),
    Case("mean meta ids", lambda: se.segment_mean(x23, ids23.to("meta"), 3), arg="ids|device"),
    Case("mean meta x", lambda: se.segment_mean(x23.to("meta"), ids23, 3), arg="ids|device"),
    Case("mean all meta", lambda: se.segment_mean(x23.to("meta"), ids23.to("meta"), 3),
         check=lambda r: r.device.type == "meta" and r.shape == (3, 4)),
    Case("vmf meta prototypes", lambda: se.vmf_loss(px, pids, torch.ones(3, 4, device="meta")), arg="prototypes"),
    Case("mean numpy x", lambda: se.segment_mean(x23.numpy(), ids23, 3), arg="x"),
    Case("mean 3-d x", lambda: se.segment_mean(x23[0], ids23[0], 3), arg="x"),
    Case("mean half", lambda: se.segment_mean(x23.half(), ids23, 3),
         ref=lambda: mean_ref(x23.half().float(), ids23, 3).half()),
    Case("mean double unnormalised", lambda: se.segment_mean(x23.double(), ids23, 3, normalize=False),
         ref=lambda: mean_ref(x23.double(), ids23, 3, normalize=False)),
    Case("mean channels_last", lambda: se.segment_mean(rand(2, 3, 4, 5).contiguous(memory_format=torch.channels_last),
                                                       clusters(2, 4, 5), 3),
         ref=lambda: mean_ref(rand(2, 3, 4, 5), clusters(2, 4, 5), 3)),
    Case("mean -0.0 and subnormal", lambda: se.segment_mean(torch.tensor([[-0.0, 1e-45], [1e-40, -0.0]]),
                                                            torch.tensor([0, 1]), 2),
         check=lambda r: torch.isfinite(r).all().item() and r.shape == (2, 2)),
    Case("mean inf member", lambda: se.segment_mean(torch.tensor([[INF, 1.0], [1.0, 1.0]]), torch.tensor([0, 1]), 2),
         ref=lambda: reference.segment_mean(torch.tensor([[INF, 1.0], [1.0, 1.0]]), torch.tensor([0, 1]), 2)),
    Case("mean huge members", lambda: se.segment_mean(torch.tensor([[3e38, 3e38], [3e38, 3e38]]), torch.tensor([0, 0]),
                                                      1),
         ref=lambda: reference.segment_mean(torch.tensor([[3e38, 3e38], [3e38, 3e38]]), torch.tensor([0, 0]), 1)),
    Case("mean empty segment", lambda: se.segment_mean(torch.ones(2, 3), torch.tensor([0, 0]), 3),
         ref=lambda: torch.tensor([[3**-0.5] * 3, [0.0] * 3, [0.0] * 3])),
    Case("mean N=0", lambda: se.segment_mean(torch.ones(0, 3), torch.zeros(0, dtype=torch.long), 2),
         ref=lambda: torch.zeros(2, 3)),
    Case("mean D=0", lambda: se.segment_mean(torch.ones(4, 0), torch.zeros(4, dtype=torch.long), 2),
         ref=lambda: torch.zeros(2, 0)),
    Case("mean keeps the graph", lambda: se.segment_mean(x23.clone().requires_grad_(), ids23, 3).requires_grad,
         check=lambda r: r is True),
    # -- histogram / majority ----------------------------------------------------------
    Case("hist labels float", lambda: se.segment_label_histogram(ids23, ids23.float(), 3, 3), arg="labels"),
    Case("hist C 0", lambda: se.segment_label_histogram(ids23, ids23, 3, 0), arg="num_classes"),
    Case("hist label >= C", lambda: se.segment_label_histogram(ids23, ids23 + 5, 3, 3), arg="labels|num_classes"),
    Case("hist S*C overflow", lambda: se.segment_label_histogram(ids23, ids23.clamp_min(0), 2**32, 2**32),
         arg="num_segments|num_classes"),
    Case("hist ignore", lambda: se.segment_label_histogram(ids23, torch.tensor([[[255, 0, 1], [1, -1, 0]]]), 3, 2),
         ref=lambda: torch.tensor([[0, 0], [1, 1], [0, 1]])),
    Case("majority labels shape", lambda: se.segment_majority_mean(x23, ids23, ids23[:, :1], 3, 3), arg="labels"),
    Case("majority C huge", lambda: se.segment_majority_mean(x23, ids23, ids23.clamp_min(0), 3, 2**62),
         arg="num_classes"),
    Case("majority all ignored", lambda: se.segment_majority_mean(x23, ids23, torch.full_like(ids23, 255), 3, 3)[1],
         ref=lambda: torch.tensor([-1, -1, -1])),
    # -- spherical_kmeans --------------------------------------------------------------
    Case("kmeans int x", lambda: se.spherical_kmeans(torch.ones(1, 3, 4, 4, dtype=torch.int8), 2), arg="x"),
    Case("kmeans complex x", lambda: se.spherical_kmeans(rand(1, 3, 4, 4).to(torch.complex64), 2), arg="x"),
    Case("kmeans grid 0", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), (0, 2)), arg="grid"),
    Case("kmeans grid 3-tuple", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), (2, 2, 2)), arg="grid"),
    Case("kmeans grid numpy ints", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), (2.0, 2.0)), arg="grid"),
    Case("kmeans grid > pixels", lambda: tuple(se.spherical_kmeans(rand(1, 3, 4, 4), (5, 1))),
         ref=lambda: reference.spherical_kmeans(rand(1, 3, 4, 4), (5, 1))),
    Case("kmeans grid 2**31", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), (2**31, 2**31)), arg="grid"),
    Case("kmeans iters -1", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2, iters=-1), arg="iters"),
    Case("kmeans iters 2**63", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2, iters=2**63), arg="iters"),
    Case("kmeans coord_weight inf", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2, coord_weight=INF),
         arg="coord_weight"),
    Case("kmeans coord_weight -1", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2, coord_weight=-1.0),
         arg="coord_weight", check=lambda r: r.labels.shape == (1, 4, 4)),
    Case("kmeans tol NaN", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2, tol=NAN), arg="tol"),
    Case("kmeans tol -1", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2, tol=-1.0), arg="tol"),
    Case("kmeans mask float", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2, mask=torch.ones(1, 4, 4)), arg="mask"),
    Case("kmeans mask shape", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2, mask=torch.ones(1, 4, 3).bool()),
         arg="mask"),
    Case("kmeans init >= K", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2, init=torch.full((1, 4, 4), 4)),
         arg="init"),
    Case("kmeans init int32", lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2, init=torch.zeros(1, 4, 4).int()),
         arg="init"),
    Case("kmeans meta", lambda: se.spherical_kmeans(rand(1, 3, 4, 4).to("meta"), 2).centroids,
         check=lambda r: r.device.type == "meta" and r.shape == (1, 4, 5)),
    Case("kmeans meta init on cpu", lambda: se.spherical_kmeans(rand(1, 3, 4, 4).to("meta"), 2,
                                                               init=torch.zeros(1, 4, 4, dtype=torch.long)),
         arg="init"),
    Case("kmeans B=0", lambda: se.spherical_kmeans(rand(0, 3, 4, 4), 2),
         ref=lambda: se.KMeansResult(*reference.spherical_kmeans(rand(0, 3, 4, 4), (2, 2)))),
    Case("kmeans D=0", lambda: se.spherical_kmeans(rand(1, 0, 4, 4), 2), arg="x",
         check=lambda r: r.labels.shape == (1, 4, 4)),
    Case("kmeans H=0", lambda: se.spherical_kmeans(rand(1, 3, 0, 4), 1), arg="x|grid",
         check=lambda r: r.labels.shape == (1, 0, 4)),
    Case("kmeans all NaN", lambda: se.spherical_kmeans(torch.full((1, 3, 4, 4), NAN), 2).labels,
         ref=lambda: torch.full((1, 4, 4), -1)),
    Case("kmeans 1x1 image", lambda: se.spherical_kmeans(rand(1, 3, 1, 1), 1).labels, ref=lambda: torch.zeros(1, 1, 1,
                                                                                                         dtype=torch.long)),
    Case("kmeans matches reference", lambda: se.spherical_kmeans(rand(2, 4, 6, 6), (2, 3), iters=3).labels,
         ref=lambda: reference.spherical_kmeans(rand(2, 4, 6, 6), (2, 3), iters=3)[0]),
    Case("kmeans requires_grad", lambda: se.spherical_kmeans(rand(1, 3, 4, 4).requires_grad_(), 2).labels,
         ref=lambda: se.spherical_kmeans(rand(1, 3, 4, 4), 2).labels),
    # -- vmf losses --------------------------------------------------------------------
    Case("vmf protos int", lambda: se.vmf_loss(px, pids, torch.ones(3, 4, dtype=torch.long)), arg="prototypes"),
    Case("vmf protos wrong D", lambda: se.vmf_loss(px, pids, torch.ones(3, 5)), arg="prototypes"),
    Case("vmf ids >= S", lambda: se.vmf_loss(px, pids, torch.ones(2, 4)), arg="segment_ids|prototypes"),
    Case("vmf concentration NaN", lambda: se.vmf_loss(px, pids, F.normalize(rand(3, 4), dim=1),
                                                      concentration=NAN), arg="concentration"),
    Case("vmf concentration 0", lambda: se.vmf_loss(px, pids, F.normalize(rand(3, 4), dim=1), concentration=0.0),
         arg="concentration", ref=lambda: torch.tensor(3.0).log()),
    Case("vmf concentration 1e30", lambda: se.vmf_loss(px, pids, F.normalize(rand(3, 4), dim=1),
                                                       concentration=1e30),
         arg="concentration", check=lambda r: bool(torch.isfinite(r))),
    Case("vmf dtype mix", lambda: se.vmf_loss(px.double(), pids, F.normalize(rand(3, 4), dim=1)),
         arg="prototypes|dtype"),
    Case("vmf memory list", lambda: se.vmf_loss(px, pids, F.normalize(rand(3, 4), dim=1), memory=[1, 2]),
         arg="memory prototypes"),
    Case("vmf memory wrong D", lambda: se.vmf_loss(px, pids, F.normalize(rand(3, 4), dim=1),
                                                   memory=(torch.ones(2, 3), torch.zeros(2, dtype=torch.long))),
         arg="memory"),
    Case("vmf all ignored", lambda: se.vmf_loss(px, torch.full_like(pids, -1), F.normalize(rand(3, 4), dim=1)),
         check=lambda r: r.shape == () and (r.item() == 0 or r.isnan().item())),
    Case("vmf matches formula", lambda: se.vmf_loss(F.normalize(px, dim=1), pids, F.normalize(rand(3, 4), dim=1)),
         ref=lambda: vmf_ref(F.normalize(px, dim=1), pids, F.normalize(rand(3, 4), dim=1))),
    Case("vmf NaN pixel", lambda: se.vmf_loss(px.index_fill(0, torch.tensor([0]), NAN), pids,
                                              F.normalize(rand(3, 4), dim=1)),
         ref=lambda: torch.tensor(NAN)),
    Case("nca labels float", lambda: se.vmf_nca_loss(px, pids, F.normalize(rand(3, 4), dim=1), torch.zeros(3)),
         arg="prototype_labels"),
    Case("nca labels shape", lambda: se.vmf_nca_loss(px, pids, F.normalize(rand(3, 4), dim=1),
                                                     torch.zeros(2, dtype=torch.long)), arg="prototype_labels"),
    Case("nca memory labels None", lambda: se.vmf_nca_loss(px, pids, F.normalize(rand(3, 4), dim=1),
                                                           torch.zeros(3, dtype=torch.long),
                                                           memory=(torch.ones(2, 4), None)), arg="memory_labels"),
    Case("nca labels int64 extremes", lambda: se.vmf_nca_loss(F.normalize(px, dim=1), pids,
                                                              F.normalize(rand(3, 4), dim=1),
                                                              torch.tensor([I64, -(2**63), I64])),
         ref=lambda: reference.vmf_nca_loss(F.normalize(px, dim=1), pids, F.normalize(rand(3, 4), dim=1),
                                            torch.tensor([I64, -(2**63), I64]))),
    # -- blurring mean shift ------------------------------------
    Case("bms bandwidth 0", lambda: se.blurring_mean_shift(rand(1, 5, 3), bandwidth=0.0), arg="bandwidth"),
    Case("bms bandwidth NaN", lambda: se.blurring_mean_shift(rand(1, 5, 3), bandwidth=NAN), arg="bandwidth"),
    Case("bms bandwidth 1e300", lambda: se.blurring_mean_shift(rand(1, 5, 3), bandwidth=1e300), arg="bandwidth",
         check=lambda r: bool(torch.isfinite(r).all())),
    Case("bms iters 2**40", lambda: se.blurring_mean_shift(rand(1, 5, 3), bandwidth=1.0, iters=2**40), arg="iters"),
    Case("bms eta NaN", lambda: se.blurring_mean_shift(rand(1, 5, 3), bandwidth=1.0, eta=NAN), arg="eta"),
    Case("bms lengths > N", lambda: se.blurring_mean_shift(rand(1, 5, 3), bandwidth=1.0, lengths=torch.tensor([6])),
         arg="lengths"),
    Case("bms lengths float", lambda: se.blurring_mean_shift(rand(1, 5, 3), bandwidth=1.0,
                                                             lengths=torch.tensor([5.0])), arg="lengths"),
    Case("bms N=0", lambda: se.blurring_mean_shift(rand(1, 0, 3), bandwidth=1.0), ref=lambda: rand(1, 0, 3)),
    Case("bms x int", lambda: se.blurring_mean_shift(torch.ones(1, 5, 3, dtype=torch.long), bandwidth=1.0), arg="x"),
    Case("bms matches reference", lambda: se.blurring_mean_shift(F.normalize(rand(2, 6, 3), dim=2), bandwidth=0.5,
                                                                 iters=3),
         ref=lambda: reference.blurring_mean_shift(F.normalize(rand(2, 6, 3), dim=2), bandwidth=0.5, iters=3)),
    Case("bandwidth_from_margin 2", lambda: se.bandwidth_from_margin(2.0), arg="alpha"),
    Case("bandwidth_from_margin str", lambda: se.bandwidth_from_margin("0.5"), arg="alpha"),
    # -- raw ops: the dispatcher checks types against the schema, the kernels the rest ----
    Case("raw partition list", lambda: torch.ops.segsort_ext.segment_partition([[[0]]], None, 255, 0),
         arg="clusters", error=(RuntimeError, TypeError, ValueError)),
    Case("raw partition connectivity 5", lambda: torch.ops.segsort_ext.segment_partition(clusters(), None, 255, 5),
         arg="connectivity"),
    Case("raw mean S -5", lambda: torch.ops.segsort_ext.segment_mean(x23, ids23, -5, True), arg="num_segments"),
    Case("raw mean S float", lambda: torch.ops.segsort_ext.segment_mean(x23, ids23, 3.5, True), arg="num_segments",
         error=(RuntimeError, TypeError, ValueError)),
    Case("raw kmeans grid 2**40", lambda: torch.ops.segsort_ext.spherical_kmeans(rand(1, 3, 4, 4), None, None, 2**40,
                                                                                 2**40, 1, 1.0, -1.0), arg="grid"),
    Case("raw kmeans iters -1", lambda: torch.ops.segsort_ext.spherical_kmeans(rand(1, 3, 4, 4), None, None, 2, 2, -1,
                                                                               1.0, -1.0), arg="iters"),
    Case("raw kmeans coord NaN", lambda: torch.ops.segsort_ext.spherical_kmeans(rand(1, 3, 4, 4), None, None, 2, 2, 1,
                                                                                NAN, -1.0), arg="coord_weight"),
    Case("raw kmeans init 99", lambda: torch.ops.segsort_ext.spherical_kmeans(rand(1, 3, 4, 4), None,
                                                                              torch.full((1, 4, 4), 99), 2, 2, 1, 1.0,
                                                                              -1.0), arg="init"),
]
