"""SegSort inference by segment retrieval (Sec. 3.3): a bank of training-set segment
prototypes in a :class:`~segsort_ext.retrieval.SegmentIndex`, and a predictor that labels
every segment of a test image by the majority of its k nearest prototypes, batched on
device, with multi-scale / flip averaging of the vote maps."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from segsort_ext.ops import segment_majority_mean, segment_mean, segment_partition, spherical_kmeans
from segsort_ext.retrieval import _checks
from segsort_ext.retrieval.index import SegmentIndex
from segsort_ext.utils import checks as check
from segsort_ext.utils.constants import IGNORE_INDEX

__all__ = ["add_training_segments", "SegSortPredictor"]


def _check_num_classes(num_classes) -> int:
    num_classes = check.positive_int(num_classes, "num_classes")
    if num_classes > SegmentIndex.MAX_CLASSES:
        raise ValueError(f"num_classes must be <= SegmentIndex.MAX_CLASSES = {SegmentIndex.MAX_CLASSES}, "
                         f"got {num_classes}")
    return num_classes


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
        embeddings: (B, D, H, W) network embeddings of training images. Pixels with a
            NaN or infinite embedding take no part (as in spherical_kmeans).
        labels: (B, H, W) int64 ground truth (``ignore_index`` = void).
        num_classes: C (<= SegmentIndex.MAX_CLASSES).
        image_ids: optional (B,) int64 dataset ids, kept as provenance (segment ids are
            the segments' ids within this batch).

    Returns:
        How many prototypes were added (segments without a labelled pixel are skipped).
    """
    if not isinstance(index, SegmentIndex):
        raise TypeError(f"index must be a SegmentIndex, got {type(index).__name__}")
    _checks.embedding_map(embeddings, "embeddings", index.dim)
    check.int64_tensor(labels, "labels")
    check.same_device(embeddings, "embeddings", labels, "labels")
    map_shape = (embeddings.shape[0], *embeddings.shape[2:])
    if tuple(labels.shape) != map_shape:
        raise ValueError(f"labels must have shape (B, H, W) = {map_shape} to match embeddings, "
                         f"got {tuple(labels.shape)}")
    _check_num_classes(num_classes)
    B = embeddings.shape[0]
    if image_ids is None:
        image_ids = torch.full((B,), -1, dtype=torch.int64, device=embeddings.device)
    else:
        check.int64_tensor(image_ids, "image_ids")
        if tuple(image_ids.shape) != (B,):
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
        num_classes: C (<= SegmentIndex.MAX_CLASSES, > every label of the index).
        k: neighbours per segment (SegSort: 15 to 21; <= len(index)).
        grid, iters, coord_weight: the pixel sorting (SegSort's inference uses a finer
            grid than training, e.g. (12, 12) at full resolution).
        weighting: 'uniform' or 'similarity' (see ``SegmentIndex.vote``).

    Pixels with a NaN or infinite embedding belong to no segment and get no votes (as do
    the pixels of a segment whose prototype an IVF index found no neighbour for): their
    vote maps are 0 and their predicted label -1.
    """

    def __init__(self, index: SegmentIndex, num_classes: int, *, k: int = 21, grid=(12, 12), iters: int = 10,
                 coord_weight: float = 1.0, weighting: str = "uniform"):
        if not isinstance(index, SegmentIndex):
            raise TypeError(f"index must be a SegmentIndex, got {type(index).__name__}")
        num_classes = _check_num_classes(num_classes)
        # A sharded index (distributed=True) may hold no rows on this rank; its search
        # raises on every rank alike when all shards are empty (or hold a label >= C).
        if not index.is_sharded:
            if len(index) == 0:
                raise ValueError("index is empty: add training segments first")
            if num_classes <= int(index.labels.max()):
                raise ValueError(f"num_classes = {num_classes} but the index holds label {int(index.labels.max())}")
        if weighting not in ("uniform", "similarity"):
            raise ValueError(f"weighting must be 'uniform' or 'similarity', got {weighting!r}")
        self.index = index
        self.num_classes = num_classes
        self.k = check.positive_int(k, "k")
        self.grid = check.grid(grid, "grid")
        self.iters = check.positive_int(iters, "iters")
        self.coord_weight = check.number(coord_weight, "coord_weight")
        self.weighting = weighting

    @torch.no_grad()
    def vote_map(self, embeddings: torch.Tensor, *, flip: bool = False,
                 output_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """(B, C, H, W) fraction of each segment's votes per class, for every pixel (votes
        over the sum of their absolute values: similarity votes can be negative).

        ``flip=True`` means the embeddings are of horizontally flipped images: the map is
        flipped back. ``output_size`` (an int or (H, W)) resizes it (bilinear) to a
        common size."""
        _checks.embedding_map(embeddings, "embeddings", self.index.dim)
        output_size = _size(output_size)
        self._check_vote_maps(embeddings, output_size, "embeddings" if output_size is None else "output_size")
        return self._vote_map(embeddings, _flag(flip, "flip"), output_size)

    def _check_vote_maps(self, embeddings: torch.Tensor, output_size: Optional[Tuple[int, int]], name: str) -> None:
        """Refuses, naming ``name``, vote maps beyond the device's memory: a view's (B, C)
        maps at its own size and at ``output_size`` (default: its own), and their sum."""
        B, _, H, W = embeddings.shape
        h, w = output_size or (H, W)
        check.fits_in_memory(embeddings.device, 4 * B * self.num_classes * (H * W + 2 * h * w), name)

    def _vote_map(self, embeddings: torch.Tensor, flip: bool, output_size: Optional[Tuple[int, int]]) -> torch.Tensor:
        clusters = spherical_kmeans(embeddings, self.grid, iters=self.iters, coord_weight=self.coord_weight).labels
        segments = segment_partition(clusters)
        prototypes = segment_mean(embeddings, segments.ids, segments.num_segments)
        _, votes = self.index.vote(prototypes, self.k, weighting=self.weighting, num_classes=self.num_classes)
        # Fractions of the votes; over their absolute sum, so that similarity votes of mixed
        # sign (whose plain sum may be ~0 or negative) stay in [-1, 1] like the others.
        votes = votes / votes.abs().sum(1, keepdim=True).clamp_min(1e-12)
        votes = torch.cat([votes, votes.new_zeros(1, self.num_classes)])  # row S: ignored pixels vote nothing
        ids = torch.where(segments.ids >= 0, segments.ids, segments.num_segments)
        maps = votes[ids].permute(0, 3, 1, 2)
        if flip:
            maps = maps.flip(-1)
        if output_size is not None:
            maps = F.interpolate(maps, size=output_size, mode="bilinear", align_corners=False)
        return maps

    @torch.no_grad()
    def predict(self, views: Union[torch.Tensor, Sequence[Tuple[torch.Tensor, bool]]],
                output_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """(B, H, W) int64 labels (ties to the lowest class; -1 where no view gave a pixel
        any vote, see the class docstring).

        ``views`` is one (B, D, H, W) embedding map, or a list of ``(embeddings, flipped)``
        views of the same B images (e.g. several scales and their flips; any H, W, one
        B); their vote maps are averaged at ``output_size`` (default: the first view's
        size). All views are checked before any is computed."""
        if isinstance(views, torch.Tensor):
            views = [(views, False)]
        if not isinstance(views, (list, tuple)):
            raise TypeError(f"views must be a tensor or a list of (embeddings, flipped) pairs, "
                            f"got {type(views).__name__}")
        if not views:
            raise ValueError("views must hold at least one embedding map")
        for i, view in enumerate(views):
            if not isinstance(view, (list, tuple)) or len(view) != 2:
                raise TypeError(f"views[{i}] must be an (embeddings, flipped) pair, got {type(view).__name__}")
            _checks.embedding_map(view[0], f"views[{i}] embeddings", self.index.dim)
            _flag(view[1], f"views[{i}] flipped")
            if view[0].shape[0] != views[0][0].shape[0] or view[0].device != views[0][0].device:
                raise ValueError(f"views must be of the same images: views[{i}] has batch size {view[0].shape[0]} "
                                 f"on {view[0].device}, views[0] {views[0][0].shape[0]} on {views[0][0].device}")
        size = _size(output_size) or tuple(views[0][0].shape[-2:])
        for embeddings, _ in views:
            self._check_vote_maps(embeddings, size, "views" if output_size is None else "output_size")
        total = sum(self._vote_map(embeddings, flipped, size) for embeddings, flipped in views)
        return total.argmax(1).masked_fill(~(total.abs().sum(1) > 0), -1)


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _size(output_size) -> Optional[Tuple[int, int]]:
    return None if output_size is None else check.int_pair(output_size, "output_size")
