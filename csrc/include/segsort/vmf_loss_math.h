// Per-logit arithmetic of vmf_loss / vmf_nca_loss shared by the CPU and CUDA row kernels.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "segsort/checks.h"  // SEGSORT_HOST_DEVICE

namespace segsort {

// Running log-sum-exp: max m and sum of exp(x - m); empty = (-inf, 0). A NaN term makes
// s NaN (exp(NaN - m), and NaN * 0 when rescaled), and s stays NaN through add and merge:
// value() is then NaN, as torch.logsumexp gives, never the -inf of an empty set.
template <typename acc_t>
struct OnlineLse {
  acc_t m = -std::numeric_limits<acc_t>::infinity();
  acc_t s = 0;

  SEGSORT_HOST_DEVICE void add(acc_t x) {
    if (x > m) {
      s = s * std::exp(m - x) + acc_t(1);
      m = x;
    } else {
      s += std::exp(x - m);
    }
  }
  SEGSORT_HOST_DEVICE void merge(acc_t other_m, acc_t other_s) {
    if (other_s == acc_t(0)) return;
    if (other_m > m) {
      s = s * std::exp(m - other_m) + other_s;
      m = other_m;
    } else {
      s += other_s * std::exp(other_m - m);
    }
  }
  SEGSORT_HOST_DEVICE acc_t value() const {
    if (s > acc_t(0)) return m + std::log(s);
    return s == acc_t(0) ? -std::numeric_limits<acc_t>::infinity() : s;  // empty, or NaN
  }
};

template <typename acc_t>
SEGSORT_HOST_DEVICE acc_t log_add_exp(acc_t a, acc_t b) {
  if (a != a || b != b) return a + b;  // NaN in, NaN out (the comparisons below would drop it)
  const acc_t hi = a > b ? a : b, lo = a > b ? b : a;
  if (hi == -std::numeric_limits<acc_t>::infinity()) return hi;
  return hi + std::log1p(std::exp(lo - hi));
}

// Which sets column j belongs to, for a pixel whose own segment is c with label own_label.
// vMF: every column is in the denominator. vMF-NCA: every column but c; positives are the
// columns other than c with the own label (labels < 0 are never positive).
struct VmfColumn {
  bool in_denominator, positive;
};

SEGSORT_HOST_DEVICE VmfColumn vmf_column_of(bool own, bool nca, int64_t label, int64_t own_label) {
  if (!nca) return {true, false};
  return {!own, !own && own_label >= 0 && label == own_label};
}

SEGSORT_HOST_DEVICE VmfColumn vmf_column(int64_t j, int64_t c, bool nca, const int64_t* labels,
                                         int64_t own_label) {
  return vmf_column_of(j == c, nca, nca ? labels[j] : -1, own_label);
}

// Loss of one pixel from its reductions; sets lse_num to -inf for a vMF-NCA pixel without
// positives (Eq. 8 fallback: log(exp(den) + exp(l_c)) - l_c).
template <typename acc_t>
SEGSORT_HOST_DEVICE acc_t vmf_pixel_loss(bool nca, acc_t own_logit, acc_t lse_den, acc_t& lse_num) {
  if (!nca) return lse_den - own_logit;
  if (lse_num == -std::numeric_limits<acc_t>::infinity()) return log_add_exp(lse_den, own_logit) - own_logit;
  return lse_den - lse_num;
}

// dloss/dlogit_j. vMF (and the NCA fallback): softmax_j over all columns - [j == c].
// vMF-NCA: [j in den] softmax_den_j - [j positive] softmax_num_j.
template <typename acc_t>
SEGSORT_HOST_DEVICE acc_t vmf_logit_grad(acc_t logit, bool own, VmfColumn col, bool nca, acc_t own_logit,
                                         acc_t lse_den, acc_t lse_num) {
  const bool fallback = nca && lse_num == -std::numeric_limits<acc_t>::infinity();
  if (!nca || fallback) {
    const acc_t lse_all = nca ? log_add_exp(lse_den, own_logit) : lse_den;
    return std::exp(logit - lse_all) - (own ? acc_t(1) : acc_t(0));
  }
  acc_t g = col.in_denominator ? std::exp(logit - lse_den) : acc_t(0);
  if (col.positive) g -= std::exp(logit - lse_num);
  return g;
}

}  // namespace segsort
