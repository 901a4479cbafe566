// blurring_mean_shift_step on CUDA: fused kernels in the manner of flash attention (one
// step is attention with Q = K = V = X). A block owns a tile of query rows of one image,
// streams the image's points through shared memory in key tiles, and keeps an online
// softmax (running max, running sum) and the weighted sum of points in registers: no
// kernel value ever reaches global memory, so memory is O(N * D).
// The backward recomputes the tiles in two passes, deterministic and without atomics:
//   rows pass, per query tile j: lse_j and c_j = g_j . m_j, then the query-role gradient
//     bandwidth * sum_i dS_ji x_i;
//   columns pass, per key tile i: the value and key roles sum_j p_ji g_j + bandwidth * dS_ji x_j,
// with g = dL/dm, m_j = sum_i p_ji x_i and dS_ji = p_ji (g_j . x_i - c_j).
// D is a compile-time constant in {8, 16, 32, 64, 128} (features zero-padded up to it in
// shared memory); each kernel's tiles are the largest whose shared memory fits the 48 KiB
// every GPU gives without opt-in. A D above 128, or double tiles that do not fit, take the
// blocked cuBLAS path of blurring_mean_shift.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "segsort/blurring_mean_shift.h"
#include "segsort/cuda_utils.h"
#include "segsort/tiles.cuh"

