// segment_partition on CPU: group pixels by (image, cluster, label) through a dense key
// table (O(N), no sort), optionally split groups into connected components with a
// union-find per image, and number segments by (image, cluster, label, first pixel).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "segsort/segment_partition.h"

namespace segsort {
namespace {

Groups group_pixels_dense_cpu(const at::Tensor& clusters, const int64_t* label_ptr, const KeyRange& r,
                              int64_t ignore_index) {
  const int64_t N = clusters.numel(), HW = clusters.size(1) * clusters.size(2);
  const int64_t* c = clusters.const_data_ptr<int64_t>();
  const bool has_labels = label_ptr != nullptr;
  auto key_of = [&](int64_t i) -> int64_t {
    const int64_t l = has_labels ? label_ptr[i] : 0;
    if (!partition_pixel_valid(c[i], l, has_labels, ignore_index)) return -1;
    return partition_key(i / HW, c[i], l, r.num_clusters, r.num_labels);
  };
  const int64_t table_size = clusters.size(0) * r.num_clusters * r.num_labels;
  std::vector<int64_t> table(table_size, 0);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t k = key_of(i);
    if (k >= 0) table[k] = 1;
  }
  // table[k] becomes the group of key k: groups are numbered in key order.
  std::vector<int64_t> keys;
  for (int64_t k = 0; k < table_size; ++k) {
    if (table[k]) {
      table[k] = static_cast<int64_t>(keys.size());
      keys.push_back(k);
    }
  }
  auto group = at::empty({N}, clusters.options());
  int64_t* g = group.mutable_data_ptr<int64_t>();
  at::parallel_for(0, N, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t k = key_of(i);
      g[i] = k >= 0 ? table[k] : -1;
    }
  });
  auto keys_t = at::empty({static_cast<int64_t>(keys.size())}, clusters.options());
  std::copy(keys.begin(), keys.end(), keys_t.mutable_data_ptr<int64_t>());
  return decode_group_keys(group, keys_t, r.num_clusters, r.num_labels, has_labels);
}

int64_t find_root(std::vector<int64_t>& parent, int64_t p) {
  while (parent[p] != p) {
    parent[p] = parent[parent[p]];  // path halving
    p = parent[p];
  }
  return p;
}

// Union-find over one image; the root of every component is its first pixel in raster
// order because a union always hangs the larger root under the smaller one.
void label_components_image(const int64_t* g, int64_t H, int64_t W, int64_t connectivity,
                            std::vector<int64_t>& parent) {
  for (int64_t p = 0; p < H * W; ++p) parent[p] = p;
  auto unite = [&](int64_t a, int64_t b) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a < b) parent[b] = a;
    else if (b < a) parent[a] = b;
  };
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      const int64_t p = y * W + x;
      if (g[p] < 0) continue;
      if (x > 0 && g[p - 1] == g[p]) unite(p, p - 1);
      if (y > 0 && g[p - W] == g[p]) unite(p, p - W);
      if (connectivity == 8 && y > 0) {
        if (x > 0 && g[p - W - 1] == g[p]) unite(p, p - W - 1);
        if (x + 1 < W && g[p - W + 1] == g[p]) unite(p, p - W + 1);
      }
    }
  }
  // parent[p] <= p, so one raster pass resolves every pixel to its root.
  for (int64_t p = 0; p < H * W; ++p) parent[p] = parent[parent[p]];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> segment_partition_cpu(
    const at::Tensor& clusters_in, const c10::optional<at::Tensor>& labels_in, int64_t ignore_index,
    int64_t connectivity) {
  check_segment_partition_inputs(clusters_in, labels_in, connectivity);
  const auto clusters = clusters_in.contiguous();
  c10::optional<at::Tensor> labels;
  if (labels_in.has_value()) labels = labels_in->contiguous();
  const int64_t B = clusters.size(0), H = clusters.size(1), W = clusters.size(2);
  const int64_t N = clusters.numel(), HW = H * W;
  const auto opts = clusters.options();
  auto ids = at::full({B, H, W}, -1, opts);
  const auto valid = partition_valid_mask(clusters, labels, ignore_index);
  const KeyRange r = N ? partition_key_range(clusters, labels, valid) : KeyRange{};
  if (r.num_clusters == 0) {  // no valid pixel
    auto none = at::empty({0}, opts);
    return {ids, none, none.clone(), none.clone(), none.clone()};
  }
  Groups groups = r.dense ? group_pixels_dense_cpu(clusters, labels ? labels->const_data_ptr<int64_t>() : nullptr,
                                                   r, ignore_index)
                          : group_pixels_by_sort(clusters, labels, valid);
  const int64_t* g = groups.group.const_data_ptr<int64_t>();
  int64_t* id = ids.mutable_data_ptr<int64_t>();

  at::Tensor batch = groups.batch, cluster = groups.cluster, label = groups.label;
  int64_t S = groups.batch.size(0);
  if (connectivity == 0) {
    std::copy(g, g + N, id);
  } else {
    // Components of each group, numbered by first pixel within the group. Groups never
    // span images, so images run in parallel on disjoint counters.
    const int64_t G = S;
    std::vector<int64_t> root(N), rank(N, 0), count(G, 0);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<int64_t> parent(HW);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t* gb = g + b * HW;
        label_components_image(gb, H, W, connectivity, parent);
        for (int64_t p = 0; p < HW; ++p) {
          root[b * HW + p] = parent[p];
          if (gb[p] >= 0 && parent[p] == p) rank[b * HW + p] = count[gb[p]]++;
        }
      }
    });
    std::vector<int64_t> offset(G);
    S = 0;
    for (int64_t k = 0; k < G; ++k) {
      offset[k] = S;
      S += count[k];
    }
    auto seg_group = at::empty({S}, opts);
    int64_t* sg = seg_group.mutable_data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i) {
      if (g[i] < 0) continue;
      id[i] = offset[g[i]] + rank[(i / HW) * HW + root[i]];
      sg[id[i]] = g[i];
    }
    batch = batch.index_select(0, seg_group);
    cluster = cluster.index_select(0, seg_group);
    label = label.index_select(0, seg_group);
  }
  auto size = at::zeros({S}, opts);
  int64_t* sz = size.mutable_data_ptr<int64_t>();
  for (int64_t i = 0; i < N; ++i)
    if (id[i] >= 0) ++sz[id[i]];
  return {ids, batch, cluster, label, size};
}

}  // namespace

TORCH_LIBRARY_IMPL(segsort_ext, CPU, m) { m.impl("segment_partition", &segment_partition_cpu); }

}  // namespace segsort
