"""The contour-based ultrametric hierarchy: format, nesting, the options for thick
learned contours (HED-owt-ucm), level choice, and the BSDS region benchmark on the real
sample (skipped when shared/data is absent)."""
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from segsort_ext.metrics import region_benchmark
from segsort_ext.transforms import HED_UCM_OPTIONS, contour_ucm, edge_strength, image_ucm, ucm_components, ucm_to_labels

from .transforms_testing import assert_compact, is_refinement, purity, scene

DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BSDS_ROOT = DATA_ROOT / "bsds500"
BENCH_UCM = BSDS_ROOT / "bench" / "ucm2"


def _cross_contours(height=21, width=25):
    """Zero everywhere but a strong vertical line (1.0) and a weaker horizontal one (0.4)."""
    contours = np.zeros((height, width))
    contours[10, :] = 0.4
    contours[:, 12] = 1.0
    return contours


def _blurred_line(degrees, size=41, peak=0.8, width=1.5):
    """A straight thick contour through the centre (a Gaussian profile, like HED's), at
    ``degrees`` from the column axis to its normal; and two watershed seeds, one per side."""
    ys, xs = np.mgrid[:size, :size].astype(np.float64) - size // 2
    across = xs * math.cos(math.radians(degrees)) + ys * math.sin(math.radians(degrees))
    markers = np.zeros((size, size), dtype=np.int64)
    markers[across < -8], markers[across > 8] = 1, 2
    return peak * np.exp(-across ** 2 / (2 * width ** 2)), markers


