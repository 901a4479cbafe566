// blurring_mean_shift_step on CPU (the blocked algorithm of mean_shift.h).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "segsort/mean_shift.h"

namespace segsort {
namespace {

constexpr int64_t kBlockElements = 1 << 20;  // 8 MiB of double kernel values per block

std::tuple<at::Tensor, at::Tensor> mean_shift_step_forward_cpu(const at::Tensor& x, const at::Tensor& lengths,
                                                               double bandwidth, double eta) {
  return mean_shift_forward_blocked(x, lengths, bandwidth, eta, kBlockElements);
}

at::Tensor mean_shift_step_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& out,
                                        const at::Tensor& norms, const at::Tensor& lengths, double bandwidth,
                                        double eta) {
  return mean_shift_backward_blocked(grad_out, x, out, norms, lengths, bandwidth, eta, kBlockElements);
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CPU, m) {
  m.impl("mean_shift_step_forward", &mean_shift_step_forward_cpu);
  m.impl("mean_shift_step_backward", &mean_shift_step_backward_cpu);
}

}  // namespace segsort
