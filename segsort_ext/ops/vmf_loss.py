"""SegSort's segment-sorting losses, fused: vMF (Eq. 8) and vMF-NCA (Eq. 10) over the
segment prototypes of the batch and of a prototype memory, with log-sum-exp throughout
and no (N, S + M) matrix in memory: on CUDA (D <= 128) fused kernels stream the bank
past tiles of pixels with an online log-sum-exp; on CPU (and CUDA for larger D) pixels go
in blocks of GEMM logits. The backward recomputes the logits either way."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from segsort_ext.ops._extension import ops, python_kernel
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


def _check_concentration(concentration, embeddings: torch.Tensor) -> float:
    """kappa, a number whose logits kappa * e . mu of unit rows and their distances from the
    row maximum (up to 2 kappa) stay finite in the compute type (float64 for float64
    embeddings, else float32): a finite 1e300 had given NaN."""
    concentration = check.number(concentration, "concentration", finite=False)
    compute_dtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
    largest = torch.finfo(compute_dtype).max / 4
    if abs(concentration) > largest:
        raise ValueError(f"concentration must be within +-{largest:g} (a quarter of the largest {compute_dtype}, the "
                         f"compute type of {embeddings.dtype} embeddings), got {concentration}")
    return concentration


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
    _check_tensors((embeddings, "embeddings"), (segment_ids, "segment_ids"), (prototypes, "prototypes"))
    concentration = _check_concentration(concentration, embeddings)
    bank, bank_labels = _unpack_memory(memory)
    if bank_labels is not None and bank.dim() == 2:  # unused by Eq. 8, but refused malformed as in vmf_nca_loss
        _check_labels(bank_labels, "memory_labels", "M", bank.shape[0], embeddings, "")
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
    _check_tensors((embeddings, "embeddings"), (segment_ids, "segment_ids"), (prototypes, "prototypes"),
                   (prototype_labels, "prototype_labels"))
    concentration = _check_concentration(concentration, embeddings)
    bank, bank_labels = _unpack_memory(memory)
    per_pixel = ops.vmf_loss(embeddings, segment_ids, prototypes, prototype_labels, bank, bank_labels,
                             concentration, True)[0]
    return _mean_over_valid(per_pixel, segment_ids)


def _check_labels(labels, name: str, rows_name: str, rows: int, embeddings, needed_for: str) -> None:
    """The (rows,) int64 labels of prototype or memory rows, on the embeddings' device."""
    if labels is None:
        raise ValueError(f"{name} are required {needed_for}")
    check.int64_tensor(labels, name)
    check.same_device(embeddings, "embeddings", labels, name)
    if tuple(labels.shape) != (rows,):
        raise ValueError(f"{name} must have shape ({rows_name},) = ({rows},), got {tuple(labels.shape)}")


def _check_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory, memory_labels, concentration, nca):
    """The checks of csrc/include/segsort/vmf_loss.h (check_vmf_loss_inputs), for the
    plain-PyTorch kernels, and the size of their dense (N, S + M) logits."""
    check.float_tensor(embeddings, "embeddings")
    check.like(prototypes, "prototypes", embeddings, "embeddings")
    check.int64_tensor(segment_ids, "segment_ids")
    check.same_device(embeddings, "embeddings", segment_ids, "segment_ids")
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must have shape (N, D), got {tuple(embeddings.shape)}")
    N, D = embeddings.shape
    if tuple(segment_ids.shape) != (N,):
        raise ValueError(f"segment_ids must have shape (N,) = ({N},), got {tuple(segment_ids.shape)}")
    if prototypes.dim() != 2 or prototypes.shape[1] != D:
        raise ValueError(f"prototypes must have shape (S, D) with D = {D}, got {tuple(prototypes.shape)}")
    check.number(concentration, "concentration")
    S, M = prototypes.shape[0], 0
    if nca:
        _check_labels(prototype_labels, "prototype_labels", "S", S, embeddings, "for vmf_nca_loss")
    if memory is not None:
        check.float_tensor(memory, "memory")
        check.same_device(embeddings, "embeddings", memory, "memory")
        if memory.dim() != 2 or memory.shape[1] != D:
            raise ValueError(f"memory must have shape (M, D) with D = {D}, got {tuple(memory.shape)}")
        M = memory.shape[0]
        if nca:
            _check_labels(memory_labels, "memory_labels", "M", M, embeddings, "for vmf_nca_loss with memory")
    acc_size = 8 if embeddings.dtype == torch.float64 else 4
    check.fits_in_memory(embeddings.device, N * ((3 * D + 4) * acc_size + 8), "embeddings")
    check.fits_in_memory(embeddings.device, S * (2 * D * acc_size + 8), "prototypes")
    check.fits_in_memory(embeddings.device, M * (2 * D * acc_size + 8), "memory")
    check.fits_in_memory(embeddings.device, 24 * N * (S + M + D), "embeddings")  # the dense logits and masks
    if N and int(segment_ids.max()) >= S:
        raise ValueError(f"segment_ids must be < the number of prototypes S = {S}, found {int(segment_ids.max())}")


