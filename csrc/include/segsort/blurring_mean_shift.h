// blurring_mean_shift_step, the blocked algorithm (the CPU kernel; on CUDA the fallback of
// the fused kernels for D > 128): one iteration of vMF blurring mean shift,
//   y_j = (1 - eta) x_j + eta * sum_i softmax_i(bandwidth * x_i . x_j) x_i,  out_j = y_j / |y_j|,
// i.e. attention with Q = K = V = X. Query points run in blocks: a block's kernel rows
// come from one GEMM, are softmaxed and used, and dropped, so memory is O(block * N) on
// top of O(N * D), never N x N; the backward recomputes them (flash-attention style),
// but not m = P X: the saved output gives it.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <cmath>
#include <limits>
#include <vector>

#include "segsort/checks.h"

namespace segsort {

inline void check_blurring_mean_shift_step_inputs(const at::Tensor& x, const c10::optional<at::Tensor>& lengths,
                                                  double bandwidth, double eta) {
  check_floating(x, "x");
  SEGSORT_CHECK_ARG(x.dim() == 3, "x must have shape (B, N, D), got ", x.sizes());
  if (lengths.has_value()) {
    check_int64(*lengths, "lengths");
    check_same_device(x, "x", *lengths, "lengths");
    SEGSORT_CHECK_ARG(lengths->dim() == 1 && lengths->size(0) == x.size(0), "lengths must have shape (B,) = (",
                      x.size(0), ",), got ", lengths->sizes());
  }
  SEGSORT_CHECK_ARG(std::isfinite(bandwidth) && bandwidth > 0, "bandwidth must be a finite number > 0, got ",
                    bandwidth);
  // The logits bandwidth * x_i . x_j of unit rows lie in [-bandwidth, bandwidth] and their
  // distances from the row max in [-2 bandwidth, 0]: finite in the compute type up to here.
  const double max_bandwidth = x.scalar_type() == at::kDouble ? std::numeric_limits<double>::max() / 2
                                                              : std::numeric_limits<float>::max() / 2;
  SEGSORT_CHECK_ARG(bandwidth <= max_bandwidth, "bandwidth must be <= ", max_bandwidth, " (half the largest ",
                    x.scalar_type() == at::kDouble ? "double" : "float", ", the compute type of ", x.scalar_type(),
                    " x), got ", bandwidth);
  SEGSORT_CHECK_ARG(eta > 0 && eta <= 1, "eta must be in (0, 1], got ", eta);
  // Per point, in the compute type: the copy of x, out, the gradient, and on CPU a key and
  // value partial for each of up to 8 row groups of its image; the norm.
  const int64_t acc_size = x.scalar_type() == at::kDouble ? 8 : 4;
  check_fits_in_memory(x.device(),
                       checked_sum(checked_product({x.size(0), x.size(1), x.size(2), 11 * acc_size}, "x"),
                                   checked_product({x.size(0), x.size(1), acc_size}, "x"), "x"),
                       "x");
}

// The backward's grad_out and the forward's out (B, N, D) and norms (B, N): floating, on
// the device of x.
inline void check_blurring_mean_shift_step_backward_inputs(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& out, const at::Tensor& norms,
    const c10::optional<at::Tensor>& lengths, double bandwidth, double eta) {
  check_blurring_mean_shift_step_inputs(x, lengths, bandwidth, eta);
  for (const auto& [t, name] :
       {std::pair<const at::Tensor&, const char*>{grad_out, "grad_out"}, {out, "out"}, {norms, "norms"}}) {
    check_floating(t, name);
    check_same_device(x, "x", t, name);
  }
  SEGSORT_CHECK_ARG(grad_out.sizes() == x.sizes(), "grad_out must have the shape of x ", x.sizes(), ", got ",
                    grad_out.sizes());
  SEGSORT_CHECK_ARG(out.sizes() == x.sizes(), "out must have the shape of x ", x.sizes(), ", got ", out.sizes());
  SEGSORT_CHECK_ARG(norms.dim() == 2 && norms.size(0) == x.size(0) && norms.size(1) == x.size(1),
                    "norms must have shape (B, N) = (", x.size(0), ", ", x.size(1), "), got ", norms.sizes());
}

// Valid points of each image, on the host: lengths (one sync, each checked to lie in
// [0, N]), or all N points without lengths.
inline std::vector<int64_t> mean_shift_lengths(const c10::optional<at::Tensor>& lengths, int64_t B, int64_t N) {
  if (!lengths.has_value()) return std::vector<int64_t>(B, N);
  const auto host = lengths->to(at::kCPU).contiguous();
  const int64_t* data = host.const_data_ptr<int64_t>();
  std::vector<int64_t> out(data, data + host.numel());
  for (const int64_t L : out) {
    SEGSORT_CHECK_ARG(L >= 0 && L <= N, "lengths must lie in [0, N = ", N, "], found ", L);
  }
  return out;
}

// One block of query rows [start, end) of one image's points xb (L, D): the new rows,
// normalised, into out_rows and their norms |y| into norm_rows.
inline void mean_shift_block_forward(const at::Tensor& xb, int64_t start, int64_t end, double bandwidth,
                                     double eta, at::Tensor out_rows, at::Tensor norm_rows) {
  const auto q = xb.slice(0, start, end);
  const auto p = at::softmax(at::mm(q * bandwidth, xb.t()), 1);
  const auto y = at::addmm(q, p, xb, 1 - eta, eta);
  const auto n = y.norm(2, 1, true);
  out_rows.copy_(y / n.clamp_min(kNormEps));
  norm_rows.copy_(n.squeeze(1));
}

// dL/dy of out = y / max(|y|, eps) from dL/dout: (dout - out (out . dout)) / |y|, the
// projection only where |y| >= eps. Rows along the last dimension; norms lack it.
inline at::Tensor mean_shift_grad_y(const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& norms) {
  const auto projected = grad_out - out * (out * grad_out).sum(-1, true);
  const auto n = norms.unsqueeze(-1);
  return at::where(n >= kNormEps, projected / n, grad_out / kNormEps);
}

// c_j = g_j . m_j for the softmax backward, g = dL/dm, without recomputing m = P X: the
// forward's y = (1 - eta) x + eta m is out * max(|y|, eps), so eta m = y - (1 - eta) x.
// Shapes (..., D) with norms (...,); returns (..., 1). Only for out saved in the compute
// type: a float16/bfloat16 out would carry its rounding into every kernel gradient.
inline at::Tensor mean_shift_grad_dot_mean(const at::Tensor& grad_m, const at::Tensor& x, const at::Tensor& out,
                                           const at::Tensor& norms, double eta) {
  const auto eta_m = out * norms.clamp_min(kNormEps).unsqueeze(-1) - x * (1 - eta);
  return (grad_m * eta_m).sum(-1, true).div_(eta);
}

// Backward of one block of query rows [start, end) given grad_m (L, D), the gradient of
// m_j = sum_i p_ji x_i, and c (L, 1) = rowsum(grad_m * m) (undefined: recomputed from
// m = P X here): the value and key roles reach every point (added to all_rows, (L, D)), the
// query role only the block's own rows (added to own_rows). Four GEMMs of the block's rows
// against all L points (five without c).
inline void mean_shift_block_backward(const at::Tensor& xb, const at::Tensor& grad_m, const at::Tensor& c,
                                      int64_t start, int64_t end, double bandwidth, at::Tensor all_rows,
                                      at::Tensor own_rows) {
  const auto q = xb.slice(0, start, end);
  const auto gm = grad_m.slice(0, start, end);
  const auto p = at::softmax(at::mm(q * bandwidth, xb.t()), 1);
  // dS = P * (G_m X^T - c), the softmax backward.
  const auto c_rows = c.defined() ? c.slice(0, start, end) : (gm * at::mm(p, xb)).sum(1, true);
  const auto ds = at::mm(gm, xb.t()).sub_(c_rows).mul_(p);
  // Accumulated by the GEMMs themselves (beta = 1): no (L, D) temporaries.
  all_rows.addmm_(p.t(), gm);                // value role
  all_rows.addmm_(ds.t(), q, 1, bandwidth);  // key role
  own_rows.addmm_(ds, xb, 1, bandwidth);     // query role
}

// Forward: out (B, N, D) and |y| (B, N) for the backward. Points past an image's length
// are copied through unchanged and take no part.
inline std::tuple<at::Tensor, at::Tensor> blurring_mean_shift_step_blocked(
    const at::Tensor& x_in, const c10::optional<at::Tensor>& lengths, double bandwidth, double eta,
    int64_t budget_elements) {
  const int64_t B = x_in.size(0), N = x_in.size(1);
  const auto type = at::toOpMathType(x_in.scalar_type());
  const auto x = x_in.to(type).contiguous();
  auto out = x.clone();
  auto norms = at::ones({B, N}, x.options());
  const auto valid = mean_shift_lengths(lengths, B, N);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = valid[b];
    if (L == 0) continue;
    const auto xb = x[b].slice(0, 0, L);
    const int64_t block = std::max<int64_t>(1, std::min<int64_t>(L, budget_elements / L));
    for (int64_t start = 0; start < L; start += block) {
      const int64_t end = std::min(L, start + block);
      mean_shift_block_forward(xb, start, end, bandwidth, eta, out[b].slice(0, start, end),
                               norms[b].slice(0, start, end));
    }
  }
  return {out.to(x_in.scalar_type()), norms};
}

