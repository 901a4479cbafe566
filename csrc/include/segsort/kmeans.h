// Input checks of spherical_kmeans, shared by both backends.
#pragma once

#include <ATen/ATen.h>

#include "segsort/checks.h"

namespace segsort {

inline void check_kmeans_inputs(const at::Tensor& x, const c10::optional<at::Tensor>& mask,
                                const c10::optional<at::Tensor>& init, int64_t grid_h,
                                int64_t grid_w, int64_t iters) {
  check_floating(x, "x");
  SEGSORT_CHECK_ARG(x.dim() == 4, "x must have shape (B, D, H, W), got ", x.sizes());
  SEGSORT_CHECK_ARG(grid_h >= 1 && grid_w >= 1, "grid must be two ints >= 1, got (", grid_h, ", ",
                    grid_w, ")");
  SEGSORT_CHECK_ARG(iters >= 1, "iters must be >= 1, got ", iters);
  const std::vector<int64_t> map_shape{x.size(0), x.size(2), x.size(3)};
  if (mask.has_value()) {
    TORCH_CHECK_TYPE(mask->scalar_type() == at::kBool, "mask must be a bool tensor, got ",
                     mask->scalar_type());
    check_same_device(x, "x", *mask, "mask");
    SEGSORT_CHECK_ARG(mask->sizes() == at::IntArrayRef(map_shape), "mask must have shape (B, H, W) = ",
                      at::IntArrayRef(map_shape), ", got ", mask->sizes());
  }
  if (init.has_value()) {
    check_int64(*init, "init");
    check_same_device(x, "x", *init, "init");
    SEGSORT_CHECK_ARG(init->sizes() == at::IntArrayRef(map_shape), "init must have shape (B, H, W) = ",
                      at::IntArrayRef(map_shape), ", got ", init->sizes());
    if (init->numel() > 0) {
      const int64_t max_label = init->max().item<int64_t>();
      SEGSORT_CHECK_ARG(max_label < grid_h * grid_w, "init labels must be < K = grid_h * grid_w = ",
                        grid_h * grid_w, ", found ", max_label);
    }
  }
}

}  // namespace segsort
