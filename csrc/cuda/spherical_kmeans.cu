// spherical_kmeans on CUDA: every image of the batch in each launch, no host sync inside
// the iteration loop. Per iteration: an M-step finalise (one thread per (image, cluster))
// and a fused E-step that reads each pixel's features once, finds its best centroid and
// adds the features to the next M-step's sums (warp-aggregated float atomics). Under
// torch.use_deterministic_algorithms(True) the sums come from a sorted pass instead.
// Features live channel-major (B, F, P), F = D + 2, so a warp's loads are coalesced; the
// common F = 18/34/66/130 (D = 16/32/64/128) keep a pixel's features in registers
// (double: up to F = 66).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "segsort/cuda_utils.h"
#include "segsort/spherical_kmeans.h"

namespace segsort {
namespace {

struct KMeansShape {
  int64_t B, D, H, W, P, F, K, gh, gw;
};

// Features, validity and initial labels of every pixel; counts valid pixels per image.
template <typename scalar_t, typename acc_t>
__global__ void kmeans_prepare_kernel(const scalar_t* __restrict__ x, const PixelView v,
                                      const bool* __restrict__ mask, const int64_t* __restrict__ init,
                                      const KMeansShape s, acc_t coord_weight, acc_t* __restrict__ f,
                                      int64_t* __restrict__ labels, int* __restrict__ num_valid) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (p >= s.P) return;
  const int64_t i = b * s.P + p;
  bool valid = (!mask || mask[i]) && (!init || init[i] >= 0);
  const scalar_t* xp = x + b * v.sb + p * v.sp;
  acc_t sq = 0;
  for (int64_t d = 0; d < s.D; ++d) {
    const acc_t value = static_cast<acc_t>(xp[d * v.sd]);
    valid = valid && isfinite(value);
    sq += value * value;
  }
  acc_t* fp = f + b * s.F * s.P + p;  // channel j of this pixel at fp[j * P]
  if (!valid) {
    labels[i] = -1;
    for (int64_t j = 0; j < s.F; ++j) fp[j * s.P] = acc_t(0);
    return;
  }
  const acc_t n = sqrt(sq);
  const acc_t inv = acc_t(1) / (n > acc_t(kNormEps) ? n : acc_t(kNormEps));
  const acc_t cy = coord_weight * pixel_coordinate<acc_t>(p / s.W, s.H);
  const acc_t cx = coord_weight * pixel_coordinate<acc_t>(p % s.W, s.W);
  acc_t sq2 = 0;
  for (int64_t d = 0; d < s.D; ++d) {
    const acc_t value = static_cast<acc_t>(xp[d * v.sd]) * inv;
    sq2 += value * value;
  }
  sq2 += cy * cy + cx * cx;
  const acc_t n2 = sqrt(sq2);
  const acc_t inv2 = acc_t(1) / (n2 > acc_t(kNormEps) ? n2 : acc_t(kNormEps));
  for (int64_t d = 0; d < s.D; ++d) fp[d * s.P] = (static_cast<acc_t>(xp[d * v.sd]) * inv) * inv2;
  fp[s.D * s.P] = cy * inv2;
  fp[(s.D + 1) * s.P] = cx * inv2;
  labels[i] = init ? init[i] : grid_cell(p / s.W, p % s.W, s.H, s.W, s.gh, s.gw);
  atomicAdd(num_valid + b, 1);
}

// Adds a pixel's features (and 1) to the sums/counts of its cluster; one atomic per
// channel and warp when the whole warp shares the cluster (the common case inside a
// segment). Features come from registers fr (kF > 0) or from global memory fp[j * P].
template <typename acc_t, int kF>
__device__ __forceinline__ void accumulate_member(int64_t cluster, const acc_t* fr, const acc_t* fp, int64_t P,
                                                  int64_t F, acc_t* __restrict__ sums, int* __restrict__ counts) {
  const bool lane0 = (threadIdx.x & 31) == 0;
  const int64_t first = __shfl_sync(kFullMask, cluster, 0);
  if (__all_sync(kFullMask, cluster == first)) {
    if (first < 0) return;
    acc_t* target = sums + first * F;
    if (kF > 0) {
#pragma unroll
      for (int j = 0; j < kF; ++j) {
        acc_t value = fr[j];
        for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(kFullMask, value, offset);
        if (lane0) atomicAdd(target + j, value);
      }
    } else {
      for (int64_t j = 0; j < F; ++j) {
        acc_t value = fp[j * P];
        for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(kFullMask, value, offset);
        if (lane0) atomicAdd(target + j, value);
      }
    }
    if (lane0) atomicAdd(counts + first, 32);
    return;
  }
  if (cluster < 0) return;
  acc_t* target = sums + cluster * F;
  if (kF > 0) {
#pragma unroll
    for (int j = 0; j < kF; ++j) atomicAdd(target + j, fr[j]);
  } else {
    for (int64_t j = 0; j < F; ++j) atomicAdd(target + j, fp[j * P]);
  }
  atomicAdd(counts + cluster, 1);
}

// The first M-step's sums, from the initial labels.
template <typename acc_t>
__global__ void kmeans_accumulate_kernel(const acc_t* __restrict__ f, const int64_t* __restrict__ labels,
                                         const KMeansShape s, acc_t* __restrict__ sums, int* __restrict__ counts) {
  const int64_t b = blockIdx.y;
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t cluster = p < s.P ? labels[b * s.P + p] : -1;
  const acc_t* fp = f + b * s.F * s.P + (p < s.P ? p : 0);
  accumulate_member<acc_t, 0>(cluster, nullptr, fp, s.P, s.F, sums + b * s.K * s.F, counts + b * s.K);
}

// Sums (B, K, F) and counts (B, K) into centroids; clears them for the next E-step.
template <typename acc_t>
__global__ void kmeans_update_kernel(acc_t* __restrict__ sums, int* __restrict__ counts, const KMeansShape s,
                                     const int* __restrict__ done, acc_t* __restrict__ centroids) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= s.B * s.K || done[i / s.K]) return;
  update_centroid(sums + i * s.F, static_cast<acc_t>(counts[i]), s.F, centroids + i * s.F);
  for (int64_t j = 0; j < s.F; ++j) sums[i * s.F + j] = acc_t(0);
  counts[i] = 0;
}

