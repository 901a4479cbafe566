// Shared-memory tiles for the fused CUDA kernels that stream one set of vectors past a
// tile of another (mean shift: points past query points; vMF losses: prototypes past
// pixels), in the manner of flash attention. A block's 256 threads are 16 x 16: a thread
// owns rows ty * kRM + i and columns tx + 16 j of a (16 kRM) x (16 kRN) tile, and the
// 16 threads of a row sit in one half-warp, so row reductions are shuffles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <c10/core/ScalarType.h>

#include "segsort/cuda_utils.h"

namespace segsort {

constexpr size_t kSharedBytes = 48 * 1024;
constexpr int kTileThreads = 256;

struct Tiling {
  int rm, rn;  // rows and columns per thread: tiles of 16 rm query rows x 16 rn key rows
};

// Shared memory of a kernel holding q_tiles (16 rm x D) tiles, k_tiles (16 rn x D) tiles,
// p_tiles (16 rm x 16 rn) tiles and `vectors` per-column vectors of 16 rn 8-byte values.
// Rows are padded by one element so that the 16 threads of a half-warp reading 16
// different rows hit 16 different banks.
template <typename T, int kD>
constexpr size_t shared_bytes(Tiling t, int q_tiles, int k_tiles, int p_tiles, int vectors) {
  return sizeof(T) * (size_t(q_tiles) * 16 * t.rm * (kD + 1) + size_t(k_tiles) * 16 * t.rn * (kD + 1) +
                      size_t(p_tiles) * 16 * t.rm * (16 * t.rn + 1)) +
         size_t(8) * vectors * 16 * t.rn;
}

// The largest tiling whose shared memory fits, {0, 0} if none does.
template <typename T, int kD>
constexpr Tiling choose_tiling(int q_tiles, int k_tiles, int p_tiles, int vectors) {
  constexpr Tiling options[] = {{4, 4}, {4, 2}, {2, 2}, {2, 1}, {1, 1}};
  for (const Tiling& t : options) {
    if (shared_bytes<T, kD>(t, q_tiles, k_tiles, p_tiles, vectors) <= kSharedBytes) return t;
  }
  return {0, 0};
}

inline int64_t tiles_of(int64_t rows, Tiling t) { return (rows + 16 * t.rm - 1) / (16 * t.rm); }

// Calls f(std::integral_constant<int, kD>) for the smallest specialised kD >= D and returns
// true, or returns false when D > 128 (the callers' blocked fallback).
template <typename F>
bool with_feature_dim(int64_t D, const F& f) {
  if (D <= 8) return f(std::integral_constant<int, 8>{}), true;
  if (D <= 16) return f(std::integral_constant<int, 16>{}), true;
  if (D <= 32) return f(std::integral_constant<int, 32>{}), true;
  if (D <= 64) return f(std::integral_constant<int, 64>{}), true;
  if (D <= 128) return f(std::integral_constant<int, 128>{}), true;
  return false;
}

// Whether an op's fused kernels (Tilings<T, kD>::fused) take its compute type (float or
// double) and feature dim D; otherwise the op takes its blocked path.
template <template <typename, int> class Tilings>
bool fused_kernels_fit(at::ScalarType type, int64_t D) {
  bool fused = false;
  with_feature_dim(D, [&](auto kd) {
    constexpr int kD = decltype(kd)::value;
    fused = type == at::kDouble ? Tilings<double, kD>::fused : Tilings<float, kD>::fused;
  });
  return fused;
}

template <int kD>
constexpr int kColsPerThread = (kD + 15) / 16;  // feature columns tx + 16 k of a thread

template <int kD>
__device__ __forceinline__ bool owns_feature(int k) {
  return kD % 16 == 0 || (threadIdx.x & 15) + 16 * k < kD;
}

template <typename T>
__device__ __forceinline__ T row_max(T v) {
  for (int offset = 8; offset > 0; offset >>= 1) v = fmax(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

template <typename T>
__device__ __forceinline__ T row_sum(T v) {
  for (int offset = 8; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// Rows [row0, row0 + kRows) of a row-major (L, D) matrix into a shared tile; zero past L,
// past D and in rows where keep(row) is false, so padding adds nothing to any sum.
template <typename T, int kD, int kRows, typename Keep>
__device__ __forceinline__ void load_tile(T (*tile)[kD + 1], const T* __restrict__ rows, int64_t row0, int64_t L,
                                          int D, const Keep& keep) {
  for (int e = threadIdx.x; e < kRows * kD; e += kTileThreads) {
    const int r = e / kD, d = e % kD;
    const int64_t row = row0 + r;
    tile[r][d] = (row < L && d < D && keep(row)) ? rows[row * D + d] : T(0);
  }
}

template <typename T, int kD, int kRows>
__device__ __forceinline__ void load_tile(T (*tile)[kD + 1], const T* __restrict__ rows, int64_t row0, int64_t L,
                                          int D) {
  load_tile<T, kD, kRows>(tile, rows, row0, L, D, [](int64_t) { return true; });
}

// s[i][j] = a[ty * kRM + i] . b[tx + 16 j]
template <typename T, int kD, int kRM, int kRN>
__device__ __forceinline__ void tile_dot(const T (*a)[kD + 1], const T (*b)[kD + 1], T (&s)[kRM][kRN]) {
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
  for (int i = 0; i < kRM; ++i) {
#pragma unroll
    for (int j = 0; j < kRN; ++j) s[i][j] = T(0);
  }
#pragma unroll 8
  for (int d = 0; d < kD; ++d) {
    T av[kRM], bv[kRN];
#pragma unroll
    for (int i = 0; i < kRM; ++i) av[i] = a[ty * kRM + i][d];
#pragma unroll
    for (int j = 0; j < kRN; ++j) bv[j] = b[tx + 16 * j][d];
#pragma unroll
    for (int i = 0; i < kRM; ++i) {
#pragma unroll
      for (int j = 0; j < kRN; ++j) s[i][j] += av[i] * bv[j];
    }
  }
}

// acc[i][k] += sum_n w[ty * kRM + i][n] * v[n][tx + 16 k] over the kBN rows of v.
template <typename T, int kD, int kRM, int kBN>
__device__ __forceinline__ void tile_weighted_sum(const T (*w)[kBN + 1], const T (*v)[kD + 1],
                                                  T (&acc)[kRM][kColsPerThread<kD>]) {
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll 4
  for (int n = 0; n < kBN; ++n) {
    T wv[kRM];
#pragma unroll
    for (int i = 0; i < kRM; ++i) wv[i] = w[ty * kRM + i][n];
#pragma unroll
    for (int k = 0; k < kColsPerThread<kD>; ++k) {
      if (!owns_feature<kD>(k)) continue;
      const T vv = v[n][tx + 16 * k];
#pragma unroll
      for (int i = 0; i < kRM; ++i) acc[i][k] += wv[i] * vv;
    }
  }
}

// scale * acc, this thread's part of tile rows ty * kRM + i, into rows row0 + ty * kRM + i
// (those < rows) of a row-major (rows, D) matrix: added to it (kAdd) or stored.
template <bool kAdd, typename T, int kD, int kRM>
__device__ __forceinline__ void store_rows(const T (&acc)[kRM][kColsPerThread<kD>], T scale, T* __restrict__ out,
                                           int64_t row0, int64_t rows, int D) {
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
  for (int i = 0; i < kRM; ++i) {
    const int64_t row = row0 + ty * kRM + i;
    if (row >= rows) continue;
#pragma unroll
    for (int k = 0; k < kColsPerThread<kD>; ++k) {
      const int c = tx + 16 * k;
      if (!owns_feature<kD>(k) || c >= D) continue;
      T& target = out[row * D + c];
      target = kAdd ? target + scale * acc[i][k] : scale * acc[i][k];
    }
  }
}

}  // namespace segsort
