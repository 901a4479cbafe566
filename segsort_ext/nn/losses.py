"""Training losses for segmentation by pixel embeddings, built on the library's ops:

- :class:`SegSortLoss`: SegSort's training step (Hwang et al., ICCV 2019, Algorithm 1):
  spherical k-means -> aligned segments -> prototypes -> vMF / vMF-NCA loss, with an
  optional :class:`~segsort_ext.memory.PrototypeMemory`.
- :func:`pairwise_margin_loss`: Kong & Fowlkes (CVPR 2018) pairwise cosine margin loss,
  usable at every iterate of blurring mean shift.
- :func:`soft_segmentation_loss` and the feature preprocessing of semantic soft
  segmentation (Aksoy et al., SIGGRAPH 2018): :func:`guided_filter`,
  :func:`pca_project`, :func:`rescale_to_unit`, :func:`soft_segmentation_features`.
- :func:`picie_loss`: PiCIE's clustering loss (Cho et al., CVPR 2021), within- and
  cross-view, over one or several clusterings (e.g. K and an overclustering K2).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from segsort_ext.utils import checks as check
from segsort_ext.utils import distributed as dist_utils
from segsort_ext.ops import spherical_kmeans
from segsort_ext.nn.memory import PrototypeMemory
from segsort_ext.ops import segment_mean, segment_partition
from segsort_ext.ops import vmf_loss, vmf_nca_loss

__all__ = [
    "SegSortLoss",
    "pairwise_margin_loss",
    "soft_segmentation_loss",
    "guided_filter",
    "box_filter",
    "pca_project",
    "rescale_to_unit",
    "soft_segmentation_features",
    "PiCIEClustering",
    "picie_loss",
    "cluster_balance_weights",
]

NORM_EPS = 1e-12
# Elements of one (B, rows, N) similarity block of the pairwise hinge (32 MiB in float64).
PAIR_BLOCK_ELEMENTS = 1 << 22


# -- small argument checks -----------------------------------------------------------
def _optional_positive_int(value, name: str) -> Optional[int]:
    return None if value is None else check.positive_int(value, name)


def _number(value, name: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _uniform(shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Uniform [0, 1) numbers on `device`, drawn on the generator's device (so a CPU
    generator drives sampling for CUDA data, reproducibly)."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _sample_rows(valid: torch.Tensor, count: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of valid (B, N), `count` column indices drawn uniformly without replacement
    among the valid columns (all valid ones when fewer). Returns (index (B, k), taken
    (B, k) bool) with k = min(count, N), indices in ascending order."""
    keys = _uniform(valid.shape, generator, valid.device)
    keys = keys.masked_fill(~valid, 2.0)  # invalid columns sort after every valid one
    k = min(count, valid.shape[1])
    index = keys.topk(k, dim=1, largest=False).indices.sort(dim=1).values
    return index, valid.gather(1, index)


