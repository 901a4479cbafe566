// spherical_kmeans on CPU: SegSort's per-image pixel sorting, images in parallel. Each
// iteration is an M-step (normalised member sums; empty clusters keep their centroid)
// and an E-step (argmax of f . centroid, ties to the lowest index) whose K dot products
// per pixel run as one vectorisable loop over transposed centroids.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "segsort/spherical_kmeans.h"

namespace segsort {
namespace {

// Clusters per register tile: two AVX2 vectors of accumulators per pixel.
template <typename acc_t>
constexpr int64_t kKmeansTileK = 64 / sizeof(acc_t);

// E-step for n pixels: best[i] = argmax_k f_i . c_k (ties to the lowest k), as a
// register-tiled product (kTileP pixels x kTileK clusters) over centroids stored
// transposed and padded, (F, Kp). Compiled for AVX2+FMA and for baseline x86-64, picked
// at run time. Returns how many labels changed.
template <typename acc_t>
__attribute__((target_clones("arch=haswell", "default"))) int64_t assign_clusters(
    const acc_t* f, int64_t n, int64_t F, const acc_t* centroids_t, const acc_t* bias, int64_t Kp, int64_t* best) {
  constexpr int64_t kTileP = 4, kTileK = kKmeansTileK<acc_t>;
  int64_t changed = 0;
  for (int64_t p0 = 0; p0 < n; p0 += kTileP) {
    const int64_t np = std::min(kTileP, n - p0);
    const acc_t* rows[kTileP];
    for (int64_t q = 0; q < kTileP; ++q) rows[q] = f + (p0 + std::min(q, np - 1)) * F;
    acc_t best_score[kTileP];
    int64_t best_k[kTileP];
    for (int64_t q = 0; q < kTileP; ++q) {
      best_score[q] = -std::numeric_limits<acc_t>::infinity();
      best_k[q] = 0;
    }
    for (int64_t k0 = 0; k0 < Kp; k0 += kTileK) {
      acc_t acc[kTileP][kTileK] = {};
      for (int64_t j = 0; j < F; ++j) {
        const acc_t* c = centroids_t + j * Kp + k0;
        for (int64_t q = 0; q < kTileP; ++q) {
          const acc_t v = rows[q][j];
          for (int64_t t = 0; t < kTileK; ++t) acc[q][t] += v * c[t];
        }
      }
      // Constant trip counts and selects (no dynamic indexing) keep acc in registers;
      // padded clusters score -inf through bias.
      for (int64_t q = 0; q < kTileP; ++q) {
        for (int64_t t = 0; t < kTileK; ++t) {
          const acc_t score = acc[q][t] + bias[k0 + t];
          const bool take = score > best_score[q];
          best_score[q] = take ? score : best_score[q];
          best_k[q] = take ? k0 + t : best_k[q];
        }
      }
    }
    for (int64_t q = 0; q < np; ++q) {  // rows q >= np repeated the last pixel: dropped
      changed += best[p0 + q] != best_k[q];
      best[p0 + q] = best_k[q];
    }
  }
  return changed;
}

template <typename scalar_t, typename acc_t>
void kmeans_image_cpu(const scalar_t* x, int64_t D, int64_t H, int64_t W, int64_t sd, int64_t sp, const bool* mask,
                      const int64_t* init, int64_t gh, int64_t gw, int64_t iters, acc_t coord_weight, double tol,
                      int64_t* labels, scalar_t* centroids_out) {
  const int64_t P = H * W, F = D + 2, K = gh * gw;
  constexpr int64_t kTileK = kKmeansTileK<acc_t>;
  const int64_t Kp = (K + kTileK - 1) / kTileK * kTileK;
  // Features of the valid pixels only, compacted: f (n, F), their pixel index and label.
  std::vector<acc_t> f;
  f.reserve(P * F);
  std::vector<int64_t> pixel, member;
  std::vector<acc_t> fp(F);
  for (int64_t p = 0; p < P; ++p) {
    labels[p] = -1;
    if ((mask && !mask[p]) || (init && init[p] < 0)) continue;
    acc_t sq = 0;
    bool finite = true;
    for (int64_t d = 0; d < D; ++d) {
      fp[d] = static_cast<acc_t>(x[d * sd + p * sp]);
      finite = finite && std::isfinite(fp[d]);
      sq += fp[d] * fp[d];
    }
    if (!finite) continue;
    const acc_t n = std::sqrt(sq);
    const acc_t inv = acc_t(1) / (n > acc_t(kNormEps) ? n : acc_t(kNormEps));
    sq = 0;
    for (int64_t d = 0; d < D; ++d) {
      fp[d] *= inv;
      sq += fp[d] * fp[d];
    }
    fp[D] = coord_weight * pixel_coordinate<acc_t>(p / W, H);
    fp[D + 1] = coord_weight * pixel_coordinate<acc_t>(p % W, W);
    sq += fp[D] * fp[D] + fp[D + 1] * fp[D + 1];
    const acc_t n2 = std::sqrt(sq);
    const acc_t inv2 = acc_t(1) / (n2 > acc_t(kNormEps) ? n2 : acc_t(kNormEps));
    for (int64_t j = 0; j < F; ++j) f.push_back(fp[j] * inv2);
    pixel.push_back(p);
    member.push_back(init ? init[p] : grid_cell(p / W, p % W, H, W, gh, gw));
  }
  const int64_t n = static_cast<int64_t>(pixel.size());

  std::vector<acc_t> centroids(K * F, acc_t(0)), transposed(F * Kp, acc_t(0)), sums(K * F), counts(K);
  std::vector<acc_t> bias(Kp, acc_t(0));  // -inf for the padding clusters
  for (int64_t k = K; k < Kp; ++k) bias[k] = -std::numeric_limits<acc_t>::infinity();
  for (int64_t t = 0; t < iters; ++t) {
    std::fill(sums.begin(), sums.end(), acc_t(0));
    std::fill(counts.begin(), counts.end(), acc_t(0));
    for (int64_t i = 0; i < n; ++i) {
      acc_t* s = sums.data() + member[i] * F;
      const acc_t* fi = f.data() + i * F;
      counts[member[i]] += 1;
      for (int64_t j = 0; j < F; ++j) s[j] += fi[j];
    }
    for (int64_t k = 0; k < K; ++k) {
      update_centroid(sums.data() + k * F, counts[k], F, centroids.data() + k * F);
      for (int64_t j = 0; j < F; ++j) transposed[j * Kp + k] = centroids[k * F + j];
    }
    // Pixels are independent in the E-step: split them over threads (this runs inline
    // when the images themselves are already spread over the threads).
    std::atomic<int64_t> changed{0};
    at::parallel_for(0, n, 2048, [&](int64_t i0, int64_t i1) {
      changed += assign_clusters<acc_t>(f.data() + i0 * F, i1 - i0, F, transposed.data(), bias.data(), Kp,
                                        member.data() + i0);
    });
    if (tol >= 0 && double(changed) <= tol * double(n)) break;
  }
  for (int64_t i = 0; i < n; ++i) labels[pixel[i]] = member[i];
  for (int64_t i = 0; i < K * F; ++i) centroids_out[i] = static_cast<scalar_t>(centroids[i]);
}

std::tuple<at::Tensor, at::Tensor> spherical_kmeans_cpu(
    const at::Tensor& x, const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& init,
    int64_t grid_h, int64_t grid_w, int64_t iters, double coord_weight, double tol) {
  check_spherical_kmeans_inputs(x, mask, init, grid_h, grid_w, iters, coord_weight, tol);
  const int64_t B = x.size(0), D = x.size(1), H = x.size(2), W = x.size(3), K = grid_h * grid_w;
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
