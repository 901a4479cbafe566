"""Tests of segsort_ext.metrics.semantic: VOC confusion matrix / mIoU on hand-built cases,
PiCIE's Hungarian matching, and the semantic boundary F-measure."""
import numpy as np
import pytest
import torch

from segsort_ext.metrics import (
    ConfusionMatrix,
    SemanticBoundaryF,
    confusion_matrix,
    hungarian_match,
    mean_iou,
    semantic_boundary_counts,
    semantic_boundary_f,
)


def test_confusion_matrix_counts_and_ignore():
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    conf = confusion_matrix(pred, target, num_classes=3)
    # rows = truth, cols = prediction; the 255 pixel is skipped.
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_array_equal(conf, expected)


def test_mean_iou_known_values():
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    res = mean_iou(pred, target, num_classes=3)
    # class 0: TP 1, FP 1 (pixel of class 2), FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3;
    # class 2: TP 0 -> 0.
    np.testing.assert_allclose(res["iou"], [1 / 3, 2 / 3, 0.0])
    assert res["mean_iou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert res["pixel_accuracy"] == pytest.approx(3 / 5)
    assert res["mean_accuracy"] == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_mean_iou_skips_absent_classes_and_perfect_prediction():
    target = np.array([0, 0, 3, 3, 255])
    pred = np.array([0, 0, 3, 3, 1])  # prediction under the ignored pixel does not count
    res = mean_iou(pred, target, num_classes=5)
    assert res["present"].tolist() == [True, False, False, True, False]
    assert np.isnan(res["iou"][[1, 2, 4]]).all()
    assert res["mean_iou"] == 1.0
    assert res["pixel_accuracy"] == 1.0


def test_streaming_confusion_matrix_equals_pooled_and_accepts_tensors():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 4, size=(5, 7)) for _ in range(3)]
    targets = [rng.integers(0, 4, size=(5, 7)) for _ in range(3)]
    targets[1][0, :] = 255
    cm = ConfusionMatrix(num_classes=4)
    for p, t in zip(preds, targets):
        cm.update(torch.from_numpy(p), torch.from_numpy(t))
    pooled = confusion_matrix(np.stack(preds), np.stack(targets), 4)
    np.testing.assert_array_equal(cm.matrix, pooled)
    # The dataset mIoU is computed from the pooled matrix, not averaged over images.
    assert cm.compute()["mean_iou"] == pytest.approx(mean_iou(pooled)["mean_iou"])
    cm.reset()
    assert cm.matrix.sum() == 0


def test_confusion_matrix_rejects_bad_ids():
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), num_classes=3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 1]), np.array([0, 7]), num_classes=3)
    with pytest.raises(ValueError):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), num_classes=3)


def test_hungarian_match():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[3, 3, 0, 0], [1, 1, 2, 2]])  # cluster 3 -> class 0, 0 -> 1, 1 -> 2; cluster 2 is spare
    result = hungarian_match(pred, target, num_clusters=4, num_classes=3)
    assert result["mapping"].tolist() == [1, 2, -1, 0]
    # 6 of 7 labelled pixels right; the last (class 1, cluster 2 unmatched) is a false negative.
    assert result["pixel_accuracy"] == pytest.approx(6 / 7)
    np.testing.assert_allclose(result["iou"], [1.0, 2 / 3, 1.0])
    with pytest.raises(ValueError, match="num_clusters"):
        hungarian_match(pred + 5, target, num_clusters=4, num_classes=3)


def _bands(rows, width=10):
    """A label map of horizontal bands: rows[i] is the label of row i."""
    return np.repeat(np.asarray(rows, dtype=np.int64)[:, None], width, axis=1)


def test_semantic_boundary_hand_cases():
    target = _bands([0] * 5 + [1] * 5)
    # seg2bdry marks the row above a horizontal edge: row 4, for both classes.
    counts = semantic_boundary_counts(target, target, 2)
    assert counts["sum_recall"].tolist() == [10, 10] and counts["cnt_recall"].tolist() == [10, 10]
    assert counts["sum_precision"].tolist() == [10, 10] and counts["cnt_precision"].tolist() == [10, 10]
    shifted = _bands([0] * 6 + [1] * 4)  # the edge one pixel lower
    # the 10x10 diagonal is 14.1 px: 0.01 of it is below a pixel, 0.1 above
    strict = semantic_boundary_f([shifted], [target], 2)
    assert strict["precision"] == strict["recall"] == strict["f"] == 0.0
    loose = semantic_boundary_f([shifted], [target], 2, max_dist=0.1)
    assert loose["precision"] == loose["recall"] == loose["f"] == 1.0
    np.testing.assert_array_equal(loose["class_f"], [1.0, 1.0])