// E-step: labels = argmax_k f . c_k (ties to the lowest k); counts changed labels and,
// when accumulate, adds the features to the sums of the new clusters. kF = 0: any F,
// features re-read from global memory instead of registers.
template <typename acc_t, int kF>
__global__ void kmeans_assign_kernel(const acc_t* __restrict__ f, const acc_t* __restrict__ centroids,
                                     const KMeansShape s, const int* __restrict__ done, bool accumulate,
                                     int64_t* __restrict__ labels, int* __restrict__ changed,
                                     acc_t* __restrict__ sums, int* __restrict__ counts) {
  const int64_t b = blockIdx.y;
  if (done[b]) return;  // uniform over the block: no thread is left behind at a shuffle
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t F = kF > 0 ? kF : s.F;
  const acc_t* fp = f + b * F * s.P + (p < s.P ? p : 0);
  const acc_t* cb = centroids + b * s.K * F;
  const int64_t old = p < s.P ? labels[b * s.P + p] : -1;
  acc_t fr[kF > 0 ? kF : 1];
  if (kF > 0) {
#pragma unroll
    for (int j = 0; j < kF; ++j) fr[j] = fp[j * s.P];
  }
  int64_t best = -1;
  if (old >= 0) {
    acc_t best_score = 0;
    for (int64_t k = 0; k < s.K; ++k) {
      const acc_t* c = cb + k * F;
      acc_t dot = 0;
      if (kF > 0) {
#pragma unroll
        for (int j = 0; j < kF; ++j) dot += fr[j] * __ldg(c + j);
      } else {
        for (int64_t j = 0; j < F; ++j) dot += fp[j * s.P] * __ldg(c + j);
      }
      if (k == 0 || dot > best_score) {
        best_score = dot;
        best = k;
      }
    }
    labels[b * s.P + p] = best;
  }
  const unsigned moved = __ballot_sync(kFullMask, best != old);
  if ((threadIdx.x & 31) == 0 && moved) atomicAdd(changed + b, __popc(moved));
  if (accumulate) accumulate_member<acc_t, kF>(best, fr, fp, s.P, F, sums + b * s.K * F, counts + b * s.K);
}

