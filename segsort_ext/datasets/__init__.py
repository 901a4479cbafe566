"""Datasets: loaders of real segmentation datasets (VOC, SBD, Cityscapes, COCO-Stuff,
BSDS500, image folders) and the embedded scenes built from images that ship with
scikit-image and scikit-learn. Needs the ``data`` extra (pillow, scipy)."""
from segsort_ext.datasets.data import *  # noqa: F403
from segsort_ext.datasets.data import __all__ as _data_all
from segsort_ext.datasets.scenes import *  # noqa: F403
from segsort_ext.datasets.scenes import __all__ as _scenes_all

__all__ = [*_data_all, *_scenes_all]
