"""Photometric transforms: each operation of PiCIE's batched Photometric, the per-image
color_jitter, and their shared implementation."""
import colorsys
import math

import numpy as np
import pytest
import torch

from segsort_ext.transforms import Photometric, apply_photometric, color_jitter, sample_photometric


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


def test_color_jitter_operations():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 8, 9, generator=generator, dtype=torch.float64) * 0.5 + 0.25
    assert color_jitter(image) is image  # nothing enabled
    bright = color_jitter(image, brightness=0.5, generator=torch.Generator().manual_seed(1))
    ratio = bright / image
    assert not torch.allclose(ratio, torch.ones_like(ratio))
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio))  # one factor for every pixel
    gray = color_jitter(image, saturation=0.0001, generator=generator)  # factor ~1: nearly unchanged
    torch.testing.assert_close(gray, image, atol=1e-3, rtol=0)
    # Hue: every pixel's hue moves by the same amount; saturation and value stay.
    shifted = color_jitter(image, hue=0.3, generator=torch.Generator().manual_seed(4))
    before = [colorsys.rgb_to_hsv(*image[:, 2, k].tolist()) for k in range(9)]
    after = [colorsys.rgb_to_hsv(*shifted[:, 2, k].tolist()) for k in range(9)]
    moves = [(a[0] - b[0]) % 1.0 for a, b in zip(after, before)]
    assert 0.01 < moves[0] < 0.99 and np.allclose(moves, moves[0], atol=1e-9)
    assert np.allclose([a[1:] for a in after], [b[1:] for b in before], atol=1e-9)
    again = color_jitter(image, 0.3, 0.3, 0.3, 0.1, torch.Generator().manual_seed(9))
    assert torch.equal(again, color_jitter(image, 0.3, 0.3, 0.3, 0.1, torch.Generator().manual_seed(9)))


@pytest.mark.parametrize("operation", ["brightness", "contrast", "saturation", "hue"])
def test_color_jitter_applies_the_operations_of_apply_photometric(operation):
    image = torch.rand(3, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    strength = 0.2 if operation == "hue" else 0.5
    jittered = color_jitter(image, generator=torch.Generator().manual_seed(3), **{operation: strength})
    draw = float(torch.rand((), generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    low = -strength if operation == "hue" else 1 - strength
    factor = torch.tensor([low + 2 * strength * draw], dtype=torch.float64)
    assert torch.equal(jittered, apply_photometric(image[None], _photometric(1, **{operation: factor}))[0])


def test_color_jitter_bad_arguments():
    image = torch.rand(3, 4, 5)
    for name, value in [("brightness", -0.1), ("contrast", float("inf")), ("saturation", -1), ("hue", 0.6)]:
        with pytest.raises(ValueError, match=name):
            color_jitter(image, **{name: value})
    with pytest.raises(ValueError, match="image"):
        color_jitter(torch.rand(1, 4, 5), saturation=0.2)
    with pytest.raises(TypeError, match="image"):
        color_jitter(torch.zeros(3, 4, 5, dtype=torch.uint8), brightness=0.2)
