import math

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.transforms.views import (
    Geometry,
    Photometric,
    apply_geometry,
    apply_photometric,
    identity_geometry,
    picie_views,
    sample_geometry,
    sample_photometric,
)


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
    for b, (t, l, flip) in enumerate([(4, 8, False), (16, 20, True)]):
        crop = images[b, :, t:t + 16, l:l + 20]
        cells = features[b, :, t // stride:t // stride + 4, l // stride:l // stride + 5]
        label_cells = labels[b, t // stride:t // stride + 4, l // stride:l // stride + 5]
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


# -- photometric -----------------------------------------------------------------------
def _photometric(B, **values):
    fields = dict(brightness=torch.ones(B, dtype=torch.float64), contrast=torch.ones(B, dtype=torch.float64),
                  saturation=torch.ones(B, dtype=torch.float64), hue=torch.zeros(B, dtype=torch.float64),
                  grey=torch.zeros(B, dtype=torch.bool), blur_sigma=torch.zeros(B, dtype=torch.float64))
    fields.update(values)
    return Photometric(**fields)


def _grey(images):
    return 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]


def test_photometric_identity_and_each_operation(device, generator):
    images = torch.rand(2, 3, 6, 7, dtype=torch.float64, generator=generator).to(device)
    assert torch.equal(apply_photometric(images, _photometric(2)), images)
    half = torch.full((2,), 0.5, dtype=torch.float64)
    torch.testing.assert_close(apply_photometric(images, _photometric(2, brightness=half)), images * 0.5)
    # contrast 0: every pixel becomes the image's mean grey.
    flat = apply_photometric(images, _photometric(2, contrast=torch.zeros(2, dtype=torch.float64)))
    torch.testing.assert_close(flat, _grey(images).mean((1, 2)).view(2, 1, 1, 1).expand_as(images))
    # saturation 0 and grey: every channel is the luma.
    for params in (_photometric(2, saturation=torch.zeros(2, dtype=torch.float64)),
                   _photometric(2, grey=torch.tensor([True, True]))):
        torch.testing.assert_close(apply_photometric(images, params), _grey(images).unsqueeze(1).expand_as(images))
    # saturation 2 extrapolates away from grey, then clamps to [0, 1].
    vivid = apply_photometric(images, _photometric(2, saturation=torch.full((2,), 2.0, dtype=torch.float64)))
    torch.testing.assert_close(vivid, (2 * images - _grey(images).unsqueeze(1)).clamp(0, 1))


def test_hue_rotation_by_a_third_permutes_channels(device, generator):
    images = torch.rand(2, 3, 5, 5, dtype=torch.float64, generator=generator).to(device)
    third = torch.tensor([1 / 3, -1 / 3], dtype=torch.float64)
    out = apply_photometric(images, _photometric(2, hue=third))
    # +120 degrees: red -> green -> blue -> red, i.e. (r, g, b) -> (b, r, g).
    torch.testing.assert_close(out[0], images[0, [2, 0, 1]], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[1], images[1, [1, 2, 0]], rtol=0, atol=1e-12)
    small = apply_photometric(images, _photometric(2, hue=torch.tensor([0.05, 0.0], dtype=torch.float64)))
    assert not torch.allclose(small[0], images[0]) and torch.equal(small[1], images[1])
    # Hue never changes the value (max channel) or the grey images.
    torch.testing.assert_close(small.amax(1), images.amax(1))


def test_gaussian_blur_matches_direct_convolution(device, generator):
    images = torch.rand(2, 3, 9, 10, dtype=torch.float64, generator=generator)
    sigma = torch.tensor([0.0, 1.3], dtype=torch.float64)
    out = apply_photometric(images.to(device), _photometric(2, blur_sigma=sigma)).cpu()
    assert torch.equal(out[0], images[0])  # sigma 0: untouched
    radius = math.ceil(3 * 1.3)
    weights = torch.tensor([math.exp(-0.5 * (t / 1.3) ** 2) for t in range(-radius, radius + 1)], dtype=torch.float64)
    weights = weights / weights.sum()

    def reflect(i, n):
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    expected = torch.zeros(3, 9, 10, dtype=torch.float64)
    for c in range(3):
        for y in range(9):
            for x in range(10):
                expected[c, y, x] = sum(weights[dy + radius] * weights[dx + radius] * images[1, c, reflect(y + dy, 9),
                                                                                           reflect(x + dx, 10)]
                                        for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1))
    torch.testing.assert_close(out[1], expected, rtol=0, atol=1e-12)


def test_sample_photometric_ranges_and_reproducibility(generator):
    params = sample_photometric(400, generator=generator)
    jittered = params.brightness != 1
    assert 0.7 < float(jittered.double().mean()) < 0.9  # p = 0.8
    assert float(params.brightness.min()) >= 0.7 and float(params.brightness.max()) <= 1.3
    assert float(params.hue.abs().max()) <= 0.1
    assert 0.1 < float(params.grey.double().mean()) < 0.3
    blurred = params.blur_sigma > 0
    assert 0.4 < float(blurred.double().mean()) < 0.6
    assert float(params.blur_sigma[blurred].min()) >= 0.1 and float(params.blur_sigma.max()) <= 2.0
    again = sample_photometric(400, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(params, again))
    none = sample_photometric(5, jitter_probability=0, grey_probability=0, blur_probability=0, generator=generator)
    images = torch.rand(5, 3, 4, 4, generator=generator)
    assert torch.equal(apply_photometric(images, none), images)


def test_photometric_bad_inputs(generator):
    params = sample_photometric(2, generator=generator)
    with pytest.raises(ValueError, match="images"):
        apply_photometric(torch.rand(2, 8, 5, 5), params)  # feature maps are not images
    with pytest.raises(TypeError, match="images"):
        apply_photometric(torch.zeros(2, 3, 5, 5, dtype=torch.uint8), params)
    with pytest.raises(ValueError, match="photometric.brightness"):
        apply_photometric(torch.rand(3, 3, 5, 5), params)
    with pytest.raises(ValueError, match="hue"):
        sample_photometric(2, hue=0.7)
    with pytest.raises(ValueError, match="grey_probability"):
        sample_photometric(2, grey_probability=1.5)
    with pytest.raises(TypeError, match="blur_sigma"):
        sample_photometric(2, blur_sigma=1.0)


def test_picie_views(generator):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    view_1, view_2, geometry = picie_views(images, output_size=(8, 8), generator=generator,
                                           geometry_options={"align": 4})
    assert view_1.shape == (2, 3, 8, 8) and view_2.shape == (2, 3, 16, 16)
    assert float(view_1.min()) >= 0 and float(view_1.max()) <= 1
    again = picie_views(images, output_size=(8, 8), generator=torch.Generator().manual_seed(0),
                        geometry_options={"align": 4})
    assert torch.equal(again[0], view_1) and torch.equal(again[1], view_2)
    # Features of view 2 are brought to view 1's crop: a stride-2 map gives 4 x 4.
    assert apply_geometry(torch.rand(2, 5, 8, 8), geometry).shape == (2, 5, 4, 4)