namespace segsort {
namespace {

constexpr int64_t kBlockElements = int64_t(1) << 26;  // blocked path: 256 MiB of float kernel values

template <typename T, int kD>
struct MeanShiftTilings {
  static constexpr Tiling forward = choose_tiling<T, kD>(1, 1, 1, 0);  // xq, xk, p
  static constexpr Tiling rows = choose_tiling<T, kD>(2, 1, 1, 0);     // xq, gq, xk, ds
  static constexpr Tiling cols = choose_tiling<T, kD>(1, 2, 2, 2);     // xi, xj, gj, p, ds; lse, dot
  static constexpr bool fused = forward.rm > 0 && rows.rm > 0 && cols.rm > 0;
};
// Blocks per SM the kernels are compiled for (__launch_bounds__; 0: ptxas's own register
// target, which spills on sm_90 in the instantiations given a number here, see
// benchmarks/cuda_resources.py). Variable templates, not members: a member is instantiated
// with the tilings even where the kernels are not (unfused double D = 128), and unused.
template <typename T, int kD>
constexpr int kForwardMinBlocks = std::is_same_v<T, double> && kD == 32 ? 2 : 0;
template <typename T, int kD>
constexpr int kRowsMinBlocks = std::is_same_v<T, double> && kD == 16 ? 2 : 0;
// The online softmax of a block's query rows xq over all L points of the image: row max m,
// this thread's part of the row sum l, and acc = sum_i exp(bandwidth x_j . x_i - m) x_i over
// this thread's feature columns. Every thread of the block must call it (barriers).
template <typename T, int kD, int kRM, int kRN>
__device__ void attend_rows(const T (*xq)[kD + 1], T (*xk)[kD + 1], T (*p)[16 * kRN + 1],
                            const T* __restrict__ points, int64_t L, int D, T bandwidth, T (&m)[kRM], T (&l)[kRM],
                            T (&acc)[kRM][kColsPerThread<kD>]) {
  constexpr int kBN = 16 * kRN;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  for (int i = 0; i < kRM; ++i) {
    m[i] = -INFINITY;
    l[i] = T(0);
    for (int k = 0; k < kColsPerThread<kD>; ++k) acc[i][k] = T(0);
  }
  for (int64_t k0 = 0; k0 < L; k0 += kBN) {
    __syncthreads();  // the previous tile is no longer read
    load_tile<T, kD, kBN>(xk, points, k0, L, D);
    __syncthreads();
    T s[kRM][kRN];
    tile_dot<T, kD, kRM, kRN>(xq, xk, s);
#pragma unroll
    for (int i = 0; i < kRM; ++i) {
      T tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < kRN; ++j) {
        s[i][j] = (k0 + tx + 16 * j < L) ? bandwidth * s[i][j] : T(-INFINITY);
        tile_max = fmax(tile_max, s[i][j]);
      }
      // Column k0 is valid, so the new max is finite and exp(-inf - max) = 0 rescales the start.
      const T m_new = fmax(m[i], row_max(tile_max));
      const T rescale = exp(m[i] - m_new);
      m[i] = m_new;
      l[i] *= rescale;
#pragma unroll
      for (int k = 0; k < kColsPerThread<kD>; ++k) acc[i][k] *= rescale;
#pragma unroll
      for (int j = 0; j < kRN; ++j) {
        const T pij = exp(s[i][j] - m_new);
        l[i] += pij;
        p[ty * kRM + i][tx + 16 * j] = pij;
      }
    }
    __syncthreads();
    tile_weighted_sum<T, kD, kRM, kBN>(p, xk, acc);
  }
}

template <typename T, int kD>
__global__ void __launch_bounds__(kTileThreads, kForwardMinBlocks<T, kD>)
    mean_shift_forward_kernel(const T* __restrict__ x, const int64_t* __restrict__ lengths, int64_t N, int D,
                              int64_t row_tiles, T bandwidth, T eta, T* __restrict__ out, T* __restrict__ norms) {
  constexpr Tiling t = MeanShiftTilings<T, kD>::forward;
  constexpr int kRM = t.rm, kRN = t.rn, kBM = 16 * kRM, kBN = 16 * kRN, kC = kColsPerThread<kD>;
  const int64_t b = blockIdx.x / row_tiles, row0 = (blockIdx.x % row_tiles) * kBM;
  const int64_t L = lengths ? lengths[b] : N;
  if (row0 >= L) return;  // the whole block: rows past L keep the copy of x made by the host
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  __shared__ T xq[kBM][kD + 1];
  __shared__ T xk[kBN][kD + 1];
  __shared__ T p[kBM][kBN + 1];
  const T* points = x + b * N * D;
  load_tile<T, kD, kBM>(xq, points, row0, L, D);
  T m[kRM], l[kRM], acc[kRM][kC];
  attend_rows<T, kD, kRM, kRN>(xq, xk, p, points, L, D, bandwidth, m, l, acc);
#pragma unroll
  for (int i = 0; i < kRM; ++i) {
    const int r = ty * kRM + i;
    const T mean_scale = eta / row_sum(l[i]);
    T y[kC];
    T sq = T(0);
#pragma unroll
    for (int k = 0; k < kC; ++k) {
      y[k] = owns_feature<kD>(k) ? (1 - eta) * xq[r][tx + 16 * k] + mean_scale * acc[i][k] : T(0);
      sq += y[k] * y[k];
    }
    const T n = sqrt(row_sum(sq));
    const T inv = T(1) / fmax(n, T(kNormEps));
    const int64_t row = row0 + r;
    if (row < L) {
#pragma unroll
      for (int k = 0; k < kC; ++k) {
        const int c = tx + 16 * k;
        if (owns_feature<kD>(k) && c < D) out[(b * N + row) * D + c] = y[k] * inv;
      }
      if (tx == 0) norms[b * N + row] = n;
    }
  }
}

// Rows pass of the backward: g = dL/dm (B, N, D). Writes lse_j and c_j = g_j . m_j for the
// columns pass and adds the query-role gradient to grad_x.
template <typename T, int kD>
__global__ void __launch_bounds__(kTileThreads, kRowsMinBlocks<T, kD>) mean_shift_backward_rows_kernel(
    const T* __restrict__ x, const T* __restrict__ g, const int64_t* __restrict__ lengths, int64_t N, int D,
    int64_t row_tiles, T bandwidth, T* __restrict__ lse, T* __restrict__ gm_dot, T* __restrict__ grad_x) {
  constexpr Tiling t = MeanShiftTilings<T, kD>::rows;
  constexpr int kRM = t.rm, kRN = t.rn, kBM = 16 * kRM, kBN = 16 * kRN, kC = kColsPerThread<kD>;
  const int64_t b = blockIdx.x / row_tiles, row0 = (blockIdx.x % row_tiles) * kBM;
  const int64_t L = lengths ? lengths[b] : N;
  if (row0 >= L) return;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  __shared__ T xq[kBM][kD + 1];
  __shared__ T gq[kBM][kD + 1];
  __shared__ T xk[kBN][kD + 1];
  __shared__ T ds[kBM][kBN + 1];
  const T* points = x + b * N * D;
  load_tile<T, kD, kBM>(xq, points, row0, L, D);
  load_tile<T, kD, kBM>(gq, g + b * N * D, row0, L, D);
  T m[kRM], l[kRM], acc[kRM][kC];
  attend_rows<T, kD, kRM, kRN>(xq, xk, ds, points, L, D, bandwidth, m, l, acc);
  T row_lse[kRM], row_dot[kRM];
#pragma unroll
  for (int i = 0; i < kRM; ++i) {
    const int r = ty * kRM + i;
    const T sum = row_sum(l[i]);
    T dot = T(0);
#pragma unroll
    for (int k = 0; k < kC; ++k) {
      if (owns_feature<kD>(k)) dot += gq[r][tx + 16 * k] * acc[i][k];
    }
    row_lse[i] = m[i] + log(sum);
    row_dot[i] = row_sum(dot) / sum;
    const int64_t row = row0 + r;
    if (row < L && tx == 0) {
      lse[b * N + row] = row_lse[i];
      gm_dot[b * N + row] = row_dot[i];
    }
    for (int k = 0; k < kC; ++k) acc[i][k] = T(0);
  }
  for (int64_t k0 = 0; k0 < L; k0 += kBN) {
    __syncthreads();
    load_tile<T, kD, kBN>(xk, points, k0, L, D);
    __syncthreads();
    T s[kRM][kRN], dp[kRM][kRN];
    tile_dot<T, kD, kRM, kRN>(xq, xk, s);
    tile_dot<T, kD, kRM, kRN>(gq, xk, dp);
#pragma unroll
    for (int i = 0; i < kRM; ++i) {
#pragma unroll
      for (int j = 0; j < kRN; ++j) {
        const T pij = (k0 + tx + 16 * j < L) ? exp(bandwidth * s[i][j] - row_lse[i]) : T(0);
        ds[ty * kRM + i][tx + 16 * j] = pij * (dp[i][j] - row_dot[i]);
      }
    }
    __syncthreads();
    tile_weighted_sum<T, kD, kRM, kBN>(ds, xk, acc);
  }
  store_rows<true, T, kD, kRM>(acc, bandwidth, grad_x + b * N * D, row0, L, D);
}

// Columns pass of the backward: block rows are key points i; the query tiles j stream
// through. Adds the value and key roles to grad_x.
template <typename T, int kD>
__global__ void __launch_bounds__(kTileThreads)
    mean_shift_backward_cols_kernel(const T* __restrict__ x, const T* __restrict__ g,
                                    const int64_t* __restrict__ lengths, int64_t N, int D, int64_t row_tiles,
                                    T bandwidth, const T* __restrict__ lse, const T* __restrict__ gm_dot,
                                    T* __restrict__ grad_x) {
  constexpr Tiling t = MeanShiftTilings<T, kD>::cols;
  constexpr int kRM = t.rm, kRN = t.rn, kBM = 16 * kRM, kBN = 16 * kRN, kC = kColsPerThread<kD>;
  const int64_t b = blockIdx.x / row_tiles, row0 = (blockIdx.x % row_tiles) * kBM;
  const int64_t L = lengths ? lengths[b] : N;
  if (row0 >= L) return;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  __shared__ T xi[kBM][kD + 1];
  __shared__ T xj[kBN][kD + 1];
  __shared__ T gj[kBN][kD + 1];
  __shared__ T pw[kBM][kBN + 1];
  __shared__ T dsw[kBM][kBN + 1];
  __shared__ T lse_j[kBN];
  __shared__ T dot_j[kBN];
  const T* points = x + b * N * D;
  load_tile<T, kD, kBM>(xi, points, row0, L, D);
  T acc[kRM][kC];
  for (int i = 0; i < kRM; ++i) {
    for (int k = 0; k < kC; ++k) acc[i][k] = T(0);
  }
  for (int64_t j0 = 0; j0 < L; j0 += kBN) {
    __syncthreads();
    load_tile<T, kD, kBN>(xj, points, j0, L, D);
    load_tile<T, kD, kBN>(gj, g + b * N * D, j0, L, D);
    if (threadIdx.x < kBN) {
      const int64_t col = j0 + threadIdx.x;
      lse_j[threadIdx.x] = col < L ? lse[b * N + col] : T(0);
      dot_j[threadIdx.x] = col < L ? gm_dot[b * N + col] : T(0);
    }
    __syncthreads();
    T s[kRM][kRN], dp[kRM][kRN];
    tile_dot<T, kD, kRM, kRN>(xi, xj, s);
    tile_dot<T, kD, kRM, kRN>(xi, gj, dp);
#pragma unroll
    for (int i = 0; i < kRM; ++i) {
#pragma unroll
      for (int j = 0; j < kRN; ++j) {
        const int c = tx + 16 * j;
        const T pji = (j0 + c < L) ? exp(bandwidth * s[i][j] - lse_j[c]) : T(0);
        pw[ty * kRM + i][c] = pji;
        dsw[ty * kRM + i][c] = bandwidth * pji * (dp[i][j] - dot_j[c]);
      }
    }
    __syncthreads();
    tile_weighted_sum<T, kD, kRM, kBN>(pw, gj, acc);   // value role
    tile_weighted_sum<T, kD, kRM, kBN>(dsw, xj, acc);  // key role
  }
  store_rows<true, T, kD, kRM>(acc, T(1), grad_x + b * N * D, row0, L, D);
}

std::tuple<at::Tensor, at::Tensor> blurring_mean_shift_step_cuda(
    const at::Tensor& x_in, const c10::optional<at::Tensor>& lengths, double bandwidth, double eta) {
  check_blurring_mean_shift_step_inputs(x_in, lengths, bandwidth, eta);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t B = x_in.size(0), N = x_in.size(1), D = x_in.size(2);
  const auto type = at::toOpMathType(x_in.scalar_type());
  if (!fused_kernels_fit<MeanShiftTilings>(type, D)) {
    return blurring_mean_shift_step_blocked(x_in, lengths, bandwidth, eta, kBlockElements);
  }
  mean_shift_lengths(lengths, B, N);  // range check (one sync)
  const auto x = x_in.to(type).contiguous();
  auto out = x.clone();  // rows past an image's length are copied through
  auto norms = at::ones({B, N}, x.options());
  if (x.numel() == 0) return {out.to(x_in.scalar_type()), norms};
  const auto lens = lengths.has_value() ? lengths->contiguous() : at::Tensor();
  const int64_t* lens_ptr = lens.defined() ? lens.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(type, "blurring_mean_shift_step_cuda", [&] {
    with_feature_dim(D, [&](auto kd) {
      constexpr int kD = decltype(kd)::value;
      if constexpr (MeanShiftTilings<scalar_t, kD>::fused) {
        const int64_t tiles = tiles_of(N, MeanShiftTilings<scalar_t, kD>::forward);
        mean_shift_forward_kernel<scalar_t, kD><<<grid_blocks(B * tiles), kTileThreads, 0, current_stream()>>>(
            x.const_data_ptr<scalar_t>(), lens_ptr, N, static_cast<int>(D), tiles,
            static_cast<scalar_t>(bandwidth), static_cast<scalar_t>(eta), out.mutable_data_ptr<scalar_t>(),
            norms.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  });
  return {out.to(x_in.scalar_type()), norms};
}

at::Tensor blurring_mean_shift_step_backward_cuda(
    const at::Tensor& grad_out_in, const at::Tensor& x_in, const at::Tensor& out_in, const at::Tensor& norms,
    const c10::optional<at::Tensor>& lengths, double bandwidth, double eta) {
  check_blurring_mean_shift_step_backward_inputs(grad_out_in, x_in, out_in, norms, lengths, bandwidth, eta);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t B = x_in.size(0), N = x_in.size(1), D = x_in.size(2);
  const auto type = at::toOpMathType(x_in.scalar_type());
  if (!fused_kernels_fit<MeanShiftTilings>(type, D)) {
    return blurring_mean_shift_step_backward_blocked(grad_out_in, x_in, out_in, norms, lengths, bandwidth, eta,
                                                     kBlockElements);
  }
  mean_shift_lengths(lengths, B, N);
  const auto x = x_in.to(type).contiguous();
  const auto grad_out = grad_out_in.to(type).contiguous();
  if (x.numel() == 0) return grad_out.clone().to(x_in.scalar_type());
  const auto grad_y = mean_shift_grad_y(grad_out, out_in.to(type), norms.to(type));
  const auto lens = lengths.has_value() ? lengths->contiguous() : at::Tensor();
  const int64_t* lens_ptr = lens.defined() ? lens.const_data_ptr<int64_t>() : nullptr;
  // Valid points start from the (1 - eta) x term; points past the length pass their
  // gradient through unchanged.
  auto grad_x = grad_y * (1 - eta);
  if (lens.defined()) {
    const auto valid = (at::arange(N, lens.options()).unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(-1);
    grad_x = at::where(valid, grad_x, grad_out);
  }
  grad_x = grad_x.contiguous();
  const auto grad_m = (grad_y * eta).contiguous();  // m_j = sum_i p_ji x_i
  auto lse = at::empty({B, N}, x.options());
  auto gm_dot = at::empty({B, N}, x.options());
  AT_DISPATCH_FLOATING_TYPES(type, "blurring_mean_shift_step_backward_cuda", [&] {
    with_feature_dim(D, [&](auto kd) {
      constexpr int kD = decltype(kd)::value;
      using Tilings = MeanShiftTilings<scalar_t, kD>;
      if constexpr (Tilings::fused) {
        const auto bw = static_cast<scalar_t>(bandwidth);
        const int64_t row_tiles = tiles_of(N, Tilings::rows);
        mean_shift_backward_rows_kernel<scalar_t, kD>
            <<<grid_blocks(B * row_tiles), kTileThreads, 0, current_stream()>>>(
                x.const_data_ptr<scalar_t>(), grad_m.const_data_ptr<scalar_t>(), lens_ptr, N, static_cast<int>(D),
                row_tiles, bw, lse.mutable_data_ptr<scalar_t>(), gm_dot.mutable_data_ptr<scalar_t>(),
                grad_x.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        const int64_t col_tiles = tiles_of(N, Tilings::cols);
        mean_shift_backward_cols_kernel<scalar_t, kD>
            <<<grid_blocks(B * col_tiles), kTileThreads, 0, current_stream()>>>(
                x.const_data_ptr<scalar_t>(), grad_m.const_data_ptr<scalar_t>(), lens_ptr, N, static_cast<int>(D),
                col_tiles, bw, lse.const_data_ptr<scalar_t>(), gm_dot.const_data_ptr<scalar_t>(),
                grad_x.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  });
  return grad_x.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CUDA, m) {
  m.impl("blurring_mean_shift_step", &blurring_mean_shift_step_cuda);
  m.impl("_blurring_mean_shift_step_backward", &blurring_mean_shift_step_backward_cuda);
}

}  // namespace segsort
