// vmf_loss / vmf_nca_loss on CPU: blocked GEMM logits (vmf_loss.h) reduced row by row.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "segsort/vmf_loss.h"
#include "segsort/vmf_math.h"

namespace segsort {
namespace {

constexpr int64_t kBlockElements = 1 << 20;  // 4 MiB of float logits per block: stays in cache

void rows_forward_cpu(const at::Tensor& logits, const at::Tensor& ids, const VmfBank& bank, bool nca,
                      at::Tensor loss, at::Tensor lse_den, at::Tensor lse_num) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "vmf_loss_rows_forward_cpu", [&] {
    const scalar_t* l = logits.const_data_ptr<scalar_t>();
    const int64_t* id = ids.const_data_ptr<int64_t>();
    const int64_t* labels = nca ? bank.labels.const_data_ptr<int64_t>() : nullptr;
    scalar_t* out = loss.mutable_data_ptr<scalar_t>();
    scalar_t* den_out = lse_den.mutable_data_ptr<scalar_t>();
    scalar_t* num_out = lse_num.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t c = id[r];
        if (c < 0) continue;  // ignored pixel: loss 0
        const scalar_t* row = l + r * cols;
        const int64_t own_label = nca ? labels[c] : -1;
        OnlineLse<scalar_t> den, num;
        for (int64_t j = 0; j < cols; ++j) {
          const VmfColumn col = vmf_column(j, c, nca, labels, own_label);
          if (col.in_denominator) den.add(row[j]);
          if (col.positive) num.add(row[j]);
        }
        den_out[r] = den.value();
        num_out[r] = num.value();
        out[r] = vmf_pixel_loss<scalar_t>(nca, row[c], den_out[r], num_out[r]);
      }
    });
  });
}

void rows_backward_cpu(at::Tensor& logits, const at::Tensor& ids, const VmfBank& bank, bool nca,
                       const at::Tensor& lse_den, const at::Tensor& lse_num, const at::Tensor& grad) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "vmf_loss_rows_backward_cpu", [&] {
    scalar_t* l = logits.mutable_data_ptr<scalar_t>();
    const int64_t* id = ids.const_data_ptr<int64_t>();
    const int64_t* labels = nca ? bank.labels.const_data_ptr<int64_t>() : nullptr;
    const scalar_t* den = lse_den.const_data_ptr<scalar_t>();
    const scalar_t* num = lse_num.const_data_ptr<scalar_t>();
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t* row = l + r * cols;
        const int64_t c = id[r];
        if (c < 0) {
          std::fill(row, row + cols, scalar_t(0));
          continue;
        }
        const int64_t own_label = nca ? labels[c] : -1;
        const scalar_t own_logit = row[c];
        for (int64_t j = 0; j < cols; ++j) {
          const VmfColumn col = vmf_column(j, c, nca, labels, own_label);
          row[j] = g[r] * vmf_logit_grad<scalar_t>(row[j], j == c, col, nca, own_logit, den[r], num[r]);
        }
      }
    });
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> vmf_loss_forward_cpu(
    const at::Tensor& embeddings, const at::Tensor& segment_ids, const at::Tensor& prototypes,
    const c10::optional<at::Tensor>& prototype_labels, const c10::optional<at::Tensor>& memory,
    const c10::optional<at::Tensor>& memory_labels, double concentration, bool nca) {
  const VmfBank bank = check_vmf_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory,
                                        memory_labels, nca);
  return vmf_loss_forward_blocked(embeddings, segment_ids, bank, concentration, nca, kBlockElements,
                                  rows_forward_cpu);
}

std::tuple<at::Tensor, at::Tensor> vmf_loss_backward_cpu(
    const at::Tensor& grad_loss, const at::Tensor& embeddings, const at::Tensor& segment_ids,
    const at::Tensor& prototypes, const c10::optional<at::Tensor>& prototype_labels,
    const c10::optional<at::Tensor>& memory, const c10::optional<at::Tensor>& memory_labels,
    const at::Tensor& lse_den, const at::Tensor& lse_num, double concentration, bool nca) {
  const VmfBank bank = check_vmf_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory,
                                        memory_labels, nca);
  return vmf_loss_backward_blocked(grad_loss, embeddings, segment_ids, bank, lse_den, lse_num,
                                   concentration, nca, kBlockElements, rows_backward_cpu);
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CPU, m) {
  m.impl("vmf_loss_forward", &vmf_loss_forward_cpu);
  m.impl("vmf_loss_backward", &vmf_loss_backward_cpu);
}

}  // namespace segsort
