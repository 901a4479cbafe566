"""Hostile cases for segsort_ext.retrieval, .cluster and .nn."""
from __future__ import annotations

import os
import tempfile

import torch
import torch.nn.functional as F

import segsort_ext.cluster as C
import segsort_ext.nn as N
from segsort_ext.retrieval import SegmentIndex, SegSortPredictor, add_training_segments
from segsort_ext.testing import INF, NAN
from tests.hostile.catalogue import Case

AREA = "hostile"

I64 = 2**63 - 1


def unit(*shape, seed=0, dim=-1):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=dim)


def bank(n=12, d=4, classes=3, seed=0):
    index = SegmentIndex(dim=d)
    index.add(unit(n, d, seed=seed), torch.arange(n) % classes)
    return index


def saved_bank(mutate=None) -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="hostile_"), "bank.pt")
    bank().save(path)
    if mutate is not None:
        with open(path, "r+b") as f:
            mutate(f)
    return path


def truncate(f):
    f.truncate(os.path.getsize(f.name) // 2)


def flip_bytes(f):
    f.seek(os.path.getsize(f.name) // 2)
    f.write(b"\xff" * 32)


def exact_knn(queries, prototypes, k):
    return (queries @ prototypes.t()).topk(k, dim=1).indices


def emb(B=1, D=4, H=6, W=6, seed=3):
    return unit(B, D, H, W, seed=seed, dim=1)


def seg_labels(B=1, H=6, W=6):
    return (torch.arange(H * W).view(1, H, W) * 3 // (H * W)).expand(B, H, W).contiguous()


CASES = [
    # -- SegmentIndex ------------------------------------------------------------------------
    Case("index dim 0", lambda: SegmentIndex(dim=0), arg="dim"),
    Case("index dim 2**62", lambda: SegmentIndex(dim=2**62), arg="dim",
         check=lambda r: isinstance(r, SegmentIndex)),
    Case("index metric", lambda: SegmentIndex(dim=4, metric="hamming"), arg="metric"),
    Case("index backend", lambda: SegmentIndex(dim=4, backend="annoy"), arg="backend"),
    Case("index device str", lambda: SegmentIndex(dim=4, device="tpu"), arg="device"),
    Case("add labels float", lambda: bank().add(unit(2, 4), torch.zeros(2)), arg="labels"),
    Case("add labels length", lambda: bank().add(unit(2, 4), torch.zeros(3, dtype=torch.long)), arg="labels"),
    Case("add labels negative", lambda: bank().add(unit(2, 4), torch.tensor([-1, 0])), arg="labels"),
    Case("add labels 2**40", lambda: bank().add(unit(2, 4), torch.tensor([2**40, 0])), arg="labels"),
    Case("add wrong dim", lambda: bank().add(unit(2, 5), torch.zeros(2, dtype=torch.long)), arg="prototypes"),
    Case("add half", lambda: len(_add(unit(2, 4).half())), ref=lambda: 14),
    Case("add NaN row", lambda: bank().add(torch.full((1, 4), NAN), torch.zeros(1, dtype=torch.long)),
         arg="prototypes"),
    Case("add meta", lambda: bank().add(unit(2, 4).to("meta"), torch.zeros(2, dtype=torch.long)), arg="prototypes"),
    Case("add 0 rows", lambda: len(_add(unit(0, 4))), ref=lambda: 12),
    Case("add image_ids int32", lambda: bank().add(unit(2, 4), torch.zeros(2, dtype=torch.long),
                                                   image_ids=torch.zeros(2, dtype=torch.int32)), arg="image_ids"),
    Case("search matches exact", lambda: bank().search(unit(5, 4, seed=9), 3)[1],
         ref=lambda: exact_knn(unit(5, 4, seed=9), unit(12, 4), 3)),
    Case("search k 0", lambda: bank().search(unit(5, 4), 0), arg="k"),
    Case("search k > len", lambda: bank().search(unit(5, 4), 13), arg="k"),
    Case("search k 2**63", lambda: bank().search(unit(5, 4), 2**63), arg="k"),
    Case("search queries 1-d", lambda: bank().search(unit(4), 2), arg="queries"),
    Case("search queries int", lambda: bank().search(torch.ones(2, 4, dtype=torch.long), 2), arg="queries"),
    Case("search queries transposed", lambda: bank().search(unit(4, 5, seed=9).t(), 3)[1],
         ref=lambda: exact_knn(unit(4, 5, seed=9).t(), unit(12, 4), 3)),
    Case("search queries list", lambda: bank().search([[1.0, 0, 0, 0]], 2), arg="queries"),
    Case("search 0 queries", lambda: bank().search(unit(0, 4), 2)[1].shape, ref=lambda: (0, 2)),
    Case("vote num_classes too small", lambda: bank().vote(unit(2, 4), 3, num_classes=2), arg="num_classes"),
    Case("vote weighting", lambda: bank().vote(unit(2, 4), 3, weighting="softmax"), arg="weighting"),
    Case("vote num_classes 2**40", lambda: bank().vote(unit(2, 4), 3, num_classes=2**40), arg="num_classes"),
    Case("explain k str", lambda: bank().explain(unit(2, 4), "3"), arg="k"),
    Case("load truncated", lambda: SegmentIndex.load(saved_bank(truncate)), arg="bank.pt|SegmentIndex"),
    Case("load flipped bytes", lambda: SegmentIndex.load(saved_bank(flip_bytes)), arg="bank.pt|SegmentIndex|corrupt",
         check=lambda r: len(r) == 12),
    Case("load a tensor file", lambda: SegmentIndex.load(_torch_file(torch.zeros(3))), arg="SegmentIndex"),
    Case("load a dict file", lambda: SegmentIndex.load(_torch_file({"dim": 4})), arg="SegmentIndex|missing"),
    Case("load directory", lambda: SegmentIndex.load(tempfile.mkdtemp()), arg="hostile|tmp",
         error=(IsADirectoryError, ValueError, OSError)),
    Case("load round trip", lambda: SegmentIndex.load(saved_bank()).search(unit(3, 4, seed=5), 2)[1],
         ref=lambda: bank().search(unit(3, 4, seed=5), 2)[1]),
    # -- predictor --------------------------------------------------------------------------
    Case("predictor k 0", lambda: SegSortPredictor(bank(), 3, k=0), arg="k"),
    Case("predictor grid NaN", lambda: SegSortPredictor(bank(), 3, grid=(NAN, 2)), arg="grid"),
    Case("predictor coord_weight inf", lambda: SegSortPredictor(bank(), 3, coord_weight=INF), arg="coord_weight"),
    Case("predictor num_classes bool", lambda: SegSortPredictor(bank(), True), arg="num_classes"),
    Case("predict channels_last", lambda: SegSortPredictor(bank(), 3, k=3, grid=2).predict(
        emb(2).contiguous(memory_format=torch.channels_last)),
         ref=lambda: SegSortPredictor(bank(), 3, k=3, grid=2).predict(emb(2))),
    Case("predict wrong D", lambda: SegSortPredictor(bank(), 3, k=3, grid=2).predict(emb(D=5)), arg="embeddings"),
    Case("predict 3-d", lambda: SegSortPredictor(bank(), 3, k=3, grid=2).predict(emb()[0]), arg="embeddings"),
    Case("predict numpy", lambda: SegSortPredictor(bank(), 3, k=3, grid=2).predict(emb().numpy()), arg="views"),
    Case("predict B=0", lambda: SegSortPredictor(bank(), 3, k=3, grid=2).predict(emb(B=0)).shape,
         ref=lambda: (0, 6, 6)),
    Case("predict NaN image", lambda: SegSortPredictor(bank(), 3, k=3, grid=2).predict(torch.full((1, 4, 6, 6), NAN)),
         ref=lambda: torch.full((1, 6, 6), -1)),
    Case("predict output_size 2**33", lambda: SegSortPredictor(bank(), 3, k=3, grid=2).predict(
        emb(), output_size=(2**33, 2**33)), arg="output_size"),
    Case("predict flipped int", lambda: SegSortPredictor(bank(), 3, k=3, grid=2).predict([(emb(), 1)]),
         arg="flipped"),
    Case("add_training labels float", lambda: add_training_segments(bank(), emb(), seg_labels().float(),
                                                                    num_classes=3), arg="labels"),
    Case("add_training labels >= C", lambda: add_training_segments(bank(), emb(), seg_labels() + 7, num_classes=3),
         arg="labels|num_classes"),
    Case("add_training all ignored", lambda: add_training_segments(bank(), emb(), torch.full((1, 6, 6), 255),
                                                                   num_classes=3), ref=lambda: 0),
    Case("add_training image_ids shape", lambda: add_training_segments(bank(), emb(), seg_labels(), num_classes=3,
                                                                       image_ids=torch.zeros(2, dtype=torch.long)),
         arg="image_ids"),
    # -- cluster ------------------------------------------------------------------------------
    Case("SphericalKMeans 0", lambda: C.SphericalKMeans(0), arg="num_clusters"),
    Case("SphericalKMeans init str", lambda: C.SphericalKMeans(2, init="random-ish"), arg="init"),
    Case("SphericalKMeans tol NaN", lambda: C.SphericalKMeans(2, tol=NAN), arg="tol"),
    Case("SphericalKMeans chunk 0", lambda: C.SphericalKMeans(2, chunk_size=0), arg="chunk_size"),
    Case("SphericalKMeans fit fewer rows", lambda: C.SphericalKMeans(5).fit(unit(3, 4)), arg="data|num_clusters"),
    Case("SphericalKMeans fit int", lambda: C.SphericalKMeans(2).fit(torch.ones(5, 4, dtype=torch.long)), arg="data"),
    Case("SphericalKMeans fit all NaN", lambda: C.SphericalKMeans(2).fit(torch.full((6, 4), NAN)), arg="data"),
    Case("SphericalKMeans predict before fit", lambda: C.SphericalKMeans(2).predict(unit(3, 4)),
         arg="fit", error=(RuntimeError, ValueError)),
    Case("SphericalKMeans predict wrong D", lambda: C.SphericalKMeans(2, seed=1).fit(unit(8, 4)).predict(unit(3, 5)),
         arg="data"),
    Case("SphericalKMeans two blobs", lambda: _two_blob_labels(), check=lambda r: r[0] != r[1] and len(set(r)) == 2),
    Case("finch metric", lambda: C.finch(unit(6, 4), metric="l1"), arg="metric"),
    Case("finch 1 row", lambda: C.finch(unit(1, 4)), check=lambda r: all(p.tolist() == [0] for p in r)),
    Case("finch NaN row", lambda: C.finch(torch.cat([unit(5, 4), torch.full((1, 4), NAN)])), arg="x"),
    Case("finch max_levels 0", lambda: C.finch(unit(6, 4), max_levels=0), arg="max_levels"),
    Case("cosine_threshold NaN", lambda: C.cosine_threshold_from_margin(NAN), arg="alpha"),
    Case("extract_instances threshold 2", lambda: C.extract_instances(unit(1, 5, 3), 2.0), arg="threshold"),
    Case("extract_instances min_size 0", lambda: C.extract_instances(unit(1, 5, 3), 0.5, min_size=0), arg="min_size"),
    Case("extract_instances lengths > N", lambda: C.extract_instances(unit(1, 5, 3), 0.5, lengths=torch.tensor([9])),
         arg="lengths"),
    Case("extract_instances identical points", lambda: C.extract_instances(unit(1, 3).expand(1, 5, 3), 0.5).ids,
         ref=lambda: torch.zeros(1, 5, dtype=torch.long)),
    Case("instance_proposals bandwidth inf", lambda: C.instance_proposals(unit(1, 5, 3), [INF], threshold=0.5),
         arg=r"bandwidths\[0\]"),
    Case("instance_proposals no bandwidths", lambda: C.instance_proposals(unit(1, 5, 3), [], threshold=0.5),
         arg="bandwidths"),
    Case("instance_proposals duplicate_iou 2", lambda: C.instance_proposals(unit(1, 5, 3), [0.5], threshold=0.5,
                                                                            duplicate_iou=2.0), arg="duplicate_iou"),
    # -- nn -----------------------------------------------------------------------------------
    Case("SegSortLoss concentration -1", lambda: N.SegSortLoss(concentration=-1.0), arg="concentration"),
    Case("SegSortLoss loss", lambda: N.SegSortLoss(loss="nce"), arg="loss"),
    Case("SegSortLoss labels shape", lambda: N.SegSortLoss(grid=2)(emb(), seg_labels()[:, :5]), arg="labels"),
    Case("SegSortLoss labels float", lambda: N.SegSortLoss(grid=2)(emb(), seg_labels().float()), arg="labels"),
    Case("SegSortLoss int embeddings", lambda: N.SegSortLoss(grid=2)(torch.ones(1, 4, 6, 6, dtype=torch.long),
                                                                     seg_labels()), arg="embeddings"),
    Case("SegSortLoss all ignored", lambda: N.SegSortLoss(grid=2)(emb(), torch.full((1, 6, 6), 255)),
         check=lambda r: r.shape == () and (r.item() == 0.0 or r.isnan().item())),
    Case("SegSortLoss finite", lambda: N.SegSortLoss(grid=2)(emb(), seg_labels()),
         check=lambda r: bool(torch.isfinite(r)) and r.item() > 0),
    Case("SegSortLoss meta labels", lambda: N.SegSortLoss(grid=2)(emb(), seg_labels().to("meta")), arg="labels"),
    Case("PrototypeMemory size 0", lambda: N.PrototypeMemory(0, 4), arg="size"),
    Case("PrototypeMemory dtype int", lambda: N.PrototypeMemory(4, 4, dtype=torch.int64), arg="dtype"),
    Case("PrototypeMemory size 10**7 x 10**7", lambda: N.PrototypeMemory(10**7, 10**7), arg="size"),
    Case("PrototypeMemory push wrong D", lambda: N.PrototypeMemory(4, 4).push(unit(2, 5), torch.zeros(2).long()),
         arg="prototypes"),
    Case("PrototypeMemory push labels float", lambda: N.PrototypeMemory(4, 4).push(unit(2, 4), torch.zeros(2)),
         arg="labels"),
    Case("PrototypeMemory push more than size", lambda: _memory_after_push(6).labels.tolist(),
         check=lambda r: sorted(r) == [2, 3, 4, 5]),
    Case("pairwise alpha NaN", lambda: N.pairwise_margin_loss(unit(6, 3), torch.arange(6) % 2, alpha=NAN), arg="alpha"),
    Case("pairwise ids shape", lambda: N.pairwise_margin_loss(unit(6, 3), torch.arange(5) % 2), arg="instance_ids"),
    Case("pairwise num_samples 0", lambda: N.pairwise_margin_loss(unit(6, 3), torch.arange(6) % 2, num_samples=0),
         arg="num_samples"),
    Case("pairwise reduction", lambda: N.pairwise_margin_loss(unit(6, 3), torch.arange(6) % 2,
                                                              iterate_reduction="max"), arg="iterate_reduction"),
    Case("soft_segmentation eps -1", lambda: N.soft_segmentation_loss(unit(1, 3, 4, 4, dim=1),
                                                                      seg_labels(1, 4, 4), eps=-1.0), arg="eps"),
    Case("soft_segmentation features eps NaN", lambda: N.soft_segmentation_features(
        torch.rand(1, 3, 4, 4), unit(1, 3, 4, 4, dim=1), radius=1, eps=NAN), arg="eps"),
    Case("picie_loss shapes", lambda: N.picie_loss(unit(1, 3, 4, 4, dim=1), unit(1, 3, 5, 4, dim=1), _picie()),
         arg="features_2"),
    Case("picie_loss weights length", lambda: N.picie_loss(unit(1, 3, 4, 4, dim=1), unit(1, 3, 4, 4, dim=1),
                                                           [_picie()], clustering_weights=[1.0, 2.0]),
         arg="clustering_weights"),
    Case("PiCIEClustering labels >= K", lambda: N.picie_loss(
        unit(1, 3, 4, 4, dim=1), unit(1, 3, 4, 4, dim=1), _picie(labels_shift=5)), arg=r"labels_1"),
    Case("cluster_balance_weights negative", lambda: N.cluster_balance_weights(torch.tensor([-1, 2])), arg="counts"),
    Case("cluster_balance_weights float", lambda: N.cluster_balance_weights(torch.tensor([1.5, 2.0])),
         ref=lambda: torch.tensor([1 / 1.5, 1 / 2.0]) / (7 / 12)),
]


def _add(rows):
    index = bank()
    index.add(rows, torch.zeros(rows.shape[0], dtype=torch.long))
    return index


def _torch_file(obj) -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="hostile_"), "other.pt")
    torch.save(obj, path)
    return path


def _two_blob_labels():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    data = torch.stack([a] * 5 + [b] * 5) + 0.01 * unit(10, 3, seed=4)
    labels = C.SphericalKMeans(2, seed=0).fit(data).predict(data).tolist()
    return labels[0], labels[5], *labels


def _memory_after_push(n, rows=None):
    memory = N.PrototypeMemory(4, 4)
    for i in range(n):
        memory.push(unit(1, 4, seed=i) if rows is None else rows, torch.tensor([i]))
    return memory


def _picie(labels_shift=0):
    labels = (torch.arange(16).view(1, 4, 4) % 2) + labels_shift
    return N.PiCIEClustering(unit(2, 3), unit(2, 3, seed=1), labels, labels)


def _empty_file() -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="hostile_"), "empty.pt")
    open(path, "wb").close()
    return path


