"""Tests of segsort_ext.metrics.boundary: the BSDS500 boundary primitives on small
hand-checked maps."""
import numpy as np
import pytest
import torch

from segsort_ext.metrics import boundary_f1, boundary_pr, correspond_pixels, seg2bdry, thin_boundaries


def test_seg2bdry_hand_example():
    seg = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    # Each output pixel marks the lattice corner below-right of it: on if an incident edge
    # separates different labels; the last row/column copy the outer edges.
    expected = np.array([[0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(seg2bdry(seg), expected)
    double = seg2bdry(seg, "doubleSize")
    assert double.shape == (7, 7)
    np.testing.assert_array_equal(double[2::2, 2::2], expected)
    assert not seg2bdry(np.ones((4, 5))).any()


def test_thinning_properties():
    bar = np.zeros((9, 20), dtype=bool)
    bar[3:6, 2:18] = True  # 3 pixels thick
    thin = thin_boundaries(bar)
    assert thin.sum() < bar.sum()
    assert not (thin & ~bar).any()  # only removes pixels
    assert (thin.sum(axis=0) <= 1).all()  # one pixel thick
    np.testing.assert_array_equal(thin_boundaries(thin), thin)  # idempotent
    # Thinning preserves connectivity (one 8-connected component).
    from scipy import ndimage

    assert ndimage.label(thin, structure=np.ones((3, 3)))[1] == 1
    # Already-thin curves and isolated pixels are kept.
    line = np.zeros((6, 6), dtype=bool)
    line[np.arange(6), np.arange(6)] = True
    line[0, 5] = True
    np.testing.assert_array_equal(thin_boundaries(line), line)


def test_correspond_pixels_identical_and_shifted():
    a = np.zeros((100, 100), dtype=bool)
    a[50, 10:90] = True
    for graph in ("exact", "official"):
        m1, m2 = correspond_pixels(a, a, outlier_graph=graph)
        flat = np.flatnonzero(a)
        np.testing.assert_array_equal(m1.ravel()[flat], flat + 1)  # each pixel to itself
        b = np.roll(a, 1, axis=0)  # 1 pixel away, tolerance is 0.0075*141 = 1.06 px
        m1, m2 = correspond_pixels(a, b, outlier_graph=graph)
        assert (m1 > 0).sum() == a.sum() and (m2 > 0).sum() == b.sum()
        # The two match maps are inverse to each other.
        idx1 = np.flatnonzero(m1)
        np.testing.assert_array_equal(m2.ravel()[m1.ravel()[idx1] - 1] - 1, idx1)
    far = np.roll(a, 2, axis=0)  # beyond the tolerance
    m1, m2 = correspond_pixels(a, far)
    assert not m1.any() and not m2.any()


def test_correspond_pixels_is_maximum_matching():
    # Machine pixel P1 is in range of human pixels Q1 and Q2, P2 only of Q1 (a greedy
    # nearest-neighbour assignment P1-Q1 would leave P2 unmatched).
    h = w = 400  # tolerance 0.0075 * 565.7 = 4.24 px
    a = np.zeros((h, w), dtype=bool)
    b = np.zeros((h, w), dtype=bool)
    a[200, 200] = True  # P1
    a[200, 196] = True  # P2: 4 px from Q1, 8 px from Q2
    b[200, 200] = True  # Q1
    b[200, 204] = True  # Q2: 4 px from P1
    for graph in ("exact", "official"):
        m1, m2 = correspond_pixels(a, b, outlier_graph=graph)
        assert (m1 > 0).sum() == 2
        assert m1[200, 196] == 200 * w + 200 + 1
        assert m1[200, 200] == 200 * w + 204 + 1


def test_boundary_pr_union_over_annotators():
    a = np.zeros((60, 60), dtype=bool)
    a[10, 5:55] = True
    a[40, 5:55] = True
    gt1 = np.zeros_like(a)
    gt1[10, 5:55] = True
    gt2 = np.zeros_like(a)
    gt2[40, 5:55] = True
    res = boundary_pr(torch.from_numpy(a), [gt1, gt2])
    # Each annotator recalls its whole line; every machine pixel is matched by one of them.
    assert res["cnt_recall"] == res["sum_recall"] == 100
    assert res["cnt_precision"] == res["sum_precision"] == 100
    assert res["f"] == 1.0
    res1 = boundary_pr(a, [gt1])
    assert (res1["recall"], res1["precision"]) == (1.0, 0.5)
    assert boundary_f1(a, [gt1]) == pytest.approx(2 / 3)
    assert boundary_pr(np.zeros_like(a), [gt1])["f"] == 0.0
