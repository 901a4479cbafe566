"""Tests of segsort_ext.transforms.edges (triangle blur, edge orientation, Dollar-style
edge NMS) on synthetic ridges and steps, and of a thinned soft map going through the BSDS
boundary benchmark of segsort_ext.metrics."""
import math

import numpy as np
import pytest
import torch

from segsort_ext.transforms import edge_nms, edge_orientation, triangle_blur

H, W = 40, 50
ANGLES = [0, 20, 30, 45, 60, 90, 110, 135, 160]


def _ridge(degrees, sigma=2.0, centre=(25.2, 20.1)):
    """A straight Gaussian ridge whose normal is at ``degrees`` from the x axis, and each
    pixel's signed distance to its crest line."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    theta = math.radians(degrees)
    distance = (x - centre[0]) * math.cos(theta) + (y - centre[1]) * math.sin(theta)
    return torch.exp(-distance ** 2 / (2 * sigma ** 2)), distance


def _interior(margin=8):
    inside = torch.zeros(H, W, dtype=torch.bool)
    inside[margin:-margin, margin:-margin] = True
    return inside


def test_triangle_blur_is_the_toolbox_convtri():
    image = torch.rand(7, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for radius in (1, 2, 4):
        taps = np.r_[np.arange(1, radius + 2), np.arange(radius, 0, -1)] / (radius + 1) ** 2
        padded = np.pad(image.numpy(), radius, mode="symmetric")
        rows = np.stack([np.convolve(r, taps, mode="valid") for r in padded])
        expected = np.stack([np.convolve(c, taps, mode="valid") for c in rows.T]).T
        np.testing.assert_allclose(triangle_blur(image, radius).numpy(), expected, rtol=0, atol=1e-12)
    assert triangle_blur(image, 0) is image
    torch.testing.assert_close(triangle_blur(torch.full((2, 5, 6), 0.3), 4), torch.full((2, 5, 6), 0.3))


@pytest.mark.parametrize("degrees", ANGLES)
def test_orientation_is_the_ridge_normal(degrees):
    ridge, distance = _ridge(degrees)
    orientation = edge_orientation(ridge)
    assert orientation.shape == ridge.shape and orientation.min() >= 0 and orientation.max() < math.pi
    crest = (distance.abs() < 1.5) & _interior()
    error = torch.remainder(orientation[crest] - math.radians(degrees) + math.pi / 2, math.pi) - math.pi / 2
    assert error.abs().max() < math.radians(2)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_blurred_step_edge_thins_to_one_column_at_the_step(radius):
    x = torch.arange(W, dtype=torch.float64)
    step = 0.5 * (1 + torch.erf((x - 21) / (1.5 * math.sqrt(2))))  # a step at column 21, blurred
    image = step.expand(H, W)
    gy, gx = torch.gradient(image)
    magnitude = torch.hypot(gx, gy)
    thinned = edge_nms(magnitude, radius=radius)
    rows = slice(5, H - 5)  # away from the faded top and bottom borders
    assert (thinned[rows] > 0).sum(dim=1).eq(1).all()
    assert (thinned[rows, 21] == magnitude[rows, 21]).all()
    assert thinned[rows, 21].min() > 0


@pytest.mark.parametrize("radius", [1, 2])
@pytest.mark.parametrize("degrees", ANGLES)
def test_oriented_ridges_thin_to_unbroken_lines(degrees, radius):
    ridge, distance = _ridge(degrees)
    kept = edge_nms(ridge, radius=radius) > 0.5
    assert distance[kept & _interior()].abs().max() < 1.0  # on the crest line
    # One or two pixels in each row (steep lines) or column (flat ones) that the crest
    # crosses inside the interior: thin and unbroken.
    theta = math.radians(degrees)
    axis = 1 if abs(math.cos(theta)) >= abs(math.sin(theta)) - 1e-9 else 0
    crossing = distance.abs().argmin(dim=axis)
    lines = torch.arange(crossing.numel())
    inside = (crossing >= 8) & (crossing < kept.shape[axis] - 8) & (lines >= 8) & (lines < lines.numel() - 8)
    per_line = kept.sum(dim=axis)[inside]
    assert inside.sum() >= 15 and per_line.min() >= 1 and per_line.max() <= 2


def test_border_fade_and_plateaus():
    flat = torch.full((12, 16), 0.8)
    thinned = edge_nms(flat, border=4)  # a plateau is kept (ties within the tolerance)
    ramp = torch.tensor([0, 0.25, 0.5, 0.75] + [1] * 4 + [0.75, 0.5, 0.25, 0])
    torch.testing.assert_close(thinned[:, 6], 0.8 * ramp)
    ramp_x = torch.tensor([0, 0.25, 0.5, 0.75] + [1] * 8 + [0.75, 0.5, 0.25, 0])
    torch.testing.assert_close(thinned, 0.8 * ramp[:, None] * ramp_x[None, :])
    torch.testing.assert_close(edge_nms(flat, border=0), flat)
    # The fade never exceeds half the image's smaller side, on either axis.
    assert edge_nms(torch.ones(4, 30), border=5)[1].tolist() == [0.0, 0.25] + [0.5] * 26 + [0.25, 0.0]


def test_batches_and_given_orientation():
    ridges = torch.stack([_ridge(d)[0] for d in (0, 45, 110)]).float()
    batched = edge_nms(ridges[:, None])
    assert batched.shape == (3, 1, H, W) and batched.dtype == torch.float32
    for k in range(3):
        torch.testing.assert_close(batched[k, 0], edge_nms(ridges[k]))
    torch.testing.assert_close(edge_nms(ridges, edge_orientation(ridges)), edge_nms(ridges))
    # The given orientation is the one used: along a horizontal ridge nothing is suppressed.
    horizontal = _ridge(90)[0]
    assert (edge_nms(horizontal, torch.zeros_like(horizontal), border=0) == horizontal).all()


def test_rejects_bad_arguments():
    with pytest.raises(TypeError, match="edges"):
        edge_nms(torch.zeros(5, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="H, W >= 2"):
        edge_nms(torch.zeros(5))
    with pytest.raises(ValueError, match="orientation"):
        edge_nms(torch.zeros(5, 5), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="radius"):
        edge_nms(torch.zeros(5, 5), radius=0)
    with pytest.raises(ValueError, match="tolerance"):
        edge_nms(torch.zeros(5, 5), tolerance=-1.0)


def test_thinned_soft_map_through_the_bsds_benchmark():
    pytest.importorskip("scipy")
    from segsort_ext.metrics import bsds_benchmark, seg2bdry

    segmentation = np.ones((H, W), dtype=np.int64)
    segmentation[10:30, 12:38] = 2  # a rectangle
    human = seg2bdry(segmentation)
    # A soft, three-pixel-wide response around the human boundary, weaker on one side.
    soft = torch.nn.functional.max_pool2d(torch.from_numpy(human).double()[None, None], 3, 1, 1)[0, 0]
    soft = triangle_blur(soft, 2) * torch.linspace(0.6, 1.0, W, dtype=torch.float64)
    thinned = edge_nms(soft, border=0)
    assert (thinned > 0).sum() < (soft > 0.05).sum() / 2
    result = bsds_benchmark([thinned], [[{"segmentation": segmentation, "boundaries": human}]], kind="pb",
                            nthresh=9)["boundary"]
    assert result["ods"]["f"] > 0.95 and result["ois"]["f"] >= result["ods"]["f"] - 1e-9 and 0 < result["ap"] <= 1
