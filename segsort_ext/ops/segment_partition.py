"""Label-aware segment partitioning: SegSort's aligned segments, optionally split into
connected components."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from segsort_ext.ops import reference
from segsort_ext.ops._extension import ops, python_kernel
from segsort_ext.utils import checks as check

__all__ = ["Segments", "segment_partition"]


class Segments(NamedTuple):
    """Result of :func:`segment_partition`. Per-segment tensors have length S."""

    ids: torch.Tensor  # (B, H, W) int64 segment of each pixel, -1 where ignored
    batch: torch.Tensor  # (S,) image of each segment
    cluster: torch.Tensor  # (S,) cluster of each segment
    label: torch.Tensor  # (S,) label of each segment, -1 without labels
    size: torch.Tensor  # (S,) pixels in each segment

    @property
    def num_segments(self) -> int:
        return self.batch.shape[0]


def segment_partition(
    clusters: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    ignore_index: int = 255,
    connectivity: Optional[int] = None,
) -> Segments:
    """Splits every image into segments, one per (image, cluster, label) triple present.

    Args:
        clusters: (B, H, W) int64 cluster of each pixel (e.g. from spherical k-means);
            negative values mark ignored pixels.
        labels: optional (B, H, W) int64 class labels; pixels labelled ``ignore_index``
            (or negative) are ignored. With labels, a cluster that covers two classes
            becomes two segments (SegSort's "aligned segments").
        ignore_index: the label of ignored pixels.
        connectivity: None (segments may be disconnected), 4 or 8 to further split each
            segment into its 4- or 8-connected components.

    Returns:
        :class:`Segments`. Ids are compact ``[0, S)`` over the batch and ordered by
        (image, cluster, label), then by first pixel in raster order. Finding S costs one
        device-to-host sync.

    Every int64 value is a valid cluster or label, INT64_MIN to INT64_MAX (wide value
    ranges are grouped by sorting, never by ``max + 1`` arithmetic); negative clusters and
    negative or ``ignore_index`` labels mark ignored pixels.
    """
    if connectivity not in (None, 4, 8):
        raise ValueError(f"connectivity must be None, 4 or 8, got {connectivity!r}")
    ignore_index = check.int64(ignore_index, "ignore_index")
    check.tensor(clusters, "clusters")
    if labels is not None:
        check.tensor(labels, "labels")
    for name, value in (("clusters", clusters), ("labels", labels)):
        if value is not None and value.is_meta:
            raise ValueError(f"{name} is on the meta device: the number of segments depends on its values")
    return Segments(*ops.segment_partition(clusters, labels, ignore_index, connectivity or 0))


@python_kernel("segment_partition")
def _segment_partition_python(clusters, labels, ignore_index, connectivity):
    """The plain-PyTorch kernel: the checks of csrc/include/segsort/segment_partition.h,
    then ``reference.segment_partition``."""
    check.int64_tensor(clusters, "clusters")
    if clusters.dim() != 3:
        raise ValueError(f"clusters must have shape (B, H, W), got {tuple(clusters.shape)}")
    if labels is not None:
        check.int64_tensor(labels, "labels")
        check.same_device(clusters, "clusters", labels, "labels")
        if labels.shape != clusters.shape:
            raise ValueError(f"labels must have the shape of clusters {tuple(clusters.shape)}, "
                             f"got {tuple(labels.shape)}")
    if connectivity not in (0, 4, 8):
        raise ValueError(f"connectivity must be 0 (no split), 4 or 8, got {connectivity}")
    check.fits_in_memory(clusters.device, 32 * clusters.numel(), "clusters")
    partition = reference.segment_partition(clusters, labels, ignore_index=ignore_index,
                                            connectivity=connectivity or None)
    return tuple(t.contiguous() for t in partition)


@torch.library.register_fake("segsort_ext::segment_partition")
def _segment_partition_fake(clusters, labels, ignore_index, connectivity):
    num_segments = torch.library.get_ctx().new_dynamic_size()
    per_segment = [clusters.new_empty((num_segments,)) for _ in range(4)]
    return (torch.empty_like(clusters, memory_format=torch.contiguous_format), *per_segment)
