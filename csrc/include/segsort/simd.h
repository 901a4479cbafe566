// SIMD helpers of the CPU kernels. A kernel is written once with GCC vector extensions,
// templated on the vector width, compiled per width under a target attribute, and the
// widest one this CPU runs is picked at run time (one binary for every x86-64 machine).
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdlib>
#include <string>
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
inline int64_t cpu_simd_bytes() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return 64;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 32;
  return 16;
}

// The width the kernels use: cpu_simd_bytes(), or the width SEGSORT_SIMD names
// ("baseline", "avx2", "avx512"), so that one machine can run the tests of every width.
// Python (segsort_ext.ops._extension) validates the variable before the first kernel runs;
// a value it has not validated (or a width this CPU lacks) stops here with its reason.
inline int64_t simd_bytes() {
  static const int64_t bytes = [] {
    const int64_t widest = cpu_simd_bytes();
    const char* asked = std::getenv("SEGSORT_SIMD");
    if (asked == nullptr || *asked == '\0') return widest;
    const std::string name(asked);
    const int64_t wanted = name == "baseline" ? 16 : name == "avx2" ? 32 : name == "avx512" ? 64 : 0;
    TORCH_CHECK(wanted != 0, "SEGSORT_SIMD must be baseline, avx2 or avx512, got '", name, "'");
    TORCH_CHECK(wanted <= widest, "SEGSORT_SIMD=", name, " but this CPU runs at most ", widest * 8,
                "-bit vectors");
    return wanted;
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
