// Pieces of spherical_kmeans shared by the CPU and CUDA kernels, so both compute the
// same pixel features, initial cells and centroid updates.
#pragma once

#include <cmath>
#include <cstdint>

#include "segsort/segment_math.h"

namespace segsort {

// Position channel of pixel index i along an axis of n pixels, linear over [-0.5, 0.5]
// (as torch.linspace(-0.5, 0.5, n), -0.5 when n == 1); reference.py uses the same formula.
template <typename acc_t>
SEGSORT_HOST_DEVICE acc_t pixel_coordinate(int64_t i, int64_t n) {
  return n > 1 ? acc_t(i) / acc_t(n - 1) - acc_t(0.5) : acc_t(-0.5);
}

// Grid cell of pixel (y, x): floor(y * gh / H) * gw + floor(x * gw / W).
SEGSORT_HOST_DEVICE int64_t grid_cell(int64_t y, int64_t x, int64_t H, int64_t W, int64_t gh,
                                      int64_t gw) {
  return (y * gh / H) * gw + (x * gw / W);
}

// New centroid from a cluster's feature sum: the normalised sum when the cluster has
// members, else the previous centroid (kept as is).
template <typename acc_t>
SEGSORT_HOST_DEVICE void update_centroid(const acc_t* sum, acc_t count, int64_t F, acc_t* centroid) {
  if (!(count > acc_t(0))) return;
  acc_t sq = 0;
  for (int64_t j = 0; j < F; ++j) sq += sum[j] * sum[j];
  const acc_t n = std::sqrt(sq);
  const acc_t scale = acc_t(1) / (n > acc_t(kNormEps) ? n : acc_t(kNormEps));
  for (int64_t j = 0; j < F; ++j) centroid[j] = sum[j] * scale;
}

}  // namespace segsort
