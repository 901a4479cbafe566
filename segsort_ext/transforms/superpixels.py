"""Superpixels and contour hierarchies as pseudo segments for unsupervised SegSort.

* :func:`slic_segments` / :func:`felzenszwalb_segments`: one image ``(C, H, W)`` -> int64
  ``(H, W)`` ids, compact ``[0, S)``, numbered in raster order of first appearance
  (scikit-image);
* :func:`pseudo_segments`: a batch ``(B, C, H, W)`` -> ``(B, H, W)`` per-image ids with ``-1``
  on ignored pixels, ready to pass as ``labels`` to ``SegSortLoss(loss='vmf')``; besides the
  superpixels, ``method='contour-ucm'`` cuts the OWT-UCM hierarchy of given contour maps
  (the paper's unsupervised setting: HED contours -> OWT-UCM -> segments).

NaN/inf policy: refused. An image (or contour map) holding NaN or inf is a ValueError
naming ``image`` (``contours``) -- scikit-image has no meaning for it; float16/bfloat16
inputs are read exactly as float64.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from segsort_ext.transforms._arrays import compact_ids, image_array
from segsort_ext.transforms._checks import smoothing_sigma
from segsort_ext.transforms.ucm import contour_ucm, ucm_to_labels
from segsort_ext.utils import checks as check
from segsort_ext.utils.optional import require

__all__ = ["slic_segments", "felzenszwalb_segments", "pseudo_segments"]


def slic_segments(image: torch.Tensor, n_segments: int = 100, *, compactness: float = 10.0, sigma: float = 1.0,
                  max_num_iter: int = 10, enforce_connectivity: bool = True) -> torch.Tensor:
    """SLIC superpixels (scikit-image) of one image.

    Args:
        image: float ``(3, H, W)`` RGB in [0, 1] (clustered in CIELAB), ``(1, H, W)`` or ``(H, W)``.
        n_segments: approximate number of superpixels.
        compactness, sigma, max_num_iter, enforce_connectivity: as ``skimage.segmentation.slic``
            (sigma at most 2 * max(H, W)).

    Returns:
        int64 ``(H, W)`` ids, compact ``[0, S)`` in raster order of first appearance.
    """
    slic = require("skimage.segmentation", "slic_segments").slic
    array = image_array(image)
    n_segments = check.positive_int(n_segments, "n_segments")
    compactness = check.number(compactness, "compactness", minimum=0.0, strict=True)
    sigma = smoothing_sigma(sigma, array.shape[:2])
    max_num_iter = check.positive_int(max_num_iter, "max_num_iter")
    labels = slic(array, n_segments=n_segments, compactness=compactness, sigma=sigma, max_num_iter=max_num_iter,
                  enforce_connectivity=bool(enforce_connectivity), start_label=0,
                  channel_axis=-1 if array.ndim == 3 else None)
    return torch.from_numpy(compact_ids(labels))


def felzenszwalb_segments(image: torch.Tensor, *, scale: float = 100.0, sigma: float = 0.8,
                          min_size: int = 50) -> torch.Tensor:
    """Felzenszwalb-Huttenlocher graph-based segmentation (scikit-image) of one image.

    Args:
        image: float ``(3, H, W)`` in [0, 1], ``(1, H, W)`` or ``(H, W)``.
        scale: larger gives larger segments; sigma: pre-smoothing (at most 2 * max(H, W));
            min_size: smallest segment.

    Returns:
        int64 ``(H, W)`` ids, compact ``[0, S)`` in raster order of first appearance.
    """
    felzenszwalb = require("skimage.segmentation", "felzenszwalb_segments").felzenszwalb
    array = image_array(image)
    scale = check.number(scale, "scale", minimum=0.0, strict=True)
    sigma = smoothing_sigma(sigma, array.shape[:2])
    min_size = check.positive_int(min_size, "min_size")
    labels = felzenszwalb(array, scale=scale, sigma=sigma, min_size=min_size,
                          channel_axis=-1 if array.ndim == 3 else None)
    return torch.from_numpy(compact_ids(labels))


def _contour_ucm_segments(contours: torch.Tensor, *, threshold: Optional[float] = None,
                          num_segments: Optional[int] = None, **ucm_options) -> torch.Tensor:
    return ucm_to_labels(contour_ucm(contours, **ucm_options), threshold, num_segments=num_segments)


_METHODS = {"slic": slic_segments, "felzenszwalb": felzenszwalb_segments, "contour-ucm": _contour_ucm_segments}


def pseudo_segments(images: torch.Tensor, method: str = "slic", *, valid: Optional[torch.Tensor] = None,
                    contours: Optional[torch.Tensor] = None, **options) -> torch.Tensor:
    """Pseudo segments of a batch, for unsupervised SegSort.

    Args:
        images: float ``(B, C, H, W)`` in [0, 1] (C = 1 or 3; un-normalised pixels, i.e.
            before any mean/std normalisation).
        method: ``'slic'`` (:func:`slic_segments`), ``'felzenszwalb'``
            (:func:`felzenszwalb_segments`), ``options`` going to that function; or
            ``'contour-ucm'``: one level of the :func:`~segsort_ext.transforms.contour_ucm`
            hierarchy of ``contours``, chosen by ``threshold=`` or ``num_segments=`` (see
            :func:`~segsort_ext.transforms.ucm_to_labels`), the other ``options`` going to
            ``contour_ucm`` (for HED probabilities:
            ``**``:data:`~segsort_ext.transforms.HED_UCM_OPTIONS`, HED-owt-ucm).
        valid: optional bool ``(B, H, W)``; pixels where it is False (e.g. the padding added by
            :func:`segsort_ext.datasets.collate`) get id -1 and the others are renumbered.
        contours: ``(B, 1, H, W)`` non-negative boundary strengths (e.g.
            ``segsort_ext.models.HED`` probabilities), for ``method='contour-ucm'`` only.

    Returns:
        int64 ``(B, H, W)`` on the device of ``images``: per image, compact ids ``[0, S_b)`` in
        raster order of first appearance, -1 where not valid.  Pass it as ``labels`` to
        ``SegSortLoss(loss='vmf', ignore_index=-1)``: segments are then aligned with the pseudo
        segments and each is its own class (with the default ``ignore_index=255`` an image with
        more than 255 segments would lose segment 255).
    """
    check.tensor(images, "images")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    B, _, H, W = images.shape
    if method == "contour-ucm":
        if contours is None:
            raise ValueError("method 'contour-ucm' needs contours (B, 1, H, W)")
        check.float_tensor(contours, "contours")
        if tuple(contours.shape) != (B, 1, H, W):
            raise ValueError(f"contours must have shape (B, 1, H, W) = {(B, 1, H, W)}, got {tuple(contours.shape)}")
        inputs = contours[:, 0]
    elif contours is not None:
        raise ValueError(f"contours are for method 'contour-ucm', not {method!r}")
    else:
        inputs = images
    if valid is not None:
        if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool:
            raise TypeError(f"valid must be a bool tensor (B, H, W), got "
                            f"{valid.dtype if isinstance(valid, torch.Tensor) else type(valid).__name__}")
        if tuple(valid.shape) != (B, H, W):
            raise ValueError(f"valid must have shape (B, H, W) = {(B, H, W)}, got {tuple(valid.shape)}")
        valid = valid.cpu().numpy()
    segment = _METHODS[method]
    out = np.empty((B, H, W), dtype=np.int64)
    for b in range(B):
        ids = segment(inputs[b], **options).numpy()
        if valid is not None:
            ids = compact_ids(np.where(valid[b], ids, -1))
        out[b] = ids
    return torch.from_numpy(out).to(images.device)