# ==================================================================================
# SegSort
# ==================================================================================
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
        concentration: kappa of the vMF losses.
        grid: initial k-means grid (gh, gw) or an int; K = gh * gw clusters per image.
        kmeans_iters: spherical k-means iterations.
        coord_weight: weight of the pixel coordinates in k-means.
        loss: 'auto' (vMF-NCA with labels, vMF without), 'vmf_nca' (labels required) or
            'vmf'. 'vmf' with labels is unsupervised SegSort with pseudo-segments: pass
            e.g. a contour-based over-segmentation as ``labels``; segments are then
            aligned with it and every segment is its own class.
        ignore_index: label of ignored pixels (negative labels are ignored too).
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
                 coord_weight: float = 1.0, loss: str = "auto", ignore_index: int = 255,
                 connectivity: Optional[int] = None, max_pixels_per_image: Optional[int] = None,
                 memory: Optional[PrototypeMemory] = None, distributed: bool = False, process_group=None):
        super().__init__()
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be a bool, got {type(distributed).__name__}")
        dist_utils.check_process_group(process_group)
        self.distributed = distributed
        self.process_group = process_group
        self.concentration = _number(concentration, "concentration")
        self.grid = check.grid(grid, "grid")
        self.kmeans_iters = check.positive_int(kmeans_iters, "kmeans_iters")
        self.coord_weight = _number(coord_weight, "coord_weight")
        if loss not in ("auto", "vmf", "vmf_nca"):
            raise ValueError(f"loss must be 'auto', 'vmf' or 'vmf_nca', got {loss!r}")
        self.loss = loss
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
        self.ignore_index = ignore_index
        if connectivity not in (None, 4, 8):
            raise ValueError(f"connectivity must be None, 4 or 8, got {connectivity!r}")
        self.connectivity = connectivity
        self.max_pixels_per_image = _optional_positive_int(max_pixels_per_image, "max_pixels_per_image")
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
            The scalar loss (0 with a zero gradient when no pixel is valid), or
            ``(loss, diagnostics)`` with keys ``loss_type`` ('vmf' or 'vmf_nca'),
            ``num_segments`` (S), ``num_pixels`` (loss terms), ``memory_rows`` (memory
            prototypes used), ``clusters`` ((B, H, W) k-means labels), ``segments``
            (:class:`~segsort_ext.Segments`) and ``prototypes`` ((S, D), detached): all
            of this rank's batch. Distributed, also ``world_size``, ``segment_offset``
            and ``image_offset`` (where this rank's segments and images start in the
            global batch), ``global_num_segments`` and ``global_num_pixels``.
        """
        check.float_tensor(embeddings, "embeddings")
        if embeddings.dim() != 4:
            raise ValueError(f"embeddings must have shape (B, D, H, W), got {tuple(embeddings.shape)}")
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
        _check_generator(generator)
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
            index, taken = _sample_rows(ids >= 0, self.max_pixels_per_image, generator)
            rows = torch.arange(B, device=ids.device).unsqueeze(1).expand_as(index)
            flat = (rows * (H * W) + index)[taken]
        else:
            flat = (ids.reshape(-1) >= 0).nonzero().squeeze(1)
        pixels = unit.permute(0, 2, 3, 1).reshape(B * H * W, D).index_select(0, flat)
        pixel_segments = ids.reshape(-1).index_select(0, flat)

        memory = self.memory.tensors() if self.memory is not None else None
        if memory is not None:
            memory = (memory[0].to(embeddings.dtype), memory[1])
        origin = segments.batch if image_ids is None else image_ids[segments.batch]
        group = dist_utils.resolve_group(self.distributed, self.process_group)
        if group is None:
            loss = self._loss(loss_type, embeddings, pixels, pixel_segments, prototypes, segments.label, memory)
            if self.memory is not None and self.training:
                self.memory.push(prototypes.detach(), segments.label, origin,
                                 torch.arange(num_segments, device=prototypes.device))
            extra = {}
        else:
            loss, extra = self._distributed_loss(group, loss_type, embeddings, pixels, pixel_segments, prototypes,
                                                 segments, origin, image_ids is None, memory)
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
                          local_origin: bool, memory):
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
        # This rank's share of the global mean: its pixel sum over all ranks' pixels.
        share = local_mean * (num_pixels / max(total_pixels, 1))
        value = dist_utils.all_reduce_sum(share.detach(), group)
        # Gradient of world_size * share (DDP averages it back to the global mean's
        # gradient), value of the global mean.
        scaled = share * group.world_size
        loss = scaled + (value - scaled).detach()

        if self.memory is not None and self.training:
            segment_ids = torch.arange(all_labels.shape[0], device=prototypes.device)
            if self.memory._gathers_over(group):
                self.memory._write_gathered(all_prototypes.detach(), all_labels, all_origins, segment_ids,
                                            segment_counts)
            else:
                self.memory.push(prototypes.detach(), segments.label, origin,
                                 torch.arange(num_segments, device=prototypes.device) + segment_offset)
        extra = {
            "world_size": group.world_size,
            "segment_offset": segment_offset,
            "image_offset": image_offset,
            "global_num_segments": int(segment_counts.sum()),
            "global_num_pixels": total_pixels,
        }
        return loss, extra


# ==================================================================================
# Kong & Fowlkes: pairwise cosine margin loss
# ==================================================================================
def _point_sets(embeddings, instance_ids, name: str = "embeddings"):
    """Embeddings (or a list of iterates) and ids -> ([(B, N, D)], (B, N) ids)."""
    iterates = list(embeddings) if isinstance(embeddings, (list, tuple)) else [embeddings]
    if not iterates:
        raise ValueError(f"{name} must be a tensor or a non-empty list of tensors")
    for t, x in enumerate(iterates):
        check.float_tensor(x, name if len(iterates) == 1 else f"{name}[{t}]")
    first = iterates[0]
    for t, x in enumerate(iterates[1:], 1):
        if x.shape != first.shape or x.dtype != first.dtype or x.device != first.device:
            raise ValueError(f"{name}[{t}] must match {name}[0] in shape, dtype and device: "
                             f"{tuple(x.shape)} {x.dtype} {x.device} vs "
                             f"{tuple(first.shape)} {first.dtype} {first.device}")
    check.int64_tensor(instance_ids, "instance_ids")
    check.same_device(first, name, instance_ids, "instance_ids")
    if first.dim() == 4:
        B, D, H, W = first.shape
        if tuple(instance_ids.shape) != (B, H, W):
            raise ValueError(f"instance_ids must have shape (B, H, W) = {(B, H, W)} to match {name} of shape "
                             f"{tuple(first.shape)}, got {tuple(instance_ids.shape)}")
        points = [x.permute(0, 2, 3, 1).reshape(B, H * W, D) for x in iterates]
        return points, instance_ids.reshape(B, H * W)
    if first.dim() == 3:
        B, N, D = first.shape
        if tuple(instance_ids.shape) != (B, N):
            raise ValueError(f"instance_ids must have shape (B, N) = {(B, N)} to match {name} of shape "
                             f"{tuple(first.shape)}, got {tuple(instance_ids.shape)}")
        return iterates, instance_ids
    if first.dim() == 2:
        N, D = first.shape
        if tuple(instance_ids.shape) != (N,):
            raise ValueError(f"instance_ids must have shape (N,) = ({N},) to match {name} of shape "
                             f"{tuple(first.shape)}, got {tuple(instance_ids.shape)}")
        return [x.unsqueeze(0) for x in iterates], instance_ids.unsqueeze(0)
    raise ValueError(f"{name} must have shape (B, D, H, W), (B, N, D) or (N, D), got {tuple(first.shape)}")


def _instance_groups(ids: torch.Tensor):
    """ids (B, N) (negative = ignored) -> (group (B, N) compact id of each (image,
    instance) pair or -1, group_image (G,), group_size (G,), instances_per_image (B,))."""
    B, N = ids.shape
    valid = ids >= 0
    image = torch.arange(B, device=ids.device).unsqueeze(1).expand(B, N)
    pairs = torch.stack([image[valid], ids[valid]], 1)
    unique_pairs, inverse, sizes = torch.unique(pairs, dim=0, return_inverse=True, return_counts=True)
    group = torch.full_like(ids, -1)
    group[valid] = inverse
    group_image = unique_pairs[:, 0]
    instances_per_image = torch.bincount(group_image, minlength=B)
    return group, group_image, sizes, instances_per_image


class _NegativeHinge(torch.autograd.Function):
    """Per image b: sum over ordered pixel pairs (i, j) of different instances of
    a_i a_j [offset + scale * u_i.u_j - alpha]_+, without materialising the N x N
    matrix of all images at once (rows are processed in chunks, and the backward
    recomputes each chunk)."""

    @staticmethod
    def _chunks(u):
        B, N, _ = u.shape
        rows = max(1, PAIR_BLOCK_ELEMENTS // max(1, B * N))
        return range(0, N, rows), rows

    @staticmethod
    def forward(ctx, u, group, weight, alpha, offset, scale):
        starts, rows = _NegativeHinge._chunks(u)
        total = u.new_zeros(u.shape[0])
        for start in starts:
            block = slice(start, start + rows)
            similarity = offset + scale * torch.bmm(u[:, block], u.transpose(1, 2))
            negative = ((group[:, block, None] != group[:, None, :]) & (group[:, block, None] >= 0)
                        & (group[:, None, :] >= 0))
            hinge = (similarity - alpha).clamp_min(0) * negative
            total += torch.einsum("bi,bij,bj->b", weight[:, block], hinge, weight)
        ctx.save_for_backward(u, group, weight)
        ctx.alpha, ctx.offset, ctx.scale = alpha, offset, scale
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total):
        u, group, weight = ctx.saved_tensors
        starts, rows = _NegativeHinge._chunks(u)
        grad_u = torch.zeros_like(u)
        for start in starts:
            block = slice(start, start + rows)
            similarity = ctx.offset + ctx.scale * torch.bmm(u[:, block], u.transpose(1, 2))
            active = ((group[:, block, None] != group[:, None, :]) & (group[:, block, None] >= 0)
                      & (group[:, None, :] >= 0) & (similarity > ctx.alpha))
            # d/du_k of sum_ij a_i a_j h(s_ij) = 2 * scale * a_k * sum_j a_j h'(s_kj) u_j
            # (the pair appears as (k, j) and as (j, k)).
            coefficient = active * (weight[:, block, None] * weight[:, None, :])
            coefficient = coefficient * (2.0 * ctx.scale * grad_total).view(-1, 1, 1)
            grad_u[:, block] = torch.bmm(coefficient.to(u.dtype), u)
        return grad_u, None, None, None, None, None


def pairwise_margin_loss(embeddings, instance_ids: torch.Tensor, *, alpha: float = 0.5,
                         num_samples: Optional[int] = None, generator: Optional[torch.Generator] = None,
                         calibrated: bool = True, iterate_reduction: str = "mean") -> torch.Tensor:
    """Kong & Fowlkes' pairwise cosine margin loss (CVPR 2018, "Recurrent Pixel
    Embedding for Instance Grouping", Eq. 1 with instance-aware pixel weighting).

    For each image with valid pixels V (instance id >= 0), Q instances and instance
    sizes n_q (counted among the pixels used, i.e. after sampling), unit embeddings
    u_i = x_i / |x_i| and similarity

        s_ij = (1 + u_i.u_j) / 2   (calibrated=True, the paper's calibrated cosine)
        s_ij = u_i.u_j             (calibrated=False)

    the per-pair loss is ``l_ij = 1 - s_ij`` if i and j belong to the same instance and
    ``l_ij = max(0, s_ij - alpha)`` otherwise, and the image's loss is

        L_image = sum_{i, j in V} w_ij l_ij / sum_{i, j in V} w_ij,
        w_ij = 1 / (n_{y_i} n_{y_j}),   sum_{i, j} w_ij = Q^2,

    over all ordered pairs (i = j included; those add 0), i.e. the mean over ordered
    instance pairs (q, r) of the mean pair loss between q and r: every instance counts
    the same whatever its size. The loss is the mean of L_image over the images with at
    least one valid pixel (0, with a zero gradient, when there is none). The
    normalisation by sum w_ij = Q^2 is this library's choice (the paper weights the
    pairs by inverse instance sizes; its overall scale does not change the minimiser).

    The same-instance term is computed in O(N D) from per-instance sums; the hinge
    term in row chunks with a recomputing backward (memory O(B * N * chunk), not
    O(B * N^2) saved for backward).

    Args:
        embeddings: (B, D, H, W) with instance_ids (B, H, W); (B, N, D) point sets
            with instance_ids (B, N) (the layout of ``blurring_mean_shift``); or one
            image (N, D) with instance_ids (N,). Or a list/tuple of such tensors of
            equal shape, e.g. all mean-shift iterates ``[x_0, ..., x_T]``: the loss is
            computed at every iterate on the same (sampled) pixels and reduced with
            ``iterate_reduction`` ('mean' or 'sum'). float32/float64.
        instance_ids: int64 instance of each pixel; negative = ignored.
        alpha: the margin: different-instance pairs with s_ij <= alpha cost nothing.
        num_samples: None (all valid pixels) or the number of valid pixels per image
            drawn uniformly without replacement (all when fewer).
        generator: torch.Generator for the sampling.
        calibrated: use the calibrated similarity (1 + cos) / 2 (default) or cos.
        iterate_reduction: 'mean' or 'sum' over the iterates.

    Returns:
        Scalar loss, differentiable in the embeddings (first order).
    """
    points, ids = _point_sets(embeddings, instance_ids)
    alpha = _number(alpha, "alpha")
    num_samples = _optional_positive_int(num_samples, "num_samples")
    _check_generator(generator)
    if iterate_reduction not in ("mean", "sum"):
        raise ValueError(f"iterate_reduction must be 'mean' or 'sum', got {iterate_reduction!r}")
    if num_samples is not None:
        index, taken = _sample_rows(ids >= 0, num_samples, generator)
        ids = torch.where(taken, ids.gather(1, index), -1)
        points = [x.gather(1, index.unsqueeze(2).expand(-1, -1, x.shape[2])) for x in points]
    group, group_image, sizes, instances_per_image = _instance_groups(ids)
    if sizes.numel() == 0:  # no valid pixel anywhere: 0, with a (zero) gradient
        return sum(x.sum() for x in points) * 0.0
    dtype = points[0].dtype
    images_used = (instances_per_image > 0).sum().clamp_min(1).to(dtype)
    # a_i = 1 / (n_{y_i} Q_b): then a_i a_j = w_ij / Q_b^2 and the double sum is L_image.
    group_weight = 1.0 / (sizes.to(dtype) * instances_per_image[group_image].to(dtype))
    weight = torch.where(group >= 0, group_weight[group.clamp_min(0)], 0.0)
    offset, scale = (0.5, 0.5) if calibrated else (0.0, 1.0)
    valid = group >= 0
    losses = []
    for x in points:
        u = F.normalize(x, dim=2, eps=NORM_EPS)
        # Same-instance pairs: sum_{i, j in q} (1 - s_ij) = scale * (n_q^2 - |sum_{i in q} u_i|^2).
        sums = u.new_zeros(sizes.shape[0], u.shape[2]).index_add(0, group[valid], u[valid])
        positive = (scale * (sizes.to(dtype) ** 2 - (sums * sums).sum(1)) * group_weight ** 2).sum()
        negative = _NegativeHinge.apply(u, group, weight, alpha, offset, scale).sum()
        losses.append((positive + negative) / images_used)
    total = torch.stack(losses).sum()
    return total / len(losses) if iterate_reduction == "mean" else total


# ==================================================================================
# Semantic soft segmentation (Aksoy et al. 2018)
# ==================================================================================
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
        eps: floor of the squared distance.

    Returns:
        Scalar loss, differentiable in the embeddings.
    """
    check.float_tensor(embeddings, "embeddings")
    if embeddings.dim() not in (2, 4):
        raise ValueError(f"embeddings must have shape (B, D, H, W) or (N, D), got {tuple(embeddings.shape)}")
    (points,), ids = _point_sets(embeddings, instance_ids)
    num_instances = _optional_positive_int(num_instances, "num_instances")
    pixels_per_instance = _optional_positive_int(pixels_per_instance, "pixels_per_instance")
    _check_generator(generator)
    eps = _number(eps, "eps")
    B, N, D = points.shape
    device = points.device
    group, group_image, sizes, instances_per_image = _instance_groups(ids)
    num_groups = sizes.shape[0]
    if num_groups == 0:
        return points.sum() * 0.0
    # Instances: a random rank within the image; keep the first num_instances.
    instance_rank = _rank_within(group_image, _uniform((num_groups,), generator, device), B)
    chosen = instance_rank < (num_instances if num_instances is not None else num_groups)
    # Pixels: a random rank within the instance; keep the first pixels_per_instance.
    flat_group = group.reshape(-1)
    pixel_index = (flat_group >= 0).nonzero().squeeze(1)
    pixel_group = flat_group[pixel_index]
    pixel_rank = _rank_within(pixel_group, _uniform(pixel_group.shape, generator, device), num_groups)
    per_instance = pixels_per_instance if pixels_per_instance is not None else int(sizes.max())
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

    squared_norms = (features * features).sum(2)
    gram = torch.bmm(features, features.transpose(1, 2))
    squared = (squared_norms.unsqueeze(2) + squared_norms.unsqueeze(1) - 2 * gram).clamp_min(eps)
    distance = squared.sqrt()
    filled = slot_group >= 0
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


