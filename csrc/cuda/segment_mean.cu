// segment_mean on CUDA. Forward: scatter-sum with float atomics (warp-aggregated where a
// warp's pixels share a segment), or, under torch.use_deterministic_algorithms(True), a
// sorted pass where each (segment, channel) is summed by one thread in pixel order.
// Backward: per-segment gradient, then a coalesced gather back to the pixels.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "segsort/cuda_utils.h"
#include "segsort/segment_mean.h"

namespace segsort {
namespace {

// Element i of a (B, D, P) view, in the order that makes reads coalesced: pixels fastest
// for channel-major (B, D, H, W) storage, channels fastest for pixel-major (N, D).
template <bool kChannelMajor>
__device__ __forceinline__ void element_index(int64_t i, const PixelView& v, int64_t& b, int64_t& d, int64_t& p) {
  if (kChannelMajor) {
    p = i % v.P;
    const int64_t r = i / v.P;
    d = r % v.D;
    b = r / v.D;
  } else {
    d = i % v.D;
    const int64_t r = i / v.D;
    p = r % v.P;
    b = r / v.P;
  }
}

template <typename scalar_t, typename acc_t, bool kChannelMajor>
__global__ void segment_sum_atomic_kernel(const scalar_t* __restrict__ x, const PixelView v,
                                          const int64_t* __restrict__ ids, int64_t S, acc_t* __restrict__ sums,
                                          int64_t total) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  int64_t target = -1;  // index into sums, -1 for ignored pixels and the grid's tail
  acc_t value = 0;
  if (i < total) {
    int64_t b, d, p;
    element_index<kChannelMajor>(i, v, b, d, p);
    const int64_t id = ids[b * v.P + p];
    if (id >= 0 && id < S) {
      target = id * v.D + d;
      value = static_cast<acc_t>(x[b * v.sb + d * v.sd + p * v.sp]);
    }
  }
  if (kChannelMajor) {
    // Neighbouring pixels mostly share a segment: one atomic per warp instead of 32.
    const int64_t first = __shfl_sync(kFullMask, target, 0);
    if (__all_sync(kFullMask, target == first)) {
      for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(kFullMask, value, offset);
      if ((threadIdx.x & 31) == 0 && first >= 0) atomicAdd(sums + first, value);
      return;
    }
  }
  if (target >= 0) atomicAdd(sums + target, value);
}

__global__ void segment_count_kernel(const int64_t* __restrict__ ids, int64_t n, int64_t S,
                                     unsigned long long* __restrict__ counts) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t id = ids[i];
  if (id >= 0 && id < S) atomicAdd(counts + id, 1ull);
}

// Deterministic sum: members of segment s are order[offsets[s]:offsets[s + 1]] (pixel
// order, from a stable sort); one thread per (segment, channel) adds them in that order.
template <typename scalar_t, typename acc_t>
__global__ void segment_sum_sorted_kernel(const scalar_t* __restrict__ x, const PixelView v,
                                          const int64_t* __restrict__ order, const int64_t* __restrict__ offsets,
                                          int64_t S, acc_t* __restrict__ sums) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= S * v.D) return;
  const int64_t s = i / v.D, d = i % v.D;
  acc_t acc = 0;
  for (int64_t j = offsets[s]; j < offsets[s + 1]; ++j) {
    const int64_t q = order[j];
    acc += static_cast<acc_t>(x[(q / v.P) * v.sb + d * v.sd + (q % v.P) * v.sp]);
  }
  sums[i] = acc;
}

template <typename scalar_t, typename acc_t, typename count_t>
__global__ void segment_mean_finalize_kernel(const acc_t* __restrict__ sums, const count_t* __restrict__ counts,
                                             int64_t S, int64_t D, bool normalize, scalar_t* __restrict__ out,
                                             scalar_t* __restrict__ denom) {
  const int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (s >= S) return;
  const acc_t count = counts ? static_cast<acc_t>(counts[s]) : acc_t(0);
  segment_mean_row<acc_t, scalar_t>(sums + s * D, D, count, normalize, out + s * D, denom + s);
}

