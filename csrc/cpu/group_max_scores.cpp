// group_max_scores on CPU: for each query and each group of `group` consecutive bank rows,
// the largest inner product, with no score ever written to memory. It is the pruning scan
// of exact kNN search (segsort_ext.retrieval), a (Q x D) x (D x M) GEMM whose output is
// reduced by `group` as it is computed: the bare GEMM's (Q, M) output alone is 4 Q M
// bytes of memory traffic (1.2 GB for the vote benchmark), this op writes 4 Q M / group.
//
// Queries are packed once, transposed and zero-padded to whole SIMD vectors, (D, Q'). A
// register tile holds the scores of kP query vectors against kRows bank rows: one FMA per
// accumulator per d, the bank element broadcast from memory, and the max over the rows is
// a lane-wise max of accumulators, with no horizontal reduction. Groups are the outer loop
// (a group of 64 rows x D = 64 is 16 KiB: it stays in L1 while every query tile passes
// over it), and threads take contiguous ranges of groups, so they share no output lines
// and each score is computed the same way whatever the thread count. Each score is a dot
// product accumulated over d in order with FMAs: like any summation order, within
// gamma_D |q| |x| of the exact value (the rescoring bound of the retrieval scan).
//
// Written with GCC vector extensions, compiled for AVX-512, AVX2+FMA and baseline x86-64,
// picked at run time (as spherical_kmeans.cpp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "segsort/checks.h"
#include "segsort/simd.h"

namespace segsort {
namespace {

// The packed queries, the bank, and the groups [group0, group1) whose maxima go to
// out[(g - group0) * q_stride + q] (a query-contiguous buffer of the caller's).
template <typename T>
struct Groups {
  const T* queries_t;  // (D, q_stride), zero-padded queries
  int64_t q_vectors, q_stride;
  const T* bank;  // (M, D)
  int64_t M, D, group, group0, group1;
  T* out;
};

// The scores of kP query vectors (at q, stride q_stride per d) against kRows bank rows
// (at rows, D apart), folded into best (max) and total (sum). The max alone drops a NaN
// score, so the sum tells when one occurred; kExact adds the lane-wise NaN check that
// lets it win (as amax).
template <typename T, int kBytes, int kP, int kRows, bool kExact>
__attribute__((always_inline)) inline void tile_max(const T* q, int64_t q_stride, const T* rows, int64_t D,
                                                    typename Simd<T, kBytes>::type* best,
                                                    typename Simd<T, kBytes>::type* total) {
  using V = typename Simd<T, kBytes>::type;
  constexpr int64_t kLanes = kBytes / sizeof(T);
  V acc[kP][kRows] = {};
  for (int64_t d = 0; d < D; ++d) {
    V qd[kP];
    for (int64_t p = 0; p < kP; ++p) qd[p] = vec_at<kBytes>(q + d * q_stride + p * kLanes);
    for (int64_t r = 0; r < kRows; ++r) {
      const T x = rows[r * D + d];
      for (int64_t p = 0; p < kP; ++p) acc[p][r] += qd[p] * x;
    }
  }
  // One max and one add per accumulator: GCC lowers a NaN-aware select (a != a, or the
  // exponent bits) to scalar code here (3x slower), so that check waits for the rare
  // exact pass.
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t p = 0; p < kP; ++p) {
      best[p] = acc[p][r] > best[p] ? acc[p][r] : best[p];  // a NaN best stays
      total[p] += acc[p][r];
      if constexpr (kExact)
        for (int64_t l = 0; l < kLanes; ++l)
          if (std::isnan(acc[p][r][l])) best[p][l] = acc[p][r][l];
    }
}

// The maxima of kP query vectors (at q) over bank rows [row0, row1), stored at out. The
// sum of the scores is NaN when one of them is (or +inf meets -inf): then the group is
// scanned again with the exact NaN check.
template <typename T, int kBytes, int kP, int kRows, bool kExact = false>
__attribute__((always_inline)) inline void query_tile(const T* q, int64_t q_stride, const T* bank, int64_t D,
                                                      int64_t row0, int64_t row1, T* out) {
  using V = typename Simd<T, kBytes>::type;
  constexpr int64_t kLanes = kBytes / sizeof(T);
  V best[kP], total[kP] = {};
  for (int64_t p = 0; p < kP; ++p) best[p] = V{} - std::numeric_limits<T>::infinity();
  int64_t r = row0;
  for (; r + kRows <= row1; r += kRows)
    tile_max<T, kBytes, kP, kRows, kExact>(q, q_stride, bank + r * D, D, best, total);
  for (; r < row1; ++r) tile_max<T, kBytes, kP, 1, kExact>(q, q_stride, bank + r * D, D, best, total);
  if constexpr (!kExact) {
    V any = V{};
    for (int64_t p = 0; p < kP; ++p) any += total[p];
    for (int64_t l = 0; l < kLanes; ++l)
      if (std::isnan(any[l])) return query_tile<T, kBytes, kP, kRows, true>(q, q_stride, bank, D, row0, row1, out);
  }
  for (int64_t p = 0; p < kP; ++p) vec_at<kBytes>(out + p * kLanes) = best[p];
}

// Query tiles of up to kMaxP vectors: 3 x 8 accumulators of AVX-512's 32 registers, 2 x 4
// of the 16 registers elsewhere. The query vectors are split into tiles as even as
// possible (13 vectors: 3, 3, 3, 2, 2), since a 1-vector tile does one load per FMA.
template <typename T, int kBytes>
__attribute__((always_inline)) inline void group_maxima(const Groups<T>& a) {
  constexpr int64_t kLanes = kBytes / sizeof(T), kMaxP = kBytes == 64 ? 3 : 2, kRows = kBytes == 64 ? 8 : 4;
  const int64_t tiles = (a.q_vectors + kMaxP - 1) / kMaxP;
  for (int64_t g = a.group0; g < a.group1; ++g) {
    const int64_t row0 = g * a.group, row1 = std::min(a.M, row0 + a.group);
    T* out = a.out + (g - a.group0) * a.q_stride;
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t v0 = a.q_vectors * t / tiles, v1 = a.q_vectors * (t + 1) / tiles;
      const T* q = a.queries_t + v0 * kLanes;
      switch (v1 - v0) {
        case 3:
          if constexpr (kMaxP >= 3)
            query_tile<T, kBytes, 3, kRows>(q, a.q_stride, a.bank, a.D, row0, row1, out + v0 * kLanes);
          break;
        case 2: query_tile<T, kBytes, 2, kRows>(q, a.q_stride, a.bank, a.D, row0, row1, out + v0 * kLanes); break;
        default: query_tile<T, kBytes, 1, kRows>(q, a.q_stride, a.bank, a.D, row0, row1, out + v0 * kLanes);
      }
    }
  }
}

