"""Bad-input catalogue of segsort_ext.transforms: every refused input raises the exact
error type with a message naming the argument (sizes beyond what a tensor can hold are
refused before anything is allocated); legal edge cases give the correct result."""
import importlib.util

import numpy as np
import pytest
import torch

from segsort_ext.testing import INF, NAN, needs_cuda
from segsort_ext.transforms import (
    RandomCropFlip,
    TrainAugmentation,
    apply_geometry,
    apply_photometric,
    box_filter,
    color_jitter,
    contour_ucm,
    crop_or_pad,
    edge_strength,
    felzenszwalb_segments,
    guided_filter,
    identity_geometry,
    image_ucm,
    pca_project,
    picie_views,
    pseudo_segments,
    random_crop,
    random_hflip,
    random_scale,
    rescale_to_unit,
    sample_geometry,
    sample_photometric,
    slic_segments,
    ucm_components,
    ucm_to_labels,
)

INT64_MAX = 2**63 - 1
HUGE = (2**40, 2**40)  # any tensor of this size overflows torch's int64 byte count
SKIMAGE = pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="scikit-image is not installed")


def _image(dtype=torch.float32):
    return torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _images(dtype=torch.float32):
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=dtype)


def _label():
    return torch.randint(3, (8, 8), generator=torch.Generator().manual_seed(2))


def _photometric(**fields):
    return apply_photometric(_images(), sample_photometric(2, generator=torch.Generator().manual_seed(3))._replace(
        **{name: torch.as_tensor(value) for name, value in fields.items()}))


def _geometry(**fields):
    return apply_geometry(_images(), identity_geometry(2, 8)._replace(**fields))


def _ucm2():
    return contour_ucm(torch.rand(4, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64))