// Stops an image once at most tol * (its valid pixels) labels changed; resets the count.
__global__ void kmeans_converged_kernel(int* __restrict__ changed, const int* __restrict__ num_valid, int64_t B,
                                        double tol, int* __restrict__ done) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= B) return;
  if (!done[b] && double(changed[b]) <= tol * double(num_valid[b])) done[b] = 1;
  changed[b] = 0;
}

// Deterministic sums: members of key b * K + k are order[offsets[key]:offsets[key + 1]]
// (pixel order, from a stable sort); one thread per (key, channel) adds them in order.
template <typename acc_t>
__global__ void kmeans_sorted_sums_kernel(const acc_t* __restrict__ f, const int64_t* __restrict__ order,
                                          const int64_t* __restrict__ offsets, const KMeansShape s,
                                          acc_t* __restrict__ sums, int* __restrict__ counts) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= s.B * s.K * s.F) return;
  const int64_t key = i / s.F, j = i % s.F, b = key / s.K;
  acc_t acc = 0;
  for (int64_t m = offsets[key]; m < offsets[key + 1]; ++m) acc += f[(b * s.F + j) * s.P + order[m] % s.P];
  sums[i] = acc;
  if (j == 0) counts[key] = static_cast<int>(offsets[key + 1] - offsets[key]);
}

// kF features of a pixel stay in registers while they take at most 160 of a thread's 255
// registers; beyond (double, F = 130) ptxas spills, so those features are re-read instead.
template <typename acc_t>
constexpr int registers_or_global(int kF) {
  return kF * sizeof(acc_t) <= 160 * 4 ? kF : 0;
}

