"""Bad-input cases of segsort_ext.metrics: every public function and class with wrong types, shapes
and dtypes, ids at the int32/int64 edges, NaN/inf, empty and huge inputs. A refused input raises
exactly the expected error type, with a message naming the argument. Nothing here allocates much:
huge ids sit on tiny images, huge sizes are refused before any allocation. Formerly the table of
tests/metrics/test_bad_inputs.py."""

import math
import re

import numpy as np
import torch

import segsort_ext.metrics as M
from tests.hostile.catalogue import Case

AREA = "metrics"
INT64_MAX = 2**63 - 1
LABELS = np.array([[0, 0, 1], [1, 2, 2]])  # a 2x3 class map
FLOATS = LABELS.astype(np.float64)
BANDS = np.repeat(np.array([0] * 5 + [1] * 5)[:, None], 10, axis=1)  # 10x10, two classes
SEG = np.arange(1, 65).reshape(8, 8) // 9 + 1  # 8x8 region map, ids 1..8
GT = np.repeat(np.array([1, 1, 2, 2, 3, 3, 4, 4])[:, None], 8, axis=1)
BMAP = np.zeros((8, 8), bool)
BMAP[4] = True
UCM2 = np.zeros((17, 17))
UCM2[8] = 0.5
NAN_BMAP = np.where(BMAP, np.nan, 0.0)
COUNTS = {"thresholds": [0.5], "cnt_recall": [1.0], "sum_recall": [2.0], "cnt_precision": [1.0], "sum_precision": [2.0]}
REGION_COUNTS = {**COUNTS, "pri": [0.5], "voi": [1.0], "cnt_recall_best": 1.0}


def _evaluator_update(**options):
    return lambda: M.InstanceEvaluator().update(GT, GT, **options)


