"""Image-space transforms: one augmentation stack (geometric and photometric primitives,
the per-sample TrainAugmentation and PiCIE's batched views), unsupervised pseudo segments
(superpixels, OWT-UCM-style hierarchies), guided filtering, and non-maximum suppression
of soft boundary maps.

Loaded lazily: ``import segsort_ext.transforms`` imports no module below until one of its
names is used, and the superpixel and UCM code imports scipy and scikit-image (the ``data``
extra) only when called.
"""
from segsort_ext.utils.lazy import lazy_exports

_MODULES = {
    "geometry": ["Geometry", "sample_geometry", "identity_geometry", "apply_geometry", "crop_or_pad", "random_crop",
                 "random_hflip", "random_scale"],
    "photometric": ["color_jitter", "Photometric", "sample_photometric", "apply_photometric"],
    "augment": ["RandomCropFlip", "TrainAugmentation", "picie_views"],
    "superpixels": ["slic_segments", "felzenszwalb_segments", "pseudo_segments"],
    "ucm": ["HED_UCM_OPTIONS", "edge_strength", "contour_ucm", "image_ucm", "ucm_to_labels", "ucm_components"],
    "guided_filtering": ["box_filter", "guided_filter", "pca_project", "rescale_to_unit"],
    "edges": ["triangle_blur", "edge_orientation", "edge_nms"],
}
_NAMES = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
__all__ = list(_NAMES)