// Backward of one step (derived in segsort_ext/ops/blurring_mean_shift.py): gradients of the query,
// key and value roles of every point, accumulated block by block in order.
inline at::Tensor blurring_mean_shift_step_backward_blocked(
    const at::Tensor& grad_out_in, const at::Tensor& x_in, const at::Tensor& out_in, const at::Tensor& norms,
    const c10::optional<at::Tensor>& lengths, double bandwidth, double eta, int64_t budget_elements) {
  const int64_t B = x_in.size(0), N = x_in.size(1);
  const auto type = at::toOpMathType(x_in.scalar_type());
  const auto x = x_in.to(type).contiguous();
  const auto grad_out = grad_out_in.to(type).contiguous();
  const auto out = out_in.to(type);
  const auto grad_y = mean_shift_grad_y(grad_out, out, norms.to(type));
  auto grad_x = grad_out.clone();  // points past the length: identity
  const auto valid = mean_shift_lengths(lengths, B, N);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = valid[b];
    if (L == 0) continue;
    const auto xb = x[b].slice(0, 0, L);
    auto gx = grad_x[b].slice(0, 0, L);
    gx.copy_(grad_y[b].slice(0, 0, L) * (1 - eta));
    const auto grad_m = grad_y[b].slice(0, 0, L) * eta;  // m_j = sum_i p_ji x_i
    const auto c = out_in.scalar_type() == type ? mean_shift_grad_dot_mean(grad_m, xb, out[b].slice(0, 0, L),
                                                                           norms[b].slice(0, 0, L).to(type), eta)
                                                : at::Tensor();
    const int64_t block = std::max<int64_t>(1, std::min<int64_t>(L, budget_elements / L));
    for (int64_t start = 0; start < L; start += block) {
      const int64_t end = std::min(L, start + block);
      mean_shift_block_backward(xb, grad_m, c, start, end, bandwidth, gx, gx.slice(0, start, end));
    }
  }
  return grad_x.to(x_in.scalar_type());
}

}  // namespace segsort
