// Input checks and small helpers shared by the CPU and CUDA host functions.
#pragma once

#include <ATen/ATen.h>

namespace segsort {

// The eps of F.normalize: a vector shorter than this is divided by kNormEps.
constexpr double kNormEps = 1e-12;

// Checks raise c10::ValueError (Python ValueError) and name the argument.
#define SEGSORT_CHECK_ARG(cond, ...) TORCH_CHECK_VALUE(cond, __VA_ARGS__)

inline void check_int64(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
}

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name,
                   " must be a floating point tensor, got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                              const char* b_name) {
  SEGSORT_CHECK_ARG(a.device() == b.device(), a_name, " (", a.device(), ") and ", b_name, " (",
                    b.device(), ") must be on the same device");
}

// Checks every id is < num_segments (negative ids mark ignored pixels). One sync on CUDA:
// the kernels also skip out-of-range ids, so nothing is ever written out of bounds.
inline void check_ids_below(const at::Tensor& ids, int64_t num_segments) {
  if (ids.numel() == 0) return;
  const int64_t max_id = ids.max().item<int64_t>();
  SEGSORT_CHECK_ARG(max_id < num_segments, "ids must be < num_segments = ", num_segments,
                    ", found id ", max_id);
}

// Checks that ids matches x: x (B, D, H, W) with ids (B, H, W), or x (N, D) with ids (N,).
inline void check_pixel_shapes(at::IntArrayRef x, at::IntArrayRef ids) {
  if (x.size() == 4) {
    SEGSORT_CHECK_ARG(ids.size() == 3 && ids[0] == x[0] && ids[1] == x[2] && ids[2] == x[3],
                      "ids must have shape (B, H, W) = (", x[0], ", ", x[2], ", ", x[3],
                      ") to match x of shape ", x, ", got ", ids);
    return;
  }
  SEGSORT_CHECK_ARG(x.size() == 2, "x must have shape (B, D, H, W) or (N, D), got ", x);
  SEGSORT_CHECK_ARG(ids.size() == 1 && ids[0] == x[0], "ids must have shape (N,) = (", x[0],
                    ",) to match x of shape ", x, ", got ", ids);
}

// segment_mean_forward's inputs. Afterwards every id is < num_segments.
inline void check_segment_mean_forward(const at::Tensor& x, const at::Tensor& ids, int64_t num_segments) {
  check_floating(x, "x");
  check_int64(ids, "ids");
  check_same_device(x, "x", ids, "ids");
  check_pixel_shapes(x.sizes(), ids.sizes());
  SEGSORT_CHECK_ARG(num_segments >= 0, "num_segments must be >= 0, got ", num_segments);
  check_ids_below(ids, num_segments);
}

// segment_mean_backward's inputs: grad_out and out (S, D), denom (S,), ids matching x_shape.
inline void check_segment_mean_backward(const at::Tensor& grad_out, const at::Tensor& out,
                                        const at::Tensor& denom, const at::Tensor& ids,
                                        at::IntArrayRef x_shape) {
  check_floating(grad_out, "grad_out");
  check_int64(ids, "ids");
  check_same_device(grad_out, "grad_out", ids, "ids");
  SEGSORT_CHECK_ARG(grad_out.sizes() == out.sizes() && out.dim() == 2,
                    "grad_out must have the shape of out (S, D), got ", grad_out.sizes(), " and ",
                    out.sizes());
  SEGSORT_CHECK_ARG(denom.dim() == 1 && denom.size(0) == out.size(0),
                    "denom must have shape (S,), got ", denom.sizes());
  check_pixel_shapes(x_shape, ids.sizes());
  SEGSORT_CHECK_ARG(x_shape[1] == out.size(1), "x_shape must have D = ", out.size(1),
                    " channels, got ", x_shape);
  check_ids_below(ids, out.size(0));
}

// Pixel features as a (B, D, P) tensor, a view whenever strides allow (no copy for
// contiguous, channels-last or transposed inputs): x (B, D, H, W) gives (B, D, H*W);
// x (N, D) is one "image" of N pixels, (1, D, N).
inline at::Tensor pixels_bdp(const at::Tensor& x) {
  if (x.dim() == 4) return x.reshape({x.size(0), x.size(1), x.size(2) * x.size(3)});
  return x.t().unsqueeze(0);
}

// Sizes and element strides of a (B, D, P) tensor, for kernels that read it in place.
struct PixelView {
  int64_t B, D, P;
  int64_t sb, sd, sp;
};

inline PixelView pixel_view(const at::Tensor& x_bdp) {
  return {x_bdp.size(0), x_bdp.size(1), x_bdp.size(2),
          x_bdp.stride(0), x_bdp.stride(1), x_bdp.stride(2)};
}

}  // namespace segsort
