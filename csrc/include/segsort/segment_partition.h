// Pieces of segment_partition shared by the CPU and CUDA implementations: which pixels
// count, how an (image, cluster, label) triple becomes a group key, and the device-
// agnostic (ATen) steps around the per-pixel kernels.
#pragma once

#include <ATen/ATen.h>

#include <limits>

#include "segsort/checks.h"

namespace segsort {

// A pixel belongs to a segment when its cluster is >= 0 and, with labels, its label is
// neither ignore_index nor negative.
SEGSORT_HOST_DEVICE bool partition_pixel_valid(int64_t cluster, int64_t label, bool has_labels,
                                               int64_t ignore_index) {
  return cluster >= 0 && (!has_labels || (label != ignore_index && label >= 0));
}

// Group key of a valid pixel: (image, cluster, label) in lexicographic order.
SEGSORT_HOST_DEVICE int64_t partition_key(int64_t b, int64_t cluster, int64_t label, int64_t num_clusters,
                                          int64_t num_labels) {
  return (b * num_clusters + cluster) * num_labels + label;
}

inline void check_segment_partition_inputs(const at::Tensor& clusters, const c10::optional<at::Tensor>& labels,
                                           int64_t connectivity) {
  check_int64(clusters, "clusters");
  SEGSORT_CHECK_ARG(clusters.dim() == 3, "clusters must have shape (B, H, W), got ", clusters.sizes());
  if (labels.has_value()) {
    check_int64(*labels, "labels");
    check_same_device(clusters, "clusters", *labels, "labels");
    SEGSORT_CHECK_ARG(labels->sizes() == clusters.sizes(), "labels must have the shape of clusters ",
                      clusters.sizes(), ", got ", labels->sizes());
  }
  SEGSORT_CHECK_ARG(connectivity == 0 || connectivity == 4 || connectivity == 8,
                    "connectivity must be 0 (no split), 4 or 8, got ", connectivity);
  // Per pixel: the ids, the group and the component root (8 bytes each), and a contiguous
  // copy of a strided (e.g. expanded) input.
  const int64_t per_pixel =
      24 + (clusters.is_contiguous() ? 0 : 8) + (labels.has_value() && !labels->is_contiguous() ? 8 : 0);
  check_fits_in_memory(clusters.device(), checked_product({clusters.numel(), per_pixel}, "clusters"), "clusters");
}

inline at::Tensor partition_valid_mask(const at::Tensor& clusters, const c10::optional<at::Tensor>& labels,
                                       int64_t ignore_index) {
  auto valid = clusters.ge(0);
  if (labels.has_value()) valid.logical_and_(labels->ne(ignore_index).logical_and_(labels->ge(0)));
  return valid;
}

// Group keys are dense table indices when the value ranges are small, which they are
// for k-means clusters and class labels; wider ranges go through sorting instead.
struct KeyRange {
  int64_t num_clusters = 0;  // max valid cluster + 1 (0: no valid pixel)
  int64_t num_labels = 1;    // max valid label + 1 (1 without labels)
  bool dense = false;        // a B * num_clusters * num_labels table fits the budget
};

inline KeyRange partition_key_range(const at::Tensor& clusters, const c10::optional<at::Tensor>& labels,
                                    const at::Tensor& valid) {
  const auto invalid = valid.logical_not();
  auto maxima = clusters.masked_fill(invalid, -1).max().unsqueeze(0);
  if (labels.has_value()) maxima = at::cat({maxima, labels->masked_fill(invalid, -1).max().unsqueeze(0)});
  const auto host = maxima.cpu();  // the one sync needed to size the key table
  const int64_t* m = host.const_data_ptr<int64_t>();
  KeyRange r;
  if (m[0] < 0) return r;  // no valid pixel
  // A value of INT64_MAX has no "max + 1": such ranges go through sorting.
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t max_label = labels.has_value() ? m[1] : 0;
  if (m[0] == kMax || max_label == kMax) {
    r.num_clusters = kMax;  // not dense: the sort path needs neither count
    return r;
  }
  r.num_clusters = m[0] + 1;
  r.num_labels = std::max<int64_t>(max_label + 1, 1);
  const double table = double(clusters.size(0)) * double(r.num_clusters) * double(r.num_labels);
  r.dense = table <= std::max(4.0 * double(clusters.numel()), double(1 << 16));
  return r;
}

// Per-group attributes from sorted group keys.
struct Groups {
  at::Tensor group;                  // (N,) group of each pixel, -1 when ignored
  at::Tensor batch, cluster, label;  // (G,)
};

inline Groups decode_group_keys(at::Tensor group, const at::Tensor& keys, int64_t num_clusters, int64_t num_labels,
                                bool has_labels) {
  Groups g;
  g.group = std::move(group);
  g.batch = keys.div(num_clusters * num_labels, "floor");
  g.cluster = keys.div(num_labels, "floor").remainder(num_clusters);
  g.label = has_labels ? keys.remainder(num_labels) : at::full_like(keys, -1);
  return g;
}

// The fallback for value ranges too wide for a dense table (up to INT64_MAX): orders the
// valid pixels by (image, cluster, label) with stable sorts, least significant key first.
// Keys are compared, never combined arithmetically, so no value range can overflow.
inline Groups group_pixels_by_sort(const at::Tensor& clusters, const c10::optional<at::Tensor>& labels,
                                   const at::Tensor& valid) {
  const int64_t HW = clusters.size(1) * clusters.size(2);
  const auto pixel = valid.reshape(-1).nonzero().squeeze(1);
  auto image = pixel.div(HW, "floor");
  auto cluster = clusters.reshape(-1).index_select(0, pixel);
  auto label = labels.has_value() ? labels->reshape(-1).index_select(0, pixel) : at::Tensor();
  auto order = at::arange(pixel.size(0), pixel.options());
  auto sort_by = [&](const at::Tensor& key) {
    order = order.index_select(0, std::get<1>(at::sort(key.index_select(0, order), /*stable=*/true, 0, false)));
  };
  if (label.defined()) sort_by(label);
  sort_by(cluster);
  sort_by(image);
  image = image.index_select(0, order);
  cluster = cluster.index_select(0, order);
  if (label.defined()) label = label.index_select(0, order);
  // A group starts where the sorted (image, cluster, label) differs from its predecessor.
  const auto differs = [](const at::Tensor& t) { return t.slice(0, 1).ne(t.slice(0, 0, -1)); };
  auto changed = differs(image).logical_or_(differs(cluster));
  if (label.defined()) changed.logical_or_(differs(label));
  const auto starts = at::cat({at::ones({1}, changed.options()), changed});
  auto group = at::full({clusters.numel()}, -1, clusters.options());
  group.index_put_({pixel.index_select(0, order)}, starts.cumsum(0, at::kLong).sub_(1));
  const auto first = starts.nonzero().squeeze(1);
  Groups g;
  g.group = std::move(group);
  g.batch = image.index_select(0, first);
  g.cluster = cluster.index_select(0, first);
  g.label = label.defined() ? label.index_select(0, first) : at::full_like(g.batch, -1);
  return g;
}

}  // namespace segsort
