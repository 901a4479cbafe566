// vmf_loss / vmf_nca_loss, both backends: pixels are processed in blocks; a block's
// logits kappa * e . mu against the whole bank (batch prototypes, then memory) come
// from one GEMM, a backend row kernel reduces them (log-sum-exp forward, softmax
// coefficients backward), and the block is dropped. Memory is O(block * (S + M)),
// never O(N * (S + M)); the backward recomputes the logits instead of storing them.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include "segsort/checks.h"

namespace segsort {

struct VmfBank {
  at::Tensor vectors;  // (S + M, D): batch prototypes, then memory prototypes
  at::Tensor labels;   // (S + M,) labels for vMF-NCA, undefined for vMF
  int64_t num_batch;   // S: columns that are batch prototypes (and may be a pixel's own)
};

// Checks vmf_loss's inputs and gathers the bank. memory may have another floating dtype
// than embeddings (a float32 memory of a bfloat16 model, say): the kernels compute in the
// compute type of embeddings either way.
inline VmfBank check_vmf_loss_inputs(
    const at::Tensor& embeddings, const at::Tensor& segment_ids, const at::Tensor& prototypes,
    const c10::optional<at::Tensor>& prototype_labels, const c10::optional<at::Tensor>& memory,
    const c10::optional<at::Tensor>& memory_labels, double concentration, bool nca) {
  check_floating(embeddings, "embeddings");
  check_like(prototypes, "prototypes", embeddings, "embeddings");
  check_int64(segment_ids, "segment_ids");
  check_same_device(embeddings, "embeddings", segment_ids, "segment_ids");
  SEGSORT_CHECK_ARG(embeddings.dim() == 2, "embeddings must have shape (N, D), got ", embeddings.sizes());
  const int64_t N = embeddings.size(0), D = embeddings.size(1);
  SEGSORT_CHECK_ARG(segment_ids.dim() == 1 && segment_ids.size(0) == N, "segment_ids must have shape (N,) = (", N,
                    ",), got ", segment_ids.sizes());
  SEGSORT_CHECK_ARG(prototypes.dim() == 2 && prototypes.size(1) == D,
                    "prototypes must have shape (S, D) with D = ", D, ", got ", prototypes.sizes());
  check_finite(concentration, "concentration");
  const int64_t S = prototypes.size(0);
  if (nca) {
    SEGSORT_CHECK_ARG(prototype_labels.has_value(), "prototype_labels are required for vmf_nca_loss");
    check_int64(*prototype_labels, "prototype_labels");
    check_same_device(embeddings, "embeddings", *prototype_labels, "prototype_labels");
    SEGSORT_CHECK_ARG(prototype_labels->dim() == 1 && prototype_labels->size(0) == S,
                      "prototype_labels must have shape (S,) = (", S, ",), got ", prototype_labels->sizes());
  }
  if (memory.has_value()) {
    check_floating(*memory, "memory");
    check_same_device(embeddings, "embeddings", *memory, "memory");
    SEGSORT_CHECK_ARG(memory->dim() == 2 && memory->size(1) == D, "memory must have shape (M, D) with D = ", D,
                      ", got ", memory->sizes());
    if (nca) {
      SEGSORT_CHECK_ARG(memory_labels.has_value(), "memory_labels are required for vmf_nca_loss with memory");
      check_int64(*memory_labels, "memory_labels");
      check_same_device(embeddings, "embeddings", *memory_labels, "memory_labels");
      SEGSORT_CHECK_ARG(memory_labels->dim() == 1 && memory_labels->size(0) == memory->size(0),
                        "memory_labels must have shape (M,) = (", memory->size(0), ",), got ",
                        memory_labels->sizes());
    }
  }
  // Before anything reads or copies an input (any may be an expanded view): per pixel a
  // copy in the compute type, its gradient and a partial (3 D), the loss, the two
  // log-sum-exps, the incoming gradient and the id; per bank row a copy and a gradient.
  const int64_t acc_size = embeddings.scalar_type() == at::kDouble ? 8 : 4;
  const auto device = embeddings.device();
  const auto rows_bytes = [&](int64_t rows, int64_t copies, int64_t extra, const char* name) {
    return checked_sum(checked_product({rows, D, copies * acc_size}, name), checked_product({rows, extra}, name),
                       name);
  };
  check_fits_in_memory(device, rows_bytes(N, 3, 4 * acc_size + 8, "embeddings"), "embeddings");
  check_fits_in_memory(device, rows_bytes(S, 2, 8, "prototypes"), "prototypes");
  if (memory.has_value()) check_fits_in_memory(device, rows_bytes(memory->size(0), 2, 8, "memory"), "memory");
  check_ids_below(segment_ids, "segment_ids", S, "the number of prototypes S");
  VmfBank bank{prototypes, at::Tensor(), S};
  if (nca) bank.labels = prototype_labels->contiguous();  // the row kernels index it as a flat array
  if (memory.has_value()) {
    bank.vectors = at::cat({prototypes, memory->to(prototypes.scalar_type())});
    if (nca) bank.labels = at::cat({*prototype_labels, *memory_labels});
  }
  return bank;
}

// _vmf_loss_backward's grad_loss and the forward's lse_den, lse_num: (N,) each, floating,
// on the embeddings' device.
inline void check_vmf_loss_backward_inputs(const at::Tensor& embeddings, const at::Tensor& grad_loss,
                                           const at::Tensor& lse_den, const at::Tensor& lse_num) {
  const int64_t N = embeddings.size(0);
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{grad_loss, "grad_loss"},
                                {lse_den, "lse_den"},
                                {lse_num, "lse_num"}}) {
    check_floating(t, name);
    check_same_device(embeddings, "embeddings", t, name);
    SEGSORT_CHECK_ARG(t.dim() == 1 && t.size(0) == N, name, " must have shape (N,) = (", N, ",), got ", t.sizes());
  }
}