def assert_ucm2_layout(ucm2):
    """The BSDS ucm2 conventions: pixel cells and the frame cells next to them are 0; junction
    and frame-corner cells (even, even) hold the maximum of their 4-neighbours."""
    assert (ucm2[1::2, 1::2] == 0).all()
    assert (ucm2[[0, -1], 1::2] == 0).all() and (ucm2[1::2, [0, -1]] == 0).all()
    padded = np.pad(ucm2, 1)
    neighbours = np.maximum.reduce([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    np.testing.assert_array_equal(ucm2[0::2, 0::2], neighbours[0::2, 0::2])


def test_ucm_format_and_levels_on_a_cross():
    ucm = contour_ucm(_cross_contours())
    assert ucm.shape == (43, 51) and ucm.dtype == torch.float64
    u = ucm.numpy()
    assert_ucm2_layout(u)
    assert u.min() == 0 and u.max() == 1.0  # normalised: the last merge is at 1
    counts = {t: int(ucm_to_labels(ucm, t).max()) + 1 for t in (0.0, 0.3, 0.75, 1.0)}
    assert counts == {0.0: 4, 0.3: 4, 0.75: 2, 1.0: 1}
    halves = ucm_to_labels(ucm, 0.75)
    assert (halves[:, :12] == 0).all() and (halves[:, 13:] == 1).all()  # the strong line survives longest
    raw = contour_ucm(_cross_contours(), normalize=False).numpy()
    assert raw[raw > 0].min() == pytest.approx(0.4) and raw.max() == pytest.approx(1.0, abs=0.1)


def test_ucm_hierarchy_is_nested_and_deterministic():
    image = scene(48, 56, seed=5)
    ucm = image_ucm(image, sigma=1.0)
    assert torch.equal(ucm, image_ucm(image.clone(), sigma=1.0))
    thresholds = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0]
    partitions = [ucm_to_labels(ucm, t) for t in thresholds]
    counts = [int(p.max()) + 1 for p in partitions]
    assert counts[0] > 20 and counts[-1] == 1
    assert all(a >= b for a, b in zip(counts, counts[1:])) and len(set(counts)) >= 4
    for fine, coarse in zip(partitions, partitions[1:]):
        assert_compact(coarse)
        assert is_refinement(fine, coarse)
    # The four colour quadrants are the last regions standing.
    quadrants = torch.zeros(48, 56, dtype=torch.int64)
    quadrants[:24, 28:], quadrants[24:, :28], quadrants[24:, 28:] = 1, 2, 3
    four = partitions[thresholds.index(0.4)]
    assert int(four.max()) + 1 == 4 and purity(four, quadrants) > 0.97 and purity(quadrants, four) > 0.97


def test_ucm_markers_and_contour_inputs():
    contours = torch.from_numpy(_cross_contours())
    markers = np.zeros(contours.shape, dtype=np.int64)
    markers[2, 2], markers[2, 20], markers[18, 2], markers[18, 20] = 1, 2, 3, 4
    ucm = contour_ucm(contours, markers=markers)
    assert int(ucm_to_labels(ucm, 0.0).max()) + 1 == 4
    assert torch.equal(ucm, contour_ucm(contours.numpy(), markers=torch.from_numpy(markers)))  # numpy / torch
    edges = edge_strength(scene())
    assert edges.shape == (32, 40) and edges.dtype == torch.float64
    assert edges[:, 19:21].mean() > 5 * edges[:, :10].mean()  # strongest at the colour boundary


@pytest.mark.parametrize("degrees", [0, 30, 45, 90])
@pytest.mark.parametrize("options", [{}, {"thin": True}, {"oriented": True}, {"thin": True, "oriented": True}],
                         ids=["plain", "thin", "oriented", "thin-oriented"])
def test_a_straight_contour_keeps_its_strength_at_every_angle(degrees, options):
    contours, markers = _blurred_line(degrees)
    ucm = contour_ucm(contours, markers=markers, sigma=1.0, normalize=False, **options).numpy()
    assert_ucm2_layout(ucm)
    # one merge, at the contour's peak: a diagonal contour is a staircase of pixel pairs, and
    # the arc orientation comes from the smoothed arc, not from each pair's axis
    assert ucm.max() == pytest.approx(0.8, abs=0.015)
    assert int(ucm_to_labels(ucm, 0.0).max()) + 1 == 2


def test_hed_options_keep_levels_in_probability_units():
    contours, _ = _blurred_line(30)  # HED-like: a thick ridge of peak probability 0.8
    ucm = contour_ucm(contours, **HED_UCM_OPTIONS).numpy()
    assert_ucm2_layout(ucm)
    # the ridge is the last merge, at its peak (not normalised to 1): one threshold means
    # the same probability in every image
    assert ucm.max() == pytest.approx(0.8, abs=0.015)
    assert int(ucm_to_labels(ucm, 0.75).max()) + 1 == 2
    with pytest.raises(TypeError):
        HED_UCM_OPTIONS["sigma"] = 2.0  # one set of settings, read-only


def test_oriented_weakens_arcs_that_cross_a_contour():
    # A vertical ridge filling a narrow image, with seeds at its top and bottom: the watershed
    # arc between them runs straight across the ridge, strong but pointing the other way.
    xs = np.arange(9) - 4.0
    ridge = np.tile(0.8 * np.exp(-xs ** 2 / (2 * 1.5 ** 2)), (41, 1))
    markers = np.zeros(ridge.shape, dtype=np.int64)
    markers[2, 4], markers[38, 4] = 1, 2
    plain = contour_ucm(ridge, markers=markers, normalize=False).numpy().max()
    oriented = contour_ucm(ridge, markers=markers, normalize=False, oriented=True).numpy().max()
    assert plain == pytest.approx(ridge[0].mean(), rel=0.01) and oriented < 0.01 * plain


def test_sigma_smooths_the_watershed_relief_only():
    line, _ = _blurred_line(0)
    noisy = line + 0.05 * np.random.default_rng(0).random(line.shape)
    rough, smooth = contour_ucm(noisy, normalize=False), contour_ucm(noisy, sigma=1.0, normalize=False)
    assert int(ucm_to_labels(smooth, 0.0).max()) < int(ucm_to_labels(rough, 0.0).max())  # fewer basins
    assert smooth.max() > 0.8  # the strengths are still those of the unsmoothed map


def test_ucm_to_labels_by_number_of_segments():
    ucm = contour_ucm(_cross_contours())  # 4 regions; the halves of the weak line go one by one
    for wanted, found in ((1, 1), (2, 2), (3, 3), (4, 4), (100, 4)):
        assert int(ucm_to_labels(ucm, num_segments=wanted).max()) + 1 == found
    assert torch.equal(ucm_to_labels(ucm, num_segments=2), ucm_to_labels(ucm, 0.75))
    with pytest.raises(ValueError, match="exactly one"):
        ucm_to_labels(ucm)
    with pytest.raises(ValueError, match="exactly one"):
        ucm_to_labels(ucm, 0.5, num_segments=2)
    with pytest.raises(ValueError, match="num_segments"):
        ucm_to_labels(ucm, num_segments=0)


def test_ucm_degenerate_inputs():
    flat = contour_ucm(np.zeros((4, 6)))  # one watershed basin: nothing to merge
    assert flat.shape == (9, 13) and (flat == 0).all()
    assert (ucm_to_labels(flat, 0.0) == 0).all()
    row = contour_ucm(torch.tensor([[0.0, 1.0, 0.0, 0.5, 0.0]]))  # a single row of pixels
    assert row.shape == (3, 11)
    assert [int(ucm_to_labels(row, t).max()) + 1 for t in (0.0, 0.6, 1.0)] == [3, 2, 1]


def test_ucm_bad_input():
    with pytest.raises(ValueError, match="contours"):
        contour_ucm(-np.ones((4, 4)))
    with pytest.raises(ValueError, match="contours"):
        contour_ucm(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="contours"):
        contour_ucm(np.zeros((2, 4, 4)))
    with pytest.raises(TypeError, match="contours"):
        contour_ucm([[0.0, 1.0]])
    with pytest.raises(ValueError, match="markers"):
        contour_ucm(np.zeros((4, 4)), markers=np.zeros((4, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="markers"):
        contour_ucm(np.zeros((4, 4)), markers=np.zeros((4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="ucm2"):
        ucm_to_labels(np.zeros((4, 5)), 0.5)
    with pytest.raises(ValueError, match="threshold"):
        ucm_to_labels(np.zeros((5, 5)), -0.1)
    with pytest.raises(ValueError, match="sigma"):
        edge_strength(scene(), sigma=-1)
    with pytest.raises(ValueError, match="sigma"):
        contour_ucm(np.zeros((4, 4)), sigma=-1)


@pytest.fixture(scope="module")
def bench_ucm():
    path = BENCH_UCM / "2018.mat"
    if not path.is_file():
        pytest.skip(f"BSDS500 bench sample not found at {BENCH_UCM}")
    return scipy.io.loadmat(path)["ucm2"]


def test_ucm_layout_matches_the_bench_files(bench_ucm):
    # The official map follows the cell conventions ours follows (see the cross above).
    assert_ucm2_layout(bench_ucm)
    assert image_ucm(scene(7, 9)).shape == (15, 19)
    for t in (0.1, 0.3):
        labels = ucm_to_labels(bench_ucm, t)
        official = ucm_components(bench_ucm, t)
        assert int(labels.max()) + 1 == official.max()
        assert is_refinement(labels, torch.from_numpy(official.astype(np.int64)) - 1)
        assert is_refinement(torch.from_numpy(official.astype(np.int64)) - 1, labels)


def test_ucm_region_benchmark_on_bsds_val():
    from segsort_ext.datasets import BSDS500

    if not (BSDS_ROOT / "images" / "val").is_dir():
        pytest.skip(f"BSDS500 sample not found at {BSDS_ROOT}")
    dataset = BSDS500(BSDS_ROOT, "val")
    thresholds = np.linspace(0.1, 0.9, 9)
    candidates, grids, truths = [], [], []
    for index in (0, 20, 40):
        image = dataset[index][0]
        ucm = image_ucm(image)
        candidates.append([ucm_to_labels(ucm, t).numpy() for t in thresholds])
        H, W = image.shape[1:]
        ys, xs = np.mgrid[:H, :W]
        grids.append([(ys * k // H) * k + xs * k // W for k in (1, 2, 3, 4, 6, 8, 12, 16, 24)])
        truths.append(dataset.ground_truth(index))
    ours = region_benchmark(candidates, truths)
    grid = region_benchmark(grids, truths)
    # Measured: covering ODS 0.541, PRI ODS 0.864, VOI ODS 1.90 (grid baseline: 0.250, 0.764, 2.78).
    assert ours["covering_ods"] > 0.48 and ours["pri_ods"] > 0.83 and ours["voi_ods"] < 2.1
    assert ours["covering_ods"] > grid["covering_ods"] + 0.2 and ours["voi_ods"] < grid["voi_ods"] - 0.5
