// segment_mean's argument checks and per-segment arithmetic, shared by the CPU and CUDA
// kernels so that both backends compute bit-for-bit the same formula from the same sums.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>

#include "segsort/checks.h"

namespace segsort {

// segment_mean's inputs. Afterwards every id is < num_segments.
inline void check_segment_mean_inputs(const at::Tensor& x, const at::Tensor& ids, int64_t num_segments) {
  check_floating(x, "x");
  check_int64(ids, "ids");
  check_same_device(x, "x", ids, "ids");
  check_pixel_shapes(x.sizes(), ids.sizes());
  SEGSORT_CHECK_ARG(num_segments >= 0, "num_segments must be >= 0, got ", num_segments);
  // Before anything reads ids (which may be an expanded view of any size) or allocates:
  // the output (S, D) and denominators (S,) in the input type, their sums and counts in
  // the accumulation type; a strided ids is copied.
  const int64_t D = x.size(1), itemsize = int64_t(x.element_size());
  check_fits_in_memory(x.device(),
                       checked_product({num_segments, checked_sum(D, 1, "x"), itemsize + 8}, "num_segments"),
                       "num_segments");
  if (!ids.is_contiguous()) check_fits_in_memory(ids.device(), checked_product({ids.numel(), 8}, "ids"), "ids");
  check_ids_below(ids, "ids", num_segments, "num_segments");
}

// _segment_mean_backward's inputs: grad_out and out (S, D), denom (S,), ids matching x_shape.
inline void check_segment_mean_backward_inputs(const at::Tensor& grad_out, const at::Tensor& out,
                                               const at::Tensor& denom, const at::Tensor& ids,
                                               at::IntArrayRef x_shape) {
  check_floating(grad_out, "grad_out");
  check_like(out, "out", grad_out, "grad_out");
  check_like(denom, "denom", grad_out, "grad_out");
  check_int64(ids, "ids");
  check_same_device(grad_out, "grad_out", ids, "ids");
  SEGSORT_CHECK_ARG(grad_out.sizes() == out.sizes() && out.dim() == 2,
                    "grad_out must have the shape of out (S, D), got ", grad_out.sizes(), " and ", out.sizes());
  SEGSORT_CHECK_ARG(denom.dim() == 1 && denom.size(0) == out.size(0), "denom must have shape (S,) = (",
                    out.size(0), ",), got ", denom.sizes());
  check_pixel_shapes(x_shape, ids.sizes(), "x_shape");
  SEGSORT_CHECK_ARG(x_shape[1] == out.size(1), "x_shape must have D = ", out.size(1), " channels, got ", x_shape);
  // grad_x and a contiguous copy of ids (which may be an expanded view of any size).
  const int64_t pixels = ids.numel(), itemsize = int64_t(grad_out.element_size());
  check_fits_in_memory(grad_out.device(),
                       checked_sum(checked_product({pixels, out.size(1), itemsize}, "x_shape"),
                                   checked_product({pixels, 8}, "x_shape"), "x_shape"),
                       "x_shape");
  check_ids_below(ids, "ids", out.size(0), "S");
}

// From a segment's feature sum (and member count) write its output row and its
// denominator: the norm of the sum when normalising (F.normalize, eps kNormEps), the
// member count for a plain mean. An empty segment has a zero sum and gives a zero row.
template <typename acc_t, typename out_t>
SEGSORT_HOST_DEVICE void segment_mean_row(const acc_t* sum, int64_t D, acc_t count, bool normalize, out_t* out,
                                          out_t* denom) {
  acc_t d;
  acc_t scale;
  if (normalize) {
    acc_t sq = 0;
    for (int64_t k = 0; k < D; ++k) sq += sum[k] * sum[k];
    d = std::sqrt(sq);
    scale = acc_t(1) / (d < acc_t(kNormEps) ? acc_t(kNormEps) : d);  // a NaN norm stays NaN
  } else {
    d = count;
    scale = acc_t(1) / (count > acc_t(1) ? count : acc_t(1));
  }
  for (int64_t k = 0; k < D; ++k) out[k] = static_cast<out_t>(sum[k] * scale);
  *denom = static_cast<out_t>(d);
}

// Gradient of one output row with respect to its segment's sum. Normalising:
// y = s / max(|s|, eps), so ds = (dy - y (y . dy)) / |s| where |s| >= eps (the clamp
// passes the gradient at equality, as torch's clamp_min does) and dy / eps below it.
// Mean: ds = dy / max(count, 1).
template <typename acc_t, typename in_t>
SEGSORT_HOST_DEVICE void segment_mean_row_grad(const in_t* dy, const in_t* y, acc_t denom, int64_t D,
                                               bool normalize, acc_t* ds) {
  if (!normalize) {
    const acc_t scale = acc_t(1) / (denom > acc_t(1) ? denom : acc_t(1));
    for (int64_t k = 0; k < D; ++k) ds[k] = static_cast<acc_t>(dy[k]) * scale;
    return;
  }
  if (!(denom < acc_t(kNormEps))) {  // a NaN norm takes this branch: its gradient is NaN
    acc_t dot = 0;
    for (int64_t k = 0; k < D; ++k) dot += static_cast<acc_t>(y[k]) * static_cast<acc_t>(dy[k]);
    const acc_t scale = acc_t(1) / denom;
    for (int64_t k = 0; k < D; ++k) ds[k] = (static_cast<acc_t>(dy[k]) - static_cast<acc_t>(y[k]) * dot) * scale;
  } else {
    for (int64_t k = 0; k < D; ++k) ds[k] = static_cast<acc_t>(dy[k]) / acc_t(kNormEps);
  }
}

}  // namespace segsort