// Pixel rows per block: as many as keep a block's logits within budget_elements.
inline int64_t vmf_block_rows(int64_t n, int64_t bank_size, int64_t budget_elements) {
  return std::max<int64_t>(1, std::min<int64_t>(n, budget_elements / std::max<int64_t>(bank_size, 1)));
}

// One block of pixel rows e (n, D) (in the compute type) against the bank: the GEMM
// logits, reduced row by row by rows_forward into the block's loss / lse_den / lse_num.
template <typename RowsForward>
void vmf_block_forward(const at::Tensor& e, const at::Tensor& vectors, const at::Tensor& ids, const VmfBank& bank,
                       double concentration, bool nca, RowsForward rows_forward, at::Tensor loss,
                       at::Tensor lse_den, at::Tensor lse_num) {
  const auto logits = at::mm(e, vectors.t()).mul_(concentration);
  rows_forward(logits, ids, bank, nca, loss, lse_den, lse_num);
}

// Backward of one block: rows_backward turns the recomputed logits into dloss/dlogits in
// place; the block's embedding gradient rows are written to grad_rows and its batch
// prototypes' gradient added to grad_prototypes (S, D).
template <typename RowsBackward>
void vmf_block_backward(const at::Tensor& e, const at::Tensor& vectors, const at::Tensor& ids, const VmfBank& bank,
                        const at::Tensor& lse_den, const at::Tensor& lse_num, const at::Tensor& grad,
                        double concentration, bool nca, RowsBackward rows_backward, at::Tensor grad_rows,
                        at::Tensor grad_prototypes) {
  auto coeff = at::mm(e, vectors.t()).mul_(concentration);
  rows_backward(coeff, ids, bank, nca, lse_den, lse_num, grad);
  // Ignored pixels' coefficients are 0, and so are their gradient rows and their rows in
  // the prototypes' gradient: 0 * NaN = NaN would let a NaN bank row or embedding in.
  const auto ignored = (ids < 0).unsqueeze(1);
  grad_rows.copy_(at::mm(coeff, vectors).mul_(concentration).masked_fill_(ignored, 0));
  if (bank.num_batch > 0) {
    const auto e_used = e.masked_fill(ignored, 0);
    grad_prototypes.add_(at::mm(coeff.slice(1, 0, bank.num_batch).t(), e_used), concentration);
  }
}