def _dense_logits(embeddings, segment_ids, prototypes, prototype_labels, memory, memory_labels, concentration, nca):
    """For the counted pixels (segment_ids >= 0), in the compute type: their embeddings
    (n, D), the bank (batch prototypes, then memory), the logits (n, S + M), the own
    column of each row, and the columns of its denominator and numerator sets (the
    reference's Eq. 8 / Eq. 10 masks; vmf_column in csrc/include/segsort/vmf_loss_math.h)."""
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    valid = segment_ids >= 0
    e, own = embeddings[valid].to(dtype), segment_ids[valid]
    vectors = prototypes if memory is None else torch.cat([prototypes, memory.to(prototypes.dtype)])
    vectors = vectors.to(dtype)
    logits = (e @ vectors.T) * concentration
    is_own = torch.zeros_like(logits, dtype=torch.bool)
    is_own[torch.arange(own.shape[0], device=own.device), own] = True
    if not nca:
        return e, vectors, logits, own, torch.ones_like(is_own), torch.zeros_like(is_own)
    labels = prototype_labels if memory is None else torch.cat([prototype_labels, memory_labels])
    own_label = prototype_labels[own].unsqueeze(1)
    positive = (labels.unsqueeze(0) == own_label) & (own_label >= 0) & ~is_own
    return e, vectors, logits, own, ~is_own, positive


@python_kernel("vmf_loss")
def _vmf_loss_python(embeddings, segment_ids, prototypes, prototype_labels, memory, memory_labels, concentration,
                     nca):
    """The plain-PyTorch kernel: the reference's dense logits and log-sum-exps, per pixel,
    with lse_den and lse_num (-inf: a vMF-NCA pixel without positives, Eq. 8) as the
    compiled kernels return them for the backward."""
    _check_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory, memory_labels, concentration, nca)
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    loss, lse_den, lse_num = (embeddings.new_zeros(embeddings.shape[0], dtype=dtype) for _ in range(3))
    if embeddings.shape[0] == 0 or prototypes.shape[0] + (0 if memory is None else memory.shape[0]) == 0:
        return loss, lse_den, lse_num
    valid = segment_ids >= 0
    _, _, logits, own, denominator, positive = _dense_logits(embeddings, segment_ids, prototypes, prototype_labels,
                                                             memory, memory_labels, concentration, nca)
    den = torch.logsumexp(logits.masked_fill(~denominator, -math.inf), 1)
    num = torch.logsumexp(logits.masked_fill(~positive, -math.inf), 1)
    own_logit = logits.gather(1, own.unsqueeze(1)).squeeze(1)
    if nca:
        pixel_loss = torch.where(num == -math.inf, torch.logaddexp(den, own_logit) - own_logit, den - num)
    else:
        pixel_loss = den - own_logit
    loss[valid], lse_den[valid], lse_num[valid] = pixel_loss, den, num
    return loss, lse_den, lse_num


@python_kernel("_vmf_loss_backward")
def _vmf_loss_backward_python(grad_loss, embeddings, segment_ids, prototypes, prototype_labels, memory,
                              memory_labels, lse_den, lse_num, concentration, nca):
    """The plain-PyTorch backward: dloss/dlogits from the saved log-sum-exps (vmf_logit_grad
    in csrc/include/segsort/vmf_loss_math.h), then the two products of the dense logits."""
    _check_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory, memory_labels, concentration, nca)
    N, D = embeddings.shape
    for value, name in ((grad_loss, "grad_loss"), (lse_den, "lse_den"), (lse_num, "lse_num")):
        check.float_tensor(value, name)
        check.same_device(embeddings, "embeddings", value, name)
        if value.dim() != 1 or value.shape[0] != N:
            raise ValueError(f"{name} must have shape (N,) = ({N},), got {tuple(value.shape)}")
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    S = prototypes.shape[0]
    grad_embeddings = embeddings.new_zeros((N, D), dtype=dtype)
    if N == 0 or S + (0 if memory is None else memory.shape[0]) == 0:
        return grad_embeddings.to(embeddings.dtype), embeddings.new_zeros((S, D))
    valid = segment_ids >= 0
    e, vectors, logits, own, denominator, positive = _dense_logits(embeddings, segment_ids, prototypes,
                                                                   prototype_labels, memory, memory_labels,
                                                                   concentration, nca)
    den, num = lse_den[valid].to(dtype).unsqueeze(1), lse_num[valid].to(dtype).unsqueeze(1)
    own_logit = logits.gather(1, own.unsqueeze(1))
    is_own = torch.zeros_like(logits).scatter_(1, own.unsqueeze(1), 1.0)
    if nca:  # softmax_den over the denominator set minus softmax_num over the positives; Eq. 8 without positives
        fallback = num == -math.inf
        eq8 = torch.exp(logits - torch.logaddexp(den, own_logit)) - is_own
        eq10 = (torch.where(denominator, torch.exp(logits - den), 0)
                - torch.where(positive, torch.exp(logits - num), 0))
        coeff = torch.where(fallback, eq8, eq10)
    else:
        coeff = torch.exp(logits - den) - is_own
    coeff = coeff * grad_loss[valid].to(dtype).unsqueeze(1)
    grad_embeddings[valid] = (coeff @ vectors) * concentration
    grad_prototypes = (coeff[:, :S].T @ e) * concentration
    return grad_embeddings.to(embeddings.dtype), grad_prototypes.to(embeddings.dtype)


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
