// blurring_mean_shift_step on CPU: the blocked algorithm of mean_shift.h, with every
// (image, row block) task of a step inside ONE at::parallel_for. The per-op parallelism
// of the shared driver puts ~10 thread barriers in every block; on a loaded machine
// (DataLoader workers, other jobs) each barrier can wait out a scheduler time slice,
// which measured 15x slower with 2 threads than with 1. Here the GEMMs and softmaxes of
// a task run single-threaded inside its worker, so a step has 1 (forward) or 2
// (backward) barriers. The backward is the two-pass flash-attention form: pass A over
// query blocks (query-role gradient; saves each row's log-sum-exp and delta), pass B over
// key blocks (key and value roles), so every task writes only its own rows: no atomics,
// no per-thread buffers, deterministic.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "segsort/mean_shift.h"

namespace segsort {
namespace {

constexpr int64_t kBlockElements = 1 << 20;  // 8 MiB of double kernel values per block

struct RowBlock {
  int64_t image, start, end;
};

// Row blocks of every image: at most kBlockElements kernel values each, and about 64
// blocks in all (so one large image still uses every thread; a fixed count, not one per
// thread, so results do not depend on the thread count).
std::vector<RowBlock> row_blocks(const std::vector<int64_t>& valid) {
  int64_t total = 0;
  for (const int64_t L : valid) total += L;
  const int64_t target = std::max<int64_t>(16, (total + 63) / 64);
  std::vector<RowBlock> blocks;
  for (int64_t b = 0; b < static_cast<int64_t>(valid.size()); ++b) {
    const int64_t L = valid[b];
    if (L == 0) continue;
    const int64_t block = std::max<int64_t>(1, std::min({L, kBlockElements / L, target}));
    for (int64_t start = 0; start < L; start += block) blocks.push_back({b, start, std::min(L, start + block)});
  }
  return blocks;
}

template <typename F>
void for_each_block(const std::vector<RowBlock>& blocks, const F& body) {
  at::parallel_for(0, static_cast<int64_t>(blocks.size()), 1, [&](int64_t begin, int64_t end) {
    at::NoGradGuard no_grad;  // worker threads: the ATen calls below must record no graph
    for (int64_t t = begin; t < end; ++t) body(blocks[t]);
  });
}

std::tuple<at::Tensor, at::Tensor> mean_shift_step_forward_cpu(const at::Tensor& x_in, const at::Tensor& lengths,
                                                               double bandwidth, double eta) {
  check_mean_shift_inputs(x_in, lengths, eta);
  const int64_t B = x_in.size(0), N = x_in.size(1);
  const auto x = x_in.to(mean_shift_compute_type(x_in)).contiguous().detach();
  auto out = x.clone();
  auto norms = at::ones({B, N}, x.options());
  const auto valid = mean_shift_lengths(lengths, N);
  if (x.numel() == 0) return {out.to(x_in.scalar_type()), norms};
  for_each_block(row_blocks(valid), [&](const RowBlock& blk) {
    const auto xb = x[blk.image].slice(0, 0, valid[blk.image]);
    const auto q = xb.slice(0, blk.start, blk.end);
    const auto p = at::softmax(at::mm(q, xb.t()).mul_(bandwidth), 1);
    const auto y = at::mm(p, xb).mul_(eta).add_(q, 1 - eta);
    const auto n = y.norm(2, 1, true);
    out[blk.image].slice(0, blk.start, blk.end).copy_(y / n.clamp_min(kNormEps));
    norms[blk.image].slice(0, blk.start, blk.end).copy_(n.squeeze(1));
  });
  return {out.to(x_in.scalar_type()), norms};
}

at::Tensor mean_shift_step_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& x_in,
                                        const at::Tensor& out_in, const at::Tensor& norms_in,
                                        const at::Tensor& lengths, double bandwidth, double eta) {
  check_mean_shift_inputs(x_in, lengths, eta);
  SEGSORT_CHECK_ARG(grad_out_in.sizes() == x_in.sizes() && out_in.sizes() == x_in.sizes(),
                    "grad_out and out must have the shape of x ", x_in.sizes());
  const int64_t B = x_in.size(0), N = x_in.size(1);
  const auto type = mean_shift_compute_type(x_in);
  const auto x = x_in.to(type).contiguous().detach();
  const auto out = out_in.to(type).contiguous().detach();
  const auto grad_out = grad_out_in.to(type).contiguous().detach();
  const auto norms = norms_in.to(type).detach();
  const auto valid = mean_shift_lengths(lengths, N);
  if (x.numel() == 0) return grad_out.clone().to(x_in.scalar_type());
  // out = y / max(|y|, eps): dy = (dout - out (out . dout)) / |y| (projection only where |y| >= eps).
  const auto projected = grad_out - out * (out * grad_out).sum(2, true);
  const auto nn = norms.unsqueeze(2);
  const auto grad_y = at::where(nn >= kNormEps, projected / nn, grad_out / kNormEps);
  // Points past the length pass their gradient through (identity); valid ones start from
  // the (1 - eta) x term and gather the kernel terms below.
  auto grad_x = grad_out.clone();
  for (int64_t b = 0; b < B; ++b) {
    grad_x[b].slice(0, 0, valid[b]).copy_(grad_y[b].slice(0, 0, valid[b]) * (1 - eta));
  }
  const auto grad_m = (grad_y * eta).contiguous();  // m_j = sum_i p_ji x_i
  auto lse = at::zeros({B, N}, x.options());
  auto delta = at::zeros({B, N}, x.options());
  const auto blocks = row_blocks(valid);
  // Pass A, query blocks j: dS_ji = p_ji (gm_j . x_i - delta_j) with delta_j = gm_j . m_j;
  // query role: dx_j += bandwidth * sum_i dS_ji x_i.
  for_each_block(blocks, [&](const RowBlock& blk) {
    const auto xb = x[blk.image].slice(0, 0, valid[blk.image]);
    const auto q = xb.slice(0, blk.start, blk.end);
    const auto gm = grad_m[blk.image].slice(0, blk.start, blk.end);
    const auto logits = at::mm(q, xb.t()).mul_(bandwidth);
    const auto row_lse = logits.logsumexp(1, true);
    const auto p = (logits - row_lse).exp_();
    const auto row_delta = (gm * at::mm(p, xb)).sum(1, true);
    const auto ds = at::mm(gm, xb.t()).sub_(row_delta).mul_(p);
    grad_x[blk.image].slice(0, blk.start, blk.end).add_(at::mm(ds, xb), bandwidth);
    lse[blk.image].slice(0, blk.start, blk.end).copy_(row_lse.squeeze(1));
    delta[blk.image].slice(0, blk.start, blk.end).copy_(row_delta.squeeze(1));
  });
  // Pass B, key blocks i (the kernel is symmetric: logit_ji = bandwidth x_i . x_j):
  // value role dx_i += sum_j p_ji gm_j, key role dx_i += bandwidth * sum_j dS_ji x_j.
  for_each_block(blocks, [&](const RowBlock& blk) {
    const int64_t L = valid[blk.image];
    const auto xb = x[blk.image].slice(0, 0, L);
    const auto gm_all = grad_m[blk.image].slice(0, 0, L);
    const auto k = xb.slice(0, blk.start, blk.end);
    const auto p_t = at::mm(k, xb.t()).mul_(bandwidth).sub_(lse[blk.image].slice(0, 0, L).unsqueeze(0)).exp_();
    const auto ds_t = at::mm(k, gm_all.t()).sub_(delta[blk.image].slice(0, 0, L).unsqueeze(0)).mul_(p_t);
    auto gx = grad_x[blk.image].slice(0, blk.start, blk.end);
    gx.add_(at::mm(p_t, gm_all));
    gx.add_(at::mm(ds_t, xb), bandwidth);
  });
  return grad_x.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CPU, m) {
  m.impl("mean_shift_step_forward", &mean_shift_step_forward_cpu);
  m.impl("mean_shift_step_backward", &mean_shift_step_backward_cpu);
}

}  // namespace segsort
