"""Input conversion shared by the metrics: every metric takes numpy arrays or torch tensors
and computes in numpy."""
from __future__ import annotations

from typing import List, Mapping

import numpy as np

__all__ = ["to_numpy"]


def to_numpy(x) -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _ground_truth_maps(ground_truth, key: str, dtype) -> List[np.ndarray]:
    """The human annotations of one image as a list of ``dtype`` arrays: ``ground_truth`` is
    one map, a sequence of maps, or (a sequence of) BSDS ground-truth dicts, whose ``key``
    (``'boundaries'`` or ``'segmentation'``) is taken."""
    if isinstance(ground_truth, Mapping) or getattr(ground_truth, "ndim", None) == 2:
        ground_truth = [ground_truth]
    return [to_numpy(gt[key] if isinstance(gt, Mapping) else gt).astype(dtype) for gt in ground_truth]
