// vmf_loss / vmf_nca_loss on CUDA: blocked cuBLAS logits (vmf_loss.h) reduced by one warp
// per pixel row: an online log-sum-exp over the row's columns, merged across the warp.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "segsort/cuda_utils.h"
#include "segsort/vmf_loss.h"
#include "segsort/vmf_math.h"

namespace segsort {
namespace {

constexpr int64_t kBlockElements = int64_t(1) << 26;  // 256 MiB of float logits per block
constexpr int kWarpsPerBlock = kThreads / 32;

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
  const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
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
  const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "vmf_loss_rows_backward_cuda", [&] {
    vmf_rows_backward_kernel<scalar_t><<<blocks, kThreads, 0, current_stream()>>>(
        logits.mutable_data_ptr<scalar_t>(), rows, cols, ids.const_data_ptr<int64_t>(),
        nca ? bank.labels.const_data_ptr<int64_t>() : nullptr, nca, lse_den.const_data_ptr<scalar_t>(),
        lse_num.const_data_ptr<scalar_t>(), grad.const_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> vmf_loss_forward_cuda(
    const at::Tensor& embeddings, const at::Tensor& segment_ids, const at::Tensor& prototypes,
    const c10::optional<at::Tensor>& prototype_labels, const c10::optional<at::Tensor>& memory,
    const c10::optional<at::Tensor>& memory_labels, double concentration, bool nca) {
  const c10::cuda::CUDAGuard guard(embeddings.device());
  const VmfBank bank = check_vmf_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory,
                                        memory_labels, nca);
  return vmf_loss_forward_blocked(embeddings, segment_ids, bank, concentration, nca, kBlockElements,
                                  rows_forward_cuda);
}

std::tuple<at::Tensor, at::Tensor> vmf_loss_backward_cuda(
    const at::Tensor& grad_loss, const at::Tensor& embeddings, const at::Tensor& segment_ids,
    const at::Tensor& prototypes, const c10::optional<at::Tensor>& prototype_labels,
    const c10::optional<at::Tensor>& memory, const c10::optional<at::Tensor>& memory_labels,
    const at::Tensor& lse_den, const at::Tensor& lse_num, double concentration, bool nca) {
  const c10::cuda::CUDAGuard guard(embeddings.device());
  const VmfBank bank = check_vmf_inputs(embeddings, segment_ids, prototypes, prototype_labels, memory,
                                        memory_labels, nca);
  return vmf_loss_backward_blocked(grad_loss, embeddings, segment_ids, bank, lse_den, lse_num,
                                   concentration, nca, kBlockElements, rows_backward_cuda);
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CUDA, m) {
  m.impl("vmf_loss_forward", &vmf_loss_forward_cuda);
  m.impl("vmf_loss_backward", &vmf_loss_backward_cuda);
}

}  // namespace segsort
