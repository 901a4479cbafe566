"""Datasets: loaders of real segmentation datasets (VOC, SBD, Cityscapes, COCO-Stuff,
BSDS500, image folders), a padding collate, and the embedded scenes built from images
that ship with scikit-image and scikit-learn.

Every semantic loader yields ``(image, label, id)``: ``image`` float32 ``(3, H, W)`` in
[0, 1], ``label`` int64 ``(H, W)`` (or ``(2, H, W)``: class, instance) with
:data:`IGNORE_INDEX` on pixels to ignore, ``id`` the image's name; a ``transform``
``(image, label) -> (image, label)`` such as :class:`segsort_ext.transforms.TrainAugmentation`
augments both together. Reading files needs the ``data`` extra (pillow; scipy for ``.mat``).
"""
from segsort_ext.datasets.bsds import BSDS500, load_bsds_ground_truth
from segsort_ext.datasets.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_LABEL_TO_TRAIN_ID, CityscapesSegmentation
from segsort_ext.datasets.cocostuff import COCOSTUFF27_CLASSES, COCOSTUFF_FINE_TO_COARSE, COCOStuffSegmentation
from segsort_ext.datasets.collate import collate
from segsort_ext.datasets.folder import ImageFolderSegmentation
from segsort_ext.datasets.io import read_image, read_label
from segsort_ext.datasets.scenes import TEXTURE_CLASSES, DigitScenes, TextureMosaics, texture_sources
from segsort_ext.datasets.voc import (
    VOC_CLASSES,
    SBDSegmentation,
    VOCAugSegmentation,
    VOCSegmentation,
    read_sbd_label,
)
from segsort_ext.utils.constants import IGNORE_INDEX

__all__ = [
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_LABEL_TO_TRAIN_ID",
    "COCOSTUFF27_CLASSES",
    "COCOSTUFF_FINE_TO_COARSE",
    "read_image",
    "read_label",
    "read_sbd_label",
    "load_bsds_ground_truth",
    "VOCSegmentation",
    "VOCAugSegmentation",
    "SBDSegmentation",
    "CityscapesSegmentation",
    "COCOStuffSegmentation",
    "ImageFolderSegmentation",
    "BSDS500",
    "collate",
    "TEXTURE_CLASSES",
    "TextureMosaics",
    "DigitScenes",
    "texture_sources",
]
