"""Tests of segsort_ext.metrics.instance: IoUs, average recall and AP of instance
proposals, on hand cases and against per-pixel brute force."""
import numpy as np
import pytest

from segsort_ext.metrics import InstanceEvaluator, average_recall, instance_ious


def test_instance_ious_hand_case():
    gt = np.zeros((4, 6), np.int64)
    gt[:, :3] = 1  # 12 pixels
    gt[:2, 3:] = 2  # 6 pixels
    gt[3, 5] = 255  # void
    proposals = np.full((4, 6), -1)
    proposals[:, :2] = 0  # 8 px inside instance 1
    proposals[:, 2:] = 1  # 4 px of 1, 6 px of 2, 5 background, 1 void (dropped)
    ious = instance_ious(proposals, gt)
    np.testing.assert_allclose(ious, [[8 / 12, 0.0], [4 / (15 + 12 - 4), 6 / 15]])
    # the same as boolean masks, with the void passed explicitly
    masks = [proposals == 0, proposals == 1]
    gt_masks = np.stack([gt == 1, gt == 2])
    np.testing.assert_allclose(instance_ious(masks, gt_masks, ignore=gt == 255), ious)
    assert instance_ious([], gt).shape == (0, 2)


def test_average_recall_and_ap_hand_case():
    gt = np.zeros((10, 10), np.int64)
    gt[:, :5] = 1
    gt[:, 5:] = 2
    a = gt == 1
    near = a.copy()
    near[:, 4] = False  # IoU 40/50 = 0.8 with instance 1
    wrong = np.zeros_like(a)
    wrong[:3] = True  # IoU 15/65 with either instance
    evaluator = InstanceEvaluator()
    # scores: near (0.9) -> TP, a (0.8) -> FP (instance 1 already taken), wrong (0.1) -> FP
    evaluator.update(np.stack([a, near, wrong]), gt, scores=[0.8, 0.9, 0.1])
    result = evaluator.compute()
    # instance 1 best IoU 1.0, instance 2 best 15/65 < 0.5
    assert result["num_instances"] == 2 and result["num_proposals"] == 3
    np.testing.assert_allclose(result["best_ious"], [1.0, 15 / 65])
    np.testing.assert_allclose(result["recall"], [0.5] * 10)
    assert result["average_recall"] == pytest.approx(0.5)
    # precision 1, 1/2, 1/3 at recall 0.5 -> AP = 0.5 * 1
    assert result["ap"] == pytest.approx(0.5)
    # best 2 proposals by score: near and a -> instance 2 unmatched
    top1 = InstanceEvaluator(max_proposals=1).update(np.stack([a, near, wrong]), gt, [0.8, 0.9, 0.1]).compute()
    np.testing.assert_allclose(top1["best_ious"], [0.8, 0.0])
    # recall at 0.5 ... 0.8 is 1/2, above 0.8 it is 0 -> AR = 0.5 * 7 / 10
    assert top1["average_recall"] == pytest.approx(0.35)
    unscored = InstanceEvaluator().update(np.stack([a, near]), gt).compute()
    assert np.isnan(unscored["ap"]) and unscored["average_recall"] == pytest.approx(0.5)


