// vmf_loss / vmf_nca_loss on CUDA. For D <= 128, fused kernels in the manner of flash
// attention (tiles.cuh): a block owns a tile of pixels and streams the bank (batch, then
// memory prototypes) through shared memory, keeping the online log-sum-exps of the
// denominator and numerator sets in registers; no logit reaches global memory. The
// backward recomputes the logits in two passes without atomics (deterministic):
//   rows pass, per pixel tile: dL/de = kappa sum_j coef_nj mu_j (and the own logits);
//   columns pass, per tile of batch prototypes and range of pixels: kappa sum_n coef_nj e_n,
//     the ranges' partial sums added in order afterwards,
// with coef_nj = dL/dlogit_nj (vmf_logit_grad). A larger D takes the blocked path: cuBLAS
// logits (vmf_loss.h) reduced by one warp per pixel row.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "segsort/cuda_utils.h"
#include "segsort/tiles.cuh"
#include "segsort/vmf_loss.h"
#include "segsort/vmf_loss_math.h"

namespace segsort {
namespace {

constexpr int64_t kBlockElements = int64_t(1) << 26;  // 256 MiB of float logits per block
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int64_t kTargetBlocks = 1024;  // columns pass: pixel ranges split until about this many blocks

template <typename T, int kD>
struct VmfTilings {
  static constexpr Tiling forward = choose_tiling<T, kD>(1, 1, 0, 1);  // pixels, bank; labels
  static constexpr Tiling rows = choose_tiling<T, kD>(1, 1, 1, 1);     // pixels, bank, coef; labels
  // prototypes, pixels, coef; the pixels' own id, own label, grad, lse_den, lse_num, own logit
  static constexpr Tiling cols = choose_tiling<T, kD>(1, 1, 1, 6);
  static constexpr bool fused = forward.rm > 0 && rows.rm > 0 && cols.rm > 0;
  // Blocks per SM the kernels are compiled for (__launch_bounds__; 0: ptxas's own register
  // target, which spills on sm_90 in the instantiations given a number here, see
  // benchmarks/cuda_resources.py).
  static constexpr int forward_blocks = kD == 128                                             ? 4
                                        : (std::is_same_v<T, double> && kD >= 16 && kD <= 32) ? 1
                                                                                              : 0;
  static constexpr int cols_blocks = std::is_same_v<T, float> && kD == 32 ? 4 : 0;
};

// The 16 lanes of a tile row merge their partial log-sum-exps.
template <typename T>
__device__ __forceinline__ void row_merge(OnlineLse<T>& lse) {
  for (int offset = 8; offset > 0; offset >>= 1) {
    const T m = __shfl_xor_sync(kFullMask, lse.m, offset);
    const T s = __shfl_xor_sync(kFullMask, lse.s, offset);
    lse.merge(m, s);
  }
}

// Bank rows [k0, k0 + kBN) and, for vMF-NCA, their labels into shared memory.
template <typename T, int kD, int kBN>
__device__ __forceinline__ void load_bank_tile(T (*tile)[kD + 1], int64_t* tile_labels, const T* __restrict__ bank,
                                               const int64_t* __restrict__ labels, int64_t k0, int64_t C, int D) {
  load_tile<T, kD, kBN>(tile, bank, k0, C, D);
  if (labels && threadIdx.x < kBN) tile_labels[threadIdx.x] = k0 + threadIdx.x < C ? labels[k0 + threadIdx.x] : -1;
}

template <typename T, int kD>
__global__ void __launch_bounds__(kTileThreads, VmfTilings<T, kD>::forward_blocks)
    vmf_forward_kernel(const T* __restrict__ e, const int64_t* __restrict__ ids, const T* __restrict__ bank,
                       const int64_t* __restrict__ labels, int64_t N, int64_t C, int D, T concentration,
                       T* __restrict__ loss, T* __restrict__ lse_den, T* __restrict__ lse_num) {
  constexpr Tiling t = VmfTilings<T, kD>::forward;
  constexpr int kRM = t.rm, kRN = t.rn, kBM = 16 * kRM, kBN = 16 * kRN;
  const bool nca = labels != nullptr;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int64_t row0 = blockIdx.x * static_cast<int64_t>(kBM);
  __shared__ T eq[kBM][kD + 1];
  __shared__ T pk[kBN][kD + 1];
  __shared__ int64_t label_k[kBN];
  load_tile<T, kD, kBM>(eq, e, row0, N, D);
  int64_t own[kRM], own_label[kRM];
  OnlineLse<T> den[kRM], num[kRM];
  T own_logit[kRM];
#pragma unroll
  for (int i = 0; i < kRM; ++i) {
    const int64_t row = row0 + ty * kRM + i;
    own[i] = row < N ? ids[row] : -1;
    own_label[i] = (nca && own[i] >= 0) ? labels[own[i]] : -1;
    own_logit[i] = T(0);
  }
  for (int64_t k0 = 0; k0 < C; k0 += kBN) {
    __syncthreads();
    load_bank_tile<T, kD, kBN>(pk, label_k, bank, labels, k0, C, D);
    __syncthreads();
    T s[kRM][kRN];
    tile_dot<T, kD, kRM, kRN>(eq, pk, s);
#pragma unroll
    for (int i = 0; i < kRM; ++i) {
#pragma unroll
      for (int j = 0; j < kRN; ++j) {
        const int64_t col = k0 + tx + 16 * j;
        if (col >= C) continue;
        const T logit = concentration * s[i][j];
        const bool is_own = col == own[i];
        const VmfColumn cc = vmf_column_of(is_own, nca, nca ? label_k[tx + 16 * j] : -1, own_label[i]);
        if (cc.in_denominator) den[i].add(logit);
        if (cc.positive) num[i].add(logit);
        if (is_own) own_logit[i] = logit;
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRM; ++i) {
    row_merge(den[i]);
    row_merge(num[i]);
    const T own_value = row_sum(own_logit[i]);  // one lane holds it, the others add 0
    const int64_t row = row0 + ty * kRM + i;
    if (row < N && own[i] >= 0 && tx == 0) {
      T num_value = num[i].value();
      lse_den[row] = den[i].value();
      loss[row] = vmf_pixel_loss<T>(nca, own_value, lse_den[row], num_value);
      lse_num[row] = num_value;
    }
  }
}

// Rows pass of the backward: dL/de into grad_e (N, D), and every pixel's own logit.
template <typename T, int kD>
__global__ void __launch_bounds__(kTileThreads)
    vmf_backward_rows_kernel(const T* __restrict__ e, const int64_t* __restrict__ ids, const T* __restrict__ bank,
                             const int64_t* __restrict__ labels, int64_t N, int64_t C, int D, T concentration,
                             const T* __restrict__ grad, const T* __restrict__ lse_den,
                             const T* __restrict__ lse_num, T* __restrict__ grad_e, T* __restrict__ own_logits) {
  constexpr Tiling t = VmfTilings<T, kD>::rows;
  constexpr int kRM = t.rm, kRN = t.rn, kBM = 16 * kRM, kBN = 16 * kRN, kC = kColsPerThread<kD>;
  const bool nca = labels != nullptr;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int64_t row0 = blockIdx.x * static_cast<int64_t>(kBM);
  __shared__ T eq[kBM][kD + 1];
  __shared__ T pk[kBN][kD + 1];
  __shared__ T coef[kBM][kBN + 1];
  __shared__ int64_t label_k[kBN];
  load_tile<T, kD, kBM>(eq, e, row0, N, D);
  __syncthreads();
  int64_t own[kRM], own_label[kRM];
  T g[kRM], den[kRM], num[kRM], own_logit[kRM], acc[kRM][kC];
#pragma unroll
  for (int i = 0; i < kRM; ++i) {
    const int r = ty * kRM + i;
    const int64_t row = row0 + r;
    own[i] = row < N ? ids[row] : -1;
    const bool valid = own[i] >= 0;
    own_label[i] = (nca && valid) ? labels[own[i]] : -1;
    g[i] = valid ? grad[row] : T(0);
    den[i] = valid ? lse_den[row] : T(0);
    num[i] = valid ? lse_num[row] : T(0);
    T part = T(0);
#pragma unroll
    for (int k = 0; k < kC; ++k) {
      const int c = tx + 16 * k;
      if (valid && owns_feature<kD>(k) && c < D) part += eq[r][c] * bank[own[i] * D + c];
      acc[i][k] = T(0);
    }
    own_logit[i] = concentration * row_sum(part);
    if (row < N && tx == 0) own_logits[row] = own_logit[i];
  }
  for (int64_t k0 = 0; k0 < C; k0 += kBN) {
    __syncthreads();
    load_bank_tile<T, kD, kBN>(pk, label_k, bank, labels, k0, C, D);
    __syncthreads();
    T s[kRM][kRN];
    tile_dot<T, kD, kRM, kRN>(eq, pk, s);
#pragma unroll
    for (int i = 0; i < kRM; ++i) {
#pragma unroll
      for (int j = 0; j < kRN; ++j) {
        const int64_t col = k0 + tx + 16 * j;
        T value = T(0);
        if (col < C && own[i] >= 0) {
          const bool is_own = col == own[i];
          const VmfColumn cc = vmf_column_of(is_own, nca, nca ? label_k[tx + 16 * j] : -1, own_label[i]);
          // The own column takes the own logit used in lse_all too (the Eq. 8 fallback).
          const T logit = is_own ? own_logit[i] : concentration * s[i][j];
          value = g[i] * vmf_logit_grad<T>(logit, is_own, cc, nca, own_logit[i], den[i], num[i]);
        }
        coef[ty * kRM + i][tx + 16 * j] = value;
      }
    }
    __syncthreads();
    tile_weighted_sum<T, kD, kRM, kBN>(coef, pk, acc);
  }
#pragma unroll
  for (int i = 0; i < kRM; ++i) {  // ignored pixels: 0, not 0 * (a NaN bank row) = NaN
#pragma unroll
    for (int k = 0; k < kC; ++k) acc[i][k] = own[i] >= 0 ? acc[i][k] : T(0);
  }
  store_rows<false, T, kD, kRM>(acc, concentration, grad_e, row0, N, D);
}

// Columns pass of the backward: block rows are batch prototypes j < S; pixel tiles of the
// block's range [n_begin, n_end) stream through. Writes the range's partial gradient
// kappa sum_n coef_nj e_n to partial[split] (S, D).
template <typename T, int kD>
__global__ void __launch_bounds__(kTileThreads, VmfTilings<T, kD>::cols_blocks)
    vmf_backward_cols_kernel(const T* __restrict__ e, const int64_t* __restrict__ ids,
                             const int64_t* __restrict__ labels, const T* __restrict__ bank, int64_t N, int64_t S,
                             int D, T concentration, const T* __restrict__ grad, const T* __restrict__ lse_den,
                             const T* __restrict__ lse_num, const T* __restrict__ own_logits, int64_t proto_tiles,
                             int64_t pixels_per_split, T* __restrict__ partial) {
  constexpr Tiling t = VmfTilings<T, kD>::cols;
  constexpr int kRM = t.rm, kRN = t.rn, kBM = 16 * kRM, kBN = 16 * kRN, kC = kColsPerThread<kD>;
  const bool nca = labels != nullptr;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int64_t split = blockIdx.x / proto_tiles, row0 = (blockIdx.x % proto_tiles) * kBM;
  const int64_t n_begin = split * pixels_per_split,
                n_end = n_begin + pixels_per_split < N ? n_begin + pixels_per_split : N;
  __shared__ T pq[kBM][kD + 1];
  __shared__ T ek[kBN][kD + 1];
  __shared__ T coef[kBM][kBN + 1];
  __shared__ int64_t own_n[kBN], own_label_n[kBN];
  __shared__ T g_n[kBN], den_n[kBN], num_n[kBN], own_logit_n[kBN];
  load_tile<T, kD, kBM>(pq, bank, row0, S, D);
  int64_t label_j[kRM];
  T acc[kRM][kC];
#pragma unroll
  for (int i = 0; i < kRM; ++i) {
    const int64_t j = row0 + ty * kRM + i;
    label_j[i] = (nca && j < S) ? labels[j] : -1;
    for (int k = 0; k < kC; ++k) acc[i][k] = T(0);
  }
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kBN) {
    __syncthreads();
    // Ignored pixels' rows are zero: their coefficients are 0, and 0 * NaN would be NaN.
    load_tile<T, kD, kBN>(ek, e, n0, n_end, D, [&](int64_t n) { return ids[n] >= 0; });
    if (threadIdx.x < kBN) {
      const int64_t n = n0 + threadIdx.x;
      const int64_t c = n < n_end ? ids[n] : -1;
      own_n[threadIdx.x] = c;
      own_label_n[threadIdx.x] = (nca && c >= 0) ? labels[c] : -1;
      g_n[threadIdx.x] = c >= 0 ? grad[n] : T(0);
      den_n[threadIdx.x] = c >= 0 ? lse_den[n] : T(0);
      num_n[threadIdx.x] = c >= 0 ? lse_num[n] : T(0);
      own_logit_n[threadIdx.x] = c >= 0 ? own_logits[n] : T(0);
    }
    __syncthreads();
    T s[kRM][kRN];
    tile_dot<T, kD, kRM, kRN>(pq, ek, s);
#pragma unroll
    for (int i = 0; i < kRM; ++i) {
      const int64_t j = row0 + ty * kRM + i;
#pragma unroll
      for (int jj = 0; jj < kRN; ++jj) {
        const int n = tx + 16 * jj;
        const int64_t c = own_n[n];
        T value = T(0);
        if (c >= 0) {
          const bool is_own = j == c;
          const VmfColumn cc = vmf_column_of(is_own, nca, label_j[i], own_label_n[n]);
          const T logit = is_own ? own_logit_n[n] : concentration * s[i][jj];
          value = g_n[n] * vmf_logit_grad<T>(logit, is_own, cc, nca, own_logit_n[n], den_n[n], num_n[n]);
        }
        coef[ty * kRM + i][n] = value;
      }
    }
    __syncthreads();
    tile_weighted_sum<T, kD, kRM, kBN>(coef, ek, acc);
  }
  store_rows<false, T, kD, kRM>(acc, concentration, partial + split * S * D, row0, S, D);
}

template <typename acc_t>
__device__ __forceinline__ void warp_merge(OnlineLse<acc_t>& lse) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const acc_t m = __shfl_xor_sync(kFullMask, lse.m, offset);
    const acc_t s = __shfl_xor_sync(kFullMask, lse.s, offset);
    lse.merge(m, s);
  }
}

template <typename acc_t>
__global__ void vmf_rows_forward_kernel(const acc_t* __restrict__ logits, int64_t rows, int64_t cols,
                                        const int64_t* __restrict__ ids, const int64_t* __restrict__ labels,
                                        bool nca, acc_t* __restrict__ loss, acc_t* __restrict__ lse_den,
                                        acc_t* __restrict__ lse_num) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;  // whole warps leave together
  const int64_t c = ids[r];
  if (c < 0) return;  // ignored pixel: outputs stay 0
  const acc_t* row = logits + r * cols;
  const int64_t own_label = nca ? labels[c] : -1;
  OnlineLse<acc_t> den, num;
  for (int64_t j = lane; j < cols; j += 32) {
    const VmfColumn col = vmf_column(j, c, nca, labels, own_label);
    if (col.in_denominator) den.add(row[j]);
    if (col.positive) num.add(row[j]);
  }
  warp_merge(den);
  warp_merge(num);
  if (lane == 0) {
    acc_t num_value = num.value();
    lse_den[r] = den.value();
    loss[r] = vmf_pixel_loss<acc_t>(nca, row[c], lse_den[r], num_value);
    lse_num[r] = num_value;
  }
}