def test_semantic_boundary_matching_is_one_to_one():
    target = _bands([0] * 5 + [1] * 5)
    # a stripe of class 1 across the true edge: two predicted edges (rows 3 and 5), each one
    # pixel from the true one (row 4); a true pixel pairs with one predicted pixel only.
    pred = _bands([0] * 4 + [1] * 2 + [0] * 4)
    result = semantic_boundary_f([pred], [target], 2, max_dist=0.1)
    np.testing.assert_array_equal(result["counts"]["sum_precision"], [20, 20])
    np.testing.assert_array_equal(result["counts"]["cnt_precision"], [10, 10])
    assert result["recall"] == 1.0 and result["precision"] == 0.5
    assert result["f"] == pytest.approx(2 * 0.5 / 1.5)


def test_semantic_boundary_ignores_void_pixels():
    target = _bands([0] * 4 + [255] * 2 + [1] * 4)
    # whatever the prediction says inside the void band, it is judged on labelled pixels only
    for pred_rows in ([0] * 5 + [1] * 5, [0] * 4 + [1] * 6, [0] * 4 + [7, 3] + [1] * 4):
        pred = _bands(pred_rows)
        result = semantic_boundary_f([pred], [target], 8)
        assert result["f"] == 1.0, pred_rows
        assert result["present"].tolist() == [True, True] + [False] * 6
    # a wrong label next to the void band is an error
    bad = semantic_boundary_f([_bands([0] * 3 + [1] * 7)], [target], 8)
    assert bad["f"] < 1.0 and bad["class_recall"][0] == 0.0


def test_semantic_boundary_accumulates_counts_not_ratios():
    big = _bands([0] * 10 + [1] * 10, width=20)
    small = _bands([0] * 5 + [1] * 5)
    metric = SemanticBoundaryF(2)
    metric.update(big, big)  # perfect: 20 pixels per class
    metric.update(_bands([0] * 6 + [1] * 4), small)  # missed: 10 pixels per class
    result = metric.compute()
    assert result["recall"] == pytest.approx(40 / 60) and result["precision"] == pytest.approx(40 / 60)
    # (mean of per-image recalls would be 0.5)
    # batched input sums the same counts
    batched = SemanticBoundaryF(2).update(np.stack([small, small]), np.stack([small, small])).compute()
    np.testing.assert_array_equal(batched["counts"]["sum_recall"], [20, 20])
    metric.reset()
    assert metric.compute()["counts"]["sum_recall"].sum() == 0


def test_semantic_boundary_classes_and_agnostic():
    target = np.zeros((12, 12), np.int64)
    target[3:9, 3:9] = 1
    pred = target.copy()
    pred[pred == 1] = 2  # right boundary, wrong class
    per_class = semantic_boundary_f([pred], [target], 3)
    assert per_class["class_f"][0] == 1.0  # background outline is right
    assert per_class["class_f"][1] == 0.0 and per_class["class_f"][2] == 0.0
    assert per_class["mean_f"] == pytest.approx(1 / 3)
    agnostic = semantic_boundary_f([pred], [target], 3, class_agnostic=True)
    assert agnostic["f"] == 1.0 and agnostic["counts"]["sum_recall"].shape == (1,)
    assert np.isnan(semantic_boundary_f([target], [target], 4)["class_f"][3])  # absent class


def test_semantic_boundary_bad_inputs():
    target = _bands([0] * 5 + [1] * 5)
    with pytest.raises(ValueError, match="shape"):
        semantic_boundary_counts(target[:5], target, 2)
    with pytest.raises(TypeError, match="pred"):
        semantic_boundary_counts(target.astype(float), target, 2)
    with pytest.raises(ValueError, match="pred"):
        semantic_boundary_counts(target + 1, target, 2)
    with pytest.raises(ValueError, match="target"):  # 255 is a class id once nothing is ignored
        semantic_boundary_counts(target, np.where(target == 1, 255, 0), 2, ignore_index=None)
    with pytest.raises(ValueError, match="num_classes"):
        SemanticBoundaryF(0)
    with pytest.raises(ValueError, match="max_dist"):
        SemanticBoundaryF(2, max_dist=2.0)
