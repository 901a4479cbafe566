"""Hostile cases for segsort_ext.metrics, .transforms and .datasets."""
from __future__ import annotations

import itertools
import os
import tempfile

import numpy as np
import torch

import segsort_ext.datasets as D
import segsort_ext.metrics as M
import segsort_ext.transforms as T
from segsort_ext.testing import INF, NAN
from tests.hostile.catalogue import Case

AREA = "hostile"

I64 = 2**63 - 1
MiB = 2**20


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def labels(H=6, W=7, k=3, seed=1):
    return np.random.default_rng(seed).integers(0, k, (H, W))


def confusion_loops(pred, target, C, ignore=255):
    conf = np.zeros((C, C), dtype=np.int64)
    for p, t in zip(np.ravel(pred), np.ravel(target)):
        if t != ignore:
            conf[t, p] += 1
    return conf


def rand_index_pairs(a, b):
    """The Rand index by counting every pixel pair."""
    a, b = np.ravel(a), np.ravel(b)
    pairs = list(itertools.combinations(range(a.size), 2))
    return sum((a[i] == a[j]) == (b[i] == b[j]) for i, j in pairs) / len(pairs)


def covering_loops(seg, gt):
    """Covering of the ground-truth regions (labels >= 1) by seg, by loops over regions."""
    total = 0.0
    for r in np.unique(gt[gt > 0]):
        R = gt == r
        best = max(((R & (seg == s)).sum() / (R | (seg == s)).sum() for s in np.unique(seg)), default=0.0)
        total += R.sum() * best
    return total / gt.size