def _search_ids(queries):
    return bank().search(queries, 3)[1]


CASES += [
    # -- requires_grad, views, dtypes, devices, batch mismatches --------------------------------
    Case("add requires_grad rows", lambda: _add(unit(2, 4).requires_grad_()).search(unit(2, 4), 1)[1],
         ref=lambda: torch.tensor([[12], [13]])),
    Case("search requires_grad queries", lambda: _search_ids(unit(3, 4, seed=7).requires_grad_()),
         ref=lambda: exact_knn(unit(3, 4, seed=7), unit(12, 4), 3)),
    Case("search expanded queries", lambda: _search_ids(unit(1, 4, seed=7).expand(3, 4)),
         ref=lambda: exact_knn(unit(1, 4, seed=7), unit(12, 4), 3).expand(3, 3)),
    Case("search half queries", lambda: _search_ids(unit(3, 4, seed=7).half()), arg="queries",
         ref=lambda: exact_knn(unit(3, 4, seed=7), unit(12, 4), 3)),
    Case("search meta queries", lambda: _search_ids(unit(3, 4).to("meta")), arg="queries"),
    Case("search -0.0 query", lambda: bank().search(torch.tensor([[-0.0, 0.0, -0.0, 0.0]]), 2)[0],
         check=lambda r: r.shape == (1, 2)),
    Case("load empty file", lambda: SegmentIndex.load(_empty_file()), arg="empty.pt|SegmentIndex"),
    Case("SegSortLoss batch mismatch", lambda: N.SegSortLoss(grid=2)(emb(B=2), seg_labels(B=1)), arg="labels"),
    Case("SegSortLoss labels int32", lambda: N.SegSortLoss(grid=2)(emb(), seg_labels().int()), arg="labels"),
    Case("SegSortLoss labels -7 ignored", lambda: N.SegSortLoss(grid=2, ignore_index=-7)(
        emb(), torch.where(seg_labels() == 0, -7, seg_labels())),
         ref=lambda: N.SegSortLoss(grid=2)(emb(), torch.where(seg_labels() == 0, 255, seg_labels()))),
    Case("SegSortLoss channels_last", lambda: N.SegSortLoss(grid=2)(
        emb(2).contiguous(memory_format=torch.channels_last), seg_labels(2)),
         ref=lambda: N.SegSortLoss(grid=2)(emb(2), seg_labels(2))),
    Case("SegSortLoss half embeddings", lambda: N.SegSortLoss(grid=2)(emb().half(), seg_labels()),
         check=lambda r: bool(torch.isfinite(r))),
    Case("SegSortLoss NaN pixel", lambda: N.SegSortLoss(grid=2)(emb().index_fill(2, torch.tensor([0]), NAN),
                                                                seg_labels()),
         check=lambda r: bool(r.isnan())),
    Case("SegSortLoss H=0", lambda: N.SegSortLoss(grid=1)(emb(H=0), seg_labels(H=0)),
         arg="embeddings|grid", check=lambda r: r.shape == ()),
    Case("SegSortLoss max_pixels 0", lambda: N.SegSortLoss(max_pixels_per_image=0), arg="max_pixels_per_image"),
    Case("SegSortLoss memory wrong type", lambda: N.SegSortLoss(memory="bank"), arg="memory"),
    Case("pairwise ids int32", lambda: N.pairwise_margin_loss(unit(6, 3), (torch.arange(6) % 2).int()),
         arg="instance_ids"),
    Case("pairwise int64 edge ids", lambda: N.pairwise_margin_loss(unit(6, 3), torch.arange(6) % 2 * I64),
         ref=lambda: N.pairwise_margin_loss(unit(6, 3), torch.arange(6) % 2)),
    Case("pairwise meta ids", lambda: N.pairwise_margin_loss(unit(6, 3), (torch.arange(6) % 2).to("meta")),
         arg="instance_ids"),
    Case("soft_segmentation batch mismatch", lambda: N.soft_segmentation_loss(unit(2, 3, 4, 4, dim=1),
                                                                              seg_labels(1, 4, 4)),
         arg="instance_ids"),
    Case("picie_loss batch mismatch", lambda: N.picie_loss(unit(2, 3, 4, 4, dim=1), unit(1, 3, 4, 4, dim=1),
                                                           _picie()), arg="features_2"),
    Case("PrototypeMemory push NaN", lambda: _memory_after_push(1, rows=torch.full((1, 4), NAN)).tensors()[0],
         arg="prototypes", check=lambda r: r.shape == (1, 4) and bool(r.isnan().all())),  # NaN reaches the losses
    Case("PrototypeMemory push meta", lambda: N.PrototypeMemory(4, 4).push(unit(1, 4).to("meta"),
                                                                           torch.zeros(1).long()), arg="prototypes"),
    Case("SphericalKMeans fit expanded", lambda: C.SphericalKMeans(2, seed=0).fit(
        torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat_interleave(4, 0)).predict(torch.tensor([[1.0, 0.1]])),
         check=lambda r: r.shape == (1,)),
    Case("SphericalKMeans fit numpy", lambda: C.SphericalKMeans(2).fit(unit(8, 4).numpy()).predict(unit(8, 4)),
         ref=lambda: C.SphericalKMeans(2).fit(unit(8, 4)).predict(unit(8, 4))),  # arrays are documented data
    Case("SphericalKMeans fit subnormal rows", lambda: C.SphericalKMeans(2).fit(torch.full((6, 4), 1e-45)).predict(
        torch.full((6, 4), 1e-45)), arg="data", check=lambda r: r.tolist() == [r[0].item()] * 6),
    Case("finch int64", lambda: C.finch(torch.ones(6, 4, dtype=torch.long)), arg="x"),
    Case("finch 0 rows", lambda: C.finch(unit(0, 4)), arg="x", check=lambda r: all(p.numel() == 0 for p in r)),
    Case("extract_instances NaN points", lambda: C.extract_instances(torch.full((1, 4, 3), NAN), 0.5).ids,
         ref=lambda: torch.full((1, 4), -1)),
    Case("extract_instances threshold NaN", lambda: C.extract_instances(unit(1, 5, 3), NAN), arg="threshold"),
]