#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")  // FMAs: -std=c++17 turns contraction off
template <typename T>
SEGSORT_TARGET_AVX512 void group_maxima_avx512(const Groups<T>& a) {
  group_maxima<T, 64>(a);
}
template <typename T>
SEGSORT_TARGET_AVX2 void group_maxima_avx2(const Groups<T>& a) {
  group_maxima<T, 32>(a);
}
template <typename T>
void group_maxima_baseline(const Groups<T>& a) {
  group_maxima<T, 16>(a);
}
#pragma GCC pop_options

// The widest kernel this CPU runs, and its SIMD width in bytes.
template <typename T>
std::pair<void (*)(const Groups<T>&), int64_t> pick_group_maxima() {
  return {widest(&group_maxima_avx512<T>, &group_maxima_avx2<T>, &group_maxima_baseline<T>), simd_bytes()};
}

// Groups per unit of work: a (groups, q_stride) buffer of maxima, transposed into the
// output's rows when done.
constexpr int64_t kChunkGroups = 64;

void check_group_max_scores_inputs(const at::Tensor& queries, const at::Tensor& bank, int64_t group) {
  TORCH_CHECK_TYPE(queries.scalar_type() == at::kFloat || queries.scalar_type() == at::kDouble,
                   "queries must be float32 or float64, got ", queries.scalar_type());
  check_like(bank, "bank", queries, "queries");
  SEGSORT_CHECK_ARG(queries.dim() == 2, "queries must have shape (Q, D), got ", queries.sizes());
  SEGSORT_CHECK_ARG(bank.dim() == 2 && bank.size(1) == queries.size(1),
                    "bank must have shape (M, D = ", queries.size(1), ") to match queries, got ", bank.sizes());
  SEGSORT_CHECK_ARG(group >= 1, "group must be >= 1, got ", group);
}

at::Tensor group_max_scores_cpu(const at::Tensor& queries_in, const at::Tensor& bank_in, int64_t group) {
  check_group_max_scores_inputs(queries_in, bank_in, group);
  const int64_t Q = queries_in.size(0), D = queries_in.size(1), M = bank_in.size(0);
  const int64_t G = M / group + (M % group != 0);
  auto out = at::empty({Q, G}, queries_in.options());
  if (out.numel() == 0) return out;
  const auto queries = queries_in.contiguous(), bank = bank_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(queries.scalar_type(), "group_max_scores_cpu", [&] {
    const auto picked = pick_group_maxima<scalar_t>();
    const auto kernel = picked.first;
    const int64_t lanes = picked.second / int64_t(sizeof(scalar_t)), q_vectors = (Q + lanes - 1) / lanes;
    const int64_t q_stride = q_vectors * lanes;
    std::vector<scalar_t> queries_t(D * q_stride, scalar_t(0));
    const scalar_t* qp = queries.const_data_ptr<scalar_t>();
    for (int64_t q = 0; q < Q; ++q)
      for (int64_t d = 0; d < D; ++d) queries_t[d * q_stride + q] = qp[q * D + d];
    const scalar_t* bp = bank.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, G, kChunkGroups, [&](int64_t g0, int64_t g1) {
      std::vector<scalar_t> maxima(kChunkGroups * q_stride);
      for (int64_t c0 = g0; c0 < g1; c0 += kChunkGroups) {
        const int64_t c1 = std::min(g1, c0 + kChunkGroups);
        kernel({queries_t.data(), q_vectors, q_stride, bp, M, D, group, c0, c1, maxima.data()});
        for (int64_t q = 0; q < Q; ++q)
          for (int64_t g = c0; g < c1; ++g) op[q * G + g] = maxima[(g - c0) * q_stride + q];
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CPU, m) { m.impl("group_max_scores", &group_max_scores_cpu); }

}  // namespace segsort
