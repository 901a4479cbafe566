// nearest_centroid on CPU: the E-step (and, with sums, the M-step) of dataset-level
// spherical k-means in one pass over the points. The rows go in fixed slices (a function
// of N only, so results do not depend on the thread count), each with its own cluster sums,
// folded in slice order at the end. Inside a slice, a register tile of rows is scored
// against every cluster by our own GEMM micro-kernel (rows broadcast, clusters in SIMD
// lanes from a packed panel of the centroids), the argmax over the tile's scores runs in
// L1, and the rows are added to their clusters' sums while still in cache: the (N, K)
// scores never reach memory and the points are read from memory once.
//
// Each score is one FMA chain over d = 0..D-1, the same whatever the vector width, so the
// AVX2 and AVX-512 kernels give bit-identical results (baseline x86-64 has no FMA: it
// rounds each product, agreeing to float rounding); no BLAS is involved.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "segsort/checks.h"
#include "segsort/simd.h"

namespace segsort {
namespace {

// Register tile: kTileRows rows x kTileVectors SIMD vectors of clusters, 12 accumulators of
// the 16 vector registers of AVX2 and baseline x86-64, 24 of AVX-512's 32. Clusters past
// the last whole tile go one vector at a time (zero-padded to a whole vector).
template <int kBytes>
constexpr int64_t kTileRows = kBytes == 64 ? 12 : 6;
constexpr int64_t kTileVectors = 2;
// Rows per slice (at most kMaxSlices slices, each with (K, D) sums): the parallel grain.
constexpr int64_t kRowsPerSlice = 4096, kMaxSlices = 64;

// Width of the cluster block starting at k0 of Kp (a multiple of `lanes`) padded clusters.
inline int64_t block_width(int64_t k0, int64_t Kp, int64_t lanes) {
  return k0 + kTileVectors * lanes <= Kp ? kTileVectors * lanes : lanes;
}

// The centroids packed for the micro-kernel: block by block (widths from block_width), each
// block a (D, width) panel stored from offset k0 * D, zero columns past K.
template <typename scalar_t>
std::vector<scalar_t> pack_centroids(const scalar_t* c, int64_t K, int64_t D, int64_t Kp, int64_t lanes) {
  std::vector<scalar_t> packed(Kp * D, scalar_t(0));
  for (int64_t k0 = 0; k0 < Kp; k0 += block_width(k0, Kp, lanes)) {
    const int64_t w = block_width(k0, Kp, lanes);
    for (int64_t j = 0; j < w && k0 + j < K; ++j)
      for (int64_t d = 0; d < D; ++d) packed[k0 * D + d * w + j] = c[(k0 + j) * D + d];
  }
  return packed;
}

template <typename scalar_t>
struct SliceArgs {
  const scalar_t* points;  // (N, D)
  const scalar_t* packed;  // (Kp * D) from pack_centroids
  int64_t D, K, Kp, row0, row1;
  bool finite_centroids;
  scalar_t* scores;  // (tile rows, Kp) buffer of this slice's thread
  scalar_t* rows;    // (tile rows, D) buffer of this slice's thread: the last partial tile
  scalar_t* best;    // (N,)
  int64_t* labels;   // (N,)
  scalar_t* sums;    // (K, D) of this slice, zeroed; nullptr: no sums
};

// torch.max's argmax of one row's K scores: the first maximum, or the first NaN.
template <typename scalar_t>
void argmax_with_nan(const scalar_t* s, int64_t K, scalar_t* best, int64_t* label) {
  scalar_t b = s[0];
  int64_t l = 0;
  for (int64_t k = 1; k < K && !std::isnan(b); ++k)
    if (s[k] > b || std::isnan(s[k])) b = s[k], l = k;
  *best = b;
  *label = l;
}

#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")  // FMAs: -std=c++17 turns contraction off

// scores[i * Kp + k0 + j] = x_i . c_{k0 + j} for the kRows rows at x (row stride D) and the
// kVectors * lanes clusters of the packed panel at `panel`. When `next` is given, the
// rows there are prefetched a cache line per row at a time, spread over the loop: a
// burst of a whole tile's prefetches stalled on the line fill buffers.
template <typename scalar_t, int kBytes, int64_t kRows, int64_t kVectors>
__attribute__((always_inline)) inline void score_block(const scalar_t* x, int64_t D, const scalar_t* panel,
                                                       int64_t Kp, int64_t k0, scalar_t* scores,
                                                       const scalar_t* next) {
  using V = typename Simd<scalar_t, kBytes>::type;
  constexpr int64_t kLanes = kBytes / sizeof(scalar_t), kWidth = kVectors * kLanes;
  constexpr int64_t kLine = 64 / sizeof(scalar_t);
  V acc[kRows][kVectors];
  for (int64_t i = 0; i < kRows; ++i)
    for (int64_t v = 0; v < kVectors; ++v) acc[i][v] = V{};
  for (int64_t d0 = 0; d0 < D; d0 += kLine) {
    if (next)
      for (int64_t i = 0; i < kRows; ++i) __builtin_prefetch(next + i * D + d0);
    const int64_t d1 = std::min(D, d0 + kLine);
    for (int64_t d = d0; d < d1; ++d) {
      V c[kVectors];
      for (int64_t v = 0; v < kVectors; ++v) c[v] = vec_at<kBytes>(panel + d * kWidth + v * kLanes);
      for (int64_t i = 0; i < kRows; ++i) {
        const scalar_t xi = x[i * D + d];  // (V{} + xi would add 0, not free: -0 + 0 = +0)
        for (int64_t v = 0; v < kVectors; ++v) acc[i][v] += c[v] * xi;
      }
    }
  }
  for (int64_t i = 0; i < kRows; ++i)
    for (int64_t v = 0; v < kVectors; ++v) vec_at<kBytes>(scores + i * Kp + k0 + v * kLanes) = acc[i][v];
}

// (best, label) of the lanes of (b, l): the largest score, ties to the lowest label, by
// halving the vectors (branch-free; a lane-by-lane scalar loop cost as much as the GEMM
// at small K).
template <typename scalar_t, int kBytes>
__attribute__((always_inline)) inline void reduce_lanes(typename Simd<scalar_t, kBytes>::type b,
                                                        typename Simd<label_t<scalar_t>, kBytes>::type l,
                                                        scalar_t* best, int64_t* label) {
  if constexpr (kBytes == 2 * int(sizeof(scalar_t))) {
    const bool take = b[1] > b[0] || (b[1] == b[0] && l[1] < l[0]);
    *best = take ? b[1] : b[0];
    *label = take ? l[1] : l[0];
  } else {
    using H = typename Simd<scalar_t, kBytes / 2>::type;
    using HL = typename Simd<label_t<scalar_t>, kBytes / 2>::type;
    H b0, b1;
    HL l0, l1;
    std::memcpy(&b0, &b, kBytes / 2);
    std::memcpy(&b1, reinterpret_cast<const char*>(&b) + kBytes / 2, kBytes / 2);
    std::memcpy(&l0, &l, kBytes / 2);
    std::memcpy(&l1, reinterpret_cast<const char*>(&l) + kBytes / 2, kBytes / 2);
    const auto take = (b1 > b0) | ((b1 == b0) & (l1 < l0));
    reduce_lanes<scalar_t, kBytes / 2>(take ? b1 : b0, take ? l1 : l0, best, label);
  }
}

// The first maximum of one row's Kp scores (columns past K hold -inf): a lane-wise
// compare-and-select over the vectors, then over the lanes, ties to the lowest cluster.
template <typename scalar_t, int kBytes>
__attribute__((always_inline)) inline void row_argmax(const scalar_t* s, int64_t Kp, scalar_t* best,
                                                      int64_t* label) {
  using V = typename Simd<scalar_t, kBytes>::type;
  using L = typename Simd<label_t<scalar_t>, kBytes>::type;
  constexpr int64_t kLanes = kBytes / sizeof(scalar_t);
  L lane;
  for (int64_t t = 0; t < kLanes; ++t) lane[t] = label_t<scalar_t>(t);
  V b = vec_at<kBytes>(s);
  L l = lane;
  for (int64_t k0 = kLanes; k0 < Kp; k0 += kLanes) {
    const V v = vec_at<kBytes>(s + k0);
    const auto take = v > b;  // strict: the lowest cluster of each lane wins a tie
    b = take ? v : b;
    l = take ? lane + label_t<scalar_t>(k0) : l;
  }
  reduce_lanes<scalar_t, kBytes>(b, l, best, label);
}

template <typename scalar_t, int kBytes>
__attribute__((always_inline)) inline void slice_pass(const SliceArgs<scalar_t>& a) {
  constexpr int64_t kLanes = kBytes / sizeof(scalar_t), kRows = kTileRows<kBytes>;
  const int64_t D = a.D, K = a.K, Kp = a.Kp;
  for (int64_t r0 = a.row0; r0 < a.row1; r0 += kRows) {
    const int64_t rows = std::min(kRows, a.row1 - r0);
    const scalar_t* x = a.points + r0 * D;
    if (rows < kRows) {  // the last partial tile: its rows, then zeros, in the tile buffer
      std::memcpy(a.rows, x, sizeof(scalar_t) * rows * D);
      std::fill(a.rows + rows * D, a.rows + kRows * D, scalar_t(0));
      x = a.rows;
    }
    // The next whole tile streams in during this tile's first block.
    const scalar_t* next = r0 + 2 * kRows <= a.row1 ? x + kRows * D : nullptr;
    int64_t k0 = 0;
    for (; k0 + kTileVectors * kLanes <= Kp; k0 += kTileVectors * kLanes, next = nullptr)
      score_block<scalar_t, kBytes, kRows, kTileVectors>(x, D, a.packed + k0 * D, Kp, k0, a.scores, next);
    for (; k0 < Kp; k0 += kLanes, next = nullptr)
      score_block<scalar_t, kBytes, kRows, 1>(x, D, a.packed + k0 * D, Kp, k0, a.scores, next);
    for (int64_t i = 0; i < rows; ++i) {
      scalar_t* s = a.scores + i * Kp;
      std::fill(s + K, s + Kp, -std::numeric_limits<scalar_t>::infinity());
      const int64_t row = r0 + i;
      row_argmax<scalar_t, kBytes>(s, Kp, a.best + row, a.labels + row);
      // Finite rows and centroids give finite scores; a NaN one never passes >, so a row
      // with a non-finite best (or any row, given a non-finite centroid) is redone with
      // torch.max's NaN rule.
      if (!(a.finite_centroids && std::isfinite(a.best[row]))) argmax_with_nan(s, K, a.best + row, a.labels + row);
    }
    if (a.sums)
      for (int64_t i = 0; i < rows; ++i) {
        scalar_t* s = a.sums + a.labels[r0 + i] * D;
        const scalar_t* xi = a.points + (r0 + i) * D;
        for (int64_t d = 0; d < D; ++d) s[d] += xi[d];
      }
  }
}

template <typename scalar_t>
SEGSORT_TARGET_AVX512 void slice_pass_avx512(const SliceArgs<scalar_t>& a) {
  slice_pass<scalar_t, 64>(a);
}
template <typename scalar_t>
SEGSORT_TARGET_AVX2 void slice_pass_avx2(const SliceArgs<scalar_t>& a) {
  slice_pass<scalar_t, 32>(a);
}
template <typename scalar_t>
void slice_pass_baseline(const SliceArgs<scalar_t>& a) {
  slice_pass<scalar_t, 16>(a);
}
#pragma GCC pop_options

template <typename scalar_t>
using SlicePass = void (*)(const SliceArgs<scalar_t>&);

void check_nearest_centroid_inputs(const at::Tensor& points, const at::Tensor& centroids) {
  TORCH_CHECK_TYPE(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
                   "points must be float32 or float64, got ", points.scalar_type());
  check_like(centroids, "centroids", points, "points");
  SEGSORT_CHECK_ARG(points.dim() == 2 && points.size(1) >= 1, "points must have shape (N, D) with D >= 1, got ",
                    points.sizes());
  SEGSORT_CHECK_ARG(centroids.dim() == 2 && centroids.size(0) >= 1 && centroids.size(1) == points.size(1),
                    "centroids must have shape (K, D) = (K, ", points.size(1), ") with K >= 1, got ",
                    centroids.sizes());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> nearest_centroid_cpu(const at::Tensor& points,
                                                                    const at::Tensor& centroids, bool with_sums) {
  check_nearest_centroid_inputs(points, centroids);
  const int64_t N = points.size(0), D = points.size(1), K = centroids.size(0);
  const int64_t slices = std::clamp<int64_t>((N + kRowsPerSlice - 1) / kRowsPerSlice, 1, kMaxSlices);
  check_fits_in_memory(
      points.device(),
      checked_product({with_sums ? slices + 1 : 2, K, D, int64_t(points.element_size())}, "centroids"),
      "centroids");
  auto best = at::empty({N}, points.options());
  auto labels = at::empty({N}, points.options().dtype(at::kLong));
  auto sums = at::zeros({with_sums ? K : 0, D}, points.options());
  if (N == 0) return {best, labels, sums};
  const auto points_c = points.contiguous(), centroids_c = centroids.contiguous();
  auto slice_sums = with_sums ? at::zeros({slices, K, D}, points.options()) : at::Tensor();
  const bool finite_centroids = at::isfinite(centroids_c).all().item<bool>();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "nearest_centroid_cpu", [&] {
    const SlicePass<scalar_t> pass =
        widest(&slice_pass_avx512<scalar_t>, &slice_pass_avx2<scalar_t>, &slice_pass_baseline<scalar_t>);
    const int64_t bytes = simd_bytes(), lanes = bytes / int64_t(sizeof(scalar_t));
    const int64_t tile_rows = bytes == 64 ? kTileRows<64> : kTileRows<32>;
    const int64_t Kp = (K + lanes - 1) / lanes * lanes;
    const std::vector<scalar_t> packed = pack_centroids(centroids_c.const_data_ptr<scalar_t>(), K, D, Kp, lanes);
    const scalar_t* points_p = points_c.const_data_ptr<scalar_t>();
    scalar_t* best_p = best.mutable_data_ptr<scalar_t>();
    int64_t* labels_p = labels.mutable_data_ptr<int64_t>();
    scalar_t* slice_sums_p = with_sums ? slice_sums.mutable_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, slices, 1, [&](int64_t s0, int64_t s1) {
      std::vector<scalar_t> scores(tile_rows * Kp), rows(tile_rows * D);
      for (int64_t s = s0; s < s1; ++s)
        pass({points_p, packed.data(), D, K, Kp, N * s / slices, N * (s + 1) / slices, finite_centroids,
              scores.data(), rows.data(), best_p, labels_p, slice_sums_p ? slice_sums_p + s * K * D : nullptr});
    });
  });
  if (with_sums) {
    // In slice order, whatever the thread count.
    for (int64_t s = 0; s < slices; ++s) sums.add_(slice_sums[s]);
  }
  return {best, labels, sums};
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CPU, m) { m.impl("nearest_centroid", &nearest_centroid_cpu); }

}  // namespace segsort
