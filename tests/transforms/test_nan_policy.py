"""The NaN/inf policy of every public transform (docs/DESIGN.md, "NaN"): each either keeps
a non-finite pixel local -- it reaches only the outputs documented -- or refuses it with a
ValueError naming the argument; in float32, float16 and bfloat16 where the API takes them."""
import importlib.util
import math

import numpy as np
import pytest
import torch

import segsort_ext.transforms as T
from segsort_ext.testing import INF, NAN

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SKIMAGE = pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="scikit-image is not installed")


def _image(value, dtype=torch.float32, shape=(3, 16, 16), at=(8, 8)):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    x[..., at[0], at[1]] = value
    return x


def _window(shape, at, radius):
    """(H, W) mask of the pixels within ``radius`` (in each axis) of ``at``."""
    mask = torch.zeros(shape[-2:], dtype=torch.bool)
    mask[max(0, at[0] - radius):at[0] + radius + 1, max(0, at[1] - radius):at[1] + radius + 1] = True
    return mask


def _assert_local(out, clean, window, exact=True):
    """Outside ``window`` (H, W) the output equals the clean one (to rounding unless
    ``exact``); inside, anything."""
    outside = ~window.expand_as(out)
    assert bool(torch.isfinite(out[outside]).all())
    if exact:
        assert torch.equal(out[outside], clean[outside])
    else:
        tolerance = 1e-5 if out.dtype.itemsize >= 4 else 5e-2
        torch.testing.assert_close(out[outside], clean[outside], rtol=tolerance, atol=tolerance)


# ---- edges ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_edge_nms_refuses_non_finite_edges_and_orientation(dtype, value):
    with pytest.raises(ValueError, match="edges must be finite"):
        T.edge_nms(_image(value, dtype))
    edges = _image(0.5, dtype)
    with pytest.raises(ValueError, match="orientation must be finite"):
        T.edge_nms(edges, _image(value, dtype))


@pytest.mark.parametrize("dtype", [torch.float64, *DTYPES])
def test_edge_nms_and_orientation_of_huge_finite_maps_are_finite(dtype):
    clean = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    huge = clean * torch.finfo(dtype).max
    orientation = T.edge_orientation(huge)
    assert bool(torch.isfinite(orientation).all())
    thin = T.edge_nms(huge)
    assert bool(torch.isfinite(thin).all())
    # Scaling by a power of two changes nothing but the scale.
    scale = 2.0 ** (math.frexp(torch.finfo(dtype).max)[1] - 1)
    big = clean * scale
    torch.testing.assert_close(T.edge_orientation(big), T.edge_orientation(clean))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [NAN, INF])
def test_triangle_blur_and_edge_orientation_keep_non_finite_pixels_local(dtype, value):
    radius, smoothing = 2, 3
    bad, clean = _image(value, dtype), _image(0.5, dtype)
    out = T.triangle_blur(bad, radius)
    _assert_local(out, T.triangle_blur(clean, radius), _window(bad.shape, (8, 8), radius))
    assert not bool(torch.isfinite(out[:, 8, 8]).any())
    angles = T.edge_orientation(bad, smoothing)
    _assert_local(angles, T.edge_orientation(clean, smoothing), _window(bad.shape, (8, 8), smoothing + 2))
    assert angles[:, 8, 8].isnan().all()


# ---- UCM and superpixels: refused, naming the argument ----

