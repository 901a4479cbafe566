"""Image-space transforms: PiCIE's view sampling, guided filtering, unsupervised
pseudo segments (superpixels, OWT-UCM-style hierarchies), and non-maximum suppression of
soft boundary maps. Loaded lazily: the superpixel and UCM code needs scipy and
scikit-image (the ``data`` extra)."""
from segsort_ext.utils.lazy import lazy_exports

_NAMES = {
    **dict.fromkeys(["Geometry", "sample_geometry", "identity_geometry", "apply_geometry", "Photometric",
                     "sample_photometric", "apply_photometric", "picie_views"], "segsort_ext.transforms.views"),
    **dict.fromkeys(["slic_segments", "felzenszwalb_segments", "pseudo_segments", "edge_strength", "contour_ucm",
                     "image_ucm", "ucm_to_labels", "ucm_components"], "segsort_ext.transforms.pseudo_segments"),
    **dict.fromkeys(["box_filter", "guided_filter", "pca_project", "rescale_to_unit"],
                    "segsort_ext.transforms.guided_filtering"),
    **dict.fromkeys(["triangle_blur", "edge_orientation", "edge_nms"], "segsort_ext.transforms.edges"),
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
__all__ = list(_NAMES)
