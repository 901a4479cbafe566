// Launch helpers shared by the CUDA kernels.
#pragma once

#ifdef SEGSORT_CUDA_EMULATION
#include "cuda_emulation.h"  // tests/cuda_emulation: these kernels run on the CPU in the tests
#else
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <c10/util/Exception.h>

#include <cstdint>

namespace segsort {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

// A grid of `blocks` blocks along x, where CUDA allows at most 2^31 - 1: larger inputs
// are refused (naming `what`, the argument that sized them) instead of silently running
// a truncated grid.
inline unsigned int grid_blocks(int64_t blocks, const char* what = "the input") {
  TORCH_CHECK_VALUE(blocks < (int64_t(1) << 31), what, " is too large: a kernel launch of ", blocks,
                    " blocks exceeds CUDA's grid limit of 2^31 - 1");
  return static_cast<unsigned int>(blocks);
}

inline unsigned int blocks_for(int64_t n, int threads = kThreads, const char* what = "the input") {
  return grid_blocks((n + threads - 1) / threads, what);
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace segsort