// Forward: per-pixel loss (N,), and the log-sum-exps the backward needs: lse_den (the
// denominator set) and lse_num (the numerator set; -inf marks a vMF-NCA pixel without
// positives, which falls back to Eq. 8). RowsForward(logits, ids, bank, nca, loss,
// lse_den, lse_num) fills one block.
template <typename RowsForward>
std::tuple<at::Tensor, at::Tensor, at::Tensor> vmf_loss_blocked(
    const at::Tensor& embeddings, const at::Tensor& segment_ids, const VmfBank& bank, double concentration,
    bool nca, int64_t budget_elements, RowsForward rows_forward) {
  const int64_t N = embeddings.size(0);
  const auto type = at::toOpMathType(embeddings.scalar_type());
  const auto opts = embeddings.options().dtype(type);
  auto loss = at::zeros({N}, opts), lse_den = at::zeros({N}, opts), lse_num = at::zeros({N}, opts);
  if (N == 0 || bank.vectors.size(0) == 0) return {loss, lse_den, lse_num};
  const auto vectors = bank.vectors.to(type);
  const auto ids = segment_ids.contiguous();
  const int64_t block = vmf_block_rows(N, vectors.size(0), budget_elements);
  for (int64_t start = 0; start < N; start += block) {
    const int64_t end = std::min(N, start + block);
    vmf_block_forward(embeddings.slice(0, start, end).to(type), vectors, ids.slice(0, start, end), bank,
                      concentration, nca, rows_forward, loss.slice(0, start, end), lse_den.slice(0, start, end),
                      lse_num.slice(0, start, end));
  }
  return {loss, lse_den, lse_num};
}

// Backward: RowsBackward(logits, ids, bank, nca, lse_den, lse_num, grad_loss) turns a
// block's logits into dloss/dlogits (scaled by grad_loss) in place; the GEMMs then give
// the embeddings' and batch prototypes' gradients (memory gets none). Blocks run in
// order: deterministic.
template <typename RowsBackward>
std::tuple<at::Tensor, at::Tensor> vmf_loss_backward_blocked(
    const at::Tensor& grad_loss, const at::Tensor& embeddings, const at::Tensor& segment_ids, const VmfBank& bank,
    const at::Tensor& lse_den, const at::Tensor& lse_num, double concentration, bool nca, int64_t budget_elements,
    RowsBackward rows_backward) {
  const int64_t N = embeddings.size(0), S = bank.num_batch;
  const auto type = at::toOpMathType(embeddings.scalar_type());
  auto grad_embeddings = at::zeros(embeddings.sizes(), embeddings.options().dtype(type));
  auto grad_prototypes = at::zeros({S, embeddings.size(1)}, embeddings.options().dtype(type));
  if (N > 0 && bank.vectors.size(0) > 0) {
    const auto vectors = bank.vectors.to(type);
    const auto ids = segment_ids.contiguous();
    const auto grad = grad_loss.to(type).contiguous();
    const auto den = lse_den.to(type).contiguous(), num = lse_num.to(type).contiguous();
    const int64_t block = vmf_block_rows(N, vectors.size(0), budget_elements);
    for (int64_t start = 0; start < N; start += block) {
      const int64_t end = std::min(N, start + block);
      vmf_block_backward(embeddings.slice(0, start, end).to(type), vectors, ids.slice(0, start, end), bank,
                         den.slice(0, start, end), num.slice(0, start, end), grad.slice(0, start, end),
                         concentration, nca, rows_backward, grad_embeddings.slice(0, start, end), grad_prototypes);
    }
  }
  return {grad_embeddings.to(embeddings.scalar_type()), grad_prototypes.to(embeddings.scalar_type())};
}

}  // namespace segsort
