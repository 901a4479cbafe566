// SIMD helpers of the CPU kernels. A kernel is written once with GCC vector extensions,
// templated on the vector width, compiled per width under a target attribute, and the
// widest one this CPU runs is picked at run time (one binary for every x86-64 machine).
#pragma once

#include <cstdint>
#include <type_traits>

#define SEGSORT_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define SEGSORT_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace segsort {

template <typename T, int kBytes>
struct Simd {
  typedef T type __attribute__((vector_size(kBytes)));
  // For loads and stores at any element-aligned address of T data.
  typedef T unaligned __attribute__((vector_size(kBytes), aligned(sizeof(T)), may_alias));
};

// The SIMD vector of kBytes at p (T data, element-aligned).
template <int kBytes, typename T>
__attribute__((always_inline)) inline typename Simd<std::remove_const_t<T>, kBytes>::unaligned& vec_at(T* p) {
  return *reinterpret_cast<typename Simd<std::remove_const_t<T>, kBytes>::unaligned*>(
      const_cast<std::remove_const_t<T>*>(p));
}

// Labels inside a lane-wise argmax: integers as wide as T, so compare masks and label
// vectors have the same lanes.
template <typename T>
using label_t = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;

// The vector width in bytes of the widest kernel this CPU runs: 64 (AVX-512), 32
// (AVX2 + FMA) or 16 (baseline x86-64).
inline int64_t simd_bytes() {
  static const int64_t bytes = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
      return int64_t{64};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return int64_t{32};
    return int64_t{16};
  }();
  return bytes;
}

// The kernel of simd_bytes()'s width among the three compiled ones.
template <typename Kernel>
Kernel widest(Kernel avx512, Kernel avx2, Kernel baseline) {
  const int64_t bytes = simd_bytes();
  return bytes == 64 ? avx512 : bytes == 32 ? avx2 : baseline;
}

}  // namespace segsort
