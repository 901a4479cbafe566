// blurring_mean_shift_step on CUDA (the blocked algorithm of mean_shift.h: cuBLAS GEMMs
// and softmax over bounded blocks of kernel rows).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "segsort/cuda_utils.h"
#include "segsort/mean_shift.h"

namespace segsort {
namespace {

constexpr int64_t kBlockElements = int64_t(1) << 26;  // 256 MiB of float kernel values per block

std::tuple<at::Tensor, at::Tensor> mean_shift_step_forward_cuda(const at::Tensor& x, const at::Tensor& lengths,
                                                                double bandwidth, double eta) {
  const c10::cuda::CUDAGuard guard(x.device());
  return mean_shift_forward_blocked(x, lengths, bandwidth, eta, kBlockElements);
}

at::Tensor mean_shift_step_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& out,
                                         const at::Tensor& norms, const at::Tensor& lengths, double bandwidth,
                                         double eta) {
  const c10::cuda::CUDAGuard guard(x.device());
  return mean_shift_backward_blocked(grad_out, x, out, norms, lengths, bandwidth, eta, kBlockElements);
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CUDA, m) {
  m.impl("mean_shift_step_forward", &mean_shift_step_forward_cuda);
  m.impl("mean_shift_step_backward", &mean_shift_step_backward_cuda);
}

}  // namespace segsort
