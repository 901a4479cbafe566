"""Bad-input catalogue of segsort_ext.metrics: every public function and class with wrong
types, shapes and dtypes, other devices, ids at the int32/int64 edges, NaN/inf, empty and huge
inputs. A refused input raises exactly the expected error type, with a message naming the
argument; a legal one gives the reference result. Nothing here allocates much: huge ids sit on
tiny images, huge sizes are refused before any allocation."""
import math
import re

import numpy as np
import pytest
import torch

import segsort_ext.metrics as M

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
COUNTS = {"thresholds": [0.5], "cnt_recall": [1.0], "sum_recall": [2.0], "cnt_precision": [1.0],
          "sum_precision": [2.0]}
REGION_COUNTS = {**COUNTS, "pri": [0.5], "voi": [1.0], "cnt_recall_best": 1.0}


def _evaluator_update(**options):
    return lambda: M.InstanceEvaluator().update(GT, GT, **options)


REFUSED = [
    # --- semantic: class maps, class counts, confusion matrices ------------------------------
    ("confusion_matrix float pred", lambda: M.confusion_matrix(FLOATS, LABELS, 3), TypeError, "pred"),
    ("confusion_matrix float target", lambda: M.confusion_matrix(LABELS, FLOATS, 3), TypeError, "target"),
    ("confusion_matrix torch float", lambda: M.confusion_matrix(torch.zeros(2, 3), torch.zeros(2, 3).long(), 3),
     TypeError, "pred"),
    ("confusion_matrix complex", lambda: M.confusion_matrix(LABELS + 0j, LABELS, 3), TypeError, "pred"),
    ("confusion_matrix strings", lambda: M.confusion_matrix(np.array(["a"]), np.array([0]), 3), TypeError, "pred"),
    ("confusion_matrix ragged", lambda: M.confusion_matrix([[0], [0, 1]], LABELS, 3), TypeError, "pred"),
    ("confusion_matrix shapes", lambda: M.confusion_matrix(LABELS, LABELS.T, 3), ValueError, "pred shape"),
    ("confusion_matrix num_classes 0", lambda: M.confusion_matrix(LABELS, LABELS, 0), ValueError, "num_classes"),
    ("confusion_matrix num_classes -1", lambda: M.confusion_matrix(LABELS, LABELS, -1), ValueError, "num_classes"),
    ("confusion_matrix num_classes 2**40", lambda: M.confusion_matrix(LABELS, LABELS, 2**40), ValueError,
     "num_classes"),
    ("confusion_matrix num_classes int64 max", lambda: M.confusion_matrix(LABELS, LABELS, INT64_MAX), ValueError,
     "num_classes"),
    ("confusion_matrix num_classes float", lambda: M.confusion_matrix(LABELS, LABELS, 3.0), TypeError,
     "num_classes"),
    ("confusion_matrix num_classes bool", lambda: M.confusion_matrix(LABELS, LABELS, True), TypeError,
     "num_classes"),
    ("confusion_matrix pred 2**31", lambda: M.confusion_matrix(LABELS * 2**31, LABELS, 3), ValueError, "pred"),
    ("confusion_matrix pred -1", lambda: M.confusion_matrix(LABELS - 1, LABELS, 3), ValueError, "pred"),
    ("confusion_matrix target int64 max", lambda: M.confusion_matrix(LABELS, np.full((2, 3), INT64_MAX), 3),
     ValueError, "target"),
    ("confusion_matrix uint64 beyond int64", lambda: M.confusion_matrix(np.full(2, 2**63, np.uint64), [0, 0], 3),
     ValueError, "pred"),
    ("confusion_matrix ignore_index float", lambda: M.confusion_matrix(LABELS, LABELS, 3, ignore_index=255.0),
     TypeError, "ignore_index"),
    ("mean_iou conf NaN", lambda: M.mean_iou(np.array([[1.0, np.nan], [0.0, 1.0]])), ValueError, "conf"),
    ("mean_iou conf inf", lambda: M.mean_iou(np.array([[1.0, np.inf], [0.0, 1.0]])), ValueError, "conf"),
    ("mean_iou conf negative", lambda: M.mean_iou(np.array([[1, -1], [0, 1]])), ValueError, "conf"),
    ("mean_iou conf fractional", lambda: M.mean_iou(np.array([[1.5, 0], [0, 1]])), ValueError, "conf"),
    ("mean_iou conf not square", lambda: M.mean_iou(np.ones((2, 3))), ValueError, "conf"),
    ("mean_iou without num_classes", lambda: M.mean_iou(LABELS, LABELS), ValueError, "num_classes"),
    ("ConfusionMatrix(-1)", lambda: M.ConfusionMatrix(-1), ValueError, "num_classes"),
    ("ConfusionMatrix(0)", lambda: M.ConfusionMatrix(0), ValueError, "num_classes"),
    ("ConfusionMatrix(2**40)", lambda: M.ConfusionMatrix(2**40), ValueError, "num_classes"),
    ("ConfusionMatrix(2**14 + 1)", lambda: M.ConfusionMatrix(2**14 + 1), ValueError, "num_classes"),
    ("ConfusionMatrix(2.5)", lambda: M.ConfusionMatrix(2.5), TypeError, "num_classes"),
    ("ConfusionMatrix ignore_index str", lambda: M.ConfusionMatrix(3, ignore_index="255"), TypeError,
     "ignore_index"),
    ("ConfusionMatrix.update float", lambda: M.ConfusionMatrix(3).update(FLOATS, LABELS), TypeError, "pred"),
    ("hungarian_match num_clusters 0", lambda: M.hungarian_match(LABELS, LABELS, 0, 3), ValueError, "num_clusters"),
    ("hungarian_match num_clusters 2**31", lambda: M.hungarian_match(LABELS, LABELS, 2**31, 3), ValueError,
     "num_clusters"),
    ("hungarian_match num_classes 2**63-1", lambda: M.hungarian_match(LABELS, LABELS, 3, INT64_MAX), ValueError,
     "num_classes"),
    ("hungarian_match pred 2**40", lambda: M.hungarian_match(LABELS * 2**40, LABELS, 3, 3), ValueError, "pred"),
    ("hungarian_match float target", lambda: M.hungarian_match(LABELS, FLOATS, 3, 3), TypeError, "target"),
    ("semantic_boundary_counts float", lambda: M.semantic_boundary_counts(BANDS * 1.0, BANDS, 2), TypeError,
     "pred"),
    ("semantic_boundary_counts 4-D", lambda: M.semantic_boundary_counts(BANDS[None, None], BANDS[None, None], 2),
     ValueError, "pred"),
    ("semantic_boundary_counts num_classes 2**40", lambda: M.semantic_boundary_counts(BANDS, BANDS, 2**40),
     ValueError, "num_classes"),
    ("semantic_boundary_counts target 2**31", lambda: M.semantic_boundary_counts(BANDS, BANDS * 2**31, 2),
     ValueError, "target"),
    *[(f"SemanticBoundaryF max_dist {v}", lambda v=v: M.SemanticBoundaryF(2, max_dist=v), ValueError, "max_dist")
      for v in (-0.01, 0.0, 1.0, 2.0, math.nan, math.inf)],
    ("SemanticBoundaryF max_dist str", lambda: M.SemanticBoundaryF(2, max_dist="0.01"), TypeError, "max_dist"),
    ("semantic_boundary_f NaN max_dist", lambda: M.semantic_boundary_f([BANDS], [BANDS], 2, max_dist=math.nan),
     ValueError, "max_dist"),
    # --- boundary primitives ---------------------------------------------------------------------
    ("thin_boundaries NaN", lambda: M.thin_boundaries(NAN_BMAP), ValueError, "bmap"),
    ("thin_boundaries 3-D", lambda: M.thin_boundaries(BMAP[None]), ValueError, "bmap"),
    ("thin_boundaries complex", lambda: M.thin_boundaries(BMAP + 0j), TypeError, "bmap"),
    ("thin_boundaries max_iter -1", lambda: M.thin_boundaries(BMAP, max_iter=-1), ValueError, "max_iter"),
    ("thin_boundaries max_iter float", lambda: M.thin_boundaries(BMAP, max_iter=1.5), TypeError, "max_iter"),
    ("seg2bdry NaN", lambda: M.seg2bdry(np.where(SEG > 4, np.nan, 1.0)), ValueError, "seg"),
    ("seg2bdry empty", lambda: M.seg2bdry(np.zeros((0, 4), int)), ValueError, "seg"),
    ("seg2bdry 1-D", lambda: M.seg2bdry(np.zeros(4, int)), ValueError, "seg"),
    ("seg2bdry fmt", lambda: M.seg2bdry(SEG, "halfSize"), ValueError, "fmt"),
    *[(f"correspond_pixels max_dist {v}", lambda v=v: M.correspond_pixels(BMAP, BMAP, v), ValueError, "max_dist")
      for v in (-0.01, 0.0, math.nan, math.inf, 1.5)],
    *[(f"correspond_pixels outlier_cost {v}", lambda v=v: M.correspond_pixels(BMAP, BMAP, outlier_cost=v),
       ValueError, "outlier_cost") for v in (0.0, -1.0, math.nan)],
    ("correspond_pixels outlier_graph", lambda: M.correspond_pixels(BMAP, BMAP, outlier_graph="random"),
     ValueError, "outlier_graph"),
    ("correspond_pixels seed -1", lambda: M.correspond_pixels(BMAP, BMAP, outlier_graph="official", seed=-1),
     TypeError, "seed"),
    ("correspond_pixels seed float", lambda: M.correspond_pixels(BMAP, BMAP, seed=0.5), TypeError, "seed"),
    ("correspond_pixels shapes", lambda: M.correspond_pixels(BMAP, BMAP[:4]), ValueError, "bmap1"),
    ("correspond_pixels NaN bmap2", lambda: M.correspond_pixels(BMAP, NAN_BMAP), ValueError, "bmap2"),
    ("correspond_pixels dense maps, huge max_dist",
     lambda: M.correspond_pixels(np.ones((1, 4000), bool), np.ones((1, 4000), bool), 0.9), ValueError,
     "max_dist"),
    ("boundary_pr no annotation", lambda: M.boundary_pr(BMAP, []), ValueError, "gt_boundaries"),
    ("boundary_pr annotation shape", lambda: M.boundary_pr(BMAP, [BMAP[:4]]), ValueError, "gt_boundaries"),
    ("boundary_pr NaN annotation", lambda: M.boundary_pr(BMAP, [NAN_BMAP]), ValueError, "gt_boundaries"),
    ("boundary_pr dict without key", lambda: M.boundary_pr(BMAP, [{"segmentation": SEG}]), ValueError,
     "gt_boundaries"),
    ("boundary_pr annotation not a map", lambda: M.boundary_pr(BMAP, 5), TypeError, "gt_boundaries"),
    ("boundary_pr NaN max_dist", lambda: M.boundary_pr(BMAP, [BMAP], max_dist=math.nan), ValueError, "max_dist"),
    ("boundary_f1 negative max_dist", lambda: M.boundary_f1(BMAP, [BMAP], max_dist=-1.0), ValueError, "max_dist"),
    # --- region metrics --------------------------------------------------------------------------
    ("segmentation_covering float seg", lambda: M.segmentation_covering(SEG * 1.0, [GT]), TypeError, "seg"),
    ("segmentation_covering float gt", lambda: M.segmentation_covering(SEG, [GT * 1.0]), TypeError,
     "gt_segmentations"),
    ("segmentation_covering negative seg", lambda: M.segmentation_covering(SEG - 2, [GT]), ValueError, "seg"),
    ("segmentation_covering negative gt", lambda: M.segmentation_covering(SEG, [GT - 2]), ValueError,
     "gt_segmentations"),
    ("segmentation_covering empty seg", lambda: M.segmentation_covering(np.zeros((0, 0), int), [GT]), ValueError,
     "seg"),
    ("segmentation_covering 3-D seg", lambda: M.segmentation_covering(SEG[None], [GT]), ValueError, "seg"),
    ("segmentation_covering no annotation", lambda: M.segmentation_covering(SEG, []), ValueError,
     "gt_segmentations"),
    ("segmentation_covering shapes", lambda: M.segmentation_covering(SEG, [GT[:4]]), ValueError,
     "gt_segmentations"),
    ("rand_index_voi float seg", lambda: M.rand_index_voi(SEG * 1.0, [GT]), TypeError, "seg"),
    ("rand_index_voi no annotation", lambda: M.rand_index_voi(SEG, []), ValueError, "gt_segmentations"),
    ("rand_index_voi shapes", lambda: M.rand_index_voi(SEG, GT.T[:4]), ValueError, "gt_segmentations"),
    # --- BSDS benchmark --------------------------------------------------------------------------
    ("thresholds_for kind", lambda: M.thresholds_for("png", 5), ValueError, "kind"),
    ("thresholds_for nthresh 0", lambda: M.thresholds_for("pb", 0), ValueError, "nthresh"),
    ("thresholds_for nthresh 2**40", lambda: M.thresholds_for("pb", 2**40), ValueError, "nthresh"),
    ("thresholds_for nthresh float", lambda: M.thresholds_for("pb", 5.0), TypeError, "nthresh"),
    ("evaluate_boundaries_image NaN pb", lambda: M.evaluate_boundaries_image(NAN_BMAP, [BMAP], nthresh=3),
     ValueError, "machine"),
    ("evaluate_boundaries_image inf pb", lambda: M.evaluate_boundaries_image(np.where(BMAP, np.inf, 0), [BMAP]),
     ValueError, "machine"),
    ("evaluate_boundaries_image 3-D pb", lambda: M.evaluate_boundaries_image(BMAP[None] * 1.0, [BMAP]),
     ValueError, "machine"),
    ("evaluate_boundaries_image even ucm2", lambda: M.evaluate_boundaries_image(UCM2[1:], [BMAP], "ucm2", 3),
     ValueError, "machine"),
    ("evaluate_boundaries_image gt shape", lambda: M.evaluate_boundaries_image(BMAP * 1.0, [BMAP[:4]], nthresh=3),
     ValueError, "gt_boundaries"),
    ("evaluate_boundaries_image no segs", lambda: M.evaluate_boundaries_image([], [BMAP], "segs"), ValueError,
     "machine"),
    ("evaluate_boundaries_image float segs", lambda: M.evaluate_boundaries_image([SEG * 1.0], [BMAP], "segs"),
     TypeError, "machine"),
    ("evaluate_boundaries_image nthresh 2**31", lambda: M.evaluate_boundaries_image(BMAP * 1.0, [BMAP], "pb",
                                                                                    2**31), ValueError, "nthresh"),
    ("evaluate_regions_image kind pb", lambda: M.evaluate_regions_image(BMAP, [GT], "pb"), ValueError, "kind"),
    ("evaluate_regions_image NaN ucm2", lambda: M.evaluate_regions_image(UCM2 * np.nan, [GT], "ucm2", 3),
     ValueError, "machine"),
    ("evaluate_regions_image gt shape", lambda: M.evaluate_regions_image(UCM2, [GT[:4]], "ucm2", 3), ValueError,
     "gt_segmentations"),
    ("evaluate_regions_image negative segs", lambda: M.evaluate_regions_image([SEG - 5], [GT], "segs"),
     ValueError, "machine"),
    ("evaluate_boundaries empty", lambda: M.evaluate_boundaries([]), ValueError, "per_image"),
    ("evaluate_boundaries not dicts", lambda: M.evaluate_boundaries([1]), TypeError, "per_image"),
    ("evaluate_boundaries missing key", lambda: M.evaluate_boundaries([{"thresholds": [0.5]}]), ValueError,
     "per_image"),
    ("evaluate_boundaries NaN counts", lambda: M.evaluate_boundaries([{**COUNTS, "cnt_recall": [np.nan]}]),
     ValueError, "per_image"),
    ("evaluate_boundaries other thresholds",
     lambda: M.evaluate_boundaries([COUNTS, {**COUNTS, "thresholds": [0.25]}]), ValueError, "per_image"),
    ("evaluate_boundaries counts length", lambda: M.evaluate_boundaries([{**COUNTS, "sum_recall": [1.0, 2.0]}]),
     ValueError, "per_image"),
    ("evaluate_regions scalar missing", lambda: M.evaluate_regions([{**REGION_COUNTS, "cnt_recall_best": None}]),
     TypeError, "per_image"),
    ("evaluate_regions inf voi", lambda: M.evaluate_regions([{**REGION_COUNTS, "voi": [np.inf]}]), ValueError,
     "per_image"),
    ("bsds_benchmark lengths", lambda: M.bsds_benchmark([SEG[None]], [], "segs"), ValueError, "machine_outputs"),
    ("bsds_benchmark no images", lambda: M.bsds_benchmark([], [], "segs"), ValueError, "machine_outputs"),
    ("bsds_benchmark kind", lambda: M.bsds_benchmark([SEG], [[GT]], "labels"), ValueError, "kind"),
    ("bsds_benchmark regions of pb", lambda: M.bsds_benchmark([BMAP], [[BMAP]], "pb", regions=True), ValueError,
     "regions"),
    ("bsds_benchmark ground_truths not a sequence", lambda: M.bsds_benchmark([SEG[None]], 3, "segs"), TypeError,
     "ground_truths"),
    ("bsds_benchmark float image", lambda: M.bsds_benchmark([[SEG], [SEG * 1.0]], [[GT], [GT]], "segs"),
     TypeError, re.escape("machine_outputs[1]")),
    ("bsds_benchmark NaN max_dist", lambda: M.bsds_benchmark([[SEG]], [[GT]], "segs", max_dist=math.nan),
     ValueError, "max_dist"),
    ("write_official_tables out_dir None", lambda: M.write_official_tables({}, None), TypeError, "out_dir"),
    ("region_benchmark lengths", lambda: M.region_benchmark([[SEG]], [[GT], [GT]]), ValueError, "candidates"),
    ("region_benchmark float level", lambda: M.region_benchmark([[SEG * 1.0]], [[GT]]), TypeError, "candidates"),
    ("region_benchmark negative gt", lambda: M.region_benchmark([[SEG]], [[GT - 9]]), ValueError, "ground_truths"),
    ("region_benchmark gt shape", lambda: M.region_benchmark([[SEG]], [[GT[:4]]]), ValueError, "ground_truths"),
    ("boundary_benchmark max_dist", lambda: M.boundary_benchmark([[SEG]], [[GT]], max_dist=-1.0), ValueError,
     "max_dist"),
    ("boundary_benchmark no annotation", lambda: M.boundary_benchmark([[SEG]], [[]]), ValueError, "ground_truths"),
    ("regions_from_ucm2 NaN threshold", lambda: M.regions_from_ucm2(UCM2, math.nan), ValueError, "threshold"),
    ("regions_from_ucm2 negative threshold", lambda: M.regions_from_ucm2(UCM2, -1.0), ValueError, "threshold"),
    ("regions_from_ucm2 even shape", lambda: M.regions_from_ucm2(UCM2[:16], 0.1), ValueError, "ucm2"),
    ("regions_from_ucm2 NaN map", lambda: M.regions_from_ucm2(UCM2 * np.nan, 0.1), ValueError, "ucm2"),
    # --- instances -------------------------------------------------------------------------------
    ("instance_ious float proposals", lambda: M.instance_ious(GT * 1.0, GT), TypeError, "proposals"),
    ("instance_ious float gt", lambda: M.instance_ious(GT, GT * 1.0), TypeError, "gt"),
    ("instance_ious masks not 0/1", lambda: M.instance_ious(GT, np.stack([GT, GT])), ValueError, "gt"),
    ("instance_ious ragged masks", lambda: M.instance_ious([BMAP, BMAP[:4]], GT), ValueError, "proposals"),
    ("instance_ious NaN ignore", lambda: M.instance_ious(GT, GT, ignore=NAN_BMAP), ValueError, "ignore"),
    ("instance_ious ignore shape", lambda: M.instance_ious(GT, GT, ignore=BMAP[:4]), ValueError, "ignore"),
    ("instance_ious shapes", lambda: M.instance_ious(GT[:4], GT), ValueError, "proposals"),
    ("instance_ious ignore_index float", lambda: M.instance_ious(GT, GT, ignore_index=255.0), TypeError,
     "ignore_index"),
    ("instance_ious background str", lambda: M.instance_ious(GT, GT, background="0"), TypeError, "background"),
    ("instance_ious uint64 beyond int64", lambda: M.instance_ious(np.full((2, 2), 2**63, np.uint64), GT[:2, :2]),
     ValueError, "proposals"),
    ("instance_ious dense result over 2**28", lambda: M.instance_ious(np.arange(2**15).reshape(128, 256),
                                                                      np.arange(1, 2**15 + 1).reshape(128, 256)),
     ValueError, "proposals"),
    ("InstanceEvaluator NaN threshold", lambda: M.InstanceEvaluator(iou_thresholds=[0.5, math.nan]), ValueError,
     "iou_thresholds"),
    ("InstanceEvaluator empty thresholds", lambda: M.InstanceEvaluator(iou_thresholds=[]), ValueError,
     "iou_thresholds"),
    ("InstanceEvaluator ap_iou NaN", lambda: M.InstanceEvaluator(ap_iou=math.nan), ValueError, "ap_iou"),
    ("InstanceEvaluator ap_iou 0", lambda: M.InstanceEvaluator(ap_iou=0.0), ValueError, "ap_iou"),
    ("InstanceEvaluator ap_iou bool", lambda: M.InstanceEvaluator(ap_iou=True), TypeError, "ap_iou"),
    ("InstanceEvaluator max_proposals 0", lambda: M.InstanceEvaluator(max_proposals=0), ValueError,
     "max_proposals"),
    ("InstanceEvaluator.update NaN scores", _evaluator_update(scores=[1.0, math.nan, 0.0, 1.0]), ValueError,
     "scores"),
    ("InstanceEvaluator.update scores length", _evaluator_update(scores=[1.0]), ValueError, "scores"),
    ("InstanceEvaluator.update string scores", _evaluator_update(scores=["a", "b", "c", "d"]), TypeError,
     "scores"),
    ("average_recall lengths", lambda: M.average_recall([GT], [GT, GT]), ValueError, "proposals"),
    ("average_recall scores length", lambda: M.average_recall([GT], [GT], scores=[]), ValueError, "scores"),
]