template <typename acc_t>
__global__ void vmf_rows_backward_kernel(acc_t* __restrict__ logits, int64_t rows, int64_t cols,
                                         const int64_t* __restrict__ ids, const int64_t* __restrict__ labels,
                                         bool nca, const acc_t* __restrict__ lse_den,
                                         const acc_t* __restrict__ lse_num, const acc_t* __restrict__ grad) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;
  acc_t* row = logits + r * cols;
  const int64_t c = ids[r];
  if (c < 0) {
    for (int64_t j = lane; j < cols; j += 32) row[j] = acc_t(0);
    return;
  }
  const int64_t own_label = nca ? labels[c] : -1;
  const acc_t own_logit = row[c];
  __syncwarp();  // every lane has read row[c] before any lane overwrites it
  const acc_t g = grad[r], den = lse_den[r], num = lse_num[r];
  for (int64_t j = lane; j < cols; j += 32) {
    const VmfColumn col = vmf_column(j, c, nca, labels, own_label);
    row[j] = g * vmf_logit_grad<acc_t>(row[j], j == c, col, nca, own_logit, den, num);
  }
}

void rows_forward_cuda(const at::Tensor& logits, const at::Tensor& ids, const VmfBank& bank, bool nca,
                       at::Tensor loss, at::Tensor lse_den, at::Tensor lse_num) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  const unsigned blocks = blocks_for(rows, kWarpsPerBlock);
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "vmf_loss_rows_forward_cuda", [&] {
    vmf_rows_forward_kernel<scalar_t><<<blocks, kThreads, 0, current_stream()>>>(
        logits.const_data_ptr<scalar_t>(), rows, cols, ids.const_data_ptr<int64_t>(),
        nca ? bank.labels.const_data_ptr<int64_t>() : nullptr, nca, loss.mutable_data_ptr<scalar_t>(),
        lse_den.mutable_data_ptr<scalar_t>(), lse_num.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void rows_backward_cuda(at::Tensor& logits, const at::Tensor& ids, const VmfBank& bank, bool nca,
                        const at::Tensor& lse_den, const at::Tensor& lse_num, const at::Tensor& grad) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  const unsigned blocks = blocks_for(rows, kWarpsPerBlock);
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "vmf_loss_rows_backward_cuda", [&] {
    vmf_rows_backward_kernel<scalar_t><<<blocks, kThreads, 0, current_stream()>>>(
        logits.mutable_data_ptr<scalar_t>(), rows, cols, ids.const_data_ptr<int64_t>(),
        nca ? bank.labels.const_data_ptr<int64_t>() : nullptr, nca, lse_den.const_data_ptr<scalar_t>(),
        lse_num.const_data_ptr<scalar_t>(), grad.const_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> vmf_loss_cuda(
    const at::Tensor& embeddings, const at::Tensor& segment_ids, const at::Tensor& prototypes,
    const c10::optional<at::Tensor>& prototype_labels, const c10::optional<at::Tensor>& memory,
    const c10::optional<at::Tensor>& memory_labels, double concentration, bool nca) {
  const VmfBank bank = check_vmf_loss_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory,
                                             memory_labels, concentration, nca);
  const c10::cuda::CUDAGuard guard(embeddings.device());
  const int64_t N = embeddings.size(0), C = bank.vectors.size(0), D = embeddings.size(1);
  const auto type = at::toOpMathType(embeddings.scalar_type());
  if (!fused_kernels_fit<VmfTilings>(type, D)) {
    return vmf_loss_blocked(embeddings, segment_ids, bank, concentration, nca, kBlockElements, rows_forward_cuda);
  }
  const auto opts = embeddings.options().dtype(type);
  auto loss = at::zeros({N}, opts), lse_den = at::zeros({N}, opts), lse_num = at::zeros({N}, opts);
  if (N == 0 || C == 0) return {loss, lse_den, lse_num};
  const auto e = embeddings.to(type).contiguous();
  const auto vectors = bank.vectors.to(type).contiguous();
  const auto ids = segment_ids.contiguous();
  AT_DISPATCH_FLOATING_TYPES(type, "vmf_loss_cuda", [&] {
    with_feature_dim(D, [&](auto kd) {
      constexpr int kD = decltype(kd)::value;
      if constexpr (VmfTilings<scalar_t, kD>::fused) {
        const int64_t tiles = tiles_of(N, VmfTilings<scalar_t, kD>::forward);
        vmf_forward_kernel<scalar_t, kD><<<grid_blocks(tiles), kTileThreads, 0, current_stream()>>>(
            e.const_data_ptr<scalar_t>(), ids.const_data_ptr<int64_t>(), vectors.const_data_ptr<scalar_t>(),
            nca ? bank.labels.const_data_ptr<int64_t>() : nullptr, N, C, static_cast<int>(D),
            static_cast<scalar_t>(concentration), loss.mutable_data_ptr<scalar_t>(),
            lse_den.mutable_data_ptr<scalar_t>(), lse_num.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  });
  return {loss, lse_den, lse_num};
}

std::tuple<at::Tensor, at::Tensor> vmf_loss_backward_cuda(
    const at::Tensor& grad_loss, const at::Tensor& embeddings, const at::Tensor& segment_ids,
    const at::Tensor& prototypes, const c10::optional<at::Tensor>& prototype_labels,
    const c10::optional<at::Tensor>& memory, const c10::optional<at::Tensor>& memory_labels,
    const at::Tensor& lse_den, const at::Tensor& lse_num, double concentration, bool nca) {
  const VmfBank bank = check_vmf_loss_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory,
                                             memory_labels, concentration, nca);
  check_vmf_loss_backward_inputs(embeddings, grad_loss, lse_den, lse_num);
  const c10::cuda::CUDAGuard guard(embeddings.device());
  const int64_t N = embeddings.size(0), C = bank.vectors.size(0), D = embeddings.size(1), S = bank.num_batch;
  const auto type = at::toOpMathType(embeddings.scalar_type());
  if (!fused_kernels_fit<VmfTilings>(type, D)) {
    return vmf_loss_backward_blocked(grad_loss, embeddings, segment_ids, bank, lse_den, lse_num, concentration,
                                     nca, kBlockElements, rows_backward_cuda);
  }
  const auto opts = embeddings.options().dtype(type);
  auto grad_embeddings = at::zeros({N, D}, opts);
  auto grad_prototypes = at::zeros({S, D}, opts);
  if (N > 0 && C > 0) {
    const auto e = embeddings.to(type).contiguous();
    const auto vectors = bank.vectors.to(type).contiguous();
    const auto ids = segment_ids.contiguous();
    const auto grad = grad_loss.to(type).contiguous();
    const auto den = lse_den.to(type).contiguous(), num = lse_num.to(type).contiguous();
    auto own_logits = at::empty({N}, opts);
    AT_DISPATCH_FLOATING_TYPES(type, "vmf_loss_backward_cuda", [&] {
      with_feature_dim(D, [&](auto kd) {
        constexpr int kD = decltype(kd)::value;
        using Tilings = VmfTilings<scalar_t, kD>;
        if constexpr (Tilings::fused) {
          const auto kappa = static_cast<scalar_t>(concentration);
          const int64_t* labels = nca ? bank.labels.const_data_ptr<int64_t>() : nullptr;
          const int64_t row_tiles = tiles_of(N, Tilings::rows);
          vmf_backward_rows_kernel<scalar_t, kD><<<grid_blocks(row_tiles), kTileThreads, 0, current_stream()>>>(
              e.const_data_ptr<scalar_t>(), ids.const_data_ptr<int64_t>(), vectors.const_data_ptr<scalar_t>(),
              labels, N, C, static_cast<int>(D), kappa, grad.const_data_ptr<scalar_t>(),
              den.const_data_ptr<scalar_t>(), num.const_data_ptr<scalar_t>(),
              grad_embeddings.mutable_data_ptr<scalar_t>(), own_logits.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          if (S == 0) return;
          // Pixel ranges (whole tiles) so that the columns pass has about kTargetBlocks blocks.
          const int64_t proto_tiles = tiles_of(S, Tilings::cols), pixel_tile = 16 * Tilings::cols.rn;
          const int64_t pixel_tiles = (N + pixel_tile - 1) / pixel_tile;
          const int64_t wanted = std::max<int64_t>(1, kTargetBlocks / proto_tiles);
          const int64_t per_split = pixel_tile * ((pixel_tiles + wanted - 1) / wanted);
          const int64_t splits = (N + per_split - 1) / per_split;
          auto partial = at::empty({splits, S, D}, opts);
          vmf_backward_cols_kernel<scalar_t, kD>
              <<<grid_blocks(splits * proto_tiles), kTileThreads, 0, current_stream()>>>(
                  e.const_data_ptr<scalar_t>(), ids.const_data_ptr<int64_t>(), labels,
                  vectors.const_data_ptr<scalar_t>(), N, S, static_cast<int>(D), kappa,
                  grad.const_data_ptr<scalar_t>(), den.const_data_ptr<scalar_t>(), num.const_data_ptr<scalar_t>(),
                  own_logits.const_data_ptr<scalar_t>(), proto_tiles, per_split,
                  partial.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          at::sum_out(grad_prototypes, partial, {0});
        }
      });
    });
  }
  return {grad_embeddings.to(embeddings.scalar_type()), grad_prototypes.to(embeddings.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CUDA, m) {
  m.impl("vmf_loss", &vmf_loss_cuda);
  m.impl("_vmf_loss_backward", &vmf_loss_backward_cuda);
}

}  // namespace segsort
