"""PiCIE's clustering loss (Cho et al., CVPR 2021): within- and cross-view cross-entropy
against each view's k-means pseudo-labels, over one or several clusterings."""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from segsort_ext.utils import checks as check
from segsort_ext.utils.constants import NORM_EPS

__all__ = ["PiCIEClustering", "picie_loss", "cluster_balance_weights"]


class PiCIEClustering(NamedTuple):
    """One clustering of the two views' features (PiCIE clusters each view on its own).

    centroids_1 / centroids_2: (K, C) centroids fitted on view-1 / view-2 features
    (L2-normalised inside the loss). labels_1 / labels_2: (B, h, w) int64 pseudo-labels
    of each view's pixels (nearest centroid of that view), negative = ignored.
    class_weights_1 / class_weights_2: optional (K,) cross-entropy weights for the
    terms with labels_1 / labels_2, e.g. :func:`cluster_balance_weights`.
    """

    centroids_1: torch.Tensor
    centroids_2: torch.Tensor
    labels_1: torch.Tensor
    labels_2: torch.Tensor
    class_weights_1: Optional[torch.Tensor] = None
    class_weights_2: Optional[torch.Tensor] = None


def cluster_balance_weights(counts: torch.Tensor) -> torch.Tensor:
    """Inverse-frequency class weights for a balanced cross-entropy.

    Args:
        counts: (K,) pixels per cluster (int or float, finite, >= 0), e.g.
            ``torch.bincount(labels[labels >= 0], minlength=K)`` or a dataset-level count.

    Returns:
        (K,) float weights ``w_k = 1 / counts_k`` for non-empty clusters, 0 for empty
        ones, scaled to mean 1 over the non-empty clusters. With these weights the
        weighted mean cross-entropy (sum w_y l / sum w_y) weighs every non-empty cluster
        equally, whatever its size.
    """
    check.tensor(counts, "counts")
    if counts.dim() != 1:
        raise ValueError(f"counts must have shape (K,), got {tuple(counts.shape)}")
    if counts.is_complex() or counts.dtype == torch.bool:
        raise TypeError(f"counts must be a real tensor, got {counts.dtype}")
    values = counts.double()
    if not bool(torch.isfinite(values).all()):
        raise ValueError("counts must be finite")
    if bool((values < 0).any()):
        raise ValueError("counts must be >= 0")
    nonempty = values > 0
    weights = torch.where(nonempty, 1.0 / values.clamp_min(1e-300), 0.0)
    scale = nonempty.sum().clamp_min(1) / weights.sum().clamp_min(1e-300)
    dtype = counts.dtype if counts.is_floating_point() else torch.get_default_dtype()
    return (weights * scale).to(dtype)