def _brute_force_instances(images):
    """Per-pixel loops: best IoU of every instance; VOC AP over the data set."""
    best, detections, num_gt = [], [], 0
    for image_index, (proposals, gt, scores) in enumerate(images):
        void = gt == 255
        instances = [k for k in np.unique(gt) if k not in (0, 255)]
        ious = np.zeros((len(proposals), len(instances)))
        for i, p in enumerate(proposals):
            for j, k in enumerate(instances):
                inter = union = 0
                for y in range(gt.shape[0]):
                    for x in range(gt.shape[1]):
                        if void[y, x]:
                            continue
                        inside_p, inside_g = bool(p[y, x]), gt[y, x] == k
                        inter += inside_p and inside_g
                        union += inside_p or inside_g
                ious[i, j] = inter / union
        best.extend(ious.max(0) if len(proposals) else np.zeros(len(instances)))
        num_gt += len(instances)
        for i, s in enumerate(scores):
            detections.append((-s, image_index, i, ious[i]))
    detections.sort(key=lambda d: (d[0], d[1], d[2]))
    taken, tp = set(), []
    for _, image_index, _, row in detections:
        j = int(np.argmax(row)) if row.size else -1
        hit = j >= 0 and row[j] >= 0.5 and (image_index, j) not in taken
        if hit:
            taken.add((image_index, j))
        tp.append(hit)
    tp = np.array(tp, float)
    recall = np.cumsum(tp) / num_gt
    precision = np.cumsum(tp) / np.arange(1, tp.size + 1)
    ap = 0.0
    previous = 0.0
    for r in np.unique(recall):  # area under the precision envelope
        ap += (r - previous) * precision[recall >= r].max()
        previous = r
    thresholds = 0.5 + 0.05 * np.arange(10)
    ar = np.mean([np.mean(np.array(best) >= t - 1e-12) for t in thresholds])
    return np.array(best), ar, ap


def test_instance_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    images = []
    for _ in range(4):
        gt = np.zeros((12, 14), np.int64)
        for k in range(1, rng.integers(2, 5)):
            y, x = rng.integers(0, 8), rng.integers(0, 10)
            gt[y : y + rng.integers(3, 6), x : x + rng.integers(3, 6)] = k
        gt[rng.random(gt.shape) < 0.05] = 255
        proposals = []
        for k in np.unique(gt):
            if k in (0, 255):
                continue
            for _ in range(2):  # jittered copies of each instance, plus random blobs
                mask = np.roll(gt == k, rng.integers(-1, 2, size=2), axis=(0, 1))
                proposals.append(mask | (rng.random(gt.shape) < 0.03))
        for _ in range(3):
            mask = np.zeros(gt.shape, bool)
            y, x = rng.integers(0, 9), rng.integers(0, 11)
            mask[y : y + 4, x : x + 4] = True
            proposals.append(mask)
        scores = np.round(rng.random(len(proposals)), 1)  # ties across images on purpose
        images.append((proposals, gt, scores))
    best, ar, ap = _brute_force_instances(images)
    result = average_recall([p for p, _, _ in images], [g for _, g, _ in images], scores=[s for _, _, s in images])
    np.testing.assert_allclose(result["best_ious"], best)
    assert result["average_recall"] == pytest.approx(ar)
    assert result["ap"] == pytest.approx(ap)
    assert 0 < ap < 1 and 0 < ar < 1


def test_instance_metrics_bad_inputs():
    gt = np.ones((4, 4), np.int64)
    with pytest.raises(ValueError, match="proposals"):
        instance_ious(np.zeros((2, 3, 3), bool), gt)
    with pytest.raises(TypeError, match="proposals"):
        instance_ious(np.zeros((4, 4)), gt)
    with pytest.raises(ValueError, match="ignore"):
        instance_ious(gt, gt, ignore=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="scores"):
        InstanceEvaluator().update(np.zeros((2, 4, 4), bool), gt, scores=[1.0])
    with pytest.raises(ValueError, match="iou_thresholds"):
        InstanceEvaluator(iou_thresholds=[0.0])
    with pytest.raises(ValueError, match="max_proposals"):
        InstanceEvaluator(max_proposals=0)
    with pytest.raises(ValueError, match="pair up"):
        average_recall([gt], [gt, gt])


def test_instance_metrics_image_without_proposals():
    # A (0, H, W) mask array is an image where nothing was proposed: its instances are missed.
    gt = np.zeros((6, 6), np.int64)
    gt[:3, :3] = 1
    gt[3:, 3:] = 2
    hit = (gt == 1)[None]
    result = average_recall([hit, np.zeros((0, 6, 6), bool)], [gt, gt], scores=[np.ones(1), np.zeros(0)])
    assert result["num_instances"] == 4 and result["num_proposals"] == 1
    assert result["recall"][0] == pytest.approx(0.25)
    assert result["ap"] == pytest.approx(0.25)