@pytest.mark.parametrize("call, error, name", [pytest.param(*case[1:], id=case[0]) for case in REFUSED])
def test_refused_with_the_argument_named(call, error, name):
    with pytest.raises(error, match=name) as info:
        call()
    assert type(info.value) is error


def _relabel(labels):
    """The same partition with ids 1..N in increasing order of the original ids."""
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape) + 1


@pytest.mark.parametrize("big", [2**31, 2**40, INT64_MAX], ids=["2**31", "2**40", "int64-max"])
def test_region_ids_are_arbitrary_integers(big):
    # Tables are sized by the regions, not the ids: ids near the int64 limit on a tiny image
    # would need more memory than exists if a table were indexed by them.
    seg = np.where(SEG > 5, big, SEG)
    gt = np.where(GT > 2, big - 1, GT)
    assert M.segmentation_covering(seg, [gt]) == M.segmentation_covering(_relabel(seg), [_relabel(gt)])
    assert M.rand_index_voi(seg, [gt]) == M.rand_index_voi(_relabel(seg), [_relabel(gt)])
    assert M.rand_index_voi(seg - big, [gt - big]) == M.rand_index_voi(_relabel(seg), [_relabel(gt)])
    np.testing.assert_array_equal(M.instance_ious(seg, gt), M.instance_ious(_relabel(seg), _relabel(gt)))


