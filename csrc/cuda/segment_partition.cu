// segment_partition on CUDA: (image, cluster, label) groups through a dense key table
// (mark, prefix sum, look up: no sort), connected components by lock-free union-find
// (Playne & Hawick 2018), segment numbering by one sort over component roots only.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "segsort/cuda_utils.h"
#include "segsort/segment_partition.h"

namespace segsort {
namespace {

struct PixelKeys {
  const int64_t* clusters;
  const int64_t* labels;  // nullptr without labels
  int64_t ignore_index, HW, num_clusters, num_labels;

  __device__ __forceinline__ int64_t key(int64_t i) const {
    const int64_t c = clusters[i];
    const int64_t l = labels ? labels[i] : 0;
    if (!partition_pixel_valid(c, l, labels != nullptr, ignore_index)) return -1;
    return partition_key(i / HW, c, l, num_clusters, num_labels);
  }
};

__global__ void mark_keys_kernel(const PixelKeys k, int64_t n, int32_t* __restrict__ table) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t key = k.key(i);
  if (key >= 0) table[key] = 1;  // racing writers all store 1
}

__global__ void assign_groups_kernel(const PixelKeys k, int64_t n, const int64_t* __restrict__ inclusive_count,
                                     int64_t* __restrict__ group) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t key = k.key(i);
  group[i] = key >= 0 ? inclusive_count[key] - 1 : -1;
}

Groups group_pixels_dense_cuda(const at::Tensor& clusters, const c10::optional<at::Tensor>& labels,
                               const KeyRange& r, int64_t ignore_index) {
  const int64_t N = clusters.numel();
  const PixelKeys k{clusters.const_data_ptr<int64_t>(),
                    labels ? labels->const_data_ptr<int64_t>() : nullptr,
                    ignore_index,
                    clusters.size(1) * clusters.size(2),
                    r.num_clusters,
                    r.num_labels};
  auto table = at::zeros({clusters.size(0) * r.num_clusters * r.num_labels}, clusters.options().dtype(at::kInt));
  const auto stream = current_stream();
  mark_keys_kernel<<<blocks_for(N), kThreads, 0, stream>>>(k, N, table.mutable_data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto inclusive_count = at::cumsum(table, 0, at::kLong);
  const auto keys = table.nonzero().squeeze(1);  // present keys, ascending = group order
  auto group = at::empty({N}, clusters.options());
  assign_groups_kernel<<<blocks_for(N), kThreads, 0, stream>>>(k, N, inclusive_count.const_data_ptr<int64_t>(),
                                                               group.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return decode_group_keys(group, keys, r.num_clusters, r.num_labels, labels.has_value());
}

// parent holds image-local pixel indices; parent[p] <= p always, so every root is the
// first pixel of its component in raster order.
__device__ __forceinline__ int32_t find_root(const int32_t* parent, int32_t p) {
  const volatile int32_t* vp = parent;  // other threads relink concurrently
  int32_t q = vp[p];
  while (q != p) {
    p = q;
    q = vp[p];
  }
  return p;
}

__device__ void unite(int32_t* parent, int32_t a, int32_t b) {
  bool done = false;
  while (!done) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a < b) {
      const int32_t old = atomicMin(parent + b, a);
      done = old == b;  // else b was relinked meanwhile: retry from its new parent
      b = old;
    } else if (b < a) {
      const int32_t old = atomicMin(parent + a, b);
      done = old == a;
      a = old;
    } else {
      done = true;
    }
  }
}

__global__ void ccl_init_kernel(const int64_t* __restrict__ group, int64_t n, int64_t HW,
                                int32_t* __restrict__ parent) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  parent[i] = group[i] >= 0 ? static_cast<int32_t>(i % HW) : -1;
}

__global__ void ccl_merge_kernel(const int64_t* __restrict__ group, int64_t n, int64_t H, int64_t W, bool eight,
                                 int32_t* __restrict__ parent) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t g = group[i];
  if (g < 0) return;
  const int64_t HW = H * W, local = i % HW, y = local / W, x = local % W;
  const int64_t* gi = group + (i - local);
  int32_t* pi = parent + (i - local);
  const int32_t p = static_cast<int32_t>(local);
  if (x > 0 && gi[local - 1] == g) unite(pi, p, p - 1);
  if (y > 0 && gi[local - W] == g) unite(pi, p, static_cast<int32_t>(local - W));
  if (eight && y > 0) {
    if (x > 0 && gi[local - W - 1] == g) unite(pi, p, static_cast<int32_t>(local - W - 1));
    if (x + 1 < W && gi[local - W + 1] == g) unite(pi, p, static_cast<int32_t>(local - W + 1));
  }
}

