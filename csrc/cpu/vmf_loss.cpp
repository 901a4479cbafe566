// vmf_loss / vmf_nca_loss on CPU: blocked GEMM logits (vmf_loss.h) reduced row by row.
// Every row block is one task of a single at::parallel_for (its GEMM and row loop run
// single-threaded inside the worker): one thread barrier per call instead of a few per
// block, which on a loaded machine (DataLoader workers, other jobs) is what keeps two
// threads faster than one (see blurring_mean_shift.cpp).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "segsort/vmf_loss.h"
#include "segsort/vmf_loss_math.h"

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

// Rows are split into a number of contiguous groups fixed by the sizes (the parallel tasks;
// not per thread, so results do not depend on the thread count), each walked in blocks of
// at most kBlockElements logits.
constexpr int64_t kGroups = 64;

int64_t row_groups(int64_t N) { return std::min<int64_t>(kGroups, (N + 15) / 16); }

template <typename F>
void for_each_row_block(int64_t N, int64_t groups, int64_t bank_size, const F& body) {
  const int64_t block = vmf_block_rows(N, bank_size, kBlockElements);
  const int64_t group_rows = (N + groups - 1) / groups;
  at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    at::NoGradGuard no_grad;  // worker threads: the ATen calls must record no graph
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t group_end = std::min(N, (g + 1) * group_rows);
      for (int64_t start = g * group_rows; start < group_end; start += block) {
        body(g, start, std::min(group_end, start + block));
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> vmf_loss_cpu(
    const at::Tensor& embeddings, const at::Tensor& segment_ids, const at::Tensor& prototypes,
    const c10::optional<at::Tensor>& prototype_labels, const c10::optional<at::Tensor>& memory,
    const c10::optional<at::Tensor>& memory_labels, double concentration, bool nca) {
  const VmfBank bank = check_vmf_loss_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory,
                                             memory_labels, concentration, nca);
  const int64_t N = embeddings.size(0);
  const auto type = at::toOpMathType(embeddings.scalar_type());
  const auto opts = embeddings.options().dtype(type);
  auto loss = at::zeros({N}, opts), lse_den = at::zeros({N}, opts), lse_num = at::zeros({N}, opts);
  if (N == 0 || bank.vectors.size(0) == 0) return {loss, lse_den, lse_num};
  const auto vectors = bank.vectors.to(type).detach();
  const auto e_all = embeddings.to(type).detach();
  const auto ids = segment_ids.contiguous();
  for_each_row_block(N, row_groups(N), vectors.size(0), [&](int64_t, int64_t start, int64_t end) {
    vmf_block_forward(e_all.slice(0, start, end), vectors, ids.slice(0, start, end), bank, concentration, nca,
                      rows_forward_cpu, loss.slice(0, start, end), lse_den.slice(0, start, end),
                      lse_num.slice(0, start, end));
  });
  return {loss, lse_den, lse_num};
}

std::tuple<at::Tensor, at::Tensor> vmf_loss_backward_cpu(
    const at::Tensor& grad_loss, const at::Tensor& embeddings, const at::Tensor& segment_ids,
    const at::Tensor& prototypes, const c10::optional<at::Tensor>& prototype_labels,
    const c10::optional<at::Tensor>& memory, const c10::optional<at::Tensor>& memory_labels,
    const at::Tensor& lse_den, const at::Tensor& lse_num, double concentration, bool nca) {
  const VmfBank bank = check_vmf_loss_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory,
                                             memory_labels, concentration, nca);
  check_vmf_loss_backward_inputs(embeddings, grad_loss, lse_den, lse_num);
  const int64_t N = embeddings.size(0), S = bank.num_batch, D = embeddings.size(1);
  const auto type = at::toOpMathType(embeddings.scalar_type());
  auto grad_embeddings = at::zeros(embeddings.sizes(), embeddings.options().dtype(type));
  if (N == 0 || bank.vectors.size(0) == 0) {
    return {grad_embeddings.to(embeddings.scalar_type()), at::zeros({S, D}, embeddings.options())};
  }
  const auto vectors = bank.vectors.to(type).detach();
  const auto e_all = embeddings.to(type).detach();
  const auto ids = segment_ids.contiguous();
  const auto grad = grad_loss.to(type).contiguous();
  const auto den = lse_den.to(type).contiguous(), num = lse_num.to(type).contiguous();
  // One (S, D) partial prototype gradient per row group, summed in group order:
  // deterministic. At most N / S groups, so that the partials are no larger than the
  // embeddings' gradient.
  const int64_t groups = std::max<int64_t>(1, std::min(row_groups(N), N / std::max<int64_t>(S, 1)));
  auto partial = at::zeros({groups, S, D}, grad_embeddings.options());
  for_each_row_block(N, groups, vectors.size(0), [&](int64_t g, int64_t start, int64_t end) {
    vmf_block_backward(e_all.slice(0, start, end), vectors, ids.slice(0, start, end), bank,
                       den.slice(0, start, end), num.slice(0, start, end), grad.slice(0, start, end),
                       concentration, nca, rows_backward_cpu, grad_embeddings.slice(0, start, end), partial[g]);
  });
  auto grad_prototypes = partial.sum(0);
  return {grad_embeddings.to(embeddings.scalar_type()), grad_prototypes.to(embeddings.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CPU, m) {
  m.impl("vmf_loss", &vmf_loss_cpu);
  m.impl("_vmf_loss_backward", &vmf_loss_backward_cpu);
}

}  // namespace segsort
