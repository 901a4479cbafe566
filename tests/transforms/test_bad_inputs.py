"""Legal edge cases of segsort_ext.transforms: the correct result (the refused inputs are cases of
tests/hostile/cases_transforms.py, run by tests/test_hostile_inputs.py)."""

import pytest
import torch

from segsort_ext.transforms import (
    apply_geometry,
    apply_photometric,
    box_filter,
    color_jitter,
    edge_strength,
    felzenszwalb_segments,
    guided_filter,
    identity_geometry,
    image_ucm,
    pca_project,
    picie_views,
    random_crop,
    random_hflip,
    rescale_to_unit,
    sample_geometry,
    sample_photometric,
    slic_segments,
)
from tests.hostile.cases_transforms import INT64_MAX, SKIMAGE, _image, _images

# -- legal edge cases: the correct result --------------------------------------------

def test_empty_batches_and_images():
    empty = torch.zeros(0, 3, 8, 8)
    assert apply_geometry(empty, identity_geometry(0, 8)).shape == (0, 3, 8, 8)
    assert apply_photometric(empty, sample_photometric(0)).shape == (0, 3, 8, 8)
    assert picie_views(empty)[0].shape == (0, 3, 8, 8)
    no_pixels = torch.zeros(2, 3, 0, 8)
    for transform in (lambda x: box_filter(x, 2), lambda x: guided_filter(x, x, 1, 1e-2), lambda x: pca_project(x, 2),
                      rescale_to_unit):
        assert transform(no_pixels).shape[2:] == (0, 8)
    assert color_jitter(torch.zeros(3, 0, 4), contrast=0.5).shape == (3, 0, 4)


@pytest.mark.parametrize("value", [2**31, 2**40, INT64_MAX, -2**63])
def test_int64_edge_labels_move_exactly(value):
    labels = torch.full((2, 8, 8), value)
    moved = apply_geometry(labels, sample_geometry(2, 8, generator=torch.Generator().manual_seed(5)),
                           output_size=(5, 6))
    assert (moved == value).all()
    image, label = random_crop(_image(), labels[0], (10, 12), ignore_index=value)
    assert (label == value).all()
    assert torch.equal(random_hflip(_image(), labels[0], p=1.0)[1], labels[0])


def test_huge_finite_parameters_clamp_to_the_image():
    # Radii and sigmas beyond the image use the whole image, without allocating for them.
    x = _images(torch.float64)
    torch.testing.assert_close(box_filter(x, 2**62), x.mean((2, 3), keepdim=True).expand_as(x))
    blurred = apply_photometric(x, sample_photometric(2, blur_probability=1.0, blur_sigma=(1e300, 1e300)))
    assert blurred.shape == x.shape and torch.isfinite(blurred).all()
    # Geometry of a huge (never allocated) image: only its description.
    geometry = sample_geometry(2, (2**62, 2**62), generator=torch.Generator().manual_seed(6))
    assert ((geometry.boxes >= 0) & (geometry.boxes <= 1)).all()


def test_stride_zero_inputs_match_contiguous_ones():
    column = torch.rand(2, 3, 8, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    expanded = column.expand(2, 3, 8, 8)
    geometry = sample_geometry(2, 8, generator=torch.Generator().manual_seed(8))
    for transform in (lambda x: apply_geometry(x, geometry), lambda x: box_filter(x, 2),
                      lambda x: guided_filter(x, x, 1, 1e-2), lambda x: apply_photometric(x, sample_photometric(
                          2, generator=torch.Generator().manual_seed(9)))):
        torch.testing.assert_close(transform(expanded), transform(expanded.contiguous()), rtol=0, atol=1e-12)



@SKIMAGE
def test_default_smoothing_fits_a_one_pixel_image():
    pixel = torch.rand(3, 1, 1, generator=torch.Generator().manual_seed(10))
    assert image_ucm(pixel).shape == (3, 3)  # sigma = 2 = 2 * max(H, W): the largest allowed
    assert slic_segments(pixel).shape == felzenszwalb_segments(pixel).shape == (1, 1)
    assert edge_strength(pixel, sigma=2.0).shape == (1, 1)