template <typename acc_t>
void launch_assign(const acc_t* f, const acc_t* centroids, const KMeansShape& s, const int* done, bool accumulate,
                   int64_t* labels, int* changed, acc_t* sums, int* counts, cudaStream_t stream) {
  const dim3 grid(blocks_for(s.P), static_cast<unsigned>(s.B));
#define SEGSORT_ASSIGN(KF) \
  { \
    constexpr int kF = registers_or_global<acc_t>(KF); \
    kmeans_assign_kernel<acc_t, kF> \
        <<<grid, kThreads, 0, stream>>>(f, centroids, s, done, accumulate, labels, changed, sums, counts); \
  }
  switch (s.F) {
    case 18: SEGSORT_ASSIGN(18); break;
    case 34: SEGSORT_ASSIGN(34); break;
    case 66: SEGSORT_ASSIGN(66); break;
    case 130: SEGSORT_ASSIGN(130); break;
    default: SEGSORT_ASSIGN(0);
  }
#undef SEGSORT_ASSIGN
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> spherical_kmeans_cuda(
    const at::Tensor& x, const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& init,
    int64_t grid_h, int64_t grid_w, int64_t iters, double coord_weight, double tol) {
  check_spherical_kmeans_inputs(x, mask, init, grid_h, grid_w, iters, coord_weight, tol);
  const c10::cuda::CUDAGuard guard(x.device());
  const KMeansShape s{x.size(0),     x.size(1),       x.size(2), x.size(3), x.size(2) * x.size(3),
                      x.size(1) + 2, grid_h * grid_w, grid_h,    grid_w};
  SEGSORT_CHECK_ARG(s.B < 65536, "x: at most 65535 images per call, got ", s.B);
  // Pixel counts per image and cluster are int32.
  SEGSORT_CHECK_ARG(s.P < (int64_t(1) << 31), "x: an image must have < 2^31 pixels, got ", s.P);
  auto labels = at::empty({s.B, s.H, s.W}, x.options().dtype(at::kLong));
  auto centroids_out = at::zeros({s.B, s.K, s.F}, x.options());
  if (labels.numel() == 0) return {labels, centroids_out};
  const auto x_bdp = pixels_bdp(x);
  const PixelView v = pixel_view(x_bdp);
  const auto mask_c = mask.has_value() ? mask->contiguous() : at::Tensor();
  const auto init_c = init.has_value() ? init->contiguous() : at::Tensor();
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  const auto stream = current_stream();
  const auto int_opts = x.options().dtype(at::kInt);
  auto num_valid = at::zeros({s.B}, int_opts);
  auto changed = at::zeros({s.B}, int_opts);
  auto done = at::zeros({s.B}, int_opts);
  auto counts = at::zeros({s.B, s.K}, int_opts);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spherical_kmeans_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto acc_opts = x.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
    auto f = at::empty({s.B, s.F, s.P}, acc_opts);
    auto sums = at::zeros({s.B, s.K, s.F}, acc_opts);
    auto centroids = at::zeros({s.B, s.K, s.F}, acc_opts);
    acc_t* f_ptr = f.mutable_data_ptr<acc_t>();
    int64_t* label_ptr = labels.mutable_data_ptr<int64_t>();
    kmeans_prepare_kernel<scalar_t, acc_t>
        <<<dim3(blocks_for(s.P), static_cast<unsigned>(s.B)), kThreads, 0, stream>>>(
            x_bdp.const_data_ptr<scalar_t>(), v, mask_c.defined() ? mask_c.const_data_ptr<bool>() : nullptr,
            init_c.defined() ? init_c.const_data_ptr<int64_t>() : nullptr, s, static_cast<acc_t>(coord_weight),
            f_ptr, label_ptr, num_valid.mutable_data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const dim3 pixel_grid(blocks_for(s.P), static_cast<unsigned>(s.B));
    acc_t* sum_ptr = sums.mutable_data_ptr<acc_t>();
    int* count_ptr = counts.mutable_data_ptr<int>();
    for (int64_t t = 0; t < iters; ++t) {
      if (deterministic) {
        // Sums in a fixed order: members sorted by (image, cluster), then pixel.
        const auto flat = labels.reshape(-1);
        const auto image = at::arange(s.B * s.P, flat.options()).div_(s.P, "floor");
        const auto keys = at::where(flat.ge(0), image.mul_(s.K).add_(flat), s.B * s.K);
        at::Tensor sorted, order;
        std::tie(sorted, order) = at::sort(keys, /*stable=*/true, 0, false);
        const auto offsets = at::searchsorted(sorted, at::arange(s.B * s.K + 1, flat.options()));
        kmeans_sorted_sums_kernel<acc_t><<<blocks_for(s.B * s.K * s.F), kThreads, 0, stream>>>(
            f_ptr, order.const_data_ptr<int64_t>(), offsets.const_data_ptr<int64_t>(), s, sum_ptr, count_ptr);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      } else if (t == 0) {
        kmeans_accumulate_kernel<acc_t>
            <<<pixel_grid, kThreads, 0, stream>>>(f_ptr, label_ptr, s, sum_ptr, count_ptr);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      kmeans_update_kernel<acc_t><<<blocks_for(s.B * s.K), kThreads, 0, stream>>>(
          sum_ptr, count_ptr, s, done.const_data_ptr<int>(), centroids.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      launch_assign<acc_t>(f_ptr, centroids.const_data_ptr<acc_t>(), s, done.const_data_ptr<int>(),
                           !deterministic && t + 1 < iters, label_ptr, changed.mutable_data_ptr<int>(), sum_ptr,
                           count_ptr, stream);
      if (tol >= 0) {
        kmeans_converged_kernel<<<blocks_for(s.B), kThreads, 0, stream>>>(changed.mutable_data_ptr<int>(),
                                                                          num_valid.const_data_ptr<int>(), s.B,
                                                                          tol, done.mutable_data_ptr<int>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
    centroids_out.copy_(centroids);
  });
  return {labels, centroids_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CUDA, m) { m.impl("spherical_kmeans", &spherical_kmeans_cuda); }

}  // namespace segsort
