"""Semantic soft segmentation (Aksoy et al., SIGGRAPH 2018): the metric-learning loss
that trains its semantic features, and their guided-filter / PCA preprocessing."""
from __future__ import annotations

from typing import Optional

import torch

from segsort_ext.nn._point_sets import instance_groups, point_sets, uniform
from segsort_ext.transforms.guided_filtering import guided_filter, pca_project, rescale_to_unit
from segsort_ext.utils import checks as check

__all__ = ["soft_segmentation_loss", "soft_segmentation_features"]


def _rank_within(key_group: torch.Tensor, random_key: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Rank (0, 1, ...) of every element among the elements of its group, in the order
    of random_key (a uniformly random order within each group)."""
    order = random_key.argsort()
    order = order[key_group[order].argsort(stable=True)]
    counts = torch.bincount(key_group, minlength=num_groups)
    starts = counts.cumsum(0) - counts
    ranks = torch.empty_like(key_group)
    ranks[order] = torch.arange(key_group.numel(), device=key_group.device) - starts[key_group[order]]
    return ranks


def soft_segmentation_loss(embeddings: torch.Tensor, instance_ids: torch.Tensor, *,
                           num_instances: Optional[int] = None, pixels_per_instance: Optional[int] = 64,
                           generator: Optional[torch.Generator] = None, eps: float = 1e-12) -> torch.Tensor:
    """The metric-learning loss that trains the semantic features of semantic soft
    segmentation (Aksoy et al., SIGGRAPH 2018, Eq. 1).

    Sampling: in every image, ``num_instances`` instances are drawn uniformly without
    replacement among the instances present (all when None or fewer), and from each
    ``pixels_per_instance`` pixels uniformly without replacement (all when None or
    fewer). With P the sampled pixels of an image, f_p the (unnormalised) features and
    d_pq = ||f_p - f_q||_2,

        L_image = 1/|Pairs| * sum_{p < q in P} ( [I_p = I_q] d_pq
                                                 + [I_p != I_q] 2 / (1 + exp(d_pq)) )

    over the |Pairs| = |P| (|P| - 1) / 2 unordered pairs of distinct sampled pixels:
    same-instance pairs are pulled together by their distance, different-instance pairs
    pushed apart by the logistic term 2 / (1 + e^d) (1 at d = 0, -> 0 as d grows). The
    loss is the mean of L_image over images with at least two sampled pixels (0 with a
    zero gradient when none has). Assumptions (from the paper as we read it): the
    distance is the plain (not squared) L2 distance, and the 1/|P| of Eq. 1 normalises
    by the number of pairs. d is computed as sqrt(max(d^2, eps)) so coincident
    features have a finite gradient. The sampling sizes are this library's defaults,
    not the paper's.

    Args:
        embeddings: (B, D, H, W) with instance_ids (B, H, W), or one image (N, D) with
            instance_ids (N,). float32/float64.
        instance_ids: int64 instance (or stuff segment) of each pixel; negative = ignored.
        num_instances: instances sampled per image (None: all).
        pixels_per_instance: pixels sampled per instance (None: all; the pair matrix
            is (B, M, M) with M = instances x pixels per instance).
        generator: torch.Generator for the sampling.
        eps: floor of the squared distance (> 0, finite).

    Returns:
        Scalar loss, differentiable in the embeddings. A non-finite embedding of a
        sampled pixel makes it NaN; other pixels never reach it.
    """
    check.float_tensor(embeddings, "embeddings")
    if embeddings.dim() not in (2, 4):
        raise ValueError(f"embeddings must have shape (B, D, H, W) or (N, D), got {tuple(embeddings.shape)}")
    (points,), ids = point_sets(embeddings, instance_ids)
    num_instances = check.optional_positive_int(num_instances, "num_instances")
    pixels_per_instance = check.optional_positive_int(pixels_per_instance, "pixels_per_instance")
    check.generator(generator)
    eps = check.number(eps, "eps", minimum=0.0, strict=True)
    B, N, D = points.shape
    device = points.device
    group, group_image, sizes, instances_per_image = instance_groups(ids)
    num_groups = sizes.shape[0]
    if num_groups == 0:
        return points.sum() * 0.0
    # Instances: a random rank within the image; keep the first num_instances.
    instance_rank = _rank_within(group_image, uniform((num_groups,), generator, device), B)
    chosen = instance_rank < (num_instances if num_instances is not None else num_groups)
    # Pixels: a random rank within the instance; keep the first pixels_per_instance.
    flat_group = group.reshape(-1)
    pixel_index = (flat_group >= 0).nonzero().squeeze(1)
    pixel_group = flat_group[pixel_index]
    pixel_rank = _rank_within(pixel_group, uniform(pixel_group.shape, generator, device), num_groups)
    # Slots for the largest instance at most, whatever pixels_per_instance asks for.
    largest = int(sizes.max())
    per_instance = largest if pixels_per_instance is None else min(pixels_per_instance, largest)
    keep = chosen[pixel_group] & (pixel_rank < per_instance)
    pixel_index, pixel_group, pixel_rank = pixel_index[keep], pixel_group[keep], pixel_rank[keep]
    slots_per_image = per_instance * int(torch.clamp(instances_per_image, max=num_instances or num_groups).max())
    # Slot layout per image: (instance rank, pixel rank) -> one padded row of M slots.
    image = pixel_index // N
    slot = image * slots_per_image + instance_rank[pixel_group] * per_instance + pixel_rank
    source = torch.full((B * slots_per_image,), -1, dtype=torch.int64, device=device)
    source[slot] = pixel_index
    slot_group = torch.full_like(source, -1)
    slot_group[slot] = pixel_group
    features = points.reshape(B * N, D).index_select(0, source.clamp_min(0)).view(B, slots_per_image, D)
    slot_group = slot_group.view(B, slots_per_image)
    filled = slot_group >= 0
    # Empty slots hold pixel 0 as a placeholder: zeroed, so its value never reaches a pair.
    features = torch.where(filled.unsqueeze(2), features, 0.0)

    squared_norms = (features * features).sum(2)
    gram = torch.bmm(features, features.transpose(1, 2))
    squared = (squared_norms.unsqueeze(2) + squared_norms.unsqueeze(1) - 2 * gram).clamp_min(eps)
    distance = squared.sqrt()
    upper = torch.ones(slots_per_image, slots_per_image, dtype=torch.bool, device=device).triu(1)
    pair = filled.unsqueeze(2) & filled.unsqueeze(1) & upper
    same = slot_group.unsqueeze(2) == slot_group.unsqueeze(1)
    # 2 / (1 + e^d) = 2 sigmoid(-d), written so that large d never overflows.
    pair_loss = torch.where(same, distance, 2.0 * torch.sigmoid(-distance))
    pair_loss = torch.where(pair, pair_loss, 0.0)
    pairs_per_image = pair.sum((1, 2))
    used = pairs_per_image > 0
    per_image = pair_loss.sum((1, 2)) / pairs_per_image.clamp_min(1).to(points.dtype)
    return (per_image * used).sum() / used.sum().clamp_min(1).to(points.dtype)


def soft_segmentation_features(image: torch.Tensor, features: torch.Tensor, *, radius: int, eps: float,
                               dims: int = 3) -> torch.Tensor:
    """Semantic soft segmentation's feature preprocessing (Aksoy et al. 2018): the
    features are edge-aware smoothed by a guided filter with the image as guide, reduced
    to ``dims`` dimensions by per-image PCA, and rescaled to [0, 1] per channel:
    ``rescale_to_unit(pca_project(guided_filter(image, features, radius, eps), dims))``.

    Args:
        image: (B, 3, H, W) float guide image (e.g. RGB in [0, 1]).
        features: (B, C, H, W) float features at the image's resolution (upsample them
            first, e.g. with F.interpolate).
        radius, eps: guided filter window radius and regularisation.
        dims: PCA dimensions (3 in the paper).

    Returns:
        (B, dims, H, W) features in [0, 1].
    """
    return rescale_to_unit(pca_project(guided_filter(image, features, radius, eps), dims))