std::tuple<at::Tensor, at::Tensor> segment_mean_cuda(const at::Tensor& x, const at::Tensor& ids,
                                                     int64_t num_segments, bool normalize) {
  check_segment_mean_inputs(x, ids, num_segments);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t D = x.size(1);
  auto out = at::zeros({num_segments, D}, x.options());
  auto denom = at::zeros({num_segments}, x.options());
  if (num_segments == 0 || x.numel() == 0) return {out, denom};
  const auto ids_c = ids.contiguous();
  const auto x_bdp = pixels_bdp(x);
  const PixelView v = pixel_view(x_bdp);
  const int64_t total = v.B * v.D * v.P;
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  const auto stream = current_stream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segment_mean_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
    auto sums = at::zeros({num_segments, D}, x.options().dtype(acc_type));
    const scalar_t* x_ptr = x_bdp.const_data_ptr<scalar_t>();
    if (deterministic) {
      const auto flat = ids_c.reshape(-1);
      const auto keys = at::where(flat.ge(0).logical_and(flat.lt(num_segments)), flat, num_segments);
      at::Tensor sorted, order;
      std::tie(sorted, order) = at::sort(keys, /*stable=*/true, 0, false);
      const auto offsets = at::searchsorted(sorted, at::arange(num_segments + 1, flat.options()));
      segment_sum_sorted_kernel<scalar_t, acc_t><<<blocks_for(num_segments * D), kThreads, 0, stream>>>(
          x_ptr, v, order.const_data_ptr<int64_t>(), offsets.const_data_ptr<int64_t>(), num_segments,
          sums.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      const auto counts = offsets.slice(0, 1).sub(offsets.slice(0, 0, num_segments));
      segment_mean_finalize_kernel<scalar_t, acc_t, int64_t><<<blocks_for(num_segments), kThreads, 0, stream>>>(
          sums.const_data_ptr<acc_t>(), counts.const_data_ptr<int64_t>(), num_segments, D, normalize,
          out.mutable_data_ptr<scalar_t>(), denom.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    if (v.sp <= v.sd) {
      segment_sum_atomic_kernel<scalar_t, acc_t, true><<<blocks_for(total, kThreads, "x"), kThreads, 0, stream>>>(
          x_ptr, v, ids_c.const_data_ptr<int64_t>(), num_segments, sums.mutable_data_ptr<acc_t>(), total);
    } else {
      segment_sum_atomic_kernel<scalar_t, acc_t, false><<<blocks_for(total, kThreads, "x"), kThreads, 0, stream>>>(
          x_ptr, v, ids_c.const_data_ptr<int64_t>(), num_segments, sums.mutable_data_ptr<acc_t>(), total);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor counts;
    if (!normalize) {
      counts = at::zeros({num_segments}, ids_c.options());
      segment_count_kernel<<<blocks_for(ids_c.numel()), kThreads, 0, stream>>>(
          ids_c.const_data_ptr<int64_t>(), ids_c.numel(), num_segments,
          reinterpret_cast<unsigned long long*>(counts.mutable_data_ptr<int64_t>()));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    segment_mean_finalize_kernel<scalar_t, acc_t, int64_t><<<blocks_for(num_segments), kThreads, 0, stream>>>(
        sums.const_data_ptr<acc_t>(), normalize ? nullptr : counts.const_data_ptr<int64_t>(), num_segments, D,
        normalize, out.mutable_data_ptr<scalar_t>(), denom.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, denom};
}

template <typename scalar_t, typename acc_t>
__global__ void segment_mean_row_grad_kernel(const scalar_t* __restrict__ grad_out,
                                             const scalar_t* __restrict__ out, const scalar_t* __restrict__ denom,
                                             int64_t S, int64_t D, bool normalize, acc_t* __restrict__ ds) {
  const int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (s >= S) return;
  segment_mean_row_grad<acc_t, scalar_t>(grad_out + s * D, out + s * D, static_cast<acc_t>(denom[s]), D, normalize,
                                         ds + s * D);
}

template <typename scalar_t, typename acc_t, bool kChannelMajor>
__global__ void segment_gather_kernel(const acc_t* __restrict__ ds, const PixelView v,
                                      const int64_t* __restrict__ ids, int64_t S, scalar_t* __restrict__ grad_x,
                                      int64_t total) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  int64_t b, d, p;
  element_index<kChannelMajor>(i, v, b, d, p);
  const int64_t id = ids[b * v.P + p];
  grad_x[b * v.sb + d * v.sd + p * v.sp] =
      (id >= 0 && id < S) ? static_cast<scalar_t>(ds[id * v.D + d]) : scalar_t(0);
}

at::Tensor segment_mean_backward_cuda(const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& denom,
                                      const at::Tensor& ids, c10::SymIntArrayRef x_shape_sym, bool normalize) {
  const auto x_shape = C10_AS_INTARRAYREF_SLOW(x_shape_sym);
  check_segment_mean_backward_inputs(grad_out, out, denom, ids, x_shape);
  const c10::cuda::CUDAGuard guard(grad_out.device());
  auto grad_x = at::empty(x_shape, grad_out.options());
  const int64_t S = out.size(0), D = out.size(1);
  if (grad_x.numel() == 0) return grad_x;
  const auto ids_c = ids.contiguous();
  const auto grad_c = grad_out.contiguous(), out_c = out.contiguous(), denom_c = denom.contiguous();
  const auto gx_bdp = pixels_bdp(grad_x);
  const PixelView v = pixel_view(gx_bdp);
  const int64_t total = grad_x.numel();
  const auto stream = current_stream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "segment_mean_backward_cuda",
                                  [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto ds =
        at::empty({std::max<int64_t>(S, 1), D}, grad_out.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    if (S > 0) {
      segment_mean_row_grad_kernel<scalar_t, acc_t><<<blocks_for(S), kThreads, 0, stream>>>(
          grad_c.const_data_ptr<scalar_t>(), out_c.const_data_ptr<scalar_t>(), denom_c.const_data_ptr<scalar_t>(),
          S, D, normalize, ds.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    scalar_t* gx = gx_bdp.mutable_data_ptr<scalar_t>();
    if (v.sp <= v.sd) {
      segment_gather_kernel<scalar_t, acc_t, true>
          <<<blocks_for(total, kThreads, "x_shape"), kThreads, 0, stream>>>(
              ds.const_data_ptr<acc_t>(), v, ids_c.const_data_ptr<int64_t>(), S, gx, total);
    } else {
      segment_gather_kernel<scalar_t, acc_t, false>
          <<<blocks_for(total, kThreads, "x_shape"), kThreads, 0, stream>>>(
              ds.const_data_ptr<acc_t>(), v, ids_c.const_data_ptr<int64_t>(), S, gx, total);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CUDA, m) {
  m.impl("segment_mean", &segment_mean_cuda);
  m.impl("_segment_mean_backward", &segment_mean_backward_cuda);
}

}  // namespace segsort
