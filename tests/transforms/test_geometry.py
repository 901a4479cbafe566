"""Geometric transforms: PiCIE's Geometry (exact crops, flips, equivariance at every
stride, labels never interpolated) and the per-sample crop, flip and scale."""
import math

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.transforms import (
    Geometry,
    apply_geometry,
    crop_or_pad,
    identity_geometry,
    random_crop,
    random_hflip,
    random_scale,
    sample_geometry,
)
from segsort_ext.utils.constants import IGNORE_INDEX

from .transforms_testing import assert_label_under_image, coded_sample, position_sample


def _geometry(boxes_px, size, output_size, flip):
    """Geometry from pixel boxes (top, left, bottom, right) of an image of `size`."""
    H, W = size
    boxes = torch.tensor(boxes_px, dtype=torch.float64) / torch.tensor([H, W, H, W], dtype=torch.float64)
    return Geometry(boxes, torch.tensor(flip), size, output_size)


def test_flip_twice_is_identity(device, generator):
    images = torch.rand(3, 3, 9, 14, dtype=torch.float64, generator=generator).to(device)
    labels = torch.randint(0, 50, (3, 9, 14), generator=generator).to(device)
    flip = identity_geometry(3, (9, 14), flip=torch.tensor([True, False, True]))
    once = apply_geometry(images, flip)
    assert torch.equal(once[0], images[0].flip(-1)) and torch.equal(once[1], images[1])
    assert torch.equal(apply_geometry(once, flip), images)
    assert torch.equal(apply_geometry(apply_geometry(labels, flip), flip), labels)
    assert torch.equal(apply_geometry(images, identity_geometry(3, (9, 14))), images)