REFUSED = [
    # geometry
    ("geometry_batch_size_overflow", lambda: sample_geometry(2**62, 8), ValueError, "batch_size"),
    ("geometry_batch_size_negative", lambda: sample_geometry(-1, 8), ValueError, "batch_size"),
    ("geometry_input_size_zero", lambda: sample_geometry(2, (0, 8)), ValueError, "input_size"),
    ("geometry_input_size_float", lambda: sample_geometry(2, (8.0, 8)), TypeError, "input_size"),
    ("geometry_scale_nan", lambda: sample_geometry(2, 8, scale=(NAN, 1.0)), ValueError, "scale"),
    ("geometry_scale_zero", lambda: sample_geometry(2, 8, scale=(0.0, 1.0)), ValueError, "scale"),
    ("geometry_ratio_inf", lambda: sample_geometry(2, 8, ratio=(1.0, INF)), ValueError, "ratio"),
    ("geometry_ratio_zero", lambda: sample_geometry(2, 8, ratio=(0.0, 1.0)), ValueError, "ratio"),
    ("geometry_flip_probability_nan", lambda: sample_geometry(2, 8, flip_probability=NAN), ValueError,
     "flip_probability"),
    ("geometry_align_too_large", lambda: sample_geometry(2, 8, align=9), ValueError, "align"),
    ("geometry_generator", lambda: sample_geometry(2, 8, generator=1), TypeError, "generator"),
    ("identity_batch_size_overflow", lambda: identity_geometry(2**62, 8), ValueError, "batch_size"),
    ("identity_flip_int", lambda: identity_geometry(2, 8, flip=torch.tensor([1, 0])), ValueError, "flip"),
    ("apply_output_size_overflow", lambda: apply_geometry(_images(), identity_geometry(2, 8), output_size=HUGE),
     ValueError, "output_size"),
    ("apply_geometry_output_size_overflow", lambda: _geometry(output_size=HUGE), ValueError, "geometry.output_size"),
    ("apply_boxes_nan", lambda: _geometry(boxes=torch.tensor([[NAN, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float64)),
     ValueError, "geometry.boxes"),
    ("apply_boxes_outside", lambda: _geometry(boxes=torch.tensor([[0, 0, 2, 1], [0, 0, 1, 1]], dtype=torch.float64)),
     ValueError, "geometry.boxes"),
    ("apply_flip_float", lambda: _geometry(flip=torch.zeros(2)), ValueError, "geometry.flip"),
    ("apply_batch_mismatch", lambda: apply_geometry(_images()[:1], identity_geometry(2, 8)), ValueError, "batch"),
    ("apply_mode", lambda: apply_geometry(_images(), identity_geometry(2, 8), mode="bicubic"), ValueError, "mode"),
    ("apply_bilinear_labels", lambda: apply_geometry(_label()[None].expand(2, 8, 8), identity_geometry(2, 8),
                                                     mode="bilinear"), TypeError, "nearest"),
    ("apply_geometry_type", lambda: apply_geometry(_images(), (1, 2)), TypeError, "geometry"),
    ("apply_x_2d", lambda: apply_geometry(_label(), identity_geometry(2, 8)), ValueError, "x"),
    ("crop_or_pad_size_overflow", lambda: crop_or_pad(_image(), HUGE, 0.0), ValueError, "size"),
    ("crop_or_pad_size_negative", lambda: crop_or_pad(_image(), (-3, 4), 0.0), ValueError, "size"),
    ("crop_or_pad_size_float", lambda: crop_or_pad(_image(), (4.5, 4), 0.0), TypeError, "size"),
    ("crop_or_pad_fill_range", lambda: crop_or_pad(_label().to(torch.uint8), (10, 10), 1000), ValueError, "fill"),
    ("crop_or_pad_fill_fraction", lambda: crop_or_pad(_label(), (10, 10), 0.5), TypeError, "fill"),
    ("crop_or_pad_fill_nan", lambda: crop_or_pad(_image(), (10, 10), NAN), ValueError, "fill"),
    ("crop_or_pad_x_1d", lambda: crop_or_pad(torch.zeros(5), (2, 2), 0.0), ValueError, "x"),
    ("crop_or_pad_x_list", lambda: crop_or_pad([[0.0]], (2, 2), 0.0), TypeError, "x"),
    ("random_crop_size_overflow", lambda: random_crop(_image(), _label(), HUGE), ValueError, "size"),
    ("random_crop_size_zero", lambda: random_crop(_image(), _label(), (0, 4)), ValueError, "size"),
    ("random_crop_label_size", lambda: random_crop(_image(), _label()[:4], (4, 4)), ValueError, "label"),
    ("random_crop_ignore_index_uint8", lambda: random_crop(_image(), _label().to(torch.uint8), (10, 10),
                                                           ignore_index=1000), ValueError, "ignore_index"),
    ("random_crop_ignore_index_overflow", lambda: random_crop(_image(), _label(), (10, 10), ignore_index=2**63),
     ValueError, "ignore_index"),
    ("random_crop_image_fill_str", lambda: random_crop(_image(), _label(), (10, 10), image_fill="0"), TypeError,
     "image_fill"),
    ("random_crop_generator", lambda: random_crop(_image(), _label(), (4, 4), generator=3), TypeError, "generator"),
    ("random_hflip_p_nan", lambda: random_hflip(_image(), _label(), p=NAN), ValueError, "p"),
    ("random_hflip_p_range", lambda: random_hflip(_image(), _label(), p=1.5), ValueError, "p"),
    ("random_hflip_label_size", lambda: random_hflip(_image(), _label()[:4]), ValueError, "label"),
    ("random_hflip_image_int", lambda: random_hflip(_label()[None], _label()), TypeError, "image"),
    ("random_scale_inf", lambda: random_scale(_image(), _label(), (1.0, INF)), ValueError, "scale_range"),
    ("random_scale_zero", lambda: random_scale(_image(), _label(), (0.0, 1.0)), ValueError, "scale_range"),
    ("random_scale_overflow", lambda: random_scale(_image(), _label(), (1e300, 1e300)), ValueError, "scale_range"),
    ("random_scale_label_size", lambda: random_scale(_image(), _label()[:4]), ValueError, "label"),
    # photometric
    ("jitter_brightness_nan", lambda: color_jitter(_image(), brightness=NAN), ValueError, "brightness"),
    ("jitter_contrast_inf", lambda: color_jitter(_image(), contrast=INF), ValueError, "contrast"),
    ("jitter_saturation_negative", lambda: color_jitter(_image(), saturation=-0.1), ValueError, "saturation"),
    ("jitter_hue_range", lambda: color_jitter(_image(), hue=0.7), ValueError, "hue"),
    ("jitter_generator", lambda: color_jitter(_image(), brightness=0.5, generator=3), TypeError, "generator"),
    ("jitter_grey_image_contrast", lambda: color_jitter(_image()[:1], contrast=0.5), ValueError, "image"),
    ("sample_batch_size_overflow", lambda: sample_photometric(2**62), ValueError, "batch_size"),
    ("sample_blur_sigma_nan", lambda: sample_photometric(2, blur_sigma=(0.1, NAN)), ValueError, "blur_sigma"),
    ("sample_blur_sigma_inf", lambda: sample_photometric(2, blur_sigma=(0.1, INF)), ValueError, "blur_sigma"),
    ("sample_jitter_probability_nan", lambda: sample_photometric(2, jitter_probability=NAN), ValueError,
     "jitter_probability"),
    ("sample_hue_nan", lambda: sample_photometric(2, hue=NAN), ValueError, "hue"),
    ("apply_blur_sigma_nan", lambda: _photometric(blur_sigma=[NAN, 1.0]), ValueError, "photometric.blur_sigma"),
    ("apply_blur_sigma_inf", lambda: _photometric(blur_sigma=[INF, 1.0]), ValueError, "photometric.blur_sigma"),
    ("apply_blur_sigma_negative", lambda: _photometric(blur_sigma=[-1.0, 1.0]), ValueError, "photometric.blur_sigma"),
    ("apply_brightness_nan", lambda: _photometric(brightness=[NAN, 1.0]), ValueError, "photometric.brightness"),
    ("apply_contrast_negative", lambda: _photometric(contrast=[-1.0, 1.0]), ValueError, "photometric.contrast"),
    ("apply_hue_inf", lambda: _photometric(hue=[INF, 0.0]), ValueError, "photometric.hue"),
    ("apply_grey_float", lambda: _photometric(grey=[1.0, 0.0]), TypeError, "photometric.grey"),
    ("apply_saturation_bool", lambda: _photometric(saturation=[True, False]), TypeError, "photometric.saturation"),
    ("apply_field_shape", lambda: _photometric(hue=[0.0]), ValueError, "photometric.hue"),
    ("apply_photometric_type", lambda: apply_photometric(_images(), (1, 2)), TypeError, "photometric"),
    ("apply_images_features", lambda: apply_photometric(torch.rand(2, 5, 8, 8), sample_photometric(2)), ValueError,
     "images"),
    # augmentation pipelines
    ("crop_flip_size_float", lambda: RandomCropFlip((2.5, 3)), TypeError, "size"),
    ("crop_flip_size_negative", lambda: RandomCropFlip((-2, 3)), ValueError, "size"),
    ("crop_flip_flip_prob_nan", lambda: RandomCropFlip((2, 3), flip_prob=NAN), ValueError, "flip_prob"),
    ("crop_flip_seed_str", lambda: RandomCropFlip((2, 3), seed="0"), TypeError, "seed"),
    ("crop_flip_seed_overflow", lambda: RandomCropFlip((2, 3), seed=2**64), ValueError, "seed"),
    ("crop_flip_reseed_float", lambda: RandomCropFlip((2, 3)).reseed(1.5), TypeError, "seed"),
    ("crop_flip_ignore_index_float", lambda: RandomCropFlip((2, 3), ignore_index=255.0), TypeError, "ignore_index"),
    ("crop_flip_ignore_index_overflow", lambda: RandomCropFlip((20, 30), ignore_index=2**70)(_image(), _label()),
     ValueError, "ignore_index"),
    ("train_crop_size_overflow", lambda: TrainAugmentation(HUGE, scale_range=None)(_image(), _label()), ValueError,
     "size"),
    ("train_scale_range_nan", lambda: TrainAugmentation(4, scale_range=(NAN, 1.0)), ValueError, "scale_range"),
    ("train_flip_prob_inf", lambda: TrainAugmentation(4, flip_prob=INF), ValueError, "flip_prob"),
    ("train_hue_nan", lambda: TrainAugmentation(4, hue=NAN), ValueError, "hue"),
    ("train_seed_str", lambda: TrainAugmentation(4, seed="0"), TypeError, "seed"),
    ("train_label_size", lambda: TrainAugmentation(4)(_image(), _label()[:4]), ValueError, "label"),
    ("views_output_size_overflow", lambda: picie_views(_images(), output_size=HUGE), ValueError, "output_size"),
    ("views_geometry_options_type", lambda: picie_views(_images(), geometry_options=[1]), TypeError,
     "geometry_options"),
    ("views_photometric_options_type", lambda: picie_views(_images(), photometric_options="blur"), TypeError,
     "photometric_options"),
    ("views_geometry_option_nan", lambda: picie_views(_images(), geometry_options={"scale": (0.5, NAN)}), ValueError,
     "scale"),
    ("views_images_grey", lambda: picie_views(_images()[:, :1]), ValueError, "images"),
    # guided filtering
    ("box_filter_radius_float", lambda: box_filter(_images(), 1.5), TypeError, "radius"),
    ("box_filter_radius_negative", lambda: box_filter(_images(), -1), ValueError, "radius"),
    ("box_filter_x_int", lambda: box_filter(_images().long(), 1), TypeError, "x"),
    ("box_filter_x_3d", lambda: box_filter(_image(), 1), ValueError, "x"),
    ("guided_eps_nan", lambda: guided_filter(_images(), _images(), 1, NAN), ValueError, "eps"),
    ("guided_eps_inf", lambda: guided_filter(_images(), _images(), 1, INF), ValueError, "eps"),
    ("guided_eps_zero", lambda: guided_filter(_images(), _images(), 1, 0.0), ValueError, "eps"),
    ("guided_eps_below_dtype", lambda: guided_filter(_images(), _images(), 1, 1e-300), ValueError, "eps"),
    ("guided_eps_above_dtype", lambda: guided_filter(_images(), _images(), 1, 1e300), ValueError, "eps"),
    ("guided_radius_negative", lambda: guided_filter(_images(), _images(), -1, 1e-2), ValueError, "radius"),
    ("guided_channel_chunk_zero", lambda: guided_filter(_images(), _images(), 1, 1e-2, channel_chunk=0), ValueError,
     "channel_chunk"),
    ("guided_features_size", lambda: guided_filter(_images(), _images()[..., :4], 1, 1e-2), ValueError, "features"),
    ("guided_dtype_mismatch", lambda: guided_filter(_images(), _images(torch.float64), 1, 1e-2), TypeError,
     "features"),
    ("pca_dims_too_many", lambda: pca_project(_images(), 4), ValueError, "dims"),
    ("pca_dims_zero", lambda: pca_project(_images(), 0), ValueError, "dims"),
    ("pca_features_int", lambda: pca_project(_images().long(), 2), TypeError, "features"),
    ("rescale_eps_zero", lambda: rescale_to_unit(_images(), eps=0.0), ValueError, "eps"),
    ("rescale_eps_negative", lambda: rescale_to_unit(_images(), eps=-1.0), ValueError, "eps"),
    ("rescale_eps_nan", lambda: rescale_to_unit(_images(), eps=NAN), ValueError, "eps"),
    ("rescale_x_3d", lambda: rescale_to_unit(_image()), ValueError, "x"),
    # ucm without scikit-image
    ("ucm_to_labels_threshold_nan", lambda: ucm_to_labels(np.zeros((5, 5)), NAN), ValueError, "threshold"),
    ("ucm_to_labels_threshold_inf", lambda: ucm_to_labels(np.zeros((5, 5)), INF), ValueError, "threshold"),
    ("ucm_to_labels_nan", lambda: ucm_to_labels(np.full((5, 5), np.nan), 0.5), ValueError, "ucm2"),
    ("ucm_to_labels_shape", lambda: ucm_to_labels(np.zeros((4, 4)), 0.5), ValueError, "ucm2"),
    ("ucm_to_labels_list", lambda: ucm_to_labels([[0.0]], 0.5), TypeError, "ucm2"),
    ("ucm_components_list", lambda: ucm_components([[0.0]], 0.5), TypeError, "ucm2"),
    ("ucm_components_tensor", lambda: ucm_components(torch.zeros(3, 3), 0.5), TypeError, "ucm2"),
    ("ucm_components_threshold_nan", lambda: ucm_components(np.zeros((3, 3)), NAN), ValueError, "threshold"),
]

REFUSED_SKIMAGE = [
    ("slic_sigma_huge", lambda: slic_segments(_image(), sigma=1e300), ValueError, "sigma"),
    ("slic_sigma_nan", lambda: slic_segments(_image(), sigma=NAN), ValueError, "sigma"),
    ("slic_compactness_zero", lambda: slic_segments(_image(), compactness=0.0), ValueError, "compactness"),
    ("slic_n_segments_zero", lambda: slic_segments(_image(), 0), ValueError, "n_segments"),
    ("slic_image_nan", lambda: slic_segments(torch.full((3, 4, 4), NAN)), ValueError, "image"),
    ("slic_image_empty", lambda: slic_segments(torch.zeros(3, 0, 4)), ValueError, "image"),
    ("slic_image_int", lambda: slic_segments(_label()), TypeError, "image"),
    ("felzenszwalb_sigma_huge", lambda: felzenszwalb_segments(_image(), sigma=17.0), ValueError, "sigma"),
    ("felzenszwalb_scale_inf", lambda: felzenszwalb_segments(_image(), scale=INF), ValueError, "scale"),
    ("felzenszwalb_min_size_zero", lambda: felzenszwalb_segments(_image(), min_size=0), ValueError, "min_size"),
    ("pseudo_segments_method", lambda: pseudo_segments(_images(), "watershed"), ValueError, "method"),
    ("pseudo_segments_valid_float", lambda: pseudo_segments(_images(), valid=torch.ones(2, 8, 8)), TypeError, "valid"),
    ("pseudo_segments_valid_shape", lambda: pseudo_segments(_images(), valid=torch.ones(2, 8, 7, dtype=torch.bool)),
     ValueError, "valid"),
    ("pseudo_segments_3d", lambda: pseudo_segments(_image()), ValueError, "images"),
    ("edge_strength_sigma_huge", lambda: edge_strength(_image(), sigma=1e300), ValueError, "sigma"),
    ("edge_strength_sigma_inf", lambda: edge_strength(_image(), sigma=INF), ValueError, "sigma"),
    ("edge_strength_image_inf", lambda: edge_strength(torch.full((4, 4), INF)), ValueError, "image"),
    ("image_ucm_sigma_nan", lambda: image_ucm(_image(), sigma=NAN), ValueError, "sigma"),
    ("contour_ucm_nan", lambda: contour_ucm(np.full((4, 4), np.nan)), ValueError, "contours"),
    ("contour_ucm_negative", lambda: contour_ucm(-np.ones((4, 4))), ValueError, "contours"),
    ("contour_ucm_bool", lambda: contour_ucm(np.zeros((4, 4), dtype=bool)), TypeError, "contours"),
    ("contour_ucm_empty", lambda: contour_ucm(np.zeros((0, 4))), ValueError, "contours"),
    ("contour_ucm_markers_float", lambda: contour_ucm(np.zeros((4, 4)), markers=np.ones((4, 4))), TypeError,
     "markers"),
]

REFUSED_CUDA = [
    ("guided_device_mismatch", lambda: guided_filter(_images().cuda(), _images(), 1, 1e-2), ValueError,
     "guide_image"),
]


@pytest.mark.parametrize("call, error, name", [pytest.param(*case[1:], id=case[0]) for case in REFUSED]
                         + [pytest.param(*case[1:], id=case[0], marks=SKIMAGE) for case in REFUSED_SKIMAGE]
                         + [pytest.param(*case[1:], id=case[0], marks=needs_cuda) for case in REFUSED_CUDA])
def test_refused_with_the_argument_named(call, error, name):
    # name: a regular expression matching the argument's name in the message
    with pytest.raises(error, match=name):
        call()


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