__global__ void ccl_compress_kernel(int64_t n, int64_t HW, int32_t* __restrict__ parent) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n || parent[i] < 0) return;
  const int64_t local = i % HW;
  parent[i] = find_root(parent + (i - local), static_cast<int32_t>(local));
}

__global__ void assign_components_kernel(const int32_t* __restrict__ parent, int64_t n, int64_t HW,
                                         const int64_t* __restrict__ component_of_root,
                                         int64_t* __restrict__ ids) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int32_t root = parent[i];
  ids[i] = root >= 0 ? component_of_root[(i - i % HW) + root] : -1;
}

__global__ void segment_size_kernel(const int64_t* __restrict__ ids, int64_t n,
                                    unsigned long long* __restrict__ size) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n || ids[i] < 0) return;
  atomicAdd(size + ids[i], 1ull);  // integer atomics: deterministic
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> segment_partition_cuda(
    const at::Tensor& clusters_in, const c10::optional<at::Tensor>& labels_in, int64_t ignore_index,
    int64_t connectivity) {
  check_segment_partition_inputs(clusters_in, labels_in, connectivity);
  const c10::cuda::CUDAGuard guard(clusters_in.device());
  const auto clusters = clusters_in.contiguous();
  c10::optional<at::Tensor> labels;
  if (labels_in.has_value()) labels = labels_in->contiguous();
  const int64_t B = clusters.size(0), H = clusters.size(1), W = clusters.size(2);
  const int64_t N = clusters.numel(), HW = H * W;
  SEGSORT_CHECK_ARG(HW < (int64_t(1) << 31), "clusters: an image must have < 2^31 pixels, got ", HW);
  const auto opts = clusters.options();
  const auto valid = partition_valid_mask(clusters, labels, ignore_index);
  const KeyRange r = N ? partition_key_range(clusters, labels, valid) : KeyRange{};
  if (r.num_clusters == 0) {  // no valid pixel
    auto none = at::empty({0}, opts);
    return {at::full({B, H, W}, -1, opts), none, none.clone(), none.clone(), none.clone()};
  }
  Groups groups = r.dense ? group_pixels_dense_cuda(clusters, labels, r, ignore_index)
                          : group_pixels_by_sort(clusters, labels, valid);
  const auto stream = current_stream();
  at::Tensor ids, batch = groups.batch, cluster = groups.cluster, label = groups.label;
  if (connectivity == 0) {
    ids = groups.group.view({B, H, W});
  } else {
    const int64_t* g = groups.group.const_data_ptr<int64_t>();
    auto parent = at::empty({N}, opts.dtype(at::kInt));
    int32_t* par = parent.mutable_data_ptr<int32_t>();
    ccl_init_kernel<<<blocks_for(N), kThreads, 0, stream>>>(g, N, HW, par);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    ccl_merge_kernel<<<blocks_for(N), kThreads, 0, stream>>>(g, N, H, W, connectivity == 8, par);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    ccl_compress_kernel<<<blocks_for(N), kThreads, 0, stream>>>(N, HW, par);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // Segments ordered by (group, root pixel): sort the roots only.
    const auto local = at::arange(N, opts).remainder_(HW);
    const auto roots = parent.eq(local).nonzero().squeeze(1);
    const auto root_keys = groups.group.index_select(0, roots).mul_(HW).add_(local.index_select(0, roots));
    const auto sorted_roots = roots.index_select(0, std::get<1>(root_keys.sort()));
    const int64_t S = sorted_roots.size(0);
    auto component_of_root = at::empty({N}, opts);
    component_of_root.index_put_({sorted_roots}, at::arange(S, opts));
    ids = at::empty({B, H, W}, opts);
    assign_components_kernel<<<blocks_for(N), kThreads, 0, stream>>>(
        par, N, HW, component_of_root.const_data_ptr<int64_t>(), ids.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const auto segment_group = groups.group.index_select(0, sorted_roots);
    batch = batch.index_select(0, segment_group);
    cluster = cluster.index_select(0, segment_group);
    label = label.index_select(0, segment_group);
  }
  auto size = at::zeros({batch.size(0)}, opts);
  segment_size_kernel<<<blocks_for(N), kThreads, 0, stream>>>(
      ids.const_data_ptr<int64_t>(), N, reinterpret_cast<unsigned long long*>(size.mutable_data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {ids, batch, cluster, label, size};
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CUDA, m) { m.impl("segment_partition", &segment_partition_cuda); }

}  // namespace segsort