def test_region_benchmark_with_huge_ids_on_a_tiny_image_is_fast():
    # The case of the issue: ids up to 10**5 and 10**4 on an 8x8 image once allocated a joint
    # histogram of ~10**9 bins (8 GB); it must now take about the time of a contiguous labelling.
    rng = np.random.default_rng(0)
    seg = rng.integers(1, 5, (8, 8)) * 25_000
    gt = rng.integers(1, 4, (8, 8)) * 3_000
    expected = M.region_benchmark([[_relabel(seg), _relabel(seg // 2)]], [[_relabel(gt)]])
    assert M.region_benchmark([[seg, seg // 2]], [[gt]]) == expected
    assert M.boundary_benchmark([[seg]], [[gt]]) == M.boundary_benchmark([[_relabel(seg)]], [[_relabel(gt)]])
    assert M.bsds_benchmark([[seg]], [[gt]], "segs", boundaries=False)["region"]["covering"] == \
        M.bsds_benchmark([[_relabel(seg)]], [[_relabel(gt)]], "segs", boundaries=False)["region"]["covering"]


def test_instance_scores_never_build_the_dense_iou_matrix():
    # 40000 one-pixel proposals and instances: a dense (P, G) matrix would be 12.8 GB.
    ids = np.arange(200 * 200).reshape(200, 200) * 2**40 + 1
    result = M.InstanceEvaluator(background=None, ignore_index=None).update(ids, ids).compute()
    assert result["average_recall"] == 1.0 and result["num_instances"] == 40000


def test_int_widths_bools_tensors_and_stride_zero_inputs_agree():
    expected = M.confusion_matrix(LABELS, LABELS, 3)
    for dtype in (np.int8, np.uint8, np.int16, np.int32, np.uint64):
        np.testing.assert_array_equal(M.confusion_matrix(LABELS.astype(dtype), LABELS.astype(dtype), 3), expected)
    np.testing.assert_array_equal(M.confusion_matrix(torch.from_numpy(LABELS).int(), torch.from_numpy(LABELS), 3),
                                  expected)
    np.testing.assert_array_equal(M.confusion_matrix(LABELS > 0, LABELS > 0, 2),
                                  M.confusion_matrix((LABELS > 0).astype(int), (LABELS > 0).astype(int), 2))
    ones = torch.ones((), dtype=torch.long).expand(1000, 1000)  # 10**6 pixels, one element stored
    assert M.confusion_matrix(ones, ones, 2)[1, 1] == 10**6
    assert M.segmentation_covering(ones, [ones]) == 1.0
    assert M.thin_boundaries(torch.zeros((), dtype=torch.bfloat16).expand(4, 4)).sum() == 0
    np.testing.assert_array_equal(M.to_numpy(torch.ones(2, dtype=torch.bfloat16)), np.ones(2, np.float32))
    assert M.ConfusionMatrix(np.int64(3)).num_classes == 3


def test_empty_and_degenerate_inputs_have_defined_results():
    np.testing.assert_array_equal(M.confusion_matrix(np.zeros(0, int), np.zeros(0, int), 3), np.zeros((3, 3)))
    assert math.isnan(M.mean_iou(np.zeros((3, 3), int))["mean_iou"])
    all_ignored = np.full((2, 3), 255)
    assert M.ConfusionMatrix(3).update(LABELS, all_ignored).matrix.sum() == 0
    # One pixel has no pixel pairs: its Rand index is undefined (NaN), its VOI 0.
    one = M.rand_index_voi(np.ones((1, 1), int), [np.ones((1, 1), int)])
    assert math.isnan(one["pri"]) and one["voi"] == 0.0
    assert M.boundary_pr(np.zeros((4, 4)), [np.zeros((4, 4))])["f"] == 0.0
    assert M.boundary_pr(np.zeros((0, 4)), [np.zeros((0, 4))])["sum_recall"] == 0
    assert M.correspond_pixels(np.zeros((0, 5)), np.zeros((0, 5)))[0].shape == (0, 5)
    no_proposals = M.average_recall([np.zeros((0, 8, 8), bool)], [GT])
    assert no_proposals["average_recall"] == 0.0 and no_proposals["num_instances"] == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_cpu_results():
    pred, target = torch.from_numpy(LABELS), torch.from_numpy(LABELS[::-1].copy())
    expected = M.confusion_matrix(pred, target, 3)
    np.testing.assert_array_equal(M.confusion_matrix(pred.cuda(), target.cuda(), 3), expected)
    seg, gt = torch.from_numpy(SEG), torch.from_numpy(GT)
    assert M.rand_index_voi(seg.cuda(), [gt.cuda()]) == M.rand_index_voi(seg, [gt])
    with pytest.raises(TypeError, match="pred"):
        M.confusion_matrix(pred.cuda().float(), target.cuda(), 3)
