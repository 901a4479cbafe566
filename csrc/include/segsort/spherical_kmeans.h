// spherical_kmeans's argument checks and the per-pixel and per-cluster arithmetic shared by
// the CPU and CUDA kernels, so both compute the same features, initial cells and centroids.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/safe_numerics.h>

#include <cmath>
#include <cstdint>

#include "segsort/checks.h"

namespace segsort {

inline void check_spherical_kmeans_inputs(const at::Tensor& x, const c10::optional<at::Tensor>& mask,
                                          const c10::optional<at::Tensor>& init, int64_t grid_h, int64_t grid_w,
                                          int64_t iters, double coord_weight, double tol) {
  check_floating(x, "x");
  SEGSORT_CHECK_ARG(x.dim() == 4, "x must have shape (B, D, H, W), got ", x.sizes());
  SEGSORT_CHECK_ARG(grid_h >= 1 && grid_w >= 1, "grid must be two ints >= 1, got (", grid_h, ", ", grid_w, ")");
  // K = grid_h * grid_w, and the cell arithmetic y * grid_h, x * grid_w, must fit int64.
  int64_t K = 0, unused = 0;
  SEGSORT_CHECK_ARG(!c10::mul_overflows(grid_h, grid_w, &K) && !c10::mul_overflows(x.size(2), grid_h, &unused) &&
                        !c10::mul_overflows(x.size(3), grid_w, &unused),
                    "grid (", grid_h, ", ", grid_w, ") is too large for images of ", x.size(2), " x ", x.size(3),
                    " pixels");
  SEGSORT_CHECK_ARG(iters >= 1, "iters must be >= 1, got ", iters);
  check_finite(coord_weight, "coord_weight");
  SEGSORT_CHECK_ARG(!std::isnan(tol), "tol must be a number (< 0: no early stop), got ", tol);
  const std::vector<int64_t> map_shape{x.size(0), x.size(2), x.size(3)};
  if (mask.has_value()) {
    TORCH_CHECK_TYPE(mask->scalar_type() == at::kBool, "mask must be a bool tensor, got ", mask->scalar_type());
    check_same_device(x, "x", *mask, "mask");
    SEGSORT_CHECK_ARG(mask->sizes() == at::IntArrayRef(map_shape),
                      "mask must have shape (B, H, W) = ", at::IntArrayRef(map_shape), ", got ", mask->sizes());
  }
  if (init.has_value()) {
    check_int64(*init, "init");
    check_same_device(x, "x", *init, "init");
    SEGSORT_CHECK_ARG(init->sizes() == at::IntArrayRef(map_shape),
                      "init must have shape (B, H, W) = ", at::IntArrayRef(map_shape), ", got ", init->sizes());
  }
  // Per pixel: the features, label, mask and init; per image and cluster: the centroids
  // (output and accumulation type), their sums and the CPU's transposed copy, and a count.
  const int64_t B = x.size(0), F = checked_sum(x.size(1), 2, "x"), P = x.size(2) * x.size(3);
  const int64_t itemsize = int64_t(x.element_size()), acc_size = x.scalar_type() == at::kDouble ? 8 : 4;
  check_fits_in_memory(
      x.device(), checked_sum(checked_product({B, P, F, acc_size}, "x"), checked_product({B, P, 17}, "x"), "x"),
      "x");
  check_fits_in_memory(x.device(),
                       checked_sum(checked_product({B, K, F, itemsize + 3 * acc_size}, "grid"),
                                   checked_product({B, K, 8}, "grid"), "grid"),
                       "grid");
  if (init.has_value()) check_ids_below(*init, "init labels", K, "K = grid_h * grid_w");
}

// Position channel of pixel index i along an axis of n pixels, linear over [-0.5, 0.5]
// (as torch.linspace(-0.5, 0.5, n), -0.5 when n == 1); reference.py uses the same formula.
template <typename acc_t>
SEGSORT_HOST_DEVICE acc_t pixel_coordinate(int64_t i, int64_t n) {
  return n > 1 ? acc_t(i) / acc_t(n - 1) - acc_t(0.5) : acc_t(-0.5);
}

// Grid cell of pixel (y, x): floor(y * gh / H) * gw + floor(x * gw / W).
SEGSORT_HOST_DEVICE int64_t grid_cell(int64_t y, int64_t x, int64_t H, int64_t W, int64_t gh, int64_t gw) {
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