REFUSED = [
    # --- semantic: class maps, class counts, confusion matrices ------------------------------
    Case("confusion_matrix float pred", lambda: M.confusion_matrix(FLOATS, LABELS, 3), error=TypeError, arg="pred"),
    Case("confusion_matrix float target", lambda: M.confusion_matrix(LABELS, FLOATS, 3), error=TypeError, arg="target"),
    Case(
        "confusion_matrix torch float",
        lambda: M.confusion_matrix(torch.zeros(2, 3), torch.zeros(2, 3).long(), 3),
        error=TypeError,
        arg="pred",
    ),
    Case("confusion_matrix complex", lambda: M.confusion_matrix(LABELS + 0j, LABELS, 3), error=TypeError, arg="pred"),
    Case(
        "confusion_matrix strings",
        lambda: M.confusion_matrix(np.array(["a"]), np.array([0]), 3),
        error=TypeError,
        arg="pred",
    ),
    Case("confusion_matrix ragged", lambda: M.confusion_matrix([[0], [0, 1]], LABELS, 3), error=TypeError, arg="pred"),
    Case(
        "confusion_matrix shapes", lambda: M.confusion_matrix(LABELS, LABELS.T, 3), error=ValueError, arg="pred shape"
    ),
    Case(
        "confusion_matrix num_classes 0",
        lambda: M.confusion_matrix(LABELS, LABELS, 0),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "confusion_matrix num_classes -1",
        lambda: M.confusion_matrix(LABELS, LABELS, -1),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "confusion_matrix num_classes 2**40",
        lambda: M.confusion_matrix(LABELS, LABELS, 2**40),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "confusion_matrix num_classes int64 max",
        lambda: M.confusion_matrix(LABELS, LABELS, INT64_MAX),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "confusion_matrix num_classes float",
        lambda: M.confusion_matrix(LABELS, LABELS, 3.0),
        error=TypeError,
        arg="num_classes",
    ),
    Case(
        "confusion_matrix num_classes bool",
        lambda: M.confusion_matrix(LABELS, LABELS, True),
        error=TypeError,
        arg="num_classes",
    ),
    Case(
        "confusion_matrix pred 2**31",
        lambda: M.confusion_matrix(LABELS * 2**31, LABELS, 3),
        error=ValueError,
        arg="pred",
    ),
    Case("confusion_matrix pred -1", lambda: M.confusion_matrix(LABELS - 1, LABELS, 3), error=ValueError, arg="pred"),
    Case(
        "confusion_matrix target int64 max",
        lambda: M.confusion_matrix(LABELS, np.full((2, 3), INT64_MAX), 3),
        error=ValueError,
        arg="target",
    ),
    Case(
        "confusion_matrix uint64 beyond int64",
        lambda: M.confusion_matrix(np.full(2, 2**63, np.uint64), [0, 0], 3),
        error=ValueError,
        arg="pred",
    ),
    Case(
        "confusion_matrix ignore_index float",
        lambda: M.confusion_matrix(LABELS, LABELS, 3, ignore_index=255.0),
        error=TypeError,
        arg="ignore_index",
    ),
    Case("mean_iou conf NaN", lambda: M.mean_iou(np.array([[1.0, np.nan], [0.0, 1.0]])), error=ValueError, arg="conf"),
    Case("mean_iou conf inf", lambda: M.mean_iou(np.array([[1.0, np.inf], [0.0, 1.0]])), error=ValueError, arg="conf"),
    Case("mean_iou conf negative", lambda: M.mean_iou(np.array([[1, -1], [0, 1]])), error=ValueError, arg="conf"),
    Case("mean_iou conf fractional", lambda: M.mean_iou(np.array([[1.5, 0], [0, 1]])), error=ValueError, arg="conf"),
    Case("mean_iou conf not square", lambda: M.mean_iou(np.ones((2, 3))), error=ValueError, arg="conf"),
    Case("mean_iou without num_classes", lambda: M.mean_iou(LABELS, LABELS), error=ValueError, arg="num_classes"),
    Case("ConfusionMatrix(-1)", lambda: M.ConfusionMatrix(-1), error=ValueError, arg="num_classes"),
    Case("ConfusionMatrix(0)", lambda: M.ConfusionMatrix(0), error=ValueError, arg="num_classes"),
    Case("ConfusionMatrix(2**40)", lambda: M.ConfusionMatrix(2**40), error=ValueError, arg="num_classes"),
    Case("ConfusionMatrix(2**14 + 1)", lambda: M.ConfusionMatrix(2**14 + 1), error=ValueError, arg="num_classes"),
    Case("ConfusionMatrix(2.5)", lambda: M.ConfusionMatrix(2.5), error=TypeError, arg="num_classes"),
    Case(
        "ConfusionMatrix ignore_index str",
        lambda: M.ConfusionMatrix(3, ignore_index="255"),
        error=TypeError,
        arg="ignore_index",
    ),
    Case(
        "ConfusionMatrix.update float", lambda: M.ConfusionMatrix(3).update(FLOATS, LABELS), error=TypeError, arg="pred"
    ),
    Case(
        "hungarian_match num_clusters 0",
        lambda: M.hungarian_match(LABELS, LABELS, 0, 3),
        error=ValueError,
        arg="num_clusters",
    ),
    Case(
        "hungarian_match num_clusters 2**31",
        lambda: M.hungarian_match(LABELS, LABELS, 2**31, 3),
        error=ValueError,
        arg="num_clusters",
    ),
    Case(
        "hungarian_match num_classes 2**63-1",
        lambda: M.hungarian_match(LABELS, LABELS, 3, INT64_MAX),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "hungarian_match pred 2**40",
        lambda: M.hungarian_match(LABELS * 2**40, LABELS, 3, 3),
        error=ValueError,
        arg="pred",
    ),
    Case(
        "hungarian_match float target", lambda: M.hungarian_match(LABELS, FLOATS, 3, 3), error=TypeError, arg="target"
    ),
    Case(
        "semantic_boundary_counts float",
        lambda: M.semantic_boundary_counts(BANDS * 1.0, BANDS, 2),
        error=TypeError,
        arg="pred",
    ),
    Case(
        "semantic_boundary_counts 4-D",
        lambda: M.semantic_boundary_counts(BANDS[None, None], BANDS[None, None], 2),
        error=ValueError,
        arg="pred",
    ),
    Case(
        "semantic_boundary_counts num_classes 2**40",
        lambda: M.semantic_boundary_counts(BANDS, BANDS, 2**40),
        error=ValueError,
        arg="num_classes",
    ),
    Case(
        "semantic_boundary_counts target 2**31",
        lambda: M.semantic_boundary_counts(BANDS, BANDS * 2**31, 2),
        error=ValueError,
        arg="target",
    ),
    *[
        Case(
            f"SemanticBoundaryF max_dist {v}",
            lambda v=v: M.SemanticBoundaryF(2, max_dist=v),
            error=ValueError,
            arg="max_dist",
        )
        for v in (-0.01, 0.0, 1.0, 2.0, math.nan, math.inf)
    ],
    Case(
        "SemanticBoundaryF max_dist str",
        lambda: M.SemanticBoundaryF(2, max_dist="0.01"),
        error=TypeError,
        arg="max_dist",
    ),
    Case(
        "semantic_boundary_f NaN max_dist",
        lambda: M.semantic_boundary_f([BANDS], [BANDS], 2, max_dist=math.nan),
        error=ValueError,
        arg="max_dist",
    ),
    # --- boundary primitives ---------------------------------------------------------------------
    Case("thin_boundaries NaN", lambda: M.thin_boundaries(NAN_BMAP), error=ValueError, arg="bmap"),
    Case("thin_boundaries 3-D", lambda: M.thin_boundaries(BMAP[None]), error=ValueError, arg="bmap"),
    Case("thin_boundaries complex", lambda: M.thin_boundaries(BMAP + 0j), error=TypeError, arg="bmap"),
    Case("thin_boundaries max_iter -1", lambda: M.thin_boundaries(BMAP, max_iter=-1), error=ValueError, arg="max_iter"),
    Case(
        "thin_boundaries max_iter float", lambda: M.thin_boundaries(BMAP, max_iter=1.5), error=TypeError, arg="max_iter"
    ),
    Case("seg2bdry NaN", lambda: M.seg2bdry(np.where(SEG > 4, np.nan, 1.0)), error=ValueError, arg="seg"),
    Case("seg2bdry empty", lambda: M.seg2bdry(np.zeros((0, 4), int)), error=ValueError, arg="seg"),
    Case("seg2bdry 1-D", lambda: M.seg2bdry(np.zeros(4, int)), error=ValueError, arg="seg"),
    Case("seg2bdry fmt", lambda: M.seg2bdry(SEG, "halfSize"), error=ValueError, arg="fmt"),
    *[
        Case(
            f"correspond_pixels max_dist {v}",
            lambda v=v: M.correspond_pixels(BMAP, BMAP, v),
            error=ValueError,
            arg="max_dist",
        )
        for v in (-0.01, 0.0, math.nan, math.inf, 1.5)
    ],
    *[
        Case(
            f"correspond_pixels outlier_cost {v}",
            lambda v=v: M.correspond_pixels(BMAP, BMAP, outlier_cost=v),
            error=ValueError,
            arg="outlier_cost",
        )
        for v in (0.0, -1.0, math.nan)
    ],
    Case(
        "correspond_pixels outlier_graph",
        lambda: M.correspond_pixels(BMAP, BMAP, outlier_graph="random"),
        error=ValueError,
        arg="outlier_graph",
    ),
    Case(
        "correspond_pixels seed -1",
        lambda: M.correspond_pixels(BMAP, BMAP, outlier_graph="official", seed=-1),
        error=TypeError,
        arg="seed",
    ),
    Case(
        "correspond_pixels seed float", lambda: M.correspond_pixels(BMAP, BMAP, seed=0.5), error=TypeError, arg="seed"
    ),
    Case("correspond_pixels shapes", lambda: M.correspond_pixels(BMAP, BMAP[:4]), error=ValueError, arg="bmap1"),
    Case("correspond_pixels NaN bmap2", lambda: M.correspond_pixels(BMAP, NAN_BMAP), error=ValueError, arg="bmap2"),
    Case(
        "correspond_pixels dense maps, huge max_dist",
        lambda: M.correspond_pixels(np.ones((1, 4000), bool), np.ones((1, 4000), bool), 0.9),
        error=ValueError,
        arg="max_dist",
    ),
    Case("boundary_pr no annotation", lambda: M.boundary_pr(BMAP, []), error=ValueError, arg="gt_boundaries"),
    Case(
        "boundary_pr annotation shape", lambda: M.boundary_pr(BMAP, [BMAP[:4]]), error=ValueError, arg="gt_boundaries"
    ),
    Case("boundary_pr NaN annotation", lambda: M.boundary_pr(BMAP, [NAN_BMAP]), error=ValueError, arg="gt_boundaries"),
    Case(
        "boundary_pr dict without key",
        lambda: M.boundary_pr(BMAP, [{"segmentation": SEG}]),
        error=ValueError,
        arg="gt_boundaries",
    ),
    Case("boundary_pr annotation not a map", lambda: M.boundary_pr(BMAP, 5), error=TypeError, arg="gt_boundaries"),
    Case(
        "boundary_pr NaN max_dist",
        lambda: M.boundary_pr(BMAP, [BMAP], max_dist=math.nan),
        error=ValueError,
        arg="max_dist",
    ),
    Case(
        "boundary_f1 negative max_dist",
        lambda: M.boundary_f1(BMAP, [BMAP], max_dist=-1.0),
        error=ValueError,
        arg="max_dist",
    ),
    # --- region metrics --------------------------------------------------------------------------
    Case(
        "segmentation_covering float seg", lambda: M.segmentation_covering(SEG * 1.0, [GT]), error=TypeError, arg="seg"
    ),
    Case(
        "segmentation_covering float gt",
        lambda: M.segmentation_covering(SEG, [GT * 1.0]),
        error=TypeError,
        arg="gt_segmentations",
    ),
    Case(
        "segmentation_covering negative seg",
        lambda: M.segmentation_covering(SEG - 2, [GT]),
        error=ValueError,
        arg="seg",
    ),
    Case(
        "segmentation_covering negative gt",
        lambda: M.segmentation_covering(SEG, [GT - 2]),
        error=ValueError,
        arg="gt_segmentations",
    ),
    Case(
        "segmentation_covering empty seg",
        lambda: M.segmentation_covering(np.zeros((0, 0), int), [GT]),
        error=ValueError,
        arg="seg",
    ),
    Case(
        "segmentation_covering 3-D seg", lambda: M.segmentation_covering(SEG[None], [GT]), error=ValueError, arg="seg"
    ),
    Case(
        "segmentation_covering no annotation",
        lambda: M.segmentation_covering(SEG, []),
        error=ValueError,
        arg="gt_segmentations",
    ),
    Case(
        "segmentation_covering shapes",
        lambda: M.segmentation_covering(SEG, [GT[:4]]),
        error=ValueError,
        arg="gt_segmentations",
    ),
    Case("rand_index_voi float seg", lambda: M.rand_index_voi(SEG * 1.0, [GT]), error=TypeError, arg="seg"),
    Case("rand_index_voi no annotation", lambda: M.rand_index_voi(SEG, []), error=ValueError, arg="gt_segmentations"),
    Case("rand_index_voi shapes", lambda: M.rand_index_voi(SEG, GT.T[:4]), error=ValueError, arg="gt_segmentations"),
    # --- BSDS benchmark --------------------------------------------------------------------------
    Case("thresholds_for kind", lambda: M.thresholds_for("png", 5), error=ValueError, arg="kind"),
    Case("thresholds_for nthresh 0", lambda: M.thresholds_for("pb", 0), error=ValueError, arg="nthresh"),
    Case("thresholds_for nthresh 2**40", lambda: M.thresholds_for("pb", 2**40), error=ValueError, arg="nthresh"),
    Case("thresholds_for nthresh float", lambda: M.thresholds_for("pb", 5.0), error=TypeError, arg="nthresh"),
    Case(
        "evaluate_boundaries_image NaN pb",
        lambda: M.evaluate_boundaries_image(NAN_BMAP, [BMAP], nthresh=3),
        error=ValueError,
        arg="machine",
    ),
    Case(
        "evaluate_boundaries_image inf pb",
        lambda: M.evaluate_boundaries_image(np.where(BMAP, np.inf, 0), [BMAP]),
        error=ValueError,
        arg="machine",
    ),
    Case(
        "evaluate_boundaries_image 3-D pb",
        lambda: M.evaluate_boundaries_image(BMAP[None] * 1.0, [BMAP]),
        error=ValueError,
        arg="machine",
    ),
    Case(
        "evaluate_boundaries_image even ucm2",
        lambda: M.evaluate_boundaries_image(UCM2[1:], [BMAP], "ucm2", 3),
        error=ValueError,
        arg="machine",
    ),
    Case(
        "evaluate_boundaries_image gt shape",
        lambda: M.evaluate_boundaries_image(BMAP * 1.0, [BMAP[:4]], nthresh=3),
        error=ValueError,
        arg="gt_boundaries",
    ),
    Case(
        "evaluate_boundaries_image no segs",
        lambda: M.evaluate_boundaries_image([], [BMAP], "segs"),
        error=ValueError,
        arg="machine",
    ),
    Case(
        "evaluate_boundaries_image float segs",
        lambda: M.evaluate_boundaries_image([SEG * 1.0], [BMAP], "segs"),
        error=TypeError,
        arg="machine",
    ),
    Case(
        "evaluate_boundaries_image nthresh 2**31",
        lambda: M.evaluate_boundaries_image(BMAP * 1.0, [BMAP], "pb", 2**31),
        error=ValueError,
        arg="nthresh",
    ),
    Case(
        "evaluate_regions_image kind pb",
        lambda: M.evaluate_regions_image(BMAP, [GT], "pb"),
        error=ValueError,
        arg="kind",
    ),
    Case(
        "evaluate_regions_image NaN ucm2",
        lambda: M.evaluate_regions_image(UCM2 * np.nan, [GT], "ucm2", 3),
        error=ValueError,
        arg="machine",
    ),
    Case(
        "evaluate_regions_image gt shape",
        lambda: M.evaluate_regions_image(UCM2, [GT[:4]], "ucm2", 3),
        error=ValueError,
        arg="gt_segmentations",
    ),
    Case(
        "evaluate_regions_image negative segs",
        lambda: M.evaluate_regions_image([SEG - 5], [GT], "segs"),
        error=ValueError,
        arg="machine",
    ),
    Case("evaluate_boundaries empty", lambda: M.evaluate_boundaries([]), error=ValueError, arg="per_image"),
    Case("evaluate_boundaries not dicts", lambda: M.evaluate_boundaries([1]), error=TypeError, arg="per_image"),
    Case(
        "evaluate_boundaries missing key",
        lambda: M.evaluate_boundaries([{"thresholds": [0.5]}]),
        error=ValueError,
        arg="per_image",
    ),
    Case(
        "evaluate_boundaries NaN counts",
        lambda: M.evaluate_boundaries([{**COUNTS, "cnt_recall": [np.nan]}]),
        error=ValueError,
        arg="per_image",
    ),
    Case(
        "evaluate_boundaries other thresholds",
        lambda: M.evaluate_boundaries([COUNTS, {**COUNTS, "thresholds": [0.25]}]),
        error=ValueError,
        arg="per_image",
    ),
    Case(
        "evaluate_boundaries counts length",
        lambda: M.evaluate_boundaries([{**COUNTS, "sum_recall": [1.0, 2.0]}]),
        error=ValueError,
        arg="per_image",
    ),
    Case(
        "evaluate_regions scalar missing",
        lambda: M.evaluate_regions([{**REGION_COUNTS, "cnt_recall_best": None}]),
        error=TypeError,
        arg="per_image",
    ),
    Case(
        "evaluate_regions inf voi",
        lambda: M.evaluate_regions([{**REGION_COUNTS, "voi": [np.inf]}]),
        error=ValueError,
        arg="per_image",
    ),
    Case(
        "bsds_benchmark lengths",
        lambda: M.bsds_benchmark([SEG[None]], [], "segs"),
        error=ValueError,
        arg="machine_outputs",
    ),
    Case("bsds_benchmark no images", lambda: M.bsds_benchmark([], [], "segs"), error=ValueError, arg="machine_outputs"),
    Case("bsds_benchmark kind", lambda: M.bsds_benchmark([SEG], [[GT]], "labels"), error=ValueError, arg="kind"),
    Case(
        "bsds_benchmark regions of pb",
        lambda: M.bsds_benchmark([BMAP], [[BMAP]], "pb", regions=True),
        error=ValueError,
        arg="regions",
    ),
    Case(
        "bsds_benchmark ground_truths not a sequence",
        lambda: M.bsds_benchmark([SEG[None]], 3, "segs"),
        error=TypeError,
        arg="ground_truths",
    ),
    Case(
        "bsds_benchmark float image",
        lambda: M.bsds_benchmark([[SEG], [SEG * 1.0]], [[GT], [GT]], "segs"),
        error=TypeError,
        arg=re.escape("machine_outputs[1]"),
    ),
    Case(
        "bsds_benchmark NaN max_dist",
        lambda: M.bsds_benchmark([[SEG]], [[GT]], "segs", max_dist=math.nan),
        error=ValueError,
        arg="max_dist",
    ),
    Case(
        "write_official_tables out_dir None", lambda: M.write_official_tables({}, None), error=TypeError, arg="out_dir"
    ),
    Case(
        "region_benchmark lengths",
        lambda: M.region_benchmark([[SEG]], [[GT], [GT]]),
        error=ValueError,
        arg="candidates",
    ),
    Case(
        "region_benchmark float level",
        lambda: M.region_benchmark([[SEG * 1.0]], [[GT]]),
        error=TypeError,
        arg="candidates",
    ),
    Case(
        "region_benchmark negative gt",
        lambda: M.region_benchmark([[SEG]], [[GT - 9]]),
        error=ValueError,
        arg="ground_truths",
    ),
    Case(
        "region_benchmark gt shape",
        lambda: M.region_benchmark([[SEG]], [[GT[:4]]]),
        error=ValueError,
        arg="ground_truths",
    ),
    Case(
        "boundary_benchmark max_dist",
        lambda: M.boundary_benchmark([[SEG]], [[GT]], max_dist=-1.0),
        error=ValueError,
        arg="max_dist",
    ),
    Case(
        "boundary_benchmark no annotation",
        lambda: M.boundary_benchmark([[SEG]], [[]]),
        error=ValueError,
        arg="ground_truths",
    ),
    Case(
        "regions_from_ucm2 NaN threshold",
        lambda: M.regions_from_ucm2(UCM2, math.nan),
        error=ValueError,
        arg="threshold",
    ),
    Case(
        "regions_from_ucm2 negative threshold",
        lambda: M.regions_from_ucm2(UCM2, -1.0),
        error=ValueError,
        arg="threshold",
    ),
    Case("regions_from_ucm2 even shape", lambda: M.regions_from_ucm2(UCM2[:16], 0.1), error=ValueError, arg="ucm2"),
    Case("regions_from_ucm2 NaN map", lambda: M.regions_from_ucm2(UCM2 * np.nan, 0.1), error=ValueError, arg="ucm2"),
    # --- instances -------------------------------------------------------------------------------
    Case("instance_ious float proposals", lambda: M.instance_ious(GT * 1.0, GT), error=TypeError, arg="proposals"),
    Case("instance_ious float gt", lambda: M.instance_ious(GT, GT * 1.0), error=TypeError, arg="gt"),
    Case("instance_ious masks not 0/1", lambda: M.instance_ious(GT, np.stack([GT, GT])), error=ValueError, arg="gt"),
    Case(
        "instance_ious ragged masks", lambda: M.instance_ious([BMAP, BMAP[:4]], GT), error=ValueError, arg="proposals"
    ),
    Case("instance_ious NaN ignore", lambda: M.instance_ious(GT, GT, ignore=NAN_BMAP), error=ValueError, arg="ignore"),
    Case(
        "instance_ious ignore shape", lambda: M.instance_ious(GT, GT, ignore=BMAP[:4]), error=ValueError, arg="ignore"
    ),
    Case("instance_ious shapes", lambda: M.instance_ious(GT[:4], GT), error=ValueError, arg="proposals"),
    Case(
        "instance_ious ignore_index float",
        lambda: M.instance_ious(GT, GT, ignore_index=255.0),
        error=TypeError,
        arg="ignore_index",
    ),
    Case(
        "instance_ious background str",
        lambda: M.instance_ious(GT, GT, background="0"),
        error=TypeError,
        arg="background",
    ),
    Case(
        "instance_ious uint64 beyond int64",
        lambda: M.instance_ious(np.full((2, 2), 2**63, np.uint64), GT[:2, :2]),
        error=ValueError,
        arg="proposals",
    ),
    Case(
        "instance_ious dense result over 2**28",
        lambda: M.instance_ious(np.arange(2**15).reshape(128, 256), np.arange(1, 2**15 + 1).reshape(128, 256)),
        error=ValueError,
        arg="proposals",
    ),
    Case(
        "InstanceEvaluator NaN threshold",
        lambda: M.InstanceEvaluator(iou_thresholds=[0.5, math.nan]),
        error=ValueError,
        arg="iou_thresholds",
    ),
    Case(
        "InstanceEvaluator empty thresholds",
        lambda: M.InstanceEvaluator(iou_thresholds=[]),
        error=ValueError,
        arg="iou_thresholds",
    ),
    Case("InstanceEvaluator ap_iou NaN", lambda: M.InstanceEvaluator(ap_iou=math.nan), error=ValueError, arg="ap_iou"),
    Case("InstanceEvaluator ap_iou 0", lambda: M.InstanceEvaluator(ap_iou=0.0), error=ValueError, arg="ap_iou"),
    Case("InstanceEvaluator ap_iou bool", lambda: M.InstanceEvaluator(ap_iou=True), error=TypeError, arg="ap_iou"),
    Case(
        "InstanceEvaluator max_proposals 0",
        lambda: M.InstanceEvaluator(max_proposals=0),
        error=ValueError,
        arg="max_proposals",
    ),
    Case(
        "InstanceEvaluator.update NaN scores",
        _evaluator_update(scores=[1.0, math.nan, 0.0, 1.0]),
        error=ValueError,
        arg="scores",
    ),
    Case("InstanceEvaluator.update scores length", _evaluator_update(scores=[1.0]), error=ValueError, arg="scores"),
    Case(
        "InstanceEvaluator.update string scores",
        _evaluator_update(scores=["a", "b", "c", "d"]),
        error=TypeError,
        arg="scores",
    ),
    Case("average_recall lengths", lambda: M.average_recall([GT], [GT, GT]), error=ValueError, arg="proposals"),
    Case(
        "average_recall scores length", lambda: M.average_recall([GT], [GT], scores=[]), error=ValueError, arg="scores"
    ),
]

CASES = REFUSED