def scratch_file(name, data: bytes) -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="hostile_"), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def png_bytes(truncate=False):
    """A noise PNG of 8x8 pixels (incompressible: truncation cuts into its pixel data)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    return data[:len(data) // 2] if truncate else data


seg_a, seg_b = labels(4, 5, 3, 1), labels(4, 5, 4, 2)
far = seg_a * 10**12 - 5 * 10**11  # the same regions under huge and negative ids
gt1 = labels(4, 5, 3, 3) + 1
mem = 64 * MiB  # far above any honest need of these 4x5 inputs, far below a dense table

CASES = [
    # -- semantic metrics ------------------------------------------------------------------
    Case("confusion correct", lambda: M.confusion_matrix(seg_a, seg_b, 4),
         ref=lambda: confusion_loops(seg_a, seg_b, 4)),
    Case("confusion torch int32", lambda: M.confusion_matrix(torch.tensor(seg_a).int(), torch.tensor(seg_b), 4),
         ref=lambda: confusion_loops(seg_a, seg_b, 4)),
    Case("confusion float pred", lambda: M.confusion_matrix(seg_a.astype(float), seg_b, 4), arg="pred"),
    Case("confusion bool target", lambda: M.confusion_matrix(seg_a, seg_b > 1, 4), arg="target",
         ref=lambda: confusion_loops(seg_a, (seg_b > 1).astype(int), 4)),
    Case("confusion shape", lambda: M.confusion_matrix(seg_a, seg_b[:3], 4), arg="pred|target"),
    Case("confusion pred >= C", lambda: M.confusion_matrix(seg_a + 5, seg_b, 4), arg="pred"),
    Case("confusion target -3", lambda: M.confusion_matrix(seg_a, seg_b - 3, 4), arg="target"),
    Case("confusion C 2**40", lambda: M.confusion_matrix(seg_a, seg_b, 2**40), arg="num_classes", max_bytes=mem),
    Case("confusion C 0", lambda: M.confusion_matrix(seg_a, seg_b, 0), arg="num_classes"),
    Case("confusion C str", lambda: M.confusion_matrix(seg_a, seg_b, "4"), arg="num_classes"),
    Case("confusion empty", lambda: M.confusion_matrix(np.zeros((0, 5), int), np.zeros((0, 5), int), 2),
         ref=lambda: np.zeros((2, 2), np.int64)),
    Case("confusion list input", lambda: M.confusion_matrix(seg_a.tolist(), seg_b.tolist(), 4),
         arg="pred", ref=lambda: confusion_loops(seg_a, seg_b, 4)),
    Case("confusion None", lambda: M.confusion_matrix(None, seg_b, 4), arg="pred"),
    Case("ConfusionMatrix 2**62", lambda: M.ConfusionMatrix(2**62), arg="num_classes", max_bytes=mem),
    Case("ConfusionMatrix update other shape", lambda: M.ConfusionMatrix(4).update(seg_a, seg_b[:, :2]),
         arg="pred|target"),
    Case("mean_iou conf not square", lambda: M.mean_iou(np.ones((3, 4))), arg="conf"),
    Case("mean_iou conf negative", lambda: M.mean_iou(-np.ones((3, 3))), arg="conf"),
    Case("mean_iou conf NaN", lambda: M.mean_iou(np.full((2, 2), NAN)), arg="conf"),
    Case("mean_iou value", lambda: M.mean_iou(np.array([[3, 1], [0, 2]]))["mean_iou"], ref=lambda: (3 / 4 + 2 / 3) / 2),
    Case("hungarian clusters > classes", lambda: M.hungarian_match(seg_b, seg_a, 4, 3)["pixel_accuracy"],
         check=lambda r: 0.0 <= r <= 1.0),
    Case("hungarian pred >= clusters", lambda: M.hungarian_match(seg_b + 9, seg_a, 4, 3), arg="pred|num_clusters"),
    Case("hungarian C huge", lambda: M.hungarian_match(seg_b, seg_a, 4, 2**40), arg="num_classes", max_bytes=mem),
    # -- region metrics: arbitrary ids, bounded memory ---------------------------------------
    Case("covering huge ids", lambda: M.segmentation_covering(far - far.min() + 1, [gt1]),
         ref=lambda: covering_loops(seg_a, gt1), max_bytes=mem),
    Case("covering correct", lambda: M.segmentation_covering(seg_a + 1, [gt1]),
         ref=lambda: covering_loops(seg_a, gt1)),
    Case("covering float seg", lambda: M.segmentation_covering(seg_a + 0.5, [gt1]), arg="seg"),
    Case("covering no gt", lambda: M.segmentation_covering(seg_a, []), arg="gt_segmentations"),
    Case("covering gt shape", lambda: M.segmentation_covering(seg_a, [gt1[:2]]), arg="gt_segmentations|seg"),
    Case("rand huge negative ids", lambda: M.rand_index_voi(far, [seg_b])["pri"],
         ref=lambda: rand_index_pairs(seg_a, seg_b), max_bytes=mem),
    Case("rand int64 extremes", lambda: M.rand_index_voi(np.where(seg_a == 0, -(2**63), np.where(seg_a == 1, I64, 0)),
                                                         [seg_b])["pri"],
         ref=lambda: rand_index_pairs(seg_a, seg_b), max_bytes=mem),
    Case("rand uint64 ids", lambda: M.rand_index_voi(seg_a.astype(np.uint64) + np.uint64(2**63), [seg_b])["pri"],
         arg="seg", ref=lambda: rand_index_pairs(seg_a, seg_b), max_bytes=mem),
    Case("rand 1 pixel", lambda: M.rand_index_voi(np.zeros((1, 1), int), [np.zeros((1, 1), int)])["pri"],
         check=lambda r: np.isnan(r)),
    Case("rand bool seg", lambda: M.rand_index_voi(seg_a > 0, [seg_b])["pri"], arg="seg",
         ref=lambda: rand_index_pairs(seg_a > 0, seg_b)),
    Case("region_benchmark huge ids", lambda: M.region_benchmark([[far - far.min() + 1]], [[gt1]])["covering_ods"],
         ref=lambda: covering_loops(seg_a, gt1), max_bytes=mem),
    Case("region_benchmark empty", lambda: M.region_benchmark([], []), arg="candidates"),
    Case("regions_from_ucm2 NaN", lambda: M.regions_from_ucm2(np.full((9, 11), NAN), 0.5), arg="ucm2"),
    Case("regions_from_ucm2 odd shape", lambda: M.regions_from_ucm2(np.zeros((8, 11)), 0.5), arg="ucm2"),
    # -- boundary metrics ------------------------------------------------------------------
    Case("boundary_f1 max_dist NaN", lambda: M.boundary_f1(seg_a > 1, [seg_b > 1], max_dist=NAN), arg="max_dist"),
    Case("boundary_f1 max_dist inf", lambda: M.boundary_f1(seg_a > 1, [seg_b > 1], max_dist=INF), arg="max_dist"),
    Case("boundary_f1 identical", lambda: M.boundary_f1(np.eye(6, dtype=bool), [np.eye(6, dtype=bool)]),
         ref=lambda: 1.0),
    Case("boundary_f1 NaN map", lambda: M.boundary_f1(np.full((4, 5), NAN), [seg_b > 1]), arg="bmap"),
    Case("boundary_pr empty gt list", lambda: M.boundary_pr(seg_a > 1, []), arg="gt_boundaries"),
    Case("thin_boundaries float", lambda: M.thin_boundaries(np.full((4, 4), 0.5)), arg="bmap",
         check=lambda r: r.shape == (4, 4)),
    Case("seg2bdry fmt", lambda: M.seg2bdry(seg_a, fmt="other"), arg="fmt"),
    Case("thresholds_for nthresh 0", lambda: M.thresholds_for("pb", 0), arg="nthresh"),
    Case("thresholds_for nthresh 2**40", lambda: M.thresholds_for("pb", 2**40), arg="nthresh", max_bytes=mem),
    Case("semantic_boundary_counts max_dist -1", lambda: M.semantic_boundary_counts(seg_a, seg_b, 4, max_dist=-1.0),
         arg="max_dist"),
    # -- instance metrics ------------------------------------------------------------------
    Case("instance_ious identical", lambda: M.instance_ious(seg_a, seg_a + 1, background=None, ignore_index=None),
         check=lambda r: np.allclose(np.diag(r), 1.0)),
    Case("instance_ious huge ids", lambda: M.instance_ious(seg_a * 10**15, seg_a + 1, background=None,
                                                           ignore_index=None),
         check=lambda r: np.allclose(np.diag(r), 1.0), max_bytes=mem),
    Case("instance_ious float map", lambda: M.instance_ious(seg_a + 0.5, seg_a), arg="proposals"),
    Case("InstanceEvaluator iou 2", lambda: M.InstanceEvaluator(iou_thresholds=[2.0]), arg="iou_thresholds"),
    Case("average_recall lengths", lambda: M.average_recall([seg_a], [seg_a, seg_a]), arg="proposals|gts"),
    # -- transforms --------------------------------------------------------------------------
    Case("crop_or_pad bool", lambda: T.crop_or_pad(torch.ones(2, 3, dtype=torch.bool), (3, 4), False),
         ref=lambda: torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)),
    Case("crop_or_pad fill 300 uint8", lambda: T.crop_or_pad(torch.ones(2, 3, dtype=torch.uint8), (3, 4), 300),
         arg="fill"),
    Case("crop_or_pad size 10**6", lambda: T.crop_or_pad(torch.ones(3, 2, 3), 10**6, 0.0), arg="size"),
    Case("crop_or_pad 1-d", lambda: T.crop_or_pad(torch.ones(3), (1, 1), 0.0), arg="x"),
    Case("crop_or_pad expanded", lambda: T.crop_or_pad(torch.arange(3.0).expand(2, 3), (1, 2), 0.0),
         ref=lambda: torch.tensor([[0.0, 1.0]])),
    Case("random_crop float label = image[0]", lambda: T.random_crop(rand(3, 4, 4), rand(4, 4), (2, 2)),
         check=lambda r: torch.equal(r[0][0], r[1]) and r[1].shape == (2, 2)),
    Case("random_crop mismatch", lambda: T.random_crop(rand(3, 4, 4), torch.zeros(4, 5, dtype=torch.long), (2, 2)),
         arg="label|image"),
    Case("random_hflip p NaN", lambda: T.random_hflip(rand(3, 4, 4), torch.zeros(4, 4, dtype=torch.long), p=NAN),
         arg="p"),
    Case("random_hflip p 1", lambda: T.random_hflip(rand(3, 4, 4), torch.arange(16).view(4, 4), p=1.0)[1],
         ref=lambda: torch.arange(16).view(4, 4).flip(-1)),
    Case("random_scale 1e9", lambda: T.random_scale(rand(3, 4, 4), torch.zeros(4, 4, dtype=torch.long),
                                                    scale_range=(1e9, 1e9)), arg="scale_range"),
    Case("random_scale 0", lambda: T.random_scale(rand(3, 4, 4), torch.zeros(4, 4, dtype=torch.long),
                                                  scale_range=(0.0, 1.0)), arg="scale_range"),
    Case("color_jitter brightness NaN", lambda: T.color_jitter(rand(3, 4, 4), brightness=NAN), arg="brightness"),
    Case("color_jitter hue 1", lambda: T.color_jitter(rand(3, 4, 4), hue=1.0), arg="hue"),
    Case("color_jitter uint8", lambda: T.color_jitter(torch.zeros(3, 4, 4, dtype=torch.uint8), brightness=0.2),
         arg="image"),
    Case("sample_geometry batch -1", lambda: T.sample_geometry(-1, (8, 8)), arg="batch_size"),
    Case("sample_geometry batch 2**62", lambda: T.sample_geometry(2**62, (8, 8)), arg="batch_size"),
    Case("sample_geometry scale > 1", lambda: T.sample_geometry(2, (8, 8), scale=(0.5, 2.0)), arg="scale"),
    Case("apply_geometry batch mismatch", lambda: T.apply_geometry(rand(3, 1, 8, 8), T.identity_geometry(2, (8, 8))),
         arg="batch|geometry"),
    Case("apply_geometry identity", lambda: T.apply_geometry(rand(2, 1, 8, 8), T.identity_geometry(2, (8, 8))),
         ref=lambda: rand(2, 1, 8, 8)),
    Case("sample_photometric NaN", lambda: T.sample_photometric(2, contrast=NAN), arg="contrast"),
    Case("box_filter radius -1", lambda: T.box_filter(rand(1, 1, 4, 4), -1), arg="radius"),
    Case("box_filter radius 2**40", lambda: T.box_filter(rand(1, 1, 4, 4), 2**40), arg="radius",
         ref=lambda: rand(1, 1, 4, 4).mean().expand(1, 1, 4, 4)),
    Case("guided_filter eps NaN", lambda: T.guided_filter(rand(1, 3, 4, 4), rand(1, 2, 4, 4), 1, NAN), arg="eps"),
    Case("guided_filter size mismatch", lambda: T.guided_filter(rand(1, 3, 4, 4), rand(1, 2, 5, 4), 1, 0.1),
         arg="features|guide_image"),
    Case("pca_project dims 0", lambda: T.pca_project(rand(1, 4, 3, 3), 0), arg="dims"),
    Case("pca_project NaN", lambda: T.pca_project(torch.full((1, 4, 3, 3), NAN), 3), arg="features",
         check=lambda r: bool(r.isnan().all())),
    Case("rescale_to_unit eps -1", lambda: T.rescale_to_unit(rand(1, 3, 4, 4), eps=-1.0), arg="eps"),
    Case("triangle_blur radius -2", lambda: T.triangle_blur(rand(1, 3, 4, 4), -2), arg="radius"),
    Case("edge_nms radius NaN", lambda: T.edge_nms(rand(8, 8), radius=NAN), arg="radius"),
    Case("edge_nms tolerance -1", lambda: T.edge_nms(rand(8, 8), tolerance=-1.0), arg="tolerance"),
    Case("ucm_to_labels both", lambda: T.ucm_to_labels(np.zeros((9, 11)), 0.5, num_segments=3), arg="threshold|num"),
    Case("ucm_to_labels NaN", lambda: T.ucm_to_labels(np.full((9, 11), NAN), 0.5), arg="ucm2"),
    Case("contour_ucm NaN", lambda: T.contour_ucm(np.full((6, 6), NAN)), arg="contours"),
    Case("slic n_segments 0", lambda: T.slic_segments(rand(3, 8, 8), 0), arg="n_segments"),
    Case("felzenszwalb scale NaN", lambda: T.felzenszwalb_segments(rand(3, 8, 8), scale=NAN), arg="scale"),
    Case("pseudo_segments method", lambda: T.pseudo_segments(rand(1, 3, 8, 8), "kmeans"), arg="method"),
    Case("RandomCropFlip size 0", lambda: T.RandomCropFlip((0, 4)), arg="size"),
    Case("TrainAugmentation flip 2", lambda: T.TrainAugmentation((4, 4), flip_prob=2.0), arg="flip_prob"),
    # -- datasets ----------------------------------------------------------------------------
    Case("read_image empty file", lambda: D.read_image(scratch_file("e.png", b"")), arg="e.png"),
    Case("read_image garbage", lambda: D.read_image(scratch_file("g.jpg", os.urandom(64))), arg="g.jpg"),
    Case("read_image truncated", lambda: D.read_image(scratch_file("t.png", png_bytes(truncate=True))), arg="t.png"),
    Case("read_image missing", lambda: D.read_image("/nonexistent/x.png"), arg="x.png",
         error=(FileNotFoundError, ValueError)),
    Case("read_image ok", lambda: D.read_image(scratch_file("ok.png", png_bytes())).shape, ref=lambda: (3, 8, 8)),
    Case("read_label truncated", lambda: D.read_label(scratch_file("l.png", png_bytes(truncate=True))), arg="l.png"),
    Case("read_sbd_label garbage", lambda: D.read_sbd_label(scratch_file("s.mat", b"MATLAB 5.0" + os.urandom(200))),
         arg="s.mat"),
    Case("bsds gt garbage", lambda: D.load_bsds_ground_truth(scratch_file("b.mat", os.urandom(300))), arg="b.mat"),
    Case("bsds gt empty", lambda: D.load_bsds_ground_truth(scratch_file("b0.mat", b"")), arg="b0.mat"),
    Case("BSDS500 missing root", lambda: D.BSDS500("/nonexistent/bsds"), arg="root|bsds",
         error=(FileNotFoundError, ValueError)),
    Case("BSDS500 split", lambda: D.BSDS500(tempfile.mkdtemp(), split="dev"), arg="split|dev",
         error=(FileNotFoundError, ValueError)),
    Case("ImageFolder empty dir", lambda: D.ImageFolderSegmentation(tempfile.mkdtemp()), arg="image_dir|no image in",
         error=(FileNotFoundError, ValueError)),
    Case("ImageFolder label_map negative", lambda: D.ImageFolderSegmentation(
        os.path.dirname(scratch_file("a.png", png_bytes())), label_map=[-5]).label_map(torch.tensor([[0, 1]])),
         ref=lambda: torch.tensor([[-5, 255]])),  # ids are any int64 (a negative one is ignored downstream)
    Case("ImageFolder label_map 2**63", lambda: D.ImageFolderSegmentation(
        os.path.dirname(scratch_file("a.png", png_bytes())), label_map=[2**63]), arg="label_map"),
    Case("ImageFolder label_map uint64", lambda: D.ImageFolderSegmentation(
        os.path.dirname(scratch_file("a.png", png_bytes())), label_map=np.array([2**64 - 1], np.uint64)),
         arg="label_map"),
    Case("ImageFolder label_map float", lambda: D.ImageFolderSegmentation(
        os.path.dirname(scratch_file("a.png", png_bytes())), label_map={1.5: 2}), arg="label_map"),
    Case("ImageFolder truncated image", lambda: D.ImageFolderSegmentation(
        os.path.dirname(scratch_file("a.png", png_bytes(truncate=True))))[0], arg="a.png"),
    Case("VOC missing root", lambda: D.VOCSegmentation("/nonexistent/voc"), arg="root|voc",
         error=(FileNotFoundError, ValueError)),
    Case("VOC target", lambda: D.VOCSegmentation(tempfile.mkdtemp(), target="depth"), arg="target",
         error=(FileNotFoundError, ValueError)),
    Case("TextureMosaics num_images -1", lambda: D.TextureMosaics("train", -1), arg="num_images"),
    Case("TextureMosaics regions", lambda: D.TextureMosaics("train", 2, regions=(5, 2)), arg="regions"),
    Case("DigitScenes digits 0", lambda: D.DigitScenes("train", 2, digits=(0, 0)), arg="digits"),
    Case("collate int32 label", lambda: D.collate([(rand(3, 2, 2), torch.ones(2, 2, dtype=torch.int32), "a")])[1],
         ref=lambda: torch.ones(1, 2, 2, dtype=torch.long)),
    Case("collate bool label", lambda: D.collate([(rand(3, 2, 2), torch.ones(2, 2, dtype=torch.bool), "a")])[1],
         ref=lambda: torch.ones(1, 2, 2, dtype=torch.long)),
    Case("collate size 10**8", lambda: D.collate([(rand(3, 2, 2), torch.ones(2, 2, dtype=torch.long), "a")],
                                                 size=10**8), arg="size"),
    Case("collate ignore_index 2**70", lambda: D.collate([(rand(3, 2, 2), torch.ones(2, 2, dtype=torch.long), "a")],
                                                         size=3, ignore_index=2**70), arg="ignore_index"),
    Case("collate None", lambda: D.collate(None), arg="batch must be a sequence"),
    Case("collate generator", lambda: D.collate(iter([])), arg="batch must be a sequence"),
]


def _bsds_mat(variables) -> str:
    from scipy.io import savemat

    path = os.path.join(tempfile.mkdtemp(prefix="hostile_"), "gt.mat")
    savemat(path, variables)
    return path


CASES += [
    Case("confusion meta tensor", lambda: M.confusion_matrix(torch.zeros(2, 2, dtype=torch.long, device="meta"),
                                                             torch.zeros(2, 2, dtype=torch.long), 2),
         arg="pred is on the meta device"),
    Case("confusion int8 -0", lambda: M.confusion_matrix(seg_a.astype(np.int8), seg_b.astype(np.uint8), 4),
         ref=lambda: confusion_loops(seg_a, seg_b, 4)),
    Case("confusion ignore_index None keeps 255", lambda: M.confusion_matrix(seg_a, np.full_like(seg_a, 255), 4,
                                                                             ignore_index=None), arg="target"),
    Case("covering -0.0 float gt", lambda: M.segmentation_covering(seg_a + 1, [np.full((4, 5), -0.0)]),
         arg="gt_segmentations"),
    Case("rand channels-last torch", lambda: M.rand_index_voi(torch.tensor(seg_a).t().contiguous().t(), [seg_b])["pri"],
         ref=lambda: rand_index_pairs(seg_a, seg_b)),
    Case("boundary_f1 transposed", lambda: M.boundary_f1(np.eye(6, dtype=bool).T, [np.eye(6, dtype=bool)]),
         ref=lambda: 1.0),
    Case("bsds gt without groundTruth", lambda: D.load_bsds_ground_truth(_bsds_mat({"other": np.zeros(3)})),
         arg="gt.mat|groundTruth"),
    Case("bsds gt wrong structure", lambda: D.load_bsds_ground_truth(_bsds_mat({"groundTruth": np.zeros(3)})),
         arg="gt.mat|groundTruth"),
    Case("crop_or_pad channels_last", lambda: T.crop_or_pad(
        rand(1, 3, 2, 2).contiguous(memory_format=torch.channels_last), (3, 3), 0.0)[..., :2, :2],
         ref=lambda: rand(1, 3, 2, 2)),
    Case("crop_or_pad zero size input", lambda: T.crop_or_pad(torch.ones(3, 0, 0), (2, 2), 5.0),
         ref=lambda: torch.full((3, 2, 2), 5.0)),
    Case("color_jitter requires_grad", lambda: T.color_jitter(rand(3, 4, 4).requires_grad_(), brightness=0.0),
         ref=lambda: rand(3, 4, 4)),
    Case("color_jitter half", lambda: T.color_jitter(rand(3, 4, 4).half()).dtype, arg="image",
         ref=lambda: torch.float16),
    Case("apply_photometric batch mismatch", lambda: T.apply_photometric(rand(3, 3, 4, 4), T.sample_photometric(2)),
         arg="images|photometric"),
    Case("guided_filter radius 2**40", lambda: T.guided_filter(rand(1, 3, 4, 4), rand(1, 2, 4, 4), 2**40, 0.1),
         arg="radius", check=lambda r: r.shape == (1, 2, 4, 4) and bool(torch.isfinite(r).all())),
    Case("edge_nms 1x1", lambda: T.edge_nms(rand(1, 1)), arg="edges", check=lambda r: r.shape == (1, 1)),
    Case("edge_strength int image", lambda: T.edge_strength(torch.ones(3, 4, 4, dtype=torch.long)), arg="image"),
    Case("ucm_to_labels num_segments 0", lambda: T.ucm_to_labels(np.zeros((9, 11)), num_segments=0),
         arg="num_segments"),
    Case("read_label a directory", lambda: D.read_label(tempfile.mkdtemp()), arg="tmp",
         error=(IsADirectoryError, ValueError, OSError)),
    Case("read_image int path", lambda: D.read_image(3), arg="path"),
]
