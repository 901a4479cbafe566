"""SegSort inference by segment retrieval (Sec. 3.3): a bank of training-set segment
prototypes in a :class:`~segsort_ext.retrieval.SegmentIndex`, and a predictor that labels
every segment of a test image by the majority of its k nearest prototypes, batched on
device, with multi-scale / flip averaging of the vote maps."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from segsort_ext.ops import segment_majority_mean, segment_mean, segment_partition, spherical_kmeans
from segsort_ext.retrieval.index import SegmentIndex
from segsort_ext.utils import checks as check
from segsort_ext.utils.constants import IGNORE_INDEX

__all__ = ["add_training_segments", "SegSortPredictor"]


def add_training_segments(
    index: SegmentIndex,
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    image_ids: Optional[torch.Tensor] = None,
    grid=(5, 5),
    iters: int = 10,
    coord_weight: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
) -> int:
    """Adds the segments of a batch of training images to the bank: pixel sorting
    (spherical_kmeans), one segment per cluster, prototype = normalised mean of the
    pixels of the segment's majority label only, labelled with that majority.

    Args:
        index: the bank (``SegmentIndex(dim=D)``).
        embeddings: (B, D, H, W) network embeddings of training images.
        labels: (B, H, W) int64 ground truth (``ignore_index`` = void).
        num_classes: C.
        image_ids: optional (B,) int64 dataset ids, kept as provenance (segment ids are
            the segments' ids within this batch).

    Returns:
        How many prototypes were added (segments without a labelled pixel are skipped).
    """
    check.float_tensor(embeddings, "embeddings")
    check.int64_tensor(labels, "labels")
    if embeddings.dim() != 4 or labels.shape != (embeddings.shape[0],) + tuple(embeddings.shape[2:]):
        raise ValueError(f"embeddings must be (B, D, H, W) and labels (B, H, W) with the same B, H, W; got "
                         f"{tuple(embeddings.shape)} and {tuple(labels.shape)}")
    B = embeddings.shape[0]
    if image_ids is None:
        image_ids = torch.full((B,), -1, dtype=torch.int64, device=embeddings.device)
    elif tuple(image_ids.shape) != (B,):
        raise ValueError(f"image_ids must have shape (B,) = ({B},), got {tuple(image_ids.shape)}")
    embeddings = embeddings.detach()
    clusters = spherical_kmeans(embeddings, grid, iters=iters, coord_weight=coord_weight).labels
    segments = segment_partition(clusters)
    prototypes, majority = segment_majority_mean(embeddings, segments.ids, labels, segments.num_segments,
                                                 num_classes, ignore_index=ignore_index)
    keep = majority >= 0
    index.add(prototypes[keep], majority[keep], image_ids=image_ids.to(segments.batch.device)[segments.batch[keep]],
              segment_ids=keep.nonzero().squeeze(1))
    return int(keep.sum())


class SegSortPredictor:
    """Per-pixel labels from embeddings by kNN voting over a bank of prototypes.

    embeddings -> pixel sorting -> segment prototypes -> ``index.vote`` (k neighbours) ->
    every pixel gets its segment's vote. Vote maps of several views of the same images
    (scales, flips) are resized to one size and averaged before the argmax.

    Args:
        index: a filled :class:`SegmentIndex`.
        num_classes: C.
        k: neighbours per segment (SegSort: 15 to 21).
        grid, iters, coord_weight: the pixel sorting (SegSort's inference uses a finer
            grid than training, e.g. (12, 12) at full resolution).
        weighting: 'uniform' or 'similarity' (see ``SegmentIndex.vote``).
    """

    def __init__(self, index: SegmentIndex, num_classes: int, *, k: int = 21, grid=(12, 12), iters: int = 10,
                 coord_weight: float = 1.0, weighting: str = "uniform"):
        # A sharded index (distributed=True) may hold no rows on this rank; its search
        # raises on every rank alike when all shards are empty.
        if len(index) == 0 and not index.is_sharded:
            raise ValueError("index is empty: add training segments first")
        self.index = index
        self.num_classes = check.positive_int(num_classes, "num_classes")
        self.k = check.positive_int(k, "k")
        self.grid, self.iters, self.coord_weight, self.weighting = grid, iters, coord_weight, weighting

    @torch.no_grad()
    def vote_map(self, embeddings: torch.Tensor, *, flip: bool = False,
                 output_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """(B, C, H, W) fraction of each segment's votes per class, for every pixel.

        ``flip=True`` means the embeddings are of horizontally flipped images: the map is
        flipped back. ``output_size`` resizes it (bilinear) to a common size."""
        check.float_tensor(embeddings, "embeddings")
        if embeddings.dim() != 4:
            raise ValueError(f"embeddings must have shape (B, D, H, W), got {tuple(embeddings.shape)}")
        clusters = spherical_kmeans(embeddings, self.grid, iters=self.iters, coord_weight=self.coord_weight).labels
        segments = segment_partition(clusters)
        prototypes = segment_mean(embeddings, segments.ids, segments.num_segments)
        _, votes = self.index.vote(prototypes, self.k, weighting=self.weighting, num_classes=self.num_classes)
        votes = votes / votes.sum(1, keepdim=True).clamp_min(1e-12)
        votes = torch.cat([votes, votes.new_zeros(1, self.num_classes)])  # row S: ignored pixels vote nothing
        ids = torch.where(segments.ids >= 0, segments.ids, segments.num_segments)
        maps = votes[ids].permute(0, 3, 1, 2)
        if flip:
            maps = maps.flip(-1)
        if output_size is not None:
            maps = F.interpolate(maps, size=tuple(output_size), mode="bilinear", align_corners=False)
        return maps

    @torch.no_grad()
    def predict(self, views: Union[torch.Tensor, Sequence[Tuple[torch.Tensor, bool]]],
                output_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """(B, H, W) int64 labels (ties to the lowest class).

        ``views`` is one (B, D, H, W) embedding map, or a list of ``(embeddings, flipped)``
        views of the same images (e.g. several scales and their flips); their vote maps
        are averaged at ``output_size`` (default: the first view's size)."""
        if isinstance(views, torch.Tensor):
            views = [(views, False)]
        if not views:
            raise ValueError("views must hold at least one embedding map")
        size = tuple(output_size) if output_size is not None else tuple(views[0][0].shape[-2:])
        total = sum(self.vote_map(e, flip=flipped, output_size=size) for e, flipped in views)
        return total.argmax(1)
