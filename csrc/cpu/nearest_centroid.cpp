// nearest_centroid on CPU: the E-step (and, with sums, the M-step) of dataset-level
// spherical k-means in one pass over the points. The rows go in fixed slices (a function
// of N only, so results do not depend on the thread count), each with its own cluster sums,
// folded in slice order at the end. Inside a slice, a tile of rows is scored by one
// single-threaded BLAS GEMM into a (K, tile) buffer that stays in L2, the argmax over K is
// a lane-wise compare-and-select down its columns (no horizontal reduction), and the rows
// are added to their clusters' sums while the tile is still in cache: the (rows, K) scores
// never reach memory and the points are read from memory once.
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

// SIMD vectors of rows whose running maxima stay in registers during the argmax.
constexpr int64_t kArgmaxVectors = 4;
// Rows per tile: as many as keep the (K, tile) scores within kScoreBytes (with the tile's
// rows, well inside a 1-2 MiB L2), at most kMaxTileRows, a multiple of the argmax block.
constexpr int64_t kScoreBytes = 256 << 10, kMaxTileRows = 1024, kTileQuantum = 64;
// Rows per slice (at most kMaxSlices slices, each with (K, D) sums): the parallel grain.
constexpr int64_t kRowsPerSlice = 4096, kMaxSlices = 64;

template <typename scalar_t>
struct SliceArgs {
  const scalar_t* points;       // (N, D)
  const at::Tensor& centroids;  // (K, D), contiguous
  at::TensorOptions options;
  int64_t D, K, row0, row1, tile;
  bool finite_centroids;
  scalar_t* scores;  // (K, tile) buffer of this slice's thread
  scalar_t* best;    // (N,)
  int64_t* labels;   // (N,)
  scalar_t* sums;    // (K, D) of this slice, zeroed; nullptr: no sums
};

// torch.max's argmax of one row's K scores s[k * ld]: the first maximum, or the first NaN.
template <typename scalar_t>
void argmax_with_nan(const scalar_t* s, int64_t ld, int64_t K, scalar_t* best, int64_t* label) {
  scalar_t b = s[0];
  int64_t l = 0;
  for (int64_t k = 1; k < K && !std::isnan(b); ++k)
    if (s[k * ld] > b || std::isnan(s[k * ld])) b = s[k * ld], l = k;
  *best = b;
  *label = l;
}

template <typename scalar_t, int kBytes>
__attribute__((always_inline)) inline void slice_pass(const SliceArgs<scalar_t>& a) {
  using V = typename Simd<scalar_t, kBytes>::type;
  using L = typename Simd<label_t<scalar_t>, kBytes>::type;
  constexpr int64_t kLanes = kBytes / sizeof(scalar_t), kBlock = kArgmaxVectors * kLanes;
  const int64_t D = a.D, K = a.K, ld = a.tile;
  for (int64_t r0 = a.row0; r0 < a.row1; r0 += a.tile) {
    const int64_t rows = std::min(a.tile, a.row1 - r0);
    const scalar_t* x = a.points + r0 * D;
    // (K, rows) scores with row stride ld = centroids . x^T, by a GEMM on this thread alone
    // (BLAS runs single-threaded inside a parallel region).
    auto scores = at::from_blob(a.scores, {K, rows}, {ld, 1}, a.options);
    at::mm_out(scores, a.centroids, at::from_blob(const_cast<scalar_t*>(x), {rows, D}, a.options).t());
    // Lanes past `rows` hold stale scores of the buffer and are never stored. Strict >
    // over increasing k keeps the lowest index among equal scores.
    for (int64_t t0 = 0; t0 < rows; t0 += kBlock) {
      V best[kArgmaxVectors];
      L label[kArgmaxVectors];
      for (int64_t p = 0; p < kArgmaxVectors; ++p) {
        best[p] = V{} - std::numeric_limits<scalar_t>::infinity();
        label[p] = L{};
      }
      for (int64_t k = 0; k < K; ++k) {
        const scalar_t* s = a.scores + k * ld + t0;
        for (int64_t p = 0; p < kArgmaxVectors; ++p) {
          const V v = vec_at<kBytes>(s + p * kLanes);
          const auto take = v > best[p];
          best[p] = take ? v : best[p];
          label[p] = take ? L{} + label_t<scalar_t>(k) : label[p];
        }
      }
      const int64_t valid = std::min(kBlock, rows - t0);
      for (int64_t i = 0; i < valid; ++i) {
        const int64_t row = r0 + t0 + i;
        const scalar_t b = best[i / kLanes][i % kLanes];
        // Finite rows and centroids give finite scores; a NaN one never passes >, so a
        // row with a non-finite best (or any row, given a non-finite centroid) is redone
        // with torch.max's NaN rule.
        if (a.finite_centroids && std::isfinite(b)) {
          a.best[row] = b;
          a.labels[row] = label[i / kLanes][i % kLanes];
        } else {
          argmax_with_nan(a.scores + t0 + i, ld, K, a.best + row, a.labels + row);
        }
      }
    }
    if (a.sums)
      for (int64_t t = 0; t < rows; ++t) {
        scalar_t* s = a.sums + a.labels[r0 + t] * D;
        const scalar_t* xt = x + t * D;
        for (int64_t d = 0; d < D; ++d) s[d] += xt[d];
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

template <typename scalar_t>
using SlicePass = void (*)(const SliceArgs<scalar_t>&);

// The widest kernel this CPU runs.
template <typename scalar_t>
SlicePass<scalar_t> pick_slice_pass() {
  return widest(&slice_pass_avx512<scalar_t>, &slice_pass_avx2<scalar_t>, &slice_pass_baseline<scalar_t>);
}

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
      checked_product({with_sums ? slices : 1, K, D, int64_t(points.element_size())}, "centroids"), "centroids");
  auto best = at::empty({N}, points.options());
  auto labels = at::empty({N}, points.options().dtype(at::kLong));
  auto sums = at::zeros({with_sums ? K : 0, D}, points.options());
  if (N == 0) return {best, labels, sums};
  const auto points_c = points.contiguous(), centroids_c = centroids.contiguous();
  auto slice_sums = with_sums ? at::zeros({slices, K, D}, points.options()) : at::Tensor();
  const bool finite_centroids = at::isfinite(centroids_c).all().item<bool>();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "nearest_centroid_cpu", [&] {
    const SlicePass<scalar_t> pass = pick_slice_pass<scalar_t>();
    const int64_t fit = kScoreBytes / (K * int64_t(sizeof(scalar_t))) / kTileQuantum * kTileQuantum;
    const int64_t tile = std::clamp<int64_t>(fit, kTileQuantum, kMaxTileRows);
    const scalar_t* points_p = points_c.const_data_ptr<scalar_t>();
    scalar_t* best_p = best.mutable_data_ptr<scalar_t>();
    int64_t* labels_p = labels.mutable_data_ptr<int64_t>();
    scalar_t* slice_sums_p = with_sums ? slice_sums.mutable_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, slices, 1, [&](int64_t s0, int64_t s1) {
      std::vector<scalar_t> scores(K * tile, scalar_t(0));
      for (int64_t s = s0; s < s1; ++s)
        pass({points_p, centroids_c, points.options(), D, K, N * s / slices, N * (s + 1) / slices, tile,
              finite_centroids, scores.data(), best_p, labels_p,
              slice_sums_p ? slice_sums_p + s * K * D : nullptr});
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
