"""SegSort's segment-sorting losses, fused: vMF (Eq. 8) and vMF-NCA (Eq. 10) over the
segment prototypes of the batch and of a prototype memory, with log-sum-exp throughout
and no (N, S + M) matrix in memory: on CUDA (D <= 128) fused kernels stream the bank
past tiles of pixels with an online log-sum-exp; on CPU (and CUDA for larger D) pixels go
in blocks of GEMM logits. The backward recomputes the logits either way."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from segsort_ext.ops import reference
from segsort_ext.ops._extension import HAS_EXTENSION, ops
from segsort_ext.utils import checks as check

__all__ = ["vmf_loss", "vmf_nca_loss"]

Memory = Optional[Tuple[torch.Tensor, torch.Tensor]]


def _check_tensors(*named):
    for value, name in named:
        check.tensor(value, name)


def _unpack_memory(memory: Memory):
    """(memory prototypes, memory labels), detached: memory gets no gradient."""
    if memory is None:
        return None, None
    if not isinstance(memory, (tuple, list)) or len(memory) != 2:
        raise TypeError("memory must be None or a pair (memory_prototypes (M, D), memory_labels (M,))")
    bank, labels = memory
    bank = check.tensor(bank, "memory prototypes").detach()
    if labels is not None:
        check.tensor(labels, "memory_labels")
    return bank, labels


def _check_fallback(embeddings, segment_ids, prototypes, prototype_labels, bank, bank_labels, concentration, nca):
    """What the op checks in C++, for the pure-PyTorch fallback."""
    check.number(concentration, "concentration")
    check.float_tensor(embeddings, "embeddings")
    check.int64_tensor(segment_ids, "segment_ids")
    check.float_tensor(prototypes, "prototypes")
    check.same_device(embeddings, "embeddings", segment_ids, "segment_ids")
    check.same_device(embeddings, "embeddings", prototypes, "prototypes")
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must have shape (N, D), got {tuple(embeddings.shape)}")
    N, D = embeddings.shape
    if tuple(segment_ids.shape) != (N,):
        raise ValueError(f"segment_ids must have shape (N,) = ({N},), got {tuple(segment_ids.shape)}")
    if prototypes.dim() != 2 or prototypes.shape[1] != D:
        raise ValueError(f"prototypes must have shape (S, D) with D = {D}, got {tuple(prototypes.shape)}")
    if prototypes.dtype != embeddings.dtype:
        raise TypeError(f"prototypes must have the dtype of embeddings ({embeddings.dtype}), got {prototypes.dtype}")
    if nca:
        check.int64_tensor(prototype_labels, "prototype_labels")
        if tuple(prototype_labels.shape) != (prototypes.shape[0],):
            raise ValueError(f"prototype_labels must have shape (S,) = ({prototypes.shape[0]},), "
                             f"got {tuple(prototype_labels.shape)}")
    if bank is not None:
        check.float_tensor(bank, "memory")
        if bank.dim() != 2 or bank.shape[1] != D:
            raise ValueError(f"memory must have shape (M, D) with D = {D}, got {tuple(bank.shape)}")
        if nca:
            if bank_labels is None:
                raise ValueError("memory_labels are required for vmf_nca_loss with memory")
            check.int64_tensor(bank_labels, "memory_labels")
            if tuple(bank_labels.shape) != (bank.shape[0],):
                raise ValueError(f"memory_labels must have shape (M,) = ({bank.shape[0]},), "
                                 f"got {tuple(bank_labels.shape)}")
    # The reference's dense (N, S + M) logits, their softmax and masks.
    M = 0 if bank is None else bank.shape[0]
    check.fits_in_memory(embeddings.device, 24 * N * (prototypes.shape[0] + M + D), "embeddings")
    if N and int(segment_ids.max()) >= prototypes.shape[0]:
        raise ValueError(f"segment_ids must be < the number of prototypes S = {prototypes.shape[0]}, "
                         f"found {int(segment_ids.max())}")


def _mean_over_valid(per_pixel: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    # No sync: divide by the count as a tensor; no valid pixel gives 0 (and zero gradients).
    count = (segment_ids >= 0).sum().clamp_min(1).to(per_pixel.dtype)
    return per_pixel.sum() / count


def vmf_loss(embeddings: torch.Tensor, segment_ids: torch.Tensor, prototypes: torch.Tensor, *,
             concentration: float = 10.0, memory: Memory = None) -> torch.Tensor:
    """SegSort's vMF loss (Eq. 8): ``-log softmax`` of each pixel's own segment over all
    batch prototypes and memory prototypes, averaged over pixels with segment_ids >= 0.

    Args:
        embeddings: (N, D) pixel embeddings (unit vectors, used as given).
        segment_ids: (N,) int64 own segment in [0, S); negative = ignored.
        prototypes: (S, D) segment prototypes (unit vectors, e.g. from ``segment_mean``).
        concentration: kappa, the logits are ``kappa * e . mu`` (finite).
        memory: None or ``(memory_prototypes (M, D), memory_labels (M,))``: extra
            negatives from earlier batches (never a pixel's own segment, no gradient).

    Returns:
        A scalar; gradients flow to embeddings and prototypes. float16/bfloat16 inputs
        compute in float32. Checking segment_ids < S costs one sync.

    NaN policy (CPU and CUDA, fused and blocked paths alike, as the reference's
    ``torch.logsumexp``): NaN in a counted pixel's embedding, in a prototype or in a memory
    row makes the loss and its gradients NaN, never -inf or 0; the embeddings of ignored
    pixels never reach the loss or the gradients. A NaN or infinite concentration is refused.
    """
    concentration = check.number(concentration, "concentration", finite=False)
    _check_tensors((embeddings, "embeddings"), (segment_ids, "segment_ids"), (prototypes, "prototypes"))
    bank, bank_labels = _unpack_memory(memory)
    if not HAS_EXTENSION:
        _check_fallback(embeddings, segment_ids, prototypes, None, bank, bank_labels, concentration, nca=False)
        return reference.vmf_loss(embeddings, segment_ids, prototypes, concentration=concentration,
                                  memory=None if bank is None else (bank.to(embeddings.dtype), bank_labels))
    per_pixel = ops.vmf_loss(embeddings, segment_ids, prototypes, None, bank, None, concentration, False)[0]
    return _mean_over_valid(per_pixel, segment_ids)


def vmf_nca_loss(embeddings: torch.Tensor, segment_ids: torch.Tensor, prototypes: torch.Tensor,
                 prototype_labels: torch.Tensor, *, concentration: float = 10.0, memory: Memory = None) -> torch.Tensor:
    """SegSort's vMF-NCA loss (Eq. 10): for each pixel, ``-log`` of the summed
    ``exp(kappa e . mu)`` over prototypes with its segment's label other than its own
    segment (batch and memory), divided by the sum over all prototypes but its own
    segment. A pixel with no such positive falls back to Eq. 8. Prototype labels < 0 are
    never positives. Mean over pixels with segment_ids >= 0; arguments and NaN policy as
    :func:`vmf_loss`, plus prototype_labels (S,) int64.
    """
    concentration = check.number(concentration, "concentration", finite=False)
    _check_tensors((embeddings, "embeddings"), (segment_ids, "segment_ids"), (prototypes, "prototypes"),
                   (prototype_labels, "prototype_labels"))
    bank, bank_labels = _unpack_memory(memory)
    if not HAS_EXTENSION:
        _check_fallback(embeddings, segment_ids, prototypes, prototype_labels, bank, bank_labels, concentration,
                        nca=True)
        return reference.vmf_nca_loss(embeddings, segment_ids, prototypes, prototype_labels,
                                      concentration=concentration,
                                      memory=None if bank is None else (bank.to(embeddings.dtype), bank_labels))
    per_pixel = ops.vmf_loss(embeddings, segment_ids, prototypes, prototype_labels, bank, bank_labels,
                             concentration, True)[0]
    return _mean_over_valid(per_pixel, segment_ids)


if HAS_EXTENSION:

    @torch.library.register_fake("segsort_ext::vmf_loss")
    def _vmf_loss_fake(embeddings, segment_ids, prototypes, prototype_labels, memory, memory_labels,
                       concentration, nca):
        # Meta tensors reach only this function: a mix with real ones must not pass.
        for name, value in (("segment_ids", segment_ids), ("prototypes", prototypes),
                            ("prototype_labels", prototype_labels), ("memory", memory),
                            ("memory_labels", memory_labels)):
            if value is not None:
                check.same_device(embeddings, "embeddings", value, name)
        # The compute type: float32 for half/bfloat16, else the input dtype.
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        return tuple(embeddings.new_empty((embeddings.shape[0],), dtype=dtype) for _ in range(3))

    @torch.library.register_fake("segsort_ext::_vmf_loss_backward")
    def _vmf_loss_backward_fake(grad_loss, embeddings, segment_ids, prototypes, prototype_labels, memory,
                                memory_labels, lse_den, lse_num, concentration, nca):
        return embeddings.new_empty(embeddings.shape), prototypes.new_empty(prototypes.shape)

    def _setup_context(ctx, inputs, output):
        embeddings, segment_ids, prototypes, prototype_labels, memory, memory_labels, concentration, nca = inputs
        _, lse_den, lse_num = output
        ctx.mark_non_differentiable(lse_den, lse_num)
        ctx.save_for_backward(embeddings, segment_ids, prototypes, prototype_labels, memory, memory_labels,
                              lse_den, lse_num)
        ctx.concentration, ctx.nca = concentration, nca

    def _backward(ctx, grad_loss, _grad_lse_den, _grad_lse_num):
        if ctx.needs_input_grad[4]:
            raise NotImplementedError("vmf_loss: memory gets no gradient (it holds constant negatives); detach it")
        embeddings, segment_ids, prototypes, prototype_labels, memory, memory_labels, lse_den, lse_num = \
            ctx.saved_tensors
        grad_embeddings, grad_prototypes = ops._vmf_loss_backward(
            grad_loss, embeddings, segment_ids, prototypes, prototype_labels, memory, memory_labels, lse_den, lse_num,
            ctx.concentration, ctx.nca)
        return grad_embeddings, None, grad_prototypes, None, None, None, None, None

    torch.library.register_autograd("segsort_ext::vmf_loss", _backward, setup_context=_setup_context)
