// blurring_mean_shift_step on CPU: the blocked algorithm of blurring_mean_shift.h, with all the
// work of a step inside ONE at::parallel_for over (image, row group) tasks. The per-op
// parallelism of the shared driver puts ~10 thread barriers in every block; on a loaded
// machine (DataLoader workers, other jobs) each barrier can wait out a scheduler time
// slice, which measured 15x slower with 2 threads than with 1. Here a task's GEMMs and
// softmaxes run single-threaded inside its worker: one barrier per step and direction.
// In the backward the key and value roles of a group's query rows touch every point, so
// each task sums them into its own (L, D) buffer, and the buffers are added in task order
// afterwards: deterministic, and independent of the thread count (the groups are fixed by
// the sizes alone).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "segsort/blurring_mean_shift.h"

namespace segsort {
namespace {

constexpr int64_t kBlockElements = 1 << 20;  // kernel values per block: 4 MiB in float, 8 MiB in double
constexpr int64_t kMaxGroups = 8;            // row groups (tasks) per image
constexpr int64_t kMinGroupRows = 128;       // keeps each GEMM large enough to be efficient

struct RowGroup {
  int64_t image, start, end;
};

// Up to kMaxGroups contiguous row groups per image, each of at least kMinGroupRows rows.
std::vector<RowGroup> row_groups(const std::vector<int64_t>& valid) {
  std::vector<RowGroup> groups;
  for (int64_t b = 0; b < static_cast<int64_t>(valid.size()); ++b) {
    const int64_t L = valid[b];
    if (L == 0) continue;
    const int64_t count = std::max<int64_t>(1, std::min(kMaxGroups, L / kMinGroupRows));
    const int64_t rows = (L + count - 1) / count;
    for (int64_t start = 0; start < L; start += rows) groups.push_back({b, start, std::min(L, start + rows)});
  }
  return groups;
}

// body(group, task index, block start, block end) for every block of every group; the
// groups run in parallel, the blocks of a group in order.
template <typename F>
void for_each_block(const std::vector<RowGroup>& groups, const std::vector<int64_t>& valid, const F& body) {
  at::parallel_for(0, static_cast<int64_t>(groups.size()), 1, [&](int64_t begin, int64_t end) {
    at::NoGradGuard no_grad;  // worker threads: the ATen calls below must record no graph
    for (int64_t t = begin; t < end; ++t) {
      const RowGroup& g = groups[t];
      const int64_t block = std::max<int64_t>(1, std::min(g.end - g.start, kBlockElements / valid[g.image]));
      for (int64_t start = g.start; start < g.end; start += block)
        body(g, t, start, std::min(g.end, start + block));
    }
  });
}

std::tuple<at::Tensor, at::Tensor> blurring_mean_shift_step_cpu(
    const at::Tensor& x_in, const c10::optional<at::Tensor>& lengths, double bandwidth, double eta) {
  check_blurring_mean_shift_step_inputs(x_in, lengths, bandwidth, eta);
  const int64_t B = x_in.size(0), N = x_in.size(1);
  const auto x = x_in.to(at::toOpMathType(x_in.scalar_type())).contiguous().detach();
  auto out = x.clone();
  auto norms = at::ones({B, N}, x.options());
  const auto valid = mean_shift_lengths(lengths, B, N);
  if (x.numel() == 0) return {out.to(x_in.scalar_type()), norms};
  for_each_block(row_groups(valid), valid, [&](const RowGroup& g, int64_t, int64_t start, int64_t end) {
    mean_shift_block_forward(x[g.image].slice(0, 0, valid[g.image]), start, end, bandwidth, eta,
                             out[g.image].slice(0, start, end), norms[g.image].slice(0, start, end));
  });
  return {out.to(x_in.scalar_type()), norms};
}

at::Tensor blurring_mean_shift_step_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& x_in, const at::Tensor& out_in, const at::Tensor& norms_in,
    const c10::optional<at::Tensor>& lengths, double bandwidth, double eta) {
  check_blurring_mean_shift_step_backward_inputs(grad_out_in, x_in, out_in, norms_in, lengths, bandwidth, eta);
  const int64_t B = x_in.size(0), N = x_in.size(1);
  const auto type = at::toOpMathType(x_in.scalar_type());
  const auto x = x_in.to(type).contiguous().detach();
  const auto out = out_in.to(type).contiguous().detach();
  const auto grad_out = grad_out_in.to(type).contiguous().detach();
  const auto norms = norms_in.to(type).detach();
  const auto valid = mean_shift_lengths(lengths, B, N);
  if (x.numel() == 0) return grad_out.clone().to(x_in.scalar_type());
  const auto grad_y = mean_shift_grad_y(grad_out, out, norms);
  // Points past the length pass their gradient through (identity); valid ones start from
  // the (1 - eta) x term and gather the kernel terms below.
  auto grad_x = grad_out.clone();
  for (int64_t b = 0; b < B; ++b) {
    grad_x[b].slice(0, 0, valid[b]).copy_(grad_y[b].slice(0, 0, valid[b]) * (1 - eta));
  }
  const auto grad_m = (grad_y * eta).contiguous();  // m_j = sum_i p_ji x_i
  const auto c =
      out_in.scalar_type() == type ? mean_shift_grad_dot_mean(grad_m, x, out, norms, eta) : at::Tensor();
  const auto groups = row_groups(valid);
  std::vector<at::Tensor> partial(groups.size());
  for_each_block(groups, valid, [&](const RowGroup& g, int64_t t, int64_t start, int64_t end) {
    const int64_t L = valid[g.image];
    const auto xb = x[g.image].slice(0, 0, L);
    if (!partial[t].defined()) partial[t] = at::zeros_like(xb);
    mean_shift_block_backward(xb, grad_m[g.image].slice(0, 0, L), c.defined() ? c[g.image].slice(0, 0, L) : c,
                              start, end, bandwidth, partial[t], grad_x[g.image].slice(0, start, end));
  });
  for (size_t t = 0; t < groups.size(); ++t) {
    grad_x[groups[t].image].slice(0, 0, valid[groups[t].image]).add_(partial[t]);
  }
  return grad_x.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CPU, m) {
  m.impl("blurring_mean_shift_step", &blurring_mean_shift_step_cpu);
  m.impl("_blurring_mean_shift_step_backward", &blurring_mean_shift_step_backward_cpu);
}

}  // namespace segsort
