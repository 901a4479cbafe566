// spherical_kmeans on CPU: SegSort's per-image pixel sorting. Images run in parallel, and a
// large image's pixels are split into a fixed number of slices (so results do not depend
// on the thread count). Each iteration is an M-step (normalised member sums; empty
// clusters keep their centroid) and an E-step (argmax of f . centroid, ties to the lowest
// index) that also accumulates the next M-step's member sums, so the features are read
// once per iteration.
//
// The E-step is a skinny GEMM (pixels x F x K) with a fused argmax: features are stored
// in panels of one SIMD register's worth of pixels, (F, lanes), so a register tile holds
// the scores of 2 pixel vectors against a chunk of clusters, and the argmax is a lane-wise
// compare-and-select with no horizontal reduction. It is written with GCC vector
// extensions and compiled for AVX-512, AVX2+FMA and baseline x86-64, picked at run time.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "segsort/simd.h"
#include "segsort/spherical_kmeans.h"

namespace segsort {
namespace {

// Pixels per register tile: 2 SIMD vectors.
constexpr int64_t kTilePixelVectors = 2;

// The compacted valid pixels of one image in panels: pixel i, feature j at
// ((i / lanes) * F + j) * lanes + i % lanes, zero-padded to whole tiles.
template <typename acc_t>
struct Panels {
  int64_t n = 0, lanes = 0, blocks = 0, F = 0;  // blocks: panels, a multiple of kTilePixelVectors
  std::vector<acc_t> features;
  std::vector<label_t<acc_t>> member;  // current label per (padded) pixel
};

// One slice's work in an iteration: E-step over panels [block0, block1) (when assign) and
// the member sums and counts of the resulting labels, per lane (when accumulate).
template <typename acc_t>
struct SlicePass {
  Panels<acc_t>* panels;
  const acc_t* centroids_t;  // (F, K)
  int64_t K, block0, block1;
  bool assign, accumulate;
  acc_t* sums;    // (K, F, lanes)
  acc_t* counts;  // (K, lanes)
};

// Scores of the tile's pixel vectors x against clusters [k0, k0 + kChunk): a register tile
// of kTilePixelVectors x kChunk accumulators, then the lane-wise running argmax. Strict >
// over increasing k keeps the lowest index among equal scores.
template <typename acc_t, int kBytes, int kChunk>
__attribute__((always_inline)) inline void score_chunk(
    const acc_t* x, int64_t F, const acc_t* centroids_t, int64_t K, int64_t k0,
    typename Simd<acc_t, kBytes>::type* best, typename Simd<label_t<acc_t>, kBytes>::type* best_k) {
  using V = typename Simd<acc_t, kBytes>::type;
  using L = typename Simd<label_t<acc_t>, kBytes>::type;
  constexpr int64_t kLanes = kBytes / sizeof(acc_t), kP = kTilePixelVectors;
  V acc[kP][kChunk] = {};
  for (int64_t j = 0; j < F; ++j) {
    V xj[kP];
    for (int64_t p = 0; p < kP; ++p) xj[p] = vec_at<kBytes>(x + (p * F + j) * kLanes);
    const acc_t* c = centroids_t + j * K + k0;
    for (int64_t k = 0; k < kChunk; ++k)
      for (int64_t p = 0; p < kP; ++p) acc[p][k] += xj[p] * c[k];
  }
  for (int64_t k = 0; k < kChunk; ++k)
    for (int64_t p = 0; p < kP; ++p) {
      const auto take = acc[p][k] > best[p];
      best[p] = take ? acc[p][k] : best[p];
      best_k[p] = take ? L{} + label_t<acc_t>(k0 + k) : best_k[p];
    }
}

// Adds the features of the valid pixels of one panel to their clusters' per-lane sums,
// one masked add per feature for each distinct label in the panel (neighbouring pixels
// mostly share a label).
template <typename acc_t, int kBytes>
__attribute__((always_inline)) inline void accumulate_panel(const acc_t* x, int64_t F,
                                                            typename Simd<label_t<acc_t>, kBytes>::type labels,
                                                            int64_t valid, acc_t* sums, acc_t* counts) {
  using V = typename Simd<acc_t, kBytes>::type;
  using L = typename Simd<label_t<acc_t>, kBytes>::type;
  constexpr int64_t kLanes = kBytes / sizeof(acc_t);
  L lane;
  for (int64_t t = 0; t < kLanes; ++t) lane[t] = label_t<acc_t>(t);
  L remaining = lane < label_t<acc_t>(valid);
  for (int64_t t = 0; t < kLanes; ++t) {
    if (!remaining[t]) continue;
    const int64_t k = labels[t];
    const L in_k = remaining & (labels == label_t<acc_t>(k));
    remaining &= ~in_k;
    acc_t* s = sums + k * F * kLanes;
    for (int64_t j = 0; j < F; ++j) {
      const V xj = vec_at<kBytes>(x + j * kLanes);
      vec_at<kBytes>(s + j * kLanes) += in_k ? xj : V{};
    }
    vec_at<kBytes>(counts + k * kLanes) += in_k ? V{} + acc_t(1) : V{};
  }
}

// Clusters per register tile: 2 x 12 accumulators of AVX-512's 32 registers, 2 x 6 of the
// 16 registers elsewhere. Leftover clusters go in chunks of 8, 4, 2, 1.
template <typename acc_t, int kBytes>
__attribute__((always_inline)) inline int64_t slice_pass(const SlicePass<acc_t>& a) {
  using V = typename Simd<acc_t, kBytes>::type;
  using L = typename Simd<label_t<acc_t>, kBytes>::type;
  constexpr int64_t kLanes = kBytes / sizeof(acc_t), kP = kTilePixelVectors, kChunk = kBytes == 64 ? 12 : 6;
  Panels<acc_t>& panels = *a.panels;
  const int64_t F = panels.F, K = a.K;
  int64_t changed = 0;
  for (int64_t b = a.block0; b < a.block1; b += kP) {
    const acc_t* x = panels.features.data() + b * F * kLanes;
    label_t<acc_t>* member = panels.member.data() + b * kLanes;
    L labels[kP];
    if (a.assign) {
      // The next tile streams in from memory while this one computes.
      if (b + kP < a.block1)
        for (int64_t i = 0; i < kP * F * kLanes; i += 64 / sizeof(acc_t))
          __builtin_prefetch(x + kP * F * kLanes + i);
      V best[kP];
      for (int64_t p = 0; p < kP; ++p) {
        best[p] = V{} - std::numeric_limits<acc_t>::infinity();
        labels[p] = L{};
      }
      const acc_t* c = a.centroids_t;
      int64_t k0 = 0;
      for (; k0 + kChunk <= K; k0 += kChunk) score_chunk<acc_t, kBytes, kChunk>(x, F, c, K, k0, best, labels);
      if constexpr (kChunk > 8)
        if (K - k0 >= 8) score_chunk<acc_t, kBytes, 8>(x, F, c, K, k0, best, labels), k0 += 8;
      if (K - k0 >= 4) score_chunk<acc_t, kBytes, 4>(x, F, c, K, k0, best, labels), k0 += 4;
      if (K - k0 >= 2) score_chunk<acc_t, kBytes, 2>(x, F, c, K, k0, best, labels), k0 += 2;
      if (K - k0 >= 1) score_chunk<acc_t, kBytes, 1>(x, F, c, K, k0, best, labels);
      for (int64_t p = 0; p < kP; ++p) {
        const int64_t valid = std::clamp<int64_t>(panels.n - (b + p) * kLanes, 0, kLanes);
        const L old = vec_at<kBytes>(member + p * kLanes);
        for (int64_t t = 0; t < valid; ++t) changed += old[t] != labels[p][t];
        vec_at<kBytes>(member + p * kLanes) = labels[p];
      }
    } else {
      for (int64_t p = 0; p < kP; ++p) labels[p] = vec_at<kBytes>(member + p * kLanes);
    }
    if (a.accumulate)
      for (int64_t p = 0; p < kP; ++p)
        accumulate_panel<acc_t, kBytes>(x + p * F * kLanes, F, labels[p],
                                        std::clamp<int64_t>(panels.n - (b + p) * kLanes, 0, kLanes), a.sums,
                                        a.counts);
  }
  return changed;
}

#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")  // FMAs: -std=c++17 turns contraction off
template <typename acc_t>
SEGSORT_TARGET_AVX512 int64_t slice_pass_avx512(const SlicePass<acc_t>& a) {
  return slice_pass<acc_t, 64>(a);
}
template <typename acc_t>
SEGSORT_TARGET_AVX2 int64_t slice_pass_avx2(const SlicePass<acc_t>& a) {
  return slice_pass<acc_t, 32>(a);
}
template <typename acc_t>
int64_t slice_pass_baseline(const SlicePass<acc_t>& a) {
  return slice_pass<acc_t, 16>(a);
}
#pragma GCC pop_options

// The widest kernel this CPU runs, and its SIMD width in bytes.
template <typename acc_t>
std::pair<int64_t (*)(const SlicePass<acc_t>&), int64_t> pick_slice_pass() {
  return {widest(&slice_pass_avx512<acc_t>, &slice_pass_avx2<acc_t>, &slice_pass_baseline<acc_t>), simd_bytes()};
}

// Pixels per slice of an image's E-step: enough that a slice amortises its per-lane sums,
// at most kMaxSlices slices, a function of the pixel count only (reproducible results).
constexpr int64_t kPixelsPerSlice = 32768, kMaxSlices = 4;

template <typename scalar_t, typename acc_t>
void kmeans_image_cpu(const scalar_t* x, int64_t D, int64_t H, int64_t W, int64_t sd, int64_t sp, const bool* mask,
                      const int64_t* init, int64_t gh, int64_t gw, int64_t iters, acc_t coord_weight, double tol,
                      int64_t* labels, scalar_t* centroids_out) {
  const int64_t P = H * W, F = D + 2, K = gh * gw;
  const auto [pass, simd_bytes] = pick_slice_pass<acc_t>();
  const int64_t lanes = simd_bytes / int64_t(sizeof(acc_t)), tile = kTilePixelVectors * lanes;

  // Features of the valid pixels only, compacted into panels; pixel[i] is the image index
  // of compacted pixel i. Pixels are checked, then featurised, in parallel (inline when the
  // images are already spread over the threads).
  constexpr int64_t kGrain = 4096;
  std::vector<uint8_t> valid(P);
  at::parallel_for(0, P, kGrain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      labels[p] = -1;
      bool keep = !(mask && !mask[p]) && !(init && init[p] < 0);
      for (int64_t d = 0; d < D && keep; ++d) keep = std::isfinite(static_cast<acc_t>(x[d * sd + p * sp]));
      valid[p] = keep;
    }
  });
  std::vector<int64_t> pixel;
  pixel.reserve(P);
  for (int64_t p = 0; p < P; ++p)
    if (valid[p]) pixel.push_back(p);
  const int64_t n = static_cast<int64_t>(pixel.size());
  Panels<acc_t> panels;
  panels.n = n;
  panels.F = F;
  panels.lanes = lanes;
  panels.blocks = (n + tile - 1) / tile * kTilePixelVectors;
  panels.features.assign(panels.blocks * F * lanes, acc_t(0));
  panels.member.assign(panels.blocks * lanes, 0);
  at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
    std::vector<acc_t> fp(F);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t p = pixel[i];
      acc_t sq = 0;
      for (int64_t d = 0; d < D; ++d) {
        fp[d] = static_cast<acc_t>(x[d * sd + p * sp]);
        sq += fp[d] * fp[d];
      }
      const acc_t norm = std::sqrt(sq);
      const acc_t inv = acc_t(1) / (norm > acc_t(kNormEps) ? norm : acc_t(kNormEps));
      sq = 0;
      for (int64_t d = 0; d < D; ++d) {
        fp[d] *= inv;
        sq += fp[d] * fp[d];
      }
      fp[D] = coord_weight * pixel_coordinate<acc_t>(p / W, H);
      fp[D + 1] = coord_weight * pixel_coordinate<acc_t>(p % W, W);
      sq += fp[D] * fp[D] + fp[D + 1] * fp[D + 1];
      const acc_t norm2 = std::sqrt(sq);
      const acc_t inv2 = acc_t(1) / (norm2 > acc_t(kNormEps) ? norm2 : acc_t(kNormEps));
      acc_t* panel = panels.features.data() + (i / lanes) * F * lanes + i % lanes;
      for (int64_t j = 0; j < F; ++j) panel[j * lanes] = fp[j] * inv2;
      panels.member[i] = label_t<acc_t>(init ? init[p] : grid_cell(p / W, p % W, H, W, gh, gw));
    }
  });

  const int64_t tiles = panels.blocks / kTilePixelVectors;
  const int64_t slices = std::clamp<int64_t>(n / kPixelsPerSlice, 1, kMaxSlices);
  std::vector<acc_t> centroids(K * F, acc_t(0)), centroids_t(F * K), sums(K * F), counts(K);
  std::vector<acc_t> lane_sums(slices * K * F * lanes), lane_counts(slices * K * lanes);
  // One pass over all slices, then the per-lane sums folded (in a fixed order) into sums.
  auto run_pass = [&](bool assign, bool accumulate) {
    if (accumulate) {
      std::fill(lane_sums.begin(), lane_sums.end(), acc_t(0));
      std::fill(lane_counts.begin(), lane_counts.end(), acc_t(0));
    }
    std::vector<int64_t> changed(slices, 0);
    // Inline when the images themselves are already spread over the threads.
    at::parallel_for(0, slices, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const SlicePass<acc_t> slice{&panels,
                                     centroids_t.data(),
                                     K,
                                     tiles * s / slices * kTilePixelVectors,
                                     tiles * (s + 1) / slices * kTilePixelVectors,
                                     assign,
                                     accumulate,
                                     lane_sums.data() + s * K * F * lanes,
                                     lane_counts.data() + s * K * lanes};
        changed[s] = pass(slice);
      }
    });
    if (accumulate) {
      std::fill(sums.begin(), sums.end(), acc_t(0));
      std::fill(counts.begin(), counts.end(), acc_t(0));
      for (int64_t s = 0; s < slices; ++s)
        for (int64_t k = 0; k < K; ++k) {
          for (int64_t j = 0; j < F; ++j) {
            const acc_t* v = lane_sums.data() + ((s * K + k) * F + j) * lanes;
            for (int64_t t = 0; t < lanes; ++t) sums[k * F + j] += v[t];
          }
          for (int64_t t = 0; t < lanes; ++t) counts[k] += lane_counts[(s * K + k) * lanes + t];
        }
    }
    int64_t total = 0;
    for (const int64_t c : changed) total += c;
    return total;
  };

  run_pass(/*assign=*/false, /*accumulate=*/true);
  for (int64_t t = 0; t < iters; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      update_centroid(sums.data() + k * F, counts[k], F, centroids.data() + k * F);
      for (int64_t j = 0; j < F; ++j) centroids_t[j * K + k] = centroids[k * F + j];
    }
    // The last iteration's sums would never be used.
    const int64_t changed = run_pass(/*assign=*/true, /*accumulate=*/t + 1 < iters);
    if (tol >= 0 && double(changed) <= tol * double(n)) break;
  }
  for (int64_t i = 0; i < n; ++i) labels[pixel[i]] = panels.member[i];
  for (int64_t i = 0; i < K * F; ++i) centroids_out[i] = static_cast<scalar_t>(centroids[i]);
}
std::tuple<at::Tensor, at::Tensor> spherical_kmeans_cpu(
    const at::Tensor& x, const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& init,
    int64_t grid_h, int64_t grid_w, int64_t iters, double coord_weight, double tol) {
  check_spherical_kmeans_inputs(x, mask, init, grid_h, grid_w, iters, coord_weight, tol);
  const int64_t B = x.size(0), D = x.size(1), H = x.size(2), W = x.size(3), K = grid_h * grid_w;
  // The per-lane member sums and counts (at most 64-byte lanes): kMaxSlices per image in
  // flight, one image per thread.
  check_fits_in_memory(
      x.device(), checked_product({std::min<int64_t>(B, at::get_num_threads()), kMaxSlices, K, D + 3, 64}, "grid"),
      "grid");
  auto labels = at::empty({B, H, W}, x.options().dtype(at::kLong));
  auto centroids = at::zeros({B, K, D + 2}, x.options());
  if (labels.numel() == 0) return {labels, centroids};
  const auto x_bdp = pixels_bdp(x);
  const PixelView v = pixel_view(x_bdp);
  const auto mask_c = mask.has_value() ? mask->contiguous() : at::Tensor();
  const auto init_c = init.has_value() ? init->contiguous() : at::Tensor();
  const int64_t P = H * W;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spherical_kmeans_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x_bdp.const_data_ptr<scalar_t>();
    int64_t* lp = labels.mutable_data_ptr<int64_t>();
    scalar_t* cp = centroids.mutable_data_ptr<scalar_t>();
    const bool* mp = mask_c.defined() ? mask_c.const_data_ptr<bool>() : nullptr;
    const int64_t* ip = init_c.defined() ? init_c.const_data_ptr<int64_t>() : nullptr;
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        kmeans_image_cpu<scalar_t, acc_t>(xp + b * v.sb, D, H, W, v.sd, v.sp, mp ? mp + b * P : nullptr,
                                          ip ? ip + b * P : nullptr, grid_h, grid_w, iters,
                                          static_cast<acc_t>(coord_weight), tol, lp + b * P, cp + b * K * (D + 2));
    });
  });
  return {labels, centroids};
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CPU, m) { m.impl("spherical_kmeans", &spherical_kmeans_cpu); }

}  // namespace segsort
