// Argument checks and small helpers shared by every op, CPU and CUDA. A failed check
// raises ValueError (TORCH_CHECK_VALUE) or TypeError (TORCH_CHECK_TYPE) in Python, and
// its message names the argument and what was expected.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/util/safe_numerics.h>

#include <cmath>
#include <initializer_list>
#include <limits>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#if defined(__CUDACC__)
#define SEGSORT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SEGSORT_HOST_DEVICE inline
#endif

namespace segsort {

// The eps of F.normalize: a vector shorter than this is divided by kNormEps.
constexpr double kNormEps = 1e-12;

#define SEGSORT_CHECK_ARG(cond, ...) TORCH_CHECK_VALUE(cond, __VA_ARGS__)

inline void check_int64(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
}

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name, " must be a floating point tensor, got ",
                   t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  SEGSORT_CHECK_ARG(a.device() == b.device(), a_name, " (", a.device(), ") and ", b_name, " (", b.device(),
                    ") must be on the same device");
}

// t has the dtype and device of ref (kernels read both through one scalar type).
inline void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), name, " must have the dtype of ", ref_name, " (",
                   ref.scalar_type(), "), got ", t.scalar_type());
  check_same_device(ref, ref_name, t, name);
}

inline void check_finite(double value, const char* name) {
  SEGSORT_CHECK_ARG(std::isfinite(value), name, " must be finite, got ", value);
}

// The product of sizes derived from user values (S * D, B * K * F, ...), refused with a
// ValueError naming the argument `name` when it overflows int64, so that nothing is ever
// sized or indexed from a wrapped value. A zero factor makes it 0 (an empty input).
inline int64_t checked_product(std::initializer_list<int64_t> factors, const char* name) {
  int64_t product = 1;
  bool overflow = false;
  for (const int64_t f : factors) {
    if (f == 0) return 0;
    overflow = overflow || c10::mul_overflows(product, f, &product);
  }
  SEGSORT_CHECK_ARG(!overflow, name, " is too large: a size derived from it overflows int64");
  return product;
}

inline int64_t checked_sum(int64_t a, int64_t b, const char* name) {
  int64_t sum = 0;
  SEGSORT_CHECK_ARG(!c10::add_overflows(a, b, &sum), name,
                    " is too large: a size derived from it overflows int64");
  return sum;
}

// Total memory of a device in bytes: physical RAM for the CPU (unknown: no limit).
inline int64_t device_memory_bytes(const at::Device& device) {
  if (device.is_cpu()) {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page_size > 0) return checked_product({pages, page_size}, "physical memory");
#endif
    return std::numeric_limits<int64_t>::max();
  }
  const size_t total = c10::getDeviceAllocator(device.type())->getMemoryInfo(device.index()).second;
  return static_cast<int64_t>(std::min<size_t>(total, std::numeric_limits<int64_t>::max()));
}

// Refuses, before anything is allocated, an op whose buffers (`bytes`, sized by the
// argument `name`) exceed the device's total memory: such a size can never succeed, and
// the allocator's error would not say which argument is wrong (or, where the OS
// overcommits, the process would be killed once the pages are touched).
inline void check_fits_in_memory(const at::Device& device, int64_t bytes, const char* name) {
  if (bytes < (int64_t(1) << 30)) return;  // every device has a GiB: skip the query
  const int64_t total = device_memory_bytes(device);
  const auto gib = [](int64_t n) { return std::to_string((n + (int64_t(1) << 29)) >> 30) + " GiB"; };
  SEGSORT_CHECK_ARG(bytes <= total, name, " is too large: the op needs ", gib(bytes),
                    " of buffers, more than the ", gib(total), " of memory of ", device);
}

// Checks every id is < num_segments (negative ids mark ignored pixels). One sync on CUDA:
// the kernels also skip out-of-range ids, so nothing is ever written out of bounds.
inline void check_ids_below(const at::Tensor& ids, const char* name, int64_t num_segments,
                            const char* bound_name) {
  if (ids.numel() == 0) return;
  const int64_t max_id = ids.max().item<int64_t>();
  SEGSORT_CHECK_ARG(max_id < num_segments, name, " must be < ", bound_name, " = ", num_segments, ", found ",
                    max_id);
}

// Checks that ids matches x: x (B, D, H, W) with ids (B, H, W), or x (N, D) with ids (N,).
// x_name: the argument that gave x's shape.
inline void check_pixel_shapes(at::IntArrayRef x, at::IntArrayRef ids, const char* x_name = "x") {
  if (x.size() == 4) {
    SEGSORT_CHECK_ARG(ids.size() == 3 && ids[0] == x[0] && ids[1] == x[2] && ids[2] == x[3],
                      "ids must have shape (B, H, W) = (", x[0], ", ", x[2], ", ", x[3], ") to match ", x_name,
                      " of shape ", x, ", got ", ids);
    return;
  }
  SEGSORT_CHECK_ARG(x.size() == 2, x_name, " must have shape (B, D, H, W) or (N, D), got ", x);
  SEGSORT_CHECK_ARG(ids.size() == 1 && ids[0] == x[0], "ids must have shape (N,) = (", x[0], ",) to match ",
                    x_name, " of shape ", x, ", got ", ids);
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
  return {x_bdp.size(0), x_bdp.size(1), x_bdp.size(2), x_bdp.stride(0), x_bdp.stride(1), x_bdp.stride(2)};
}

}  // namespace segsort
