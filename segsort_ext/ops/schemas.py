"""The operator schemas of ``torch.ops.segsort_ext``, as csrc/ops.cpp defines them
(``TORCH_LIBRARY(segsort_ext, m)``): where the compiled extension cannot be imported,
:mod:`segsort_ext.ops._extension` defines the same operators from this list, so that the
public functions call one ``torch.ops.segsort_ext.<op>`` either way. tests/ops/test_schemas.py
checks that the two agree, character for character. Edit both together."""

NAMESPACE = "segsort_ext"

#: op name -> its schema after the name.
SCHEMAS = {
    "segment_partition": "(Tensor clusters, Tensor? labels, int ignore_index, int connectivity) "
                         "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "segment_mean": "(Tensor x, Tensor ids, int num_segments, bool normalize) -> (Tensor, Tensor)",
    "_segment_mean_backward": "(Tensor grad_out, Tensor out, Tensor denom, Tensor ids, SymInt[] x_shape, "
                              "bool normalize) -> Tensor",
    "spherical_kmeans": "(Tensor x, Tensor? mask, Tensor? init, int grid_h, int grid_w, int iters, "
                        "float coord_weight, float tol) -> (Tensor, Tensor)",
    "vmf_loss": "(Tensor embeddings, Tensor segment_ids, Tensor prototypes, Tensor? prototype_labels, "
                "Tensor? memory, Tensor? memory_labels, float concentration, bool nca) -> (Tensor, Tensor, Tensor)",
    "_vmf_loss_backward": "(Tensor grad_loss, Tensor embeddings, Tensor segment_ids, Tensor prototypes, "
                          "Tensor? prototype_labels, Tensor? memory, Tensor? memory_labels, Tensor lse_den, "
                          "Tensor lse_num, float concentration, bool nca) -> (Tensor, Tensor)",
    "blurring_mean_shift_step": "(Tensor x, Tensor? lengths, float bandwidth, float eta) -> (Tensor, Tensor)",
    "_blurring_mean_shift_step_backward": "(Tensor grad_out, Tensor x, Tensor out, Tensor norms, Tensor? lengths, "
                                          "float bandwidth, float eta) -> Tensor",
    "group_max_scores": "(Tensor queries, Tensor bank, int group) -> Tensor",
    "nearest_centroid": "(Tensor points, Tensor centroids, bool with_sums) -> (Tensor, Tensor, Tensor)",
}

#: Ops whose compiled kernels are CPU only (csrc/cpu, no .cu file): on every other device
#: their plain-PyTorch kernel runs, with the extension or without it.
CPU_ONLY = frozenset({"group_max_scores", "nearest_centroid"})