def _box_sum_along(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sum over the window [i - radius, i + radius] clipped to the axis, via a cumulative
    sum (O(1) per element whatever the radius: He et al.'s fast box filter)."""
    n = x.shape[dim]
    cumulative = F.pad(x.movedim(dim, -1).cumsum(-1), (1, 0)).movedim(-1, dim)
    positions = torch.arange(n, device=x.device)
    upper = (positions + radius + 1).clamp(max=n)
    lower = (positions - radius).clamp(min=0)
    return cumulative.index_select(dim, upper) - cumulative.index_select(dim, lower)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2 radius + 1)^2 window around each pixel, windows clipped at the
    border (divided by the number of in-image pixels, as He et al.'s boxfilter / N).

    Args:
        x: (B, C, H, W) float tensor.
        radius: window radius r >= 0.

    Returns:
        (B, C, H, W) box means.
    """
    check.float_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    radius = check.nonnegative_int(radius, "radius")
    sums = _box_sum_along(_box_sum_along(x, radius, 2), radius, 3)
    ones = torch.ones(1, 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
    counts = _box_sum_along(_box_sum_along(ones, radius, 2), radius, 3)
    return sums / counts


def guided_filter(guide_image: torch.Tensor, features: torch.Tensor, radius: int, eps: float, *,
                  channel_chunk: int = 16) -> torch.Tensor:
    """He et al.'s guided filter (ECCV 2010 / TPAMI 2013), color-guide form, applied
    to every feature channel with the same guide.

    With box means m(.) over the (2r+1)^2 window omega_k (clipped at the border), guide
    I (G channels, G = 3 for color) and one input channel p:

        Sigma_k = m(I I^T)_k - m(I)_k m(I)_k^T          (G x G)
        a_k = (Sigma_k + eps U)^-1 (m(I p)_k - m(I)_k m(p)_k)
        b_k = m(p)_k - a_k . m(I)_k
        q_i = m(a)_i . I_i + m(b)_i

    All box means use the cumulative-sum box filter (O(1) per pixel in r).

    Args:
        guide_image: (B, G, H, W) float guide (G = 3 for an RGB image, 1 for grey).
        features: (B, C, H, W) float features to filter, same B, H, W and dtype.
        radius: window radius r >= 0.
        eps: regularisation (> 0); larger = smoother.
        channel_chunk: feature channels filtered at once (bounds memory to
            O(B * G * chunk * H * W)).

    Returns:
        (B, C, H, W) filtered features. Differentiable in both inputs.
    """
    check.float_tensor(guide_image, "guide_image")
    check.float_tensor(features, "features")
    check.same_device(guide_image, "guide_image", features, "features")
    if guide_image.dim() != 4:
        raise ValueError(f"guide_image must have shape (B, G, H, W), got {tuple(guide_image.shape)}")
    if features.dim() != 4:
        raise ValueError(f"features must have shape (B, C, H, W), got {tuple(features.shape)}")
    B, G, H, W = guide_image.shape
    if (features.shape[0], features.shape[2], features.shape[3]) != (B, H, W):
        raise ValueError(f"features must have shape (B, C, H, W) with (B, H, W) = {(B, H, W)} of guide_image, "
                         f"got {tuple(features.shape)} (resize features first, e.g. F.interpolate)")
    if features.dtype != guide_image.dtype:
        raise TypeError(f"features ({features.dtype}) and guide_image ({guide_image.dtype}) must have the same dtype")
    radius = check.nonnegative_int(radius, "radius")
    eps = _number(eps, "eps")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    channel_chunk = check.positive_int(channel_chunk, "channel_chunk")

    mean_guide = box_filter(guide_image, radius)  # (B, G, H, W)
    outer = (guide_image.unsqueeze(2) * guide_image.unsqueeze(1)).reshape(B, G * G, H, W)
    covariance = (box_filter(outer, radius).view(B, G, G, H, W)
                  - mean_guide.unsqueeze(2) * mean_guide.unsqueeze(1))
    identity = torch.eye(G, dtype=guide_image.dtype, device=guide_image.device)
    # (B, H, W, G, G): one small SPD system per pixel, inverted once for all channels
    # (an explicit G x G inverse, as in He et al.'s reference code).
    inverse = torch.linalg.inv(covariance.permute(0, 3, 4, 1, 2) + eps * identity)
    outputs = []
    for start in range(0, features.shape[1], channel_chunk):
        p = features[:, start:start + channel_chunk]
        C = p.shape[1]
        mean_p = box_filter(p, radius)  # (B, C, H, W)
        products = (guide_image.unsqueeze(2) * p.unsqueeze(1)).reshape(B, G * C, H, W)
        cross = box_filter(products, radius).view(B, G, C, H, W) - mean_guide.unsqueeze(2) * mean_p.unsqueeze(1)
        a = (inverse @ cross.permute(0, 3, 4, 1, 2)).permute(0, 3, 4, 1, 2)  # (B, G, C, H, W)
        b = mean_p - (a * mean_guide.unsqueeze(2)).sum(1)
        mean_a = box_filter(a.reshape(B, G * C, H, W), radius).view(B, G, C, H, W)
        outputs.append((mean_a * guide_image.unsqueeze(2)).sum(1) + box_filter(b, radius))
    if not outputs:
        return features.clone()
    return torch.cat(outputs, 1)


def pca_project(features: torch.Tensor, dims: int = 3) -> torch.Tensor:
    """Projects each image's pixel features on their top ``dims`` principal components.

    Per image: X (H*W, C) centred by its mean pixel, the eigenvectors v_1..v_dims of
    X^T X with the largest eigenvalues (equivalently the top right singular vectors of
    X), and the projection X v_k. Each v_k's sign is fixed so that its entry of largest
    magnitude is positive (the lowest index among equal magnitudes), making the result
    deterministic.

    Args:
        features: (B, C, H, W) float features.
        dims: number of components, 1 <= dims <= C.

    Returns:
        (B, dims, H, W) projections (mean zero per image and channel), ordered by
        decreasing variance.
    """
    check.float_tensor(features, "features")
    if features.dim() != 4:
        raise ValueError(f"features must have shape (B, C, H, W), got {tuple(features.shape)}")
    B, C, H, W = features.shape
    dims = check.positive_int(dims, "dims")
    if dims > C:
        raise ValueError(f"dims must be <= the number of channels C = {C}, got {dims}")
    pixels = features.reshape(B, C, H * W).transpose(1, 2)
    centred = pixels - pixels.mean(1, keepdim=True)
    # eigh of the C x C scatter matrix: cheaper than an SVD of the (H*W, C) pixels.
    _, vectors = torch.linalg.eigh(centred.transpose(1, 2) @ centred)
    components = vectors[:, :, -dims:].flip(-1)  # (B, C, dims), largest eigenvalue first
    components = _canonical_signs(components)
    return (centred @ components).transpose(1, 2).reshape(B, dims, H, W)


def _canonical_signs(components: torch.Tensor) -> torch.Tensor:
    """Flips each column of (B, C, k) so that its largest-magnitude entry is positive."""
    index = components.abs().argmax(1, keepdim=True)
    signs = torch.sign(components.gather(1, index))
    return components * torch.where(signs == 0, 1.0, signs).to(components.dtype)


def rescale_to_unit(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Min-max rescales each channel of each image to [0, 1]:
    ``(x - min) / max(max - min, eps)`` (a constant channel becomes 0).

    Args:
        x: (B, C, H, W) float tensor.
    Returns:
        (B, C, H, W) in [0, 1].
    """
    check.float_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    flat = x.flatten(2)
    low = flat.amin(2, keepdim=True)
    span = (flat.amax(2, keepdim=True) - low).clamp_min(_number(eps, "eps"))
    return ((flat - low) / span).view_as(x)


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


# ==================================================================================
# PiCIE
# ==================================================================================
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
        counts: (K,) pixels per cluster (int or float, >= 0), e.g.
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
    unit = F.normalize(features, dim=1, eps=NORM_EPS)
    mu = F.normalize(centroids, dim=1, eps=NORM_EPS).to(unit.dtype)
    logits = scale * torch.einsum("bchw,kc->bkhw", unit, mu)
    log_probabilities = logits.log_softmax(1)
    valid = labels >= 0
    picked = log_probabilities.gather(1, labels.clamp_min(0).unsqueeze(1)).squeeze(1)
    if class_weights is None:
        pixel_weight = valid.to(unit.dtype)
    else:
        pixel_weight = torch.where(valid, class_weights.to(unit.dtype)[labels.clamp_min(0)], 0.0)
    return -(pixel_weight * picked).sum() / pixel_weight.sum().clamp_min(torch.finfo(unit.dtype).tiny)


def _check_clustering(clustering, index: int, features_shape, device) -> None:
    name = f"clusterings[{index}]"
    if not isinstance(clustering, PiCIEClustering):
        raise TypeError(f"{name} must be a PiCIEClustering, got {type(clustering).__name__}")
    B, C, h, w = features_shape
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
        for tensor_name, tensor in ((f"{name}.centroids_{view}", centroids), (f"{name}.labels_{view}", labels)):
            if tensor.device != device:
                raise ValueError(f"{tensor_name} ({tensor.device}) must be on the device of the features ({device})")
        if weights is not None:
            check.float_tensor(weights, f"{name}.class_weights_{view}")
            if tuple(weights.shape) != (centroids.shape[0],):
                raise ValueError(f"{name}.class_weights_{view} must have shape (K,) = ({centroids.shape[0]},), "
                                 f"got {tuple(weights.shape)}")
            if weights.device != device:
                raise ValueError(f"{name}.class_weights_{view} ({weights.device}) must be on the device of the "
                                 f"features ({device})")
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
    :mod:`segsort_ext.views`), one clustering per view (centroids mu1 with labels y1 of
    z1, mu2 with labels y2 of z2) and

        CE(z, y, mu) = sum_p w_{y_p} (-log softmax_k(scale * z_p . mu_k))_{y_p} / sum_p w_{y_p}

    (z_p and mu_k L2-normalised: cosine logits; w = the clustering's class weights, 1
    without; pixels with y_p < 0 skipped), the loss of one clustering is

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
        centroids, if they require grad; PiCIE keeps them fixed).
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
        _check_clustering(clustering, index, tuple(features_1.shape), features_1.device)
    scale = _number(scale, "scale")
    within_weight = _number(within_weight, "within_weight")
    cross_weight = _number(cross_weight, "cross_weight")
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
        lambdas = [_number(v, "clustering_weights") for v in clustering_weights]

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
