"""Superpixel wrappers and the batched pseudo segments as SegSortLoss labels."""
import numpy as np
import pytest
import torch

from segsort_ext.nn import SegSortLoss
from segsort_ext.transforms import felzenszwalb_segments, pseudo_segments, slic_segments

from .transforms_testing import assert_compact, is_refinement, purity, scene


def _disc(height=64, width=80, seed=0):
    """Float image (3, H, W): a red disc on a blue background, with mild noise; and its mask."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    inside = (ys - 0.48 * height) ** 2 + (xs - 0.47 * width) ** 2 < (0.33 * height) ** 2
    red, blue = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1), torch.tensor([0.1, 0.3, 0.8]).view(3, 1, 1)
    image = torch.where(inside, red, blue)
    noise = 0.03 * torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))
    return (image + noise).clamp(0, 1), inside.long()


@pytest.mark.parametrize("segment", [lambda im: slic_segments(im, 20), lambda im: felzenszwalb_segments(im, scale=50)],
                         ids=["slic", "felzenszwalb"])
def test_superpixels_compact_deterministic_and_follow_edges(segment):
    image, disc = _disc()
    ids = segment(image)
    assert ids.shape == (64, 80)
    assert_compact(ids)
    assert torch.equal(ids, segment(image.clone()))
    assert 2 <= int(ids.max()) + 1 <= 200
    # Segments follow the disc's outline, unlike a grid of as many blocks as SLIC asks for.
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(80), indexing="ij")
    grid = (ys // 16) * 5 + xs // 16
    assert purity(ids, disc) > 0.95 and purity(grid, disc) < 0.91  # measured: SLIC 0.970, grid 0.898


def test_superpixel_options_and_grayscale():
    image = scene()
    few, many = slic_segments(image, 8), slic_segments(image, 80)
    assert int(few.max()) < int(many.max())
    gray = slic_segments(image.mean(0), 12)  # (H, W) works, and (1, H, W) gives the same
    assert torch.equal(gray, slic_segments(image.mean(0, keepdim=True), 12))
    assert_compact(felzenszwalb_segments(image[:1], scale=20, min_size=5))


def test_superpixels_bad_input():
    with pytest.raises(TypeError, match="image"):
        slic_segments(np.zeros((3, 8, 8)))
    with pytest.raises(TypeError, match="image"):
        slic_segments(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="image"):
        slic_segments(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="image"):
        felzenszwalb_segments(torch.full((3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="n_segments"):
        slic_segments(scene(), 0)
    with pytest.raises(ValueError, match="compactness"):
        slic_segments(scene(), compactness=0)
    with pytest.raises(ValueError, match="scale"):
        felzenszwalb_segments(scene(), scale=-1)
    with pytest.raises(TypeError, match="min_size"):
        felzenszwalb_segments(scene(), min_size=2.5)


def test_pseudo_segments_batch_and_valid_mask():
    images = torch.stack([scene(seed=0), scene(seed=1).flip(-1)])
    ids = pseudo_segments(images, "slic", n_segments=16)
    assert ids.shape == (2, 32, 40)
    for b in range(2):
        assert torch.equal(ids[b], slic_segments(images[b], 16))
    valid = torch.ones(2, 32, 40, dtype=torch.bool)
    valid[:, :, 30:] = False  # e.g. collate's padding
    masked = pseudo_segments(images, "felzenszwalb", valid=valid, scale=50)
    assert (masked[~valid] == -1).all()
    for b in range(2):
        assert_compact(masked[b][:, :30])
        full = felzenszwalb_segments(images[b], scale=50)
        assert is_refinement(masked[b][:, :30], full[:, :30]) and is_refinement(full[:, :30], masked[b][:, :30])
    with pytest.raises(ValueError, match="method"):
        pseudo_segments(images, "quickshift")
    with pytest.raises(ValueError, match="images"):
        pseudo_segments(images[0])
    with pytest.raises(ValueError, match="valid"):
        pseudo_segments(images, valid=valid[:1])
    with pytest.raises(TypeError, match="valid"):
        pseudo_segments(images, valid=valid.long())


def _cross_batch():
    """(2, 1, 21, 25) contour maps: a strong vertical line (1.0) and a weaker horizontal one
    (0.4), the second map mirrored."""
    contours = torch.zeros(21, 25, dtype=torch.float64)
    contours[10, :] = 0.4
    contours[:, 12] = 1.0
    return torch.stack([contours, contours.flip(0)])[:, None]


def test_pseudo_segments_from_contours():
    contours = _cross_batch()
    images = torch.rand(2, 3, 21, 25, generator=torch.Generator().manual_seed(0))
    quarters = pseudo_segments(images, "contour-ucm", contours=contours, num_segments=4)
    halves = pseudo_segments(images, "contour-ucm", contours=contours, threshold=0.5, normalize=False)
    assert quarters.shape == halves.shape == (2, 21, 25) and quarters.dtype == torch.int64
    for b in range(2):
        assert_compact(quarters[b]) and assert_compact(halves[b])
        assert int(quarters[b].max()) + 1 == 4 and int(halves[b].max()) + 1 == 2
        assert is_refinement(quarters[b], halves[b])
        assert (halves[b][:, :12] == 0).all() and (halves[b][:, 13:] == 1).all()  # the strong line stays
    valid = torch.ones(2, 21, 25, dtype=torch.bool)
    valid[:, :, 20:] = False
    masked = pseudo_segments(images, "contour-ucm", contours=contours.float(), valid=valid, num_segments=4)
    assert (masked[~valid] == -1).all() and int(masked[0].max()) + 1 == 4


def test_pseudo_segments_contour_errors():
    images, contours = torch.rand(2, 3, 21, 25), _cross_batch()
    with pytest.raises(ValueError, match="needs contours"):
        pseudo_segments(images, "contour-ucm", num_segments=4)
    with pytest.raises(ValueError, match=r"contours must have shape \(B, 1, H, W\)"):
        pseudo_segments(images, "contour-ucm", contours=contours[:, 0], num_segments=4)
    with pytest.raises(ValueError, match="contours must have shape"):
        pseudo_segments(images[:1], "contour-ucm", contours=contours, num_segments=4)
    with pytest.raises(TypeError, match="contours"):
        pseudo_segments(images, "contour-ucm", contours=contours.long(), num_segments=4)
    with pytest.raises(ValueError, match="contours"):
        pseudo_segments(images, "contour-ucm", contours=-contours, num_segments=4)
    with pytest.raises(ValueError, match="for method 'contour-ucm'"):
        pseudo_segments(images, "slic", contours=contours)
    with pytest.raises(ValueError, match="exactly one"):
        pseudo_segments(images, "contour-ucm", contours=contours)


def test_pseudo_segments_drive_unsupervised_segsort_loss():
    images = torch.stack([scene(seed=2), scene(seed=3)])
    segments = pseudo_segments(images, "felzenszwalb", scale=30, min_size=10)
    embeddings = torch.randn(2, 8, 32, 40, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss_fn = SegSortLoss(loss="vmf", grid=(2, 2), kmeans_iters=3, ignore_index=-1)
    loss, diag = loss_fn(embeddings, segments, return_diagnostics=True)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert embeddings.grad.abs().sum() > 0
    seg = diag["segments"]
    assert (seg.ids >= 0).all()  # every pixel of a pseudo segment takes part
    # Aligned segments never cross a pseudo segment boundary, and every pseudo segment is used.
    assert torch.equal(seg.label[seg.ids], segments)
    assert diag["num_segments"] >= int(segments[0].max()) + int(segments[1].max()) + 2