def _clustering_cross_entropy(features: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor,
                              class_weights: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    """sum_p w_{y_p} (-log softmax_k(scale * f_p . mu_k))_{y_p} / sum_p w_{y_p} over
    pixels with y_p >= 0 (features and centroids L2-normalised); 0 without any."""
    valid = labels >= 0
    # Skipped pixels are zeroed first: their values (NaN included) reach neither the loss
    # nor a gradient.
    unit = F.normalize(torch.where(valid.unsqueeze(1), features, 0.0), dim=1, eps=NORM_EPS)
    mu = F.normalize(centroids, dim=1, eps=NORM_EPS).to(unit.dtype)
    logits = scale * torch.einsum("bchw,kc->bkhw", unit, mu)
    log_probabilities = logits.log_softmax(1)
    picked = log_probabilities.gather(1, labels.clamp_min(0).unsqueeze(1)).squeeze(1)
    if class_weights is None:
        pixel_weight = valid.to(unit.dtype)
    else:
        pixel_weight = torch.where(valid, class_weights.to(unit.dtype)[labels.clamp_min(0)], 0.0)
    return -(pixel_weight * picked).sum() / pixel_weight.sum().clamp_min(torch.finfo(unit.dtype).tiny)


def _check_clustering(clustering, index: int, features: torch.Tensor) -> None:
    name = f"clusterings[{index}]"
    if not isinstance(clustering, PiCIEClustering):
        raise TypeError(f"{name} must be a PiCIEClustering, got {type(clustering).__name__}")
    B, C, h, w = features.shape
    for view in (1, 2):
        centroids = getattr(clustering, f"centroids_{view}")
        labels = getattr(clustering, f"labels_{view}")
        weights = getattr(clustering, f"class_weights_{view}")
        check.float_tensor(centroids, f"{name}.centroids_{view}")
        check.int64_tensor(labels, f"{name}.labels_{view}")
        if centroids.dim() != 2 or centroids.shape[1] != C or centroids.shape[0] < 1:
            raise ValueError(f"{name}.centroids_{view} must have shape (K, C) with C = {C}, "
                             f"got {tuple(centroids.shape)}")
        if tuple(labels.shape) != (B, h, w):
            raise ValueError(f"{name}.labels_{view} must have shape (B, h, w) = {(B, h, w)}, got {tuple(labels.shape)}")
        check.same_device(centroids, f"{name}.centroids_{view}", features, "the features")
        check.same_device(labels, f"{name}.labels_{view}", features, "the features")
        if weights is not None:
            check.float_tensor(weights, f"{name}.class_weights_{view}")
            if tuple(weights.shape) != (centroids.shape[0],):
                raise ValueError(f"{name}.class_weights_{view} must have shape (K,) = ({centroids.shape[0]},), "
                                 f"got {tuple(weights.shape)}")
            check.same_device(weights, f"{name}.class_weights_{view}", features, "the features")
            if not bool(((weights >= 0) & torch.isfinite(weights)).all()):
                raise ValueError(f"{name}.class_weights_{view} must be finite and >= 0")
    if clustering.centroids_1.shape != clustering.centroids_2.shape:
        raise ValueError(f"{name}.centroids_1 {tuple(clustering.centroids_1.shape)} and centroids_2 "
                         f"{tuple(clustering.centroids_2.shape)} must have the same shape (K, C)")
    K = clustering.centroids_1.shape[0]
    for view in (1, 2):
        labels = getattr(clustering, f"labels_{view}")
        if labels.numel() and int(labels.max()) >= K:
            raise ValueError(f"{name}.labels_{view} must be < K = {K}, found {int(labels.max())}")


def picie_loss(features_1: torch.Tensor, features_2: torch.Tensor,
               clusterings: Union[PiCIEClustering, Sequence[PiCIEClustering]], *, scale: float = 1.0,
               clustering_weights: Union[str, Sequence[float]] = "log", within_weight: float = 0.5,
               cross_weight: float = 0.5, return_terms: bool = False):
    """PiCIE's clustering loss (Cho et al., CVPR 2021, Eqs. 4-7): invariance to
    photometric and equivariance to geometric transforms via within- and cross-view
    cross-entropy against the k-means pseudo-labels of each view.

    With view features z1 = f(G(P1(x))) and z2 = G(f(P2(x))) (see
    :mod:`segsort_ext.transforms.views`), one clustering per view (centroids mu1 with labels y1 of
    z1, mu2 with labels y2 of z2) and

        CE(z, y, mu) = sum_p w_{y_p} (-log softmax_k(scale * z_p . mu_k))_{y_p} / sum_p w_{y_p}

    (z_p and mu_k L2-normalised: cosine logits; w = the clustering's class weights,
    finite and >= 0, 1 without; pixels with y_p < 0 skipped), the loss of one clustering is

        L = within_weight * (CE(z1, y1, mu1) + CE(z2, y2, mu2)) / 2
          + cross_weight  * (CE(z1, y2, mu2) + CE(z2, y1, mu1)) / 2

    i.e. with the default weights 0.5/0.5 the mean of the four terms. PiCIE's Eq. 7
    sums L_within and L_cross; a public re-implementation of PiCIE's training step
    averages each pair of terms and weighs L_within and L_cross by 0.5 each, which is
    the default here (the minimiser is the same; only the scale differs). The
    cross-view terms use the *other* view's labels with that view's centroids (Eq. 6).

    Several clusterings (e.g. K = 27 classes and an overclustering K2 = 100) are
    combined as ``sum_c lambda_c L_c``. ``clustering_weights='log'`` uses
    ``lambda_c = (1 / log K_c) / sum_j (1 / log K_j)``, so each clustering's
    chance-level loss log K_c contributes equally; for two clusterings
    ``lambda_K = log K2 / (log K + log K2)`` and ``lambda_K2 = log K / (log K + log K2)``.
    This weighting is this library's choice (PiCIE does not fix one); pass explicit
    weights to use others (e.g. ``(0.5, 0.5)``).

    Args:
        features_1, features_2: (B, C, h, w) float features of the two views (same
            shape; features_2 already geometrically transformed).
        clusterings: a :class:`PiCIEClustering` or a sequence of them.
        scale: logit scale (inverse temperature); PiCIE uses 1.
        clustering_weights: 'log' or one float per clustering.
        within_weight, cross_weight: weights of the within- and cross-view terms.
        return_terms: also return a dict with the per-clustering terms
            ``within`` and ``cross`` (lists of scalars, unweighted pair means).

    Returns:
        Scalar loss (or ``(loss, terms)``), differentiable in the features (and in the
        centroids, if they require grad; PiCIE keeps them fixed). A non-finite feature
        of a pixel with a label, or a non-finite centroid, makes it NaN.
    """
    check.float_tensor(features_1, "features_1")
    check.float_tensor(features_2, "features_2")
    check.same_device(features_1, "features_1", features_2, "features_2")
    if features_1.dim() != 4:
        raise ValueError(f"features_1 must have shape (B, C, h, w), got {tuple(features_1.shape)}")
    if features_2.shape != features_1.shape:
        raise ValueError(f"features_2 must have the shape of features_1 {tuple(features_1.shape)}, "
                         f"got {tuple(features_2.shape)}")
    if isinstance(clusterings, PiCIEClustering):
        clusterings = [clusterings]
    elif not isinstance(clusterings, (list, tuple)) or not clusterings:
        raise TypeError("clusterings must be a PiCIEClustering or a non-empty sequence of them")
    for index, clustering in enumerate(clusterings):
        _check_clustering(clustering, index, features_1)
    scale = check.number(scale, "scale")
    within_weight = check.number(within_weight, "within_weight")
    cross_weight = check.number(cross_weight, "cross_weight")
    sizes = [c.centroids_1.shape[0] for c in clusterings]
    if isinstance(clustering_weights, str):
        if clustering_weights != "log":
            raise ValueError(f"clustering_weights must be 'log' or a sequence of floats, got {clustering_weights!r}")
        if len(clusterings) == 1:
            lambdas = [1.0]
        else:
            if min(sizes) < 2:
                raise ValueError(f"clustering_weights='log' needs K >= 2 in every clustering, got K = {sizes}")
            inverse_logs = [1.0 / math.log(k) for k in sizes]
            lambdas = [v / sum(inverse_logs) for v in inverse_logs]
    else:
        if not isinstance(clustering_weights, (list, tuple)) or len(clustering_weights) != len(clusterings):
            raise ValueError(f"clustering_weights must be 'log' or {len(clusterings)} floats, "
                             f"got {clustering_weights!r}")
        lambdas = [check.number(v, f"clustering_weights[{i}]") for i, v in enumerate(clustering_weights)]

    total = features_1.new_zeros(())
    terms = {"within": [], "cross": []}
    for lam, c in zip(lambdas, clusterings):
        within = 0.5 * (_clustering_cross_entropy(features_1, c.centroids_1, c.labels_1, c.class_weights_1, scale)
                        + _clustering_cross_entropy(features_2, c.centroids_2, c.labels_2, c.class_weights_2, scale))
        cross = 0.5 * (_clustering_cross_entropy(features_1, c.centroids_2, c.labels_2, c.class_weights_2, scale)
                       + _clustering_cross_entropy(features_2, c.centroids_1, c.labels_1, c.class_weights_1, scale))
        terms["within"].append(within)
        terms["cross"].append(cross)
        total = total + lam * (within_weight * within + cross_weight * cross)
    return (total, terms) if return_terms else total
