"""Bad-input cases of segsort_ext.transforms: every refused input raises the exact error type with
a message naming the argument (sizes beyond what a tensor can hold are refused before anything is
allocated). Formerly the tables of tests/transforms/test_bad_inputs.py."""

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
    triangle_blur,
    ucm_components,
    ucm_to_labels,
)
from tests.hostile.catalogue import Case

AREA = "transforms"
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
    return apply_photometric(
        _images(),
        sample_photometric(2, generator=torch.Generator().manual_seed(3))._replace(
            **{name: torch.as_tensor(value) for name, value in fields.items()}
        ),
    )


def _geometry(**fields):
    return apply_geometry(_images(), identity_geometry(2, 8)._replace(**fields))


def _ucm2():
    return contour_ucm(torch.rand(4, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64))


REFUSED = [
    # geometry
    Case("geometry_batch_size_overflow", lambda: sample_geometry(2**62, 8), error=ValueError, arg="batch_size"),
    Case("geometry_batch_size_negative", lambda: sample_geometry(-1, 8), error=ValueError, arg="batch_size"),
    Case("geometry_input_size_zero", lambda: sample_geometry(2, (0, 8)), error=ValueError, arg="input_size"),
    Case("geometry_input_size_float", lambda: sample_geometry(2, (8.0, 8)), error=TypeError, arg="input_size"),
    Case("geometry_scale_nan", lambda: sample_geometry(2, 8, scale=(NAN, 1.0)), error=ValueError, arg="scale"),
    Case("geometry_scale_zero", lambda: sample_geometry(2, 8, scale=(0.0, 1.0)), error=ValueError, arg="scale"),
    Case("geometry_ratio_inf", lambda: sample_geometry(2, 8, ratio=(1.0, INF)), error=ValueError, arg="ratio"),
    Case("geometry_ratio_zero", lambda: sample_geometry(2, 8, ratio=(0.0, 1.0)), error=ValueError, arg="ratio"),
    Case(
        "geometry_flip_probability_nan",
        lambda: sample_geometry(2, 8, flip_probability=NAN),
        error=ValueError,
        arg="flip_probability",
    ),
    Case("geometry_align_too_large", lambda: sample_geometry(2, 8, align=9), error=ValueError, arg="align"),
    Case("geometry_generator", lambda: sample_geometry(2, 8, generator=1), error=TypeError, arg="generator"),
    Case("identity_batch_size_overflow", lambda: identity_geometry(2**62, 8), error=ValueError, arg="batch_size"),
    Case("identity_flip_int", lambda: identity_geometry(2, 8, flip=torch.tensor([1, 0])), error=ValueError, arg="flip"),
    Case(
        "apply_output_size_overflow",
        lambda: apply_geometry(_images(), identity_geometry(2, 8), output_size=HUGE),
        error=ValueError,
        arg="output_size",
    ),
    Case(
        "apply_geometry_output_size_overflow",
        lambda: _geometry(output_size=HUGE),
        error=ValueError,
        arg="geometry.output_size",
    ),
    Case(
        "apply_boxes_nan",
        lambda: _geometry(boxes=torch.tensor([[NAN, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float64)),
        error=ValueError,
        arg="geometry.boxes",
    ),
    Case(
        "apply_boxes_outside",
        lambda: _geometry(boxes=torch.tensor([[0, 0, 2, 1], [0, 0, 1, 1]], dtype=torch.float64)),
        error=ValueError,
        arg="geometry.boxes",
    ),
    Case("apply_flip_float", lambda: _geometry(flip=torch.zeros(2)), error=ValueError, arg="geometry.flip"),
    Case(
        "apply_batch_mismatch",
        lambda: apply_geometry(_images()[:1], identity_geometry(2, 8)),
        error=ValueError,
        arg="batch",
    ),
    Case(
        "apply_mode",
        lambda: apply_geometry(_images(), identity_geometry(2, 8), mode="bicubic"),
        error=ValueError,
        arg="mode",
    ),
    Case(
        "apply_bilinear_labels",
        lambda: apply_geometry(_label()[None].expand(2, 8, 8), identity_geometry(2, 8), mode="bilinear"),
        error=TypeError,
        arg="nearest",
    ),
    Case("apply_geometry_type", lambda: apply_geometry(_images(), (1, 2)), error=TypeError, arg="geometry"),
    Case("apply_x_2d", lambda: apply_geometry(_label(), identity_geometry(2, 8)), error=ValueError, arg="x"),
    Case("crop_or_pad_size_overflow", lambda: crop_or_pad(_image(), HUGE, 0.0), error=ValueError, arg="size"),
    Case("crop_or_pad_size_negative", lambda: crop_or_pad(_image(), (-3, 4), 0.0), error=ValueError, arg="size"),
    Case("crop_or_pad_size_float", lambda: crop_or_pad(_image(), (4.5, 4), 0.0), error=TypeError, arg="size"),
    Case(
        "crop_or_pad_fill_range",
        lambda: crop_or_pad(_label().to(torch.uint8), (10, 10), 1000),
        error=ValueError,
        arg="fill",
    ),
    Case("crop_or_pad_fill_fraction", lambda: crop_or_pad(_label(), (10, 10), 0.5), error=TypeError, arg="fill"),
    Case("crop_or_pad_fill_nan", lambda: crop_or_pad(_image(), (10, 10), NAN), error=ValueError, arg="fill"),
    Case("crop_or_pad_x_1d", lambda: crop_or_pad(torch.zeros(5), (2, 2), 0.0), error=ValueError, arg="x"),
    Case("crop_or_pad_x_list", lambda: crop_or_pad([[0.0]], (2, 2), 0.0), error=TypeError, arg="x"),
    Case("random_crop_size_overflow", lambda: random_crop(_image(), _label(), HUGE), error=ValueError, arg="size"),
    Case("random_crop_size_zero", lambda: random_crop(_image(), _label(), (0, 4)), error=ValueError, arg="size"),
    Case("random_crop_label_size", lambda: random_crop(_image(), _label()[:4], (4, 4)), error=ValueError, arg="label"),
    Case(
        "random_crop_ignore_index_uint8",
        lambda: random_crop(_image(), _label().to(torch.uint8), (10, 10), ignore_index=1000),
        error=ValueError,
        arg="ignore_index",
    ),
    Case(
        "random_crop_ignore_index_overflow",
        lambda: random_crop(_image(), _label(), (10, 10), ignore_index=2**63),
        error=ValueError,
        arg="ignore_index",
    ),
    Case(
        "random_crop_image_fill_str",
        lambda: random_crop(_image(), _label(), (10, 10), image_fill="0"),
        error=TypeError,
        arg="image_fill",
    ),
    Case(
        "random_crop_generator",
        lambda: random_crop(_image(), _label(), (4, 4), generator=3),
        error=TypeError,
        arg="generator",
    ),
    Case("random_hflip_p_nan", lambda: random_hflip(_image(), _label(), p=NAN), error=ValueError, arg="p"),
    Case("random_hflip_p_range", lambda: random_hflip(_image(), _label(), p=1.5), error=ValueError, arg="p"),
    Case("random_hflip_label_size", lambda: random_hflip(_image(), _label()[:4]), error=ValueError, arg="label"),
    Case("random_hflip_image_int", lambda: random_hflip(_label()[None], _label()), error=TypeError, arg="image"),
    Case("random_scale_inf", lambda: random_scale(_image(), _label(), (1.0, INF)), error=ValueError, arg="scale_range"),
    Case(
        "random_scale_zero", lambda: random_scale(_image(), _label(), (0.0, 1.0)), error=ValueError, arg="scale_range"
    ),
    Case(
        "random_scale_overflow",
        lambda: random_scale(_image(), _label(), (1e300, 1e300)),
        error=ValueError,
        arg="scale_range",
    ),
    Case("random_scale_label_size", lambda: random_scale(_image(), _label()[:4]), error=ValueError, arg="label"),
    # photometric
    Case("jitter_brightness_nan", lambda: color_jitter(_image(), brightness=NAN), error=ValueError, arg="brightness"),
    Case("jitter_contrast_inf", lambda: color_jitter(_image(), contrast=INF), error=ValueError, arg="contrast"),
    Case(
        "jitter_saturation_negative",
        lambda: color_jitter(_image(), saturation=-0.1),
        error=ValueError,
        arg="saturation",
    ),
    Case("jitter_hue_range", lambda: color_jitter(_image(), hue=0.7), error=ValueError, arg="hue"),
    Case(
        "jitter_generator",
        lambda: color_jitter(_image(), brightness=0.5, generator=3),
        error=TypeError,
        arg="generator",
    ),
    Case("jitter_grey_image_contrast", lambda: color_jitter(_image()[:1], contrast=0.5), error=ValueError, arg="image"),
    Case("sample_batch_size_overflow", lambda: sample_photometric(2**62), error=ValueError, arg="batch_size"),
    Case(
        "sample_blur_sigma_nan",
        lambda: sample_photometric(2, blur_sigma=(0.1, NAN)),
        error=ValueError,
        arg="blur_sigma",
    ),
    Case(
        "sample_blur_sigma_inf",
        lambda: sample_photometric(2, blur_sigma=(0.1, INF)),
        error=ValueError,
        arg="blur_sigma",
    ),
    Case(
        "sample_jitter_probability_nan",
        lambda: sample_photometric(2, jitter_probability=NAN),
        error=ValueError,
        arg="jitter_probability",
    ),
    Case("sample_hue_nan", lambda: sample_photometric(2, hue=NAN), error=ValueError, arg="hue"),
    Case(
        "apply_blur_sigma_nan",
        lambda: _photometric(blur_sigma=[NAN, 1.0]),
        error=ValueError,
        arg="photometric.blur_sigma",
    ),
    Case(
        "apply_blur_sigma_inf",
        lambda: _photometric(blur_sigma=[INF, 1.0]),
        error=ValueError,
        arg="photometric.blur_sigma",
    ),
    Case(
        "apply_blur_sigma_negative",
        lambda: _photometric(blur_sigma=[-1.0, 1.0]),
        error=ValueError,
        arg="photometric.blur_sigma",
    ),
    Case(
        "apply_brightness_nan",
        lambda: _photometric(brightness=[NAN, 1.0]),
        error=ValueError,
        arg="photometric.brightness",
    ),
    Case(
        "apply_contrast_negative",
        lambda: _photometric(contrast=[-1.0, 1.0]),
        error=ValueError,
        arg="photometric.contrast",
    ),
    Case("apply_hue_inf", lambda: _photometric(hue=[INF, 0.0]), error=ValueError, arg="photometric.hue"),
    Case("apply_grey_float", lambda: _photometric(grey=[1.0, 0.0]), error=TypeError, arg="photometric.grey"),
    Case(
        "apply_saturation_bool",
        lambda: _photometric(saturation=[True, False]),
        error=TypeError,
        arg="photometric.saturation",
    ),
    Case("apply_field_shape", lambda: _photometric(hue=[0.0]), error=ValueError, arg="photometric.hue"),
    Case("apply_photometric_type", lambda: apply_photometric(_images(), (1, 2)), error=TypeError, arg="photometric"),
    Case(
        "apply_images_features",
        lambda: apply_photometric(torch.rand(2, 5, 8, 8), sample_photometric(2)),
        error=ValueError,
        arg="images",
    ),
    # augmentation pipelines
    Case("crop_flip_size_float", lambda: RandomCropFlip((2.5, 3)), error=TypeError, arg="size"),
    Case("crop_flip_size_negative", lambda: RandomCropFlip((-2, 3)), error=ValueError, arg="size"),
    Case("crop_flip_flip_prob_nan", lambda: RandomCropFlip((2, 3), flip_prob=NAN), error=ValueError, arg="flip_prob"),
    Case("crop_flip_seed_str", lambda: RandomCropFlip((2, 3), seed="0"), error=TypeError, arg="seed"),
    Case("crop_flip_seed_overflow", lambda: RandomCropFlip((2, 3), seed=2**64), error=ValueError, arg="seed"),
    Case("crop_flip_reseed_float", lambda: RandomCropFlip((2, 3)).reseed(1.5), error=TypeError, arg="seed"),
    Case(
        "crop_flip_ignore_index_float",
        lambda: RandomCropFlip((2, 3), ignore_index=255.0),
        error=TypeError,
        arg="ignore_index",
    ),
    Case(
        "crop_flip_ignore_index_overflow",
        lambda: RandomCropFlip((20, 30), ignore_index=2**70)(_image(), _label()),
        error=ValueError,
        arg="ignore_index",
    ),
    Case(
        "train_crop_size_overflow",
        lambda: TrainAugmentation(HUGE, scale_range=None)(_image(), _label()),
        error=ValueError,
        arg="size",
    ),
    Case(
        "train_scale_range_nan",
        lambda: TrainAugmentation(4, scale_range=(NAN, 1.0)),
        error=ValueError,
        arg="scale_range",
    ),
    Case("train_flip_prob_inf", lambda: TrainAugmentation(4, flip_prob=INF), error=ValueError, arg="flip_prob"),
    Case("train_hue_nan", lambda: TrainAugmentation(4, hue=NAN), error=ValueError, arg="hue"),
    Case("train_seed_str", lambda: TrainAugmentation(4, seed="0"), error=TypeError, arg="seed"),
    Case("train_label_size", lambda: TrainAugmentation(4)(_image(), _label()[:4]), error=ValueError, arg="label"),
    Case(
        "views_output_size_overflow",
        lambda: picie_views(_images(), output_size=HUGE),
        error=ValueError,
        arg="output_size",
    ),
    Case(
        "views_geometry_options_type",
        lambda: picie_views(_images(), geometry_options=[1]),
        error=TypeError,
        arg="geometry_options",
    ),
    Case(
        "views_photometric_options_type",
        lambda: picie_views(_images(), photometric_options="blur"),
        error=TypeError,
        arg="photometric_options",
    ),
    Case(
        "views_geometry_option_nan",
        lambda: picie_views(_images(), geometry_options={"scale": (0.5, NAN)}),
        error=ValueError,
        arg="scale",
    ),
    Case("views_images_grey", lambda: picie_views(_images()[:, :1]), error=ValueError, arg="images"),
    # guided filtering
    Case("box_filter_radius_float", lambda: box_filter(_images(), 1.5), error=TypeError, arg="radius"),
    Case("box_filter_radius_negative", lambda: box_filter(_images(), -1), error=ValueError, arg="radius"),
    Case("box_filter_x_int", lambda: box_filter(_images().long(), 1), error=TypeError, arg="x"),
    Case("box_filter_x_3d", lambda: box_filter(_image(), 1), error=ValueError, arg="x"),
    Case("guided_eps_nan", lambda: guided_filter(_images(), _images(), 1, NAN), error=ValueError, arg="eps"),
    Case("guided_eps_inf", lambda: guided_filter(_images(), _images(), 1, INF), error=ValueError, arg="eps"),
    Case("guided_eps_zero", lambda: guided_filter(_images(), _images(), 1, 0.0), error=ValueError, arg="eps"),
    Case("guided_eps_below_dtype", lambda: guided_filter(_images(), _images(), 1, 1e-300), error=ValueError, arg="eps"),
    Case("guided_eps_above_dtype", lambda: guided_filter(_images(), _images(), 1, 1e300), error=ValueError, arg="eps"),
    Case(
        "guided_radius_negative", lambda: guided_filter(_images(), _images(), -1, 1e-2), error=ValueError, arg="radius"
    ),
    Case(
        "guided_channel_chunk_zero",
        lambda: guided_filter(_images(), _images(), 1, 1e-2, channel_chunk=0),
        error=ValueError,
        arg="channel_chunk",
    ),
    Case(
        "guided_features_size",
        lambda: guided_filter(_images(), _images()[..., :4], 1, 1e-2),
        error=ValueError,
        arg="features",
    ),
    Case(
        "guided_dtype_mismatch",
        lambda: guided_filter(_images(), _images(torch.float64), 1, 1e-2),
        error=TypeError,
        arg="features",
    ),
    Case("pca_dims_too_many", lambda: pca_project(_images(), 4), error=ValueError, arg="dims"),
    Case("pca_dims_zero", lambda: pca_project(_images(), 0), error=ValueError, arg="dims"),
    Case("pca_features_int", lambda: pca_project(_images().long(), 2), error=TypeError, arg="features"),
    Case("rescale_eps_zero", lambda: rescale_to_unit(_images(), eps=0.0), error=ValueError, arg="eps"),
    Case("rescale_eps_negative", lambda: rescale_to_unit(_images(), eps=-1.0), error=ValueError, arg="eps"),
    Case("rescale_eps_nan", lambda: rescale_to_unit(_images(), eps=NAN), error=ValueError, arg="eps"),
    Case("rescale_x_3d", lambda: rescale_to_unit(_image()), error=ValueError, arg="x"),
    # ucm without scikit-image
    Case(
        "ucm_to_labels_threshold_nan", lambda: ucm_to_labels(np.zeros((5, 5)), NAN), error=ValueError, arg="threshold"
    ),
    Case(
        "ucm_to_labels_threshold_inf", lambda: ucm_to_labels(np.zeros((5, 5)), INF), error=ValueError, arg="threshold"
    ),
    Case("ucm_to_labels_nan", lambda: ucm_to_labels(np.full((5, 5), np.nan), 0.5), error=ValueError, arg="ucm2"),
    Case("ucm_to_labels_shape", lambda: ucm_to_labels(np.zeros((4, 4)), 0.5), error=ValueError, arg="ucm2"),
    Case("ucm_to_labels_list", lambda: ucm_to_labels([[0.0]], 0.5), error=TypeError, arg="ucm2"),
    Case("ucm_components_list", lambda: ucm_components([[0.0]], 0.5), error=TypeError, arg="ucm2"),
    Case("ucm_components_tensor", lambda: ucm_components(torch.zeros(3, 3), 0.5), error=TypeError, arg="ucm2"),
    Case(
        "ucm_components_threshold_nan", lambda: ucm_components(np.zeros((3, 3)), NAN), error=ValueError, arg="threshold"
    ),
    # An outsider's sweep (issue 25): a radius of 10**9 had the process killed for memory.
    Case(
        "triangle_blur_radius_huge",
        lambda: triangle_blur(torch.rand(1, 3, 8, 8), 10**9),
        error=ValueError,
        arg="radius",
    ),
]

REFUSED_SKIMAGE = [
    Case(
        "slic_sigma_huge", lambda: slic_segments(_image(), sigma=1e300), error=ValueError, arg="sigma", marks=(SKIMAGE,)
    ),
    Case("slic_sigma_nan", lambda: slic_segments(_image(), sigma=NAN), error=ValueError, arg="sigma", marks=(SKIMAGE,)),
    Case(
        "slic_compactness_zero",
        lambda: slic_segments(_image(), compactness=0.0),
        error=ValueError,
        arg="compactness",
        marks=(SKIMAGE,),
    ),
    Case(
        "slic_n_segments_zero", lambda: slic_segments(_image(), 0), error=ValueError, arg="n_segments", marks=(SKIMAGE,)
    ),
    Case(
        "slic_image_nan",
        lambda: slic_segments(torch.full((3, 4, 4), NAN)),
        error=ValueError,
        arg="image",
        marks=(SKIMAGE,),
    ),
    Case(
        "slic_image_empty", lambda: slic_segments(torch.zeros(3, 0, 4)), error=ValueError, arg="image", marks=(SKIMAGE,)
    ),
    Case("slic_image_int", lambda: slic_segments(_label()), error=TypeError, arg="image", marks=(SKIMAGE,)),
    Case(
        "felzenszwalb_sigma_huge",
        lambda: felzenszwalb_segments(_image(), sigma=17.0),
        error=ValueError,
        arg="sigma",
        marks=(SKIMAGE,),
    ),
    Case(
        "felzenszwalb_scale_inf",
        lambda: felzenszwalb_segments(_image(), scale=INF),
        error=ValueError,
        arg="scale",
        marks=(SKIMAGE,),
    ),
    Case(
        "felzenszwalb_min_size_zero",
        lambda: felzenszwalb_segments(_image(), min_size=0),
        error=ValueError,
        arg="min_size",
        marks=(SKIMAGE,),
    ),
    Case(
        "pseudo_segments_method",
        lambda: pseudo_segments(_images(), "watershed"),
        error=ValueError,
        arg="method",
        marks=(SKIMAGE,),
    ),
    Case(
        "pseudo_segments_valid_float",
        lambda: pseudo_segments(_images(), valid=torch.ones(2, 8, 8)),
        error=TypeError,
        arg="valid",
        marks=(SKIMAGE,),
    ),
    Case(
        "pseudo_segments_valid_shape",
        lambda: pseudo_segments(_images(), valid=torch.ones(2, 8, 7, dtype=torch.bool)),
        error=ValueError,
        arg="valid",
        marks=(SKIMAGE,),
    ),
    Case("pseudo_segments_3d", lambda: pseudo_segments(_image()), error=ValueError, arg="images", marks=(SKIMAGE,)),
    Case(
        "edge_strength_sigma_huge",
        lambda: edge_strength(_image(), sigma=1e300),
        error=ValueError,
        arg="sigma",
        marks=(SKIMAGE,),
    ),
    Case(
        "edge_strength_sigma_inf",
        lambda: edge_strength(_image(), sigma=INF),
        error=ValueError,
        arg="sigma",
        marks=(SKIMAGE,),
    ),
    Case(
        "edge_strength_image_inf",
        lambda: edge_strength(torch.full((4, 4), INF)),
        error=ValueError,
        arg="image",
        marks=(SKIMAGE,),
    ),
    Case(
        "image_ucm_sigma_nan", lambda: image_ucm(_image(), sigma=NAN), error=ValueError, arg="sigma", marks=(SKIMAGE,)
    ),
    Case(
        "contour_ucm_nan",
        lambda: contour_ucm(np.full((4, 4), np.nan)),
        error=ValueError,
        arg="contours",
        marks=(SKIMAGE,),
    ),
    Case(
        "contour_ucm_negative",
        lambda: contour_ucm(-np.ones((4, 4))),
        error=ValueError,
        arg="contours",
        marks=(SKIMAGE,),
    ),
    Case(
        "contour_ucm_bool",
        lambda: contour_ucm(np.zeros((4, 4), dtype=bool)),
        error=TypeError,
        arg="contours",
        marks=(SKIMAGE,),
    ),
    Case(
        "contour_ucm_empty", lambda: contour_ucm(np.zeros((0, 4))), error=ValueError, arg="contours", marks=(SKIMAGE,)
    ),
    Case(
        "contour_ucm_markers_float",
        lambda: contour_ucm(np.zeros((4, 4)), markers=np.ones((4, 4))),
        error=TypeError,
        arg="markers",
        marks=(SKIMAGE,),
    ),
]

REFUSED_CUDA = [
    Case(
        "guided_device_mismatch",
        lambda: guided_filter(_images().cuda(), _images(), 1, 1e-2),
        error=ValueError,
        arg="guide_image",
        marks=(needs_cuda,),
    ),
]

CASES = REFUSED + REFUSED_SKIMAGE + REFUSED_CUDA
