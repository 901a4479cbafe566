// segment_mean on CPU: deterministic scatter-sum of pixel features into segments, then
// per-segment normalisation; backward gathers each segment's gradient back to its pixels.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "segsort/segment_mean.h"

namespace segsort {
namespace {

// Sums x over each segment into sums (S, D). Threads own disjoint channel ranges, so
// every sum is accumulated by one thread in pixel order: deterministic, no atomics.
template <typename scalar_t, typename acc_t>
void segment_sum_cpu_kernel(const scalar_t* x, const PixelView v, const int64_t* ids, int64_t S, acc_t* sums) {
  const bool channel_major = v.sp <= v.sd;  // (B, D, H, W): pixels contiguous per channel
  at::parallel_for(0, v.D, 1, [&](int64_t d0, int64_t d1) {
    for (int64_t b = 0; b < v.B; ++b) {
      const int64_t* id_row = ids + b * v.P;
      const scalar_t* xb = x + b * v.sb;
      if (channel_major) {
        // Runs of equal ids are summed in registers, four channels at a time (four
        // independent add chains), and flushed to sums when the id changes.
        constexpr int64_t kLanes = 4;
        for (int64_t d = d0; d < d1; d += kLanes) {
          const int64_t lanes = std::min(kLanes, d1 - d);
          const scalar_t* xd[kLanes];
          for (int64_t k = 0; k < kLanes; ++k) xd[k] = xb + (d + std::min(k, lanes - 1)) * v.sd;
          acc_t acc[kLanes] = {0, 0, 0, 0};
          int64_t run_id = -1;
          auto flush = [&] {
            if (run_id < 0) return;
            for (int64_t k = 0; k < lanes; ++k) sums[run_id * v.D + d + k] += acc[k];
          };
          for (int64_t p = 0; p < v.P; ++p) {
            const int64_t id = id_row[p];
            if (id != run_id) {
              flush();
              run_id = id;
              for (int64_t k = 0; k < kLanes; ++k) acc[k] = 0;
            }
            for (int64_t k = 0; k < kLanes; ++k) acc[k] += static_cast<acc_t>(xd[k][p * v.sp]);
          }
          flush();
        }
      } else {
        for (int64_t p = 0; p < v.P; ++p) {
          const int64_t id = id_row[p];
          if (id < 0) continue;
          const scalar_t* xp = xb + p * v.sp;
          acc_t* row = sums + id * v.D;
          for (int64_t d = d0; d < d1; ++d) row[d] += static_cast<acc_t>(xp[d * v.sd]);
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> segment_mean_cpu(const at::Tensor& x, const at::Tensor& ids,
                                                    int64_t num_segments, bool normalize) {
  check_segment_mean_inputs(x, ids, num_segments);
  const int64_t D = x.size(1);
  auto out = at::zeros({num_segments, D}, x.options());
  auto denom = at::zeros({num_segments}, x.options());
  if (num_segments == 0 || x.numel() == 0) return {out, denom};
  const auto ids_c = ids.contiguous();
  const auto x_bdp = pixels_bdp(x);
  const PixelView v = pixel_view(x_bdp);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segment_mean_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    std::vector<acc_t> sums(num_segments * D, acc_t(0));
    std::vector<acc_t> counts(num_segments, acc_t(0));
    segment_sum_cpu_kernel<scalar_t, acc_t>(x_bdp.const_data_ptr<scalar_t>(), v, ids_c.const_data_ptr<int64_t>(),
                                            num_segments, sums.data());
    if (!normalize) {
      const int64_t* id = ids_c.const_data_ptr<int64_t>();
      for (int64_t i = 0; i < ids_c.numel(); ++i)
        if (id[i] >= 0) counts[id[i]] += 1;
    }
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    scalar_t* denom_ptr = denom.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, num_segments, 256, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s)
        segment_mean_row<acc_t, scalar_t>(sums.data() + s * D, D, counts[s], normalize, out_ptr + s * D,
                                          denom_ptr + s);
    });
  });
  return {out, denom};
}

at::Tensor segment_mean_backward_cpu(const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& denom,
                                     const at::Tensor& ids, c10::SymIntArrayRef x_shape_sym, bool normalize) {
  const auto x_shape = C10_AS_INTARRAYREF_SLOW(x_shape_sym);
  check_segment_mean_backward_inputs(grad_out, out, denom, ids, x_shape);
  auto grad_x = at::zeros(x_shape, grad_out.options());
  const int64_t S = out.size(0), D = out.size(1);
  if (grad_x.numel() == 0 || S == 0) return grad_x;
  const auto ids_c = ids.contiguous();
  const auto grad_c = grad_out.contiguous(), out_c = out.contiguous(), denom_c = denom.contiguous();
  const auto gx_bdp = pixels_bdp(grad_x);  // a view: grad_x is contiguous
  const PixelView v = pixel_view(gx_bdp);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "segment_mean_backward_cpu",
                                  [&] {
    using acc_t = at::opmath_type<scalar_t>;
    std::vector<acc_t> ds(S * D);
    const scalar_t* dy = grad_c.const_data_ptr<scalar_t>();
    const scalar_t* y = out_c.const_data_ptr<scalar_t>();
    const scalar_t* den = denom_c.const_data_ptr<scalar_t>();
    at::parallel_for(0, S, 256, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s)
        segment_mean_row_grad<acc_t, scalar_t>(dy + s * D, y + s * D, static_cast<acc_t>(den[s]), D, normalize,
                                               ds.data() + s * D);
    });
    scalar_t* gx = gx_bdp.mutable_data_ptr<scalar_t>();
    const int64_t* id_ptr = ids_c.const_data_ptr<int64_t>();
    if (v.sp <= v.sd) {  // channel-major: write each (image, channel) row in order
      at::parallel_for(0, v.B * D, 1, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t b = r / D, d = r % D;
          const int64_t* id_row = id_ptr + b * v.P;
          scalar_t* g = gx + b * v.sb + d * v.sd;
          for (int64_t p = 0; p < v.P; ++p)
            g[p * v.sp] = id_row[p] >= 0 ? static_cast<scalar_t>(ds[id_row[p] * D + d]) : scalar_t(0);
        }
      });
    } else {
      at::parallel_for(0, v.B * v.P, 2048, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t id = id_ptr[i];
          if (id < 0) continue;
          scalar_t* g = gx + (i / v.P) * v.sb + (i % v.P) * v.sp;
          for (int64_t d = 0; d < D; ++d) g[d * v.sd] = static_cast<scalar_t>(ds[id * D + d]);
        }
      });
    }
  });
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CPU, m) {
  m.impl("segment_mean", &segment_mean_cpu);
  m.impl("_segment_mean_backward", &segment_mean_backward_cpu);
}

}  // namespace segsort
