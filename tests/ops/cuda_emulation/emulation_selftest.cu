// Kernels that check the emulator itself: two correct reductions (warp shuffles; shared
// memory + __syncthreads), atomics, and three kernels with undefined behaviour in CUDA that
// the emulator must refuse instead of running. Built only into the emulated test extension.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "segsort/cuda_utils.h"

namespace {

using segsort::kFullMask;

// out[w] = sum of x over warp w's 32 elements (zeros past n), by a butterfly of shuffles.
__global__ void warp_sum_kernel(const float* x, int64_t n, float* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  float v = i < n ? x[i] : 0.f;
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  if ((threadIdx.x & 31) == 0) out[i / 32] = v;
}

// out[b] = sum of block b's elements, tree reduction in shared memory.
__global__ void block_sum_kernel(const float* x, int64_t n, float* out) {
  __shared__ float partial[256];
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  partial[threadIdx.x] = i < n ? x[i] : 0.f;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

__global__ void histogram_kernel(const int64_t* x, int64_t n, int* bins) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) atomicAdd(bins + x[i], 1);
}

// Undefined: lanes past n have returned, yet the shuffle's mask names all 32.
__global__ void exited_lane_kernel(const float* x, int64_t n, float* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  out[i] = __shfl_down_sync(kFullMask, x[i], 1);
}

// Undefined: the two halves of a warp reach different full-mask intrinsics.
__global__ void divergent_kernel(const float* x, int64_t n, float* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if ((threadIdx.x & 31) < 16) {
    out[i] = __shfl_sync(kFullMask, x[i], 0);
  } else {
    out[i] = static_cast<float>(__ballot_sync(kFullMask, x[i] > 0));
  }
}

// Undefined: threads of a block wait at two different barriers.
__global__ void divergent_barrier_kernel(const float* x, int64_t n, float* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
    out[threadIdx.x] = x[0];
  } else {
    __syncthreads();
  }
}

at::Tensor run(const at::Tensor& x, int64_t kernel) {
  const int64_t n = x.numel();
  const auto stream = segsort::current_stream();
  const unsigned blocks = segsort::blocks_for(n);
  auto out = at::zeros({std::max<int64_t>(n, int64_t(blocks) * segsort::kThreads)}, x.options());
  const float* xp = x.const_data_ptr<float>();
  float* op = out.mutable_data_ptr<float>();
  switch (kernel) {
    case 0: warp_sum_kernel<<<blocks, segsort::kThreads, 0, stream>>>(xp, n, op); break;
    case 1: block_sum_kernel<<<blocks, segsort::kThreads, 0, stream>>>(xp, n, op); break;
    case 2: exited_lane_kernel<<<blocks, segsort::kThreads, 0, stream>>>(xp, n, op); break;
    case 3: divergent_kernel<<<blocks, segsort::kThreads, 0, stream>>>(xp, n, op); break;
    case 4: divergent_barrier_kernel<<<blocks, segsort::kThreads, 0, stream>>>(xp, n, op); break;
    default: TORCH_CHECK(false, "no kernel ", kernel);
  }
  return out;
}

at::Tensor histogram(const at::Tensor& x, int64_t bins) {
  auto out = at::zeros({bins}, x.options().dtype(at::kInt));
  histogram_kernel<<<segsort::blocks_for(x.numel()), segsort::kThreads, 0, segsort::current_stream()>>>(
      x.const_data_ptr<int64_t>(), x.numel(), out.mutable_data_ptr<int>());
  return out;
}

}  // namespace

TORCH_LIBRARY(segsort_emulation_selftest, m) {
  m.def("run(Tensor x, int kernel) -> Tensor", &run);
  m.def("histogram(Tensor x, int bins) -> Tensor", &histogram);
}
