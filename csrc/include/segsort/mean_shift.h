// blurring_mean_shift_step, both backends: one iteration of vMF blurring mean shift,
//   y_j = (1 - eta) x_j + eta * sum_i softmax_i(bandwidth * x_i . x_j) x_i,  out_j = y_j / |y_j|,
// i.e. attention with Q = K = V = X. Query points run in blocks: a block's kernel rows
// come from one GEMM, are softmaxed and used, and dropped, so memory is O(block * N) on
// top of O(N * D), never N x N; the backward recomputes them (flash-attention style).
#pragma once

#include <ATen/ATen.h>

#include "segsort/checks.h"

namespace segsort {

inline void check_mean_shift_inputs(const at::Tensor& x, const at::Tensor& lengths, double eta) {
  check_floating(x, "x");
  check_int64(lengths, "lengths");
  check_same_device(x, "x", lengths, "lengths");
  SEGSORT_CHECK_ARG(x.dim() == 3, "x must have shape (B, N, D), got ", x.sizes());
  SEGSORT_CHECK_ARG(lengths.dim() == 1 && lengths.size(0) == x.size(0), "lengths must have shape (B,) = (",
                    x.size(0), ",), got ", lengths.sizes());
  SEGSORT_CHECK_ARG(eta > 0 && eta <= 1, "eta must be in (0, 1], got ", eta);
}

// Valid points per image, on the host (one sync), each checked to lie in [0, N].
inline std::vector<int64_t> mean_shift_lengths(const at::Tensor& lengths, int64_t N) {
  const auto host = lengths.to(at::kCPU).contiguous();
  std::vector<int64_t> out(host.const_data_ptr<int64_t>(), host.const_data_ptr<int64_t>() + host.numel());
  for (const int64_t L : out) SEGSORT_CHECK_ARG(L >= 0 && L <= N, "lengths must lie in [0, N = ", N, "], found ", L);
  return out;
}

inline at::ScalarType mean_shift_compute_type(const at::Tensor& t) {
  return (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16) ? at::kFloat : t.scalar_type();
}

// Forward: out (B, N, D) and |y| (B, N) for the backward. Points past an image's length
// are copied through unchanged and take no part.
inline std::tuple<at::Tensor, at::Tensor> mean_shift_forward_blocked(const at::Tensor& x_in,
                                                                     const at::Tensor& lengths,
                                                                     double bandwidth, double eta,
                                                                     int64_t budget_elements) {
  check_mean_shift_inputs(x_in, lengths, eta);
  const int64_t B = x_in.size(0), N = x_in.size(1);
  const auto type = mean_shift_compute_type(x_in);
  const auto x = x_in.to(type).contiguous();
  auto out = x.clone();
  auto norms = at::ones({B, N}, x.options());
  const auto valid = mean_shift_lengths(lengths, N);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = valid[b];
    if (L == 0) continue;
    const auto xb = x[b].slice(0, 0, L);
    const int64_t block = std::max<int64_t>(1, std::min<int64_t>(L, budget_elements / L));
    for (int64_t start = 0; start < L; start += block) {
      const int64_t end = std::min(L, start + block);
      const auto q = xb.slice(0, start, end);
      const auto p = at::softmax(at::mm(q, xb.t()).mul_(bandwidth), 1);
      const auto y = at::mm(p, xb).mul_(eta).add_(q, 1 - eta);
      const auto n = y.norm(2, 1, true);
      out[b].slice(0, start, end).copy_(y / n.clamp_min(kNormEps));
      norms[b].slice(0, start, end).copy_(n.squeeze(1));
    }
  }
  return {out.to(x_in.scalar_type()), norms};
}

// Backward of one step (see the derivation in meanshift.py): gradients of the query,
// key and value roles of every point, accumulated block by block in order.
inline at::Tensor mean_shift_backward_blocked(const at::Tensor& grad_out_in, const at::Tensor& x_in,
                                              const at::Tensor& out_in, const at::Tensor& norms,
                                              const at::Tensor& lengths, double bandwidth, double eta,
                                              int64_t budget_elements) {
  check_mean_shift_inputs(x_in, lengths, eta);
  SEGSORT_CHECK_ARG(grad_out_in.sizes() == x_in.sizes() && out_in.sizes() == x_in.sizes(),
                    "grad_out and out must have the shape of x ", x_in.sizes());
  const int64_t B = x_in.size(0), N = x_in.size(1);
  const auto type = mean_shift_compute_type(x_in);
  const auto x = x_in.to(type).contiguous();
  const auto out = out_in.to(type).contiguous();
  const auto grad_out = grad_out_in.to(type).contiguous();
  auto grad_x = grad_out.clone();  // points past the length: identity
  const auto valid = mean_shift_lengths(lengths, N);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = valid[b];
    if (L == 0) continue;
    const auto xb = x[b].slice(0, 0, L);
    auto gx = grad_x[b].slice(0, 0, L);
    // out = y / max(|y|, eps): dy = (dout - out (out . dout)) / |y| (projection only where |y| >= eps).
    const auto ob = out[b].slice(0, 0, L), gb = grad_out[b].slice(0, 0, L);
    const auto nb = norms[b].slice(0, 0, L).unsqueeze(1);
    const auto projected = gb - ob * (ob * gb).sum(1, true);
    const auto grad_y = at::where(nb >= kNormEps, projected / nb, gb / kNormEps);
    gx.copy_(grad_y * (1 - eta));
    const auto grad_m = grad_y * eta;  // m_j = sum_i p_ji x_i
    const int64_t block = std::max<int64_t>(1, std::min<int64_t>(L, budget_elements / L));
    for (int64_t start = 0; start < L; start += block) {
      const int64_t end = std::min(L, start + block);
      const auto q = xb.slice(0, start, end);
      const auto gm = grad_m.slice(0, start, end);
      const auto p = at::softmax(at::mm(q, xb.t()).mul_(bandwidth), 1);
      const auto m = at::mm(p, xb);
      // dS = P * (G_m X^T - rowsum(G_m * M)), the softmax backward.
      auto ds = at::mm(gm, xb.t()).sub_((gm * m).sum(1, true)).mul_(p);
      gx.add_(at::mm(p.t(), gm));                                    // value role
      gx.add_(at::mm(ds.t(), q), bandwidth);                         // key role
      gx.slice(0, start, end).add_(at::mm(ds, xb), bandwidth);      // query role
    }
  }
  return grad_x.to(x_in.scalar_type());
}

}  // namespace segsort
