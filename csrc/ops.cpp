// Every operator schema of segsort_ext, in one place, and the _C module (build info only:
// tensors cross into C++ through the dispatcher, never through pybind11).
#include <torch/extension.h>

#include "segsort/simd.h"

#ifdef SEGSORT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#ifndef SEGSORT_CSRC_DIGEST
#define SEGSORT_CSRC_DIGEST ""
#endif
#ifndef SEGSORT_ARCH_LIST
#define SEGSORT_ARCH_LIST ""
#endif

TORCH_LIBRARY(segsort_ext, m) {
  // Segments of (image, cluster, label) triples, optionally split into connected
  // components (connectivity 0 = no split, 4 or 8). Returns ids (B, H, W) and the
  // per-segment batch, cluster, label, size.
  m.def(
      "segment_partition(Tensor clusters, Tensor? labels, int ignore_index, int connectivity)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Segment prototypes: out (S, D) and denom (S,) (the norm of each sum, or the count,
  // which the backward reuses; not differentiable).
  m.def("segment_mean(Tensor x, Tensor ids, int num_segments, bool normalize) -> (Tensor, Tensor)");
  m.def(
      "_segment_mean_backward(Tensor grad_out, Tensor out, Tensor denom, Tensor ids, "
      "SymInt[] x_shape, bool normalize) -> Tensor");
  // Per-image spherical k-means on [x, coordinates]: labels (B, H, W), centroids (B, K, D+2).
  // tol < 0: run all iters; else an image stops once <= tol * its valid pixels changed.
  m.def(
      "spherical_kmeans(Tensor x, Tensor? mask, Tensor? init, int grid_h, int grid_w, int iters, "
      "float coord_weight, float tol) -> (Tensor, Tensor)");
  // SegSort's vMF (nca = false, Eq. 8) and vMF-NCA (nca = true, Eq. 10) losses per pixel,
  // with the log-sum-exps (lse_den, lse_num) the backward recomputes the softmax from (not
  // differentiable). memory holds constant negatives: it gets no gradient.
  m.def(
      "vmf_loss(Tensor embeddings, Tensor segment_ids, Tensor prototypes, "
      "Tensor? prototype_labels, Tensor? memory, Tensor? memory_labels, float concentration, "
      "bool nca) -> (Tensor, Tensor, Tensor)");
  m.def(
      "_vmf_loss_backward(Tensor grad_loss, Tensor embeddings, Tensor segment_ids, "
      "Tensor prototypes, Tensor? prototype_labels, Tensor? memory, Tensor? memory_labels, "
      "Tensor lse_den, Tensor lse_num, float concentration, bool nca) -> (Tensor, Tensor)");
  // One step of vMF blurring mean shift on unit points x (B, N, D), lengths (B,) valid
  // points per image (None: all N): out (B, N, D) and |y| (B, N) for the backward (not
  // differentiable).
  m.def(
      "blurring_mean_shift_step(Tensor x, Tensor? lengths, float bandwidth, float eta)"
      " -> (Tensor, Tensor)");
  m.def(
      "_blurring_mean_shift_step_backward(Tensor grad_out, Tensor x, Tensor out, Tensor norms, "
      "Tensor? lengths, float bandwidth, float eta) -> Tensor");
  // The largest inner product of each query (Q, D) with each group of `group` consecutive
  // bank rows (M, D): (Q, ceil(M / group)), the last group possibly short; NaN wins (amax).
  m.def("group_max_scores(Tensor queries, Tensor bank, int group) -> Tensor");
  // Dataset k-means E-step on unit rows: the largest cosine of each point (N, D) to the
  // centroids (K, D) and its index (ties to the lowest; NaN as torch.max), and with_sums
  // the per-cluster sums of the points (K, D), else (0, D). CPU only; not differentiable.
  m.def("nearest_centroid(Tensor points, Tensor centroids, bool with_sums) -> (Tensor, Tensor, Tensor)");
}

namespace {

py::dict build_info() {
  py::dict info;
#ifdef SEGSORT_WITH_CUDA
  info["with_cuda"] = true;
  info["cuda_version"] =
      std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
#else
  info["with_cuda"] = false;
  info["cuda_version"] = py::none();
#endif
  info["arch_list"] = std::string(SEGSORT_ARCH_LIST);
  info["torch_version"] = std::string(TORCH_VERSION);
  info["csrc_digest"] = std::string(SEGSORT_CSRC_DIGEST);  // of the sources this was built from
  info["cpu_simd_bits"] = segsort::cpu_simd_bytes() * 8;   // the widest this CPU runs
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("build_info", &build_info, "What this extension was built with.");
}
