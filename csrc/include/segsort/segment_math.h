// Per-segment arithmetic shared by the CPU and CUDA kernels of segment_mean, so both
// backends compute bit-for-bit the same formula from the same sums.
#pragma once

#include <cmath>
#include <cstdint>

#include "segsort/checks.h"

#if defined(__CUDACC__)
#define SEGSORT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SEGSORT_HOST_DEVICE inline
#endif

namespace segsort {

// From a segment's feature sum (and member count) write its output row and its
// denominator: the norm of the sum when normalising (F.normalize, eps kNormEps), the
// member count for a plain mean. An empty segment has a zero sum and gives a zero row.
template <typename acc_t, typename out_t>
SEGSORT_HOST_DEVICE void segment_mean_row(const acc_t* sum, int64_t D, acc_t count,
                                          bool normalize, out_t* out, out_t* denom) {
  acc_t d;
  acc_t scale;
  if (normalize) {
    acc_t sq = 0;
    for (int64_t k = 0; k < D; ++k) sq += sum[k] * sum[k];
    d = std::sqrt(sq);
    scale = acc_t(1) / (d > acc_t(kNormEps) ? d : acc_t(kNormEps));
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
SEGSORT_HOST_DEVICE void segment_mean_row_grad(const in_t* dy, const in_t* y, acc_t denom,
                                               int64_t D, bool normalize, acc_t* ds) {
  if (!normalize) {
    const acc_t scale = acc_t(1) / (denom > acc_t(1) ? denom : acc_t(1));
    for (int64_t k = 0; k < D; ++k) ds[k] = static_cast<acc_t>(dy[k]) * scale;
    return;
  }
  if (denom >= acc_t(kNormEps)) {
    acc_t dot = 0;
    for (int64_t k = 0; k < D; ++k) dot += static_cast<acc_t>(y[k]) * static_cast<acc_t>(dy[k]);
    const acc_t scale = acc_t(1) / denom;
    for (int64_t k = 0; k < D; ++k)
      ds[k] = (static_cast<acc_t>(dy[k]) - static_cast<acc_t>(y[k]) * dot) * scale;
  } else {
    for (int64_t k = 0; k < D; ++k) ds[k] = static_cast<acc_t>(dy[k]) / acc_t(kNormEps);
  }
}

}  // namespace segsort