@SKIMAGE
def test_contour_ucm_refuses_non_finite_and_gives_finite_levels_for_huge_values():
    for dtype in (torch.float64, *DTYPES):
        for value in (NAN, INF):
            with pytest.raises(ValueError, match="contours"):
                T.contour_ucm(_image(value, dtype, (16, 16)))
    contours = torch.rand(16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for options in ({"normalize": False}, dict(T.HED_UCM_OPTIONS),
                    {"oriented": True, "thin": True, "sigma": 2.0, "normalize": False}):
        reference = T.contour_ucm(contours, **options)
        for scale in (1e308, np.finfo(np.float64).max):
            ucm = T.contour_ucm(contours * scale, **options)
            assert bool(torch.isfinite(ucm).all()), (scale, options)
            assert float(ucm.max()) <= float((contours * scale).max())
            for k in (2, 5, 20):  # the same hierarchy
                assert torch.equal(T.ucm_to_labels(ucm, num_segments=k), T.ucm_to_labels(reference, num_segments=k))
        assert T.contour_ucm(contours * 1e308, **{**options, "normalize": True}).max() == 1.0


@SKIMAGE
@pytest.mark.parametrize("dtype", DTYPES)
def test_ucm_and_superpixels_refuse_non_finite_pixels_by_name(dtype):
    for value in (NAN, INF):
        image = _image(value, dtype)
        for call in (T.edge_strength, T.image_ucm, T.slic_segments, T.felzenszwalb_segments,
                     lambda x: T.pseudo_segments(x[None])):
            with pytest.raises(ValueError, match="image"):
                call(image)
        with pytest.raises(ValueError, match="ucm2"):
            T.ucm_to_labels(_image(value, dtype, (17, 17)), 0.5)
        with pytest.raises(ValueError, match="contours"):
            T.pseudo_segments(_image(0.5, dtype)[None], "contour-ucm", contours=_image(value, dtype, (1, 1, 16, 16)))
    # Low-precision maps are read exactly (numpy has no bfloat16).
    assert T.ucm_to_labels(torch.zeros(17, 17, dtype=dtype), 0.5).shape == (8, 8)


# ---- photometric ----

def _identity(batch_size=1):
    return T.sample_photometric(batch_size, jitter_probability=0, grey_probability=0, blur_probability=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_photometric_keeps_nan_where_it_is(dtype):
    image = _image(0.5, dtype)
    image[1, 8, 8] = NAN
    out = T.apply_photometric(image[None], _identity())[0]
    pixel = _window(image.shape, (8, 8), 0).expand_as(image)
    # NaN stays at its pixel (all its channels: saturation mixes them); the rest is unchanged.
    assert bool(out[pixel].isnan().all())
    assert torch.equal(out[~pixel], image[~pixel])
    assert T.color_jitter(image) is image  # no enabled jitter: the image itself


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_photometric_jitter_keeps_non_finite_pixels_local(dtype, value):
    bad, clean = _image(value, dtype), _image(0.5, dtype)
    pixel = _window(bad.shape, (8, 8), 0)
    photometric = T.sample_photometric(2, jitter_probability=1, grey_probability=0.5, blur_probability=0,
                                       generator=torch.Generator().manual_seed(3))
    batch = torch.stack([bad, clean])
    out = T.apply_photometric(batch, photometric)
    reference = T.apply_photometric(torch.stack([clean, clean]), photometric)
    # The mean grey level of the contrast is over the finite pixels: the clean image with
    # the bad pixel replaced by the mean of the others gives the same mean.
    assert torch.equal(out[1], reference[1])
    assert bool(torch.isfinite(out[0][~pixel.expand_as(out[0])]).all())
    if value != value:
        assert out[0, :, 8, 8].isnan().all()
    for seed in range(4):
        jittered = T.color_jitter(bad, 0.4, 0.4, 0.4, 0.1, generator=torch.Generator().manual_seed(seed))
        assert bool(torch.isfinite(jittered[~pixel.expand_as(jittered)]).all())
        assert bool(((jittered[torch.isfinite(jittered)] >= 0) & (jittered[torch.isfinite(jittered)] <= 1)).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_photometric_blur_spreads_nan_over_its_window_only(dtype):
    bad = _image(NAN, dtype)[None]
    photometric = _identity()._replace(blur_sigma=torch.tensor([0.5], dtype=torch.float64))
    out = T.apply_photometric(bad, photometric)[0]
    radius = 2  # ceil(3 * sigma)
    window = _window(bad.shape, (8, 8), radius)
    assert bool(torch.isfinite(out[~window.expand_as(out)]).all())
    assert out[:, 8, 8].isnan().all()


# ---- geometry and augmentation: a pixel reaches only the outputs sampled from it ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [NAN, INF])
def test_geometry_keeps_non_finite_pixels_local(dtype, value):
    bad, clean = _image(value, dtype), _image(0.5, dtype)
    label = torch.zeros(16, 16, dtype=torch.long)
    generator = torch.Generator().manual_seed(4)
    geometry = T.sample_geometry(1, (16, 16), (12, 12), generator=generator)
    for call in (lambda x: T.apply_geometry(x[None], geometry)[0],
                 lambda x: T.crop_or_pad(x, (20, 12), 0.0),
                 lambda x: T.random_crop(x, label, (12, 12), generator=torch.Generator().manual_seed(5))[0],
                 lambda x: T.random_hflip(x, label, p=1.0)[0],
                 lambda x: T.random_scale(x, label, (1.5, 1.5))[0],
                 lambda x: T.RandomCropFlip((12, 12))(x, label)[0],
                 lambda x: T.TrainAugmentation((12, 12), scale_range=(1.0, 1.5))(x, label)[0]):
        out, reference = call(bad), call(clean)
        changed = out.ne(reference) & ~(out.isnan() & reference.isnan())
        # Only the outputs interpolated from the pixel (bilinear, scale <= 1.5: at most a
        # 3x3 cell) in each channel.
        assert int(changed.sum()) <= 3 * 9
        assert bool(torch.isfinite(out[~changed]).all())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [NAN, INF])
def test_picie_views_keep_non_finite_pixels_within_the_blur_window(dtype, value):
    bad = _image(value, dtype, (3, 64, 64), (32, 32))[None]
    for seed in range(3):
        view = T.picie_views(bad, generator=torch.Generator().manual_seed(seed))[0]
        # Blur sigma <= 2 (radius 6) and a crop rescaled by at most 2: a 26x26 window.
        assert int((~torch.isfinite(view)).sum()) <= 3 * 26 * 26


# ---- guided filtering ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [NAN, INF])
def test_guided_filtering_keeps_non_finite_pixels_local(dtype, value):
    bad, clean = _image(value, dtype)[None], _image(0.5, dtype)[None]
    radius = 1
    for out, reference, reach in (
            (T.box_filter(bad, radius), T.box_filter(clean, radius), radius),
            (T.guided_filter(bad, clean, radius, 1e-2), T.guided_filter(clean, clean, radius, 1e-2), 2 * radius),
            (T.guided_filter(clean, bad, radius, 1e-2), T.guided_filter(clean, clean, radius, 1e-2), 2 * radius)):
        window = _window(bad.shape, (8, 8), reach)
        _assert_local(out[0], reference[0], window, exact=False)
        assert not bool(torch.isfinite(out[0, :, 8, 8]).all())
    projected = T.pca_project(bad, 2)
    assert projected[0, :, 8, 8].isnan().all() and int(projected.isnan().sum()) == 2
    unit = T.rescale_to_unit(bad)
    assert unit.dtype == dtype
    if value != value:
        assert unit[0, :, 8, 8].isnan().all() and int(unit.isnan().sum()) == 3
    else:
        assert bool((unit[0, :, 8, 8] == 1).all()) and bool(torch.isfinite(unit).all())
    assert bool(((unit[~unit.isnan()] >= 0) & (unit[~unit.isnan()] <= 1)).all())


def test_rescale_to_unit_of_extreme_finite_values_does_not_overflow():
    for dtype in (torch.float64, *DTYPES):
        top = torch.finfo(dtype).max
        x = torch.tensor([-top, 0.0, top], dtype=dtype).view(1, 1, 1, 3)
        torch.testing.assert_close(T.rescale_to_unit(x), torch.tensor([0.0, 0.5, 1.0], dtype=dtype).view(1, 1, 1, 3))
