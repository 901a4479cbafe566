// Launch helpers shared by the CUDA kernels.
#pragma once

#ifdef SEGSORT_CUDA_EMULATION
#include "cuda_emulation.h"  // tests/cuda_emulation: these kernels run on the CPU in the tests
#else
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <cstdint>

namespace segsort {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

inline unsigned int blocks_for(int64_t n, int threads = kThreads) {
  return static_cast<unsigned int>((n + threads - 1) / threads);
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace segsort
