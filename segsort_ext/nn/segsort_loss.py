"""SegSort's training loss (Hwang et al., ICCV 2019, Algorithm 1): spherical k-means ->
aligned segments -> prototypes -> vMF / vMF-NCA loss, with an optional prototype memory and
a torch.distributed mode over the global batch."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from segsort_ext.nn._point_sets import sample_rows
from segsort_ext.nn.memory import PrototypeMemory
from segsort_ext.ops import segment_mean, segment_partition, spherical_kmeans, vmf_loss, vmf_nca_loss
from segsort_ext.utils import checks as check
from segsort_ext.utils import distributed as dist_utils
from segsort_ext.utils.constants import IGNORE_INDEX, NORM_EPS

__all__ = ["SegSortLoss"]


class SegSortLoss(nn.Module):
    """SegSort's training loss in one call (Hwang et al., ICCV 2019, Algorithm 1).

    For embeddings e (B, D, H, W) from the network:

    1. pixel sorting: ``spherical_kmeans(e.detach(), grid, iters, coord_weight)``;
    2. aligned segments: ``segment_partition(clusters, labels)`` (one segment per
       (image, cluster, label) triple; pixels labelled ``ignore_index`` are ignored);
    3. prototypes: ``segment_mean(normalize(e), segment_ids, S)`` (unit vectors, with
       gradient);
    4. loss over the unit pixel embeddings: ``vmf_nca_loss`` (Eq. 10) with prototype
       labels ``segments.label`` when labels are given, ``vmf_loss`` (Eq. 8) otherwise,
       plus the prototypes of the memory (earlier batches) as extra candidates;
    5. in training mode, the detached batch prototypes are pushed to the memory *after*
       the loss is computed (the memory never holds the current batch).

    Args:
        concentration: kappa of the vMF losses (> 0).
        grid: initial k-means grid (gh, gw) or an int; K = gh * gw clusters per image.
        kmeans_iters: spherical k-means iterations.
        coord_weight: weight of the pixel coordinates in k-means.
        loss: 'auto' (vMF-NCA with labels, vMF without), 'vmf_nca' (labels required) or
            'vmf'. 'vmf' with labels is unsupervised SegSort with pseudo-segments: pass
            e.g. a contour-based over-segmentation as ``labels``; segments are then
            aligned with it and every segment is its own class.
        ignore_index: label of ignored pixels (an int64; negative labels are ignored too).
        connectivity: None, 4 or 8: split segments into connected components.
        max_pixels_per_image: None (every valid pixel is a loss term) or the number of
            valid pixels per image drawn uniformly without replacement as loss terms.
            Prototypes are always computed from all valid pixels.
        memory: an optional :class:`PrototypeMemory` (a submodule: saved with this
            module's state_dict, moved by ``.to``), e.g.
            ``PrototypeMemory.last_batches(D, num_batches=2, max_per_batch=...)``.
        distributed: under torch.distributed, gather the prototypes (with gradient),
            labels and provenance of all ranks, so each rank's pixels are contrasted with
            the segments of the whole global batch (see below). Without an initialised
            process group this is the single-process loss. Default False: each rank's
            loss sees only its own batch (and the memory).
        process_group: the group to gather over (None: the default group).

    Distributed (``distributed=True``, all ranks call forward and backward together):
    the global batch is the rank-order concatenation of the ranks' batches. Each rank
    computes its own segments and prototypes, offsets its segment ids by the segments of
    the ranks before it (and, without ``image_ids``, its image indices by their images),
    and all-gathers the prototypes, so every pixel term is the one a single process
    computes on the concatenated batch. Loss and gradient convention:

    - the returned value is the *global* mean over the valid pixels of all ranks (the
      same on every rank, equal to the single-process loss on the concatenated batch);
    - its gradient is ``world_size`` times the gradient of the single-process loss with
      respect to this rank's embeddings (prototype gradients from other ranks' pixels
      come back through the all-gather's backward). DDP *averages* parameter gradients
      over ranks, so after DDP's all-reduce the parameter gradients equal the
      single-process gradients exactly (up to summation order). Code that *sums*
      gradients over ranks instead must divide by ``world_size``.

    With a memory that gathers over the same group (the default), the gathered batch
    prototypes are written to it directly (no second all-gather): every rank's memory
    equals the single-process memory. ``max_pixels_per_image`` samples with each rank's
    own generator, so only unsampled losses match a single process draw for draw.

    Call: ``loss = module(embeddings, labels=None, *, image_ids=None, generator=None,
    return_diagnostics=False)``; see :meth:`forward`.
    """

    def __init__(self, *, concentration: float = 10.0, grid=(5, 5), kmeans_iters: int = 10,
                 coord_weight: float = 1.0, loss: str = "auto", ignore_index: int = IGNORE_INDEX,
                 connectivity: Optional[int] = None, max_pixels_per_image: Optional[int] = None,
                 memory: Optional[PrototypeMemory] = None, distributed: bool = False, process_group=None):
        super().__init__()
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be a bool, got {type(distributed).__name__}")
        dist_utils.check_process_group(process_group)
        self.distributed = distributed
        self.process_group = process_group
        self.concentration = check.number(concentration, "concentration", minimum=0.0, strict=True)
        self.grid = check.grid(grid, "grid")
        self.kmeans_iters = check.positive_int(kmeans_iters, "kmeans_iters")
        self.coord_weight = check.number(coord_weight, "coord_weight")
        if loss not in ("auto", "vmf", "vmf_nca"):
            raise ValueError(f"loss must be 'auto', 'vmf' or 'vmf_nca', got {loss!r}")
        self.loss = loss
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
        if not torch.iinfo(torch.int64).min <= ignore_index <= torch.iinfo(torch.int64).max:
            raise ValueError(f"ignore_index must fit in int64 (labels are int64), got {ignore_index}")
        self.ignore_index = ignore_index
        if connectivity not in (None, 4, 8):
            raise ValueError(f"connectivity must be None, 4 or 8, got {connectivity!r}")
        self.connectivity = connectivity
        self.max_pixels_per_image = check.optional_positive_int(max_pixels_per_image, "max_pixels_per_image")
        if memory is not None and not isinstance(memory, PrototypeMemory):
            raise TypeError(f"memory must be a PrototypeMemory or None, got {type(memory).__name__}")
        self.memory = memory

    def extra_repr(self) -> str:
        return (f"concentration={self.concentration}, grid={self.grid}, kmeans_iters={self.kmeans_iters}, "
                f"coord_weight={self.coord_weight}, loss={self.loss!r}, ignore_index={self.ignore_index}, "
                f"connectivity={self.connectivity}, max_pixels_per_image={self.max_pixels_per_image}"
                + (", distributed=True" if self.distributed else ""))

    def forward(self, embeddings: torch.Tensor, labels: Optional[torch.Tensor] = None, *,
                image_ids: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
                return_diagnostics: bool = False):
        """
        Args:
            embeddings: (B, D, H, W) float32/float64 network output (normalised inside).
            labels: optional (B, H, W) int64 class labels (``ignore_index`` = ignored).
            image_ids: optional (B,) int64 dataset index of each image, stored as the
                provenance of the prototypes pushed to the memory (default: the index
                within the batch).
            generator: torch.Generator for the pixel sampling.
            return_diagnostics: also return a dict of diagnostics.

        Returns:
            The scalar loss (0 with a zero gradient when no pixel is valid; NaN when a
            pixel the loss uses, i.e. any pixel without labels or a labelled one, has a
            non-finite embedding: k-means and the prototypes leave such pixels out, but
            their loss term is undefined), or
            ``(loss, diagnostics)`` with keys ``loss_type`` ('vmf' or 'vmf_nca'),
            ``num_segments`` (S), ``num_pixels`` (loss terms), ``memory_rows`` (memory
            prototypes used), ``clusters`` ((B, H, W) k-means labels), ``segments``
            (:class:`~segsort_ext.Segments`) and ``prototypes`` ((S, D), detached): all
            of this rank's batch. Distributed, also ``world_size``, ``segment_offset``
            and ``image_offset`` (where this rank's segments and images start in the
            global batch), ``global_num_segments`` and ``global_num_pixels``.
        """
        check.float_tensor(embeddings, "embeddings")
        check.boolean(return_diagnostics, "return_diagnostics")
        if embeddings.dim() != 4 or embeddings.shape[1] < 1:
            raise ValueError(f"embeddings must have shape (B, D, H, W) with D >= 1, got {tuple(embeddings.shape)}")
        B, D, H, W = embeddings.shape
        if labels is not None:
            check.int64_tensor(labels, "labels")
            check.same_device(embeddings, "embeddings", labels, "labels")
            if tuple(labels.shape) != (B, H, W):
                raise ValueError(f"labels must have shape (B, H, W) = {(B, H, W)}, got {tuple(labels.shape)}")
        if image_ids is not None:
            check.int64_tensor(image_ids, "image_ids")
            check.same_device(embeddings, "embeddings", image_ids, "image_ids")
            if tuple(image_ids.shape) != (B,):
                raise ValueError(f"image_ids must have shape (B,) = ({B},), got {tuple(image_ids.shape)}")
        check.generator(generator)
        if self.memory is not None and self.memory.prototypes.device != embeddings.device:
            raise ValueError(f"the memory ({self.memory.prototypes.device}) must be on the device of embeddings "
                             f"({embeddings.device}): move the loss module with .to(device)")
        loss_type = self.loss
        if loss_type == "auto":
            loss_type = "vmf" if labels is None else "vmf_nca"
        if loss_type == "vmf_nca" and labels is None:
            raise ValueError("labels are required with loss='vmf_nca'")

        clusters = spherical_kmeans(embeddings.detach(), self.grid, iters=self.kmeans_iters,
                                    coord_weight=self.coord_weight).labels
        segments = segment_partition(clusters, labels, ignore_index=self.ignore_index,
                                     connectivity=self.connectivity)
        num_segments = segments.num_segments
        unit = F.normalize(embeddings, dim=1, eps=NORM_EPS)
        prototypes = segment_mean(unit, segments.ids, num_segments)

        ids = segments.ids.reshape(B, H * W)
        if self.max_pixels_per_image is not None:
            index, taken = sample_rows(ids >= 0, self.max_pixels_per_image, generator)
            rows = torch.arange(B, device=ids.device).unsqueeze(1).expand_as(index)
            flat = (rows * (H * W) + index)[taken]
        else:
            flat = (ids.reshape(-1) >= 0).nonzero().squeeze(1)
        pixels = unit.permute(0, 2, 3, 1).reshape(B * H * W, D).index_select(0, flat)
        pixel_segments = ids.reshape(-1).index_select(0, flat)

        # A used pixel with a non-finite embedding: spherical_kmeans gives it no cluster, so
        # it would silently drop out of the loss. The loss is NaN instead (no sync: a flag).
        nonfinite = ~torch.isfinite(embeddings.detach()).all(1)
        if labels is not None:
            nonfinite &= (labels >= 0) & (labels != self.ignore_index)
        nonfinite = nonfinite.any()

        memory = self.memory.tensors() if self.memory is not None else None
        if memory is not None:
            memory = (memory[0].to(embeddings.dtype), memory[1])
        origin = segments.batch if image_ids is None else image_ids[segments.batch]
        group = dist_utils.resolve_group(self.distributed, self.process_group)
        if group is None:
            loss = self._loss(loss_type, embeddings, pixels, pixel_segments, prototypes, segments.label, memory)
            loss = torch.where(nonfinite, torch.nan, loss)
            if self.memory is not None and self.training:
                self.memory.push(prototypes.detach(), segments.label, origin)
            extra = {}
        else:
            loss, extra = self._distributed_loss(group, loss_type, embeddings, pixels, pixel_segments, prototypes,
                                                 segments, origin, image_ids is None, memory, nonfinite)
        if not return_diagnostics:
            return loss
        diagnostics = {
            "loss_type": loss_type,
            "num_segments": num_segments,
            "num_pixels": int(pixel_segments.numel()),
            "memory_rows": 0 if memory is None else int(memory[0].shape[0]),
            "clusters": clusters,
            "segments": segments,
            "prototypes": prototypes.detach(),
            **extra,
        }
        return loss, diagnostics

    def _loss(self, loss_type, embeddings, pixels, pixel_segments, prototypes, prototype_labels, memory):
        """Mean vMF / vMF-NCA loss of the given pixels (0 with a zero gradient without any)."""
        if pixel_segments.numel() == 0:
            return embeddings.sum() * 0.0
        if loss_type == "vmf_nca":
            return vmf_nca_loss(pixels, pixel_segments, prototypes, prototype_labels,
                                concentration=self.concentration, memory=memory)
        return vmf_loss(pixels, pixel_segments, prototypes, concentration=self.concentration, memory=memory)

    def _distributed_loss(self, group, loss_type, embeddings, pixels, pixel_segments, prototypes, segments, origin,
                          local_origin: bool, memory, nonfinite):
        """The loss of this rank's pixels against the prototypes of all ranks (see the
        class docstring for the value and gradient convention) and the memory push."""
        num_segments, num_images, num_pixels = segments.num_segments, embeddings.shape[0], pixel_segments.numel()
        # One exchange of the sizes: segment and image offsets, the global pixel count.
        table = dist_utils.all_gather_counts([num_segments, num_images, num_pixels], group, embeddings.device)
        segment_counts = table[:, 0]
        segment_offset, image_offset, _ = dist_utils.rank_offsets(table)[group.rank].tolist()
        total_pixels = int(table[:, 2].sum())
        if local_origin:  # image index within the batch -> within the global batch
            origin = origin + image_offset
        all_prototypes, _ = dist_utils.all_gather_rows_with_grad(prototypes, group, segment_counts)
        (ints,), _ = dist_utils.all_gather_rows([torch.stack([segments.label, origin], 1)], group, segment_counts)
        # contiguous: the fused vMF-NCA kernel reads prototype_labels as contiguous memory
        # (a strided view gives wrong positives).
        all_labels, all_origins = (column.contiguous() for column in ints.unbind(1))

        local_mean = self._loss(loss_type, embeddings, pixels, pixel_segments + segment_offset, all_prototypes,
                                all_labels, memory)
        if num_pixels == 0:
            # The backward of the all-gather is a collective: every rank must reach it,
            # also one whose own pixels give no loss term.
            local_mean = local_mean + all_prototypes.sum() * 0.0
        local_mean = torch.where(nonfinite, torch.nan, local_mean)  # NaN on every rank after the all-reduce
        # This rank's share of the global mean: its pixel sum over all ranks' pixels.
        share = local_mean * (num_pixels / max(total_pixels, 1))
        value = dist_utils.all_reduce_sum(share.detach(), group)
        # Gradient of world_size * share (DDP averages it back to the global mean's
        # gradient), value of the global mean.
        scaled = share * group.world_size
        loss = scaled + (value - scaled).detach()

        if self.memory is not None and self.training:
            # Segment ids of the global batch: the default of push_gathered.
            self.memory.push_gathered(all_prototypes.detach(), all_labels, all_origins, counts=segment_counts,
                                      group=group)
        extra = {
            "world_size": group.world_size,
            "segment_offset": segment_offset,
            "image_offset": image_offset,
            "global_num_segments": int(segment_counts.sum()),
            "global_num_pixels": total_pixels,
        }
        return loss, extra