def test_aligned_crop_copies_pixels_at_every_stride(device, generator):
    stride, size = 4, (32, 40)
    images = torch.rand(2, 3, *size, dtype=torch.float64, generator=generator).to(device)
    features = torch.randn(2, 5, 8, 10, dtype=torch.float64, generator=generator).to(device)
    labels = torch.randint(0, 9, (2, 8, 10), generator=generator).to(device)
    # Same crop size (16 x 20 pixels = 4 x 5 cells), different positions, one flipped.
    geometry = _geometry([[4, 8, 20, 28], [16, 20, 32, 40]], size, (16, 20), [False, True])
    out_images = apply_geometry(images, geometry)
    out_features = apply_geometry(features, geometry)
    out_labels = apply_geometry(labels, geometry)
    assert out_features.shape == (2, 5, 4, 5) and out_labels.shape == (2, 4, 5)
    for b, (top, left, flip) in enumerate([(4, 8, False), (16, 20, True)]):
        crop = images[b, :, top:top + 16, left:left + 20]
        rows, cols = slice(top // stride, top // stride + 4), slice(left // stride, left // stride + 5)
        cells, label_cells = features[b, :, rows, cols], labels[b, rows, cols]
        if flip:
            crop, cells, label_cells = crop.flip(-1), cells.flip(-1), label_cells.flip(-1)
        assert torch.equal(out_images[b], crop)
        assert torch.equal(out_features[b], cells)
        assert torch.equal(out_labels[b], label_cells)


def test_equivariance_of_a_strided_network(device, generator):
    # net = 4 x 4 average pooling (translation equivariant with stride 4): for crops on the
    # stride grid, transforming the features equals featurising the transformed image.
    images = torch.rand(2, 3, 32, 40, dtype=torch.float64, generator=generator).to(device)

    def net(x):
        return F.avg_pool2d(x, 4)

    geometry = _geometry([[8, 4, 24, 36], [0, 8, 16, 40]], (32, 40), (16, 32), [True, False])
    torch.testing.assert_close(apply_geometry(net(images), geometry), net(apply_geometry(images, geometry)),
                               rtol=0, atol=1e-14)


def test_sampled_aligned_boxes_lie_on_the_stride_grid(generator):
    geometry = sample_geometry(64, (48, 64), (32, 32), scale=(0.2, 1.0), align=8, generator=generator)
    pixels = geometry.boxes * torch.tensor([48, 64, 48, 64], dtype=torch.float64)
    assert torch.equal(pixels, pixels.round()) and bool((pixels.round().long() % 8 == 0).all())
    top, left, bottom, right = pixels.unbind(1)
    assert bool((top >= 0).all() and (bottom <= 48).all() and (left >= 0).all() and (right <= 64).all())
    assert bool((bottom - top >= 8).all() and (right - left >= 8).all())
    area = (bottom - top) * (right - left) / (48 * 64)
    assert float(area.max()) <= 1.0 and float(area.min()) > 0.05
    assert 0 < int(geometry.flip.sum()) < 64  # p = 0.5 over 64 draws
    again = sample_geometry(64, (48, 64), (32, 32), scale=(0.2, 1.0), align=8,
                            generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.boxes, geometry.boxes)  # the generator fixture is seeded with 0


def test_bilinear_matches_grid_sample(device, generator):
    B, size, out = 3, (11, 13), (7, 9)
    images = torch.randn(B, 4, *size, dtype=torch.float64, generator=generator).to(device)
    geometry = sample_geometry(B, size, out, scale=(0.1, 0.9), generator=generator)
    geometry = geometry._replace(flip=torch.tensor([True, False, True]))
    top, left, bottom, right = geometry.boxes.unbind(1)
    ys = top[:, None] + (torch.arange(out[0], dtype=torch.float64) + 0.5) / out[0] * (bottom - top)[:, None]
    xs = left[:, None] + (torch.arange(out[1], dtype=torch.float64) + 0.5) / out[1] * (right - left)[:, None]
    xs = torch.where(geometry.flip[:, None], xs.flip(1), xs)
    grid = torch.stack([(2 * xs - 1)[:, None, :].expand(B, *out), (2 * ys - 1)[:, :, None].expand(B, *out)], -1)
    expected = F.grid_sample(images, grid.to(device), mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(apply_geometry(images, geometry), expected, rtol=0, atol=1e-12)


def test_labels_are_never_interpolated(device, generator):
    size, out = (10, 12), (17, 7)  # up in one direction, down in the other
    labels = torch.randint(0, 1000, (4, *size), generator=generator) * 7 + 3
    geometry = sample_geometry(4, size, out, scale=(0.3, 1.0), generator=generator)
    result = apply_geometry(labels.to(device), geometry).cpu()
    assert result.dtype == torch.int64 and result.shape == (4, *out)
    for b in range(4):
        assert set(result[b].unique().tolist()) <= set(labels[b].unique().tolist())
        # Each output pixel copies the input pixel whose cell contains its sample point.
        top, left, bottom, right = geometry.boxes[b].tolist()
        for i in range(out[0]):
            for j in range(out[1]):
                jj = out[1] - 1 - j if bool(geometry.flip[b]) else j
                y = top + (i + 0.5) / out[0] * (bottom - top)
                x = left + (jj + 0.5) / out[1] * (right - left)
                row = min(int(math.floor(y * size[0])), size[0] - 1)
                col = min(int(math.floor(x * size[1])), size[1] - 1)
                assert int(result[b, i, j]) == int(labels[b, row, col])
    with pytest.raises(TypeError, match="nearest"):
        apply_geometry(labels, geometry, mode="bilinear")


def test_labels_consistent_across_resolutions(generator):
    # A label map at stride 4 and its 4x upsampling: the same aligned crop selects the
    # same labels at both resolutions.
    coarse = torch.randint(0, 20, (2, 6, 8), generator=generator)
    fine = coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)
    geometry = sample_geometry(2, (24, 32), (12, 16), scale=(0.25, 0.25), ratio=(4 / 3, 4 / 3), align=4,
                               generator=generator)
    pixels = geometry.boxes * torch.tensor([24, 32, 24, 32], dtype=torch.float64)
    assert torch.equal(pixels[:, 2] - pixels[:, 0], torch.full((2,), 12.0, dtype=torch.float64))
    out_fine = apply_geometry(fine, geometry)
    out_coarse = apply_geometry(coarse, geometry)
    assert out_coarse.shape == (2, 3, 4)
    assert torch.equal(out_fine, out_coarse.repeat_interleave(4, 1).repeat_interleave(4, 2))


def test_output_size_rules(generator):
    geometry = sample_geometry(1, (32, 32), (16, 16), generator=generator)
    assert apply_geometry(torch.rand(1, 2, 8, 8), geometry).shape == (1, 2, 4, 4)
    assert apply_geometry(torch.rand(1, 2, 6, 6), geometry).shape == (1, 2, 3, 3)
    with pytest.raises(ValueError, match="output_size"):
        apply_geometry(torch.rand(1, 2, 5, 5), geometry)  # 16 * 5 / 32 is not whole
    assert apply_geometry(torch.rand(1, 2, 5, 5), geometry, output_size=(3, 5)).shape == (1, 2, 3, 5)


def test_geometry_bad_inputs(generator):
    x = torch.rand(2, 3, 8, 8)
    geometry = sample_geometry(2, (8, 8), generator=generator)
    with pytest.raises(ValueError, match="batch size"):
        apply_geometry(torch.rand(3, 3, 8, 8), geometry)
    with pytest.raises(ValueError, match="mode"):
        apply_geometry(x, geometry, mode="bicubic")
    with pytest.raises(ValueError, match="x must have shape"):
        apply_geometry(torch.rand(8, 8), geometry)
    with pytest.raises(TypeError, match="geometry"):
        apply_geometry(x, (0, 0, 1, 1))
    bad = geometry._replace(boxes=torch.tensor([[0.5, 0.0, 0.4, 1.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="geometry.boxes"):
        apply_geometry(x, bad)
    with pytest.raises(ValueError, match="geometry.flip"):
        apply_geometry(x, geometry._replace(flip=torch.zeros(2)))
    with pytest.raises(ValueError, match="scale"):
        sample_geometry(2, (8, 8), scale=(0.0, 0.5))
    with pytest.raises(ValueError, match="align"):
        sample_geometry(2, (8, 8), align=9)
    with pytest.raises(TypeError, match="input_size"):
        sample_geometry(2, "8x8")
    with pytest.raises(TypeError, match="generator"):
        sample_geometry(2, (8, 8), generator=0)


def test_crop_or_pad_keeps_the_top_left_corner():
    image, label = coded_sample(3, 4)
    padded = crop_or_pad(label, (5, 3), IGNORE_INDEX)
    assert torch.equal(padded[:3], label[:, :3]) and (padded[3:] == IGNORE_INDEX).all()
    assert torch.equal(crop_or_pad(image, (2, 2), 0.0), image[:, :2, :2])
    assert torch.equal(crop_or_pad(image, (3, 4), 0.0), image)


def test_random_crop_pads_small_inputs_and_hflip():
    image, label = coded_sample(3, 4)
    generator = torch.Generator().manual_seed(0)
    out_image, out_label = random_crop(image, label, (5, 6), generator)
    assert out_image.shape == (3, 5, 6)
    torch.testing.assert_close(out_label[:3, :4], label)
    assert (out_label[3:] == IGNORE_INDEX).all() and (out_label[:, 4:] == IGNORE_INDEX).all()
    flipped_image, flipped_label = random_hflip(image, label, p=1.0)
    torch.testing.assert_close(flipped_label, label.flip(-1))
    torch.testing.assert_close(flipped_image, image.flip(-1))
    same_image, same_label = random_hflip(image, label, p=0.0)
    assert same_image is image and same_label is label


def test_random_scale_keeps_label_under_image():
    image, label = position_sample(13, 17)
    generator = torch.Generator().manual_seed(5)
    sizes = set()
    for scale_range in [(0.3, 0.95)] * 6 + [(1.05, 3.0)] * 6:
        out_image, out_label = random_scale(image, torch.stack([label, label + 1]), scale_range, generator)
        sizes.add(tuple(out_image.shape[1:]))
        assert out_label.shape == (2, *out_image.shape[1:]) and out_label.dtype == torch.int64
        assert torch.equal(out_label[1], out_label[0] + 1)
        assert_label_under_image(out_image, out_label[0], 17)
    assert len(sizes) > 6 and any(h > 13 for h, _ in sizes) and any(h < 13 for h, _ in sizes)
    # The check has teeth: 'nearest' resampling of the label misses it when downscaling.
    down = torch.nn.functional.interpolate(image[None], size=(5, 6), mode="bilinear", align_corners=False)[0]
    shifted = torch.nn.functional.interpolate(label[None, None].double(), size=(5, 6), mode="nearest")[0, 0].long()
    with pytest.raises(AssertionError):
        assert_label_under_image(down, shifted, 17)


def test_random_scale_is_exact_on_blocks():
    label = torch.arange(1, 21).reshape(4, 5).repeat_interleave(4, 0).repeat_interleave(4, 1)  # 4 x 4 blocks
    image = label.double().expand(3, -1, -1)
    out_image, out_label = random_scale(image, label, (0.5, 0.5))
    assert out_label.shape == (8, 10)
    assert torch.equal(out_image[0], out_label.double())  # the image encoding the label survives exactly


def test_random_scale_bad_arguments():
    image, label = torch.rand(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64)
    for bad in [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0), (1.0, float("nan"))]:
        with pytest.raises(ValueError, match="scale_range"):
            random_scale(image, label, bad)
    with pytest.raises(TypeError, match="scale_range"):
        random_scale(image, label, 1.5)
    with pytest.raises(ValueError, match="label"):
        random_scale(image, torch.zeros(4, 6, dtype=torch.int64))



@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_pixels_reach_only_the_outputs_that_sample_them(value):
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    on_grid = identity_geometry(2, (8, 8), flip=torch.tensor([True, False]))
    off_grid = sample_geometry(2, (8, 8), generator=torch.Generator().manual_seed(1))
    for geometry, size in ((on_grid, (8, 8)), (off_grid, (13, 11))):
        outputs = []
        for pixel in (0.0, 1.0, value):
            changed = x.clone()
            changed[0, 0, 3, 3] = pixel
            outputs.append(apply_geometry(changed, geometry, output_size=size))
        weighted = outputs[0] != outputs[1]  # the outputs with a non-zero weight on the pixel
        assert weighted.any()
        assert torch.equal(~torch.isfinite(outputs[2]), weighted)
