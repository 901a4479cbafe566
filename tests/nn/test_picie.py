"""picie_loss against per-pixel loops with math.exp / math.log (and a case worked on
paper), cluster_balance_weights, bad inputs."""
import math

import pytest
import torch

from segsort_ext.nn import PiCIEClustering, cluster_balance_weights, picie_loss


def _cross_entropy_by_hand(features, centroids, labels, weights=None, scale=1.0):
    """Loops over pixels with math.exp / math.log."""
    B, C, h, w = features.shape
    numerator = denominator = 0.0
    for b in range(B):
        for y in range(h):
            for x in range(w):
                label = int(labels[b, y, x])
                if label < 0:
                    continue
                f = features[b, :, y, x].tolist()
                f_norm = math.sqrt(sum(v * v for v in f))
                logits = []
                for mu in centroids.tolist():
                    mu_norm = math.sqrt(sum(v * v for v in mu))
                    logits.append(scale * sum(a * c for a, c in zip(f, mu)) / (f_norm * mu_norm))
                nll = math.log(sum(math.exp(z) for z in logits)) - logits[label]
                weight = 1.0 if weights is None else float(weights[label])
                numerator += weight * nll
                denominator += weight
    return numerator / denominator


def test_picie_loss_hand_computed_tiny_case():
    # 1 image, 2 x 1 pixels, 2-D features, K = 2: everything checkable on paper.
    f1 = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]], dtype=torch.float64)  # pixels (1, 0), (0, 2)
    f2 = torch.tensor([[[[1.0, 1.0]], [[1.0, -1.0]]]], dtype=torch.float64)  # pixels (1, 1), (1, -1)
    mu1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    mu2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    y1 = torch.tensor([[[0, 1]]])
    y2 = torch.tensor([[[0, 1]]])
    clustering = PiCIEClustering(mu1, mu2, y1, y2)
    s = 1 / math.sqrt(2)
    # On paper, with s = 1 / sqrt(2) (cosines of 45 degrees):
    # within: every pixel is aligned with its own centroid and orthogonal to the other.
    ce11 = math.log(math.e + 1) - 1  # f1 vs mu1: logits (1, 0) label 0; (0, 1) label 1
    ce22 = math.log(math.e + 1) - 1  # f2 vs mu2: logits (1, 0) label 0; (0, 1) label 1
    # cross: f1 vs mu2 with y2: (1, 0) -> logits (s, s), label 0 -> log 2;
    # (0, 1) -> logits (s, -s), label 1 -> log(e^s + e^-s) + s. f2 vs mu1 with y1: the same.
    ce12 = 0.5 * (math.log(2) + math.log(math.exp(s) + math.exp(-s)) + s)
    ce21 = ce12
    expected = 0.25 * (ce11 + ce22 + ce12 + ce21)
    loss, terms = picie_loss(f1, f2, clustering, return_terms=True)
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(terms["within"][0], torch.tensor((ce11 + ce22) / 2, dtype=torch.float64))
    torch.testing.assert_close(terms["cross"][0], torch.tensor((ce12 + ce21) / 2, dtype=torch.float64))


def test_picie_loss_matches_loops_with_weights_scale_and_overclustering(generator):
    B, C, h, w = 2, 4, 3, 3
    f1 = torch.randn(B, C, h, w, dtype=torch.float64, generator=generator)
    f2 = torch.randn(B, C, h, w, dtype=torch.float64, generator=generator)
    clusterings = []
    for K in (3, 7):
        mu1, mu2 = (torch.randn(K, C, dtype=torch.float64, generator=generator) for _ in range(2))
        y1, y2 = (torch.randint(-1, K, (B, h, w), generator=generator) for _ in range(2))
        weights = [cluster_balance_weights(torch.bincount(y[y >= 0], minlength=K)).double() for y in (y1, y2)]
        clusterings.append(PiCIEClustering(mu1, mu2, y1, y2, *weights))
    scale = 2.5
    total = 0.0
    lam = [math.log(7) / (math.log(3) + math.log(7)), math.log(3) / (math.log(3) + math.log(7))]
    for weight, c in zip(lam, clusterings):
        ce = _cross_entropy_by_hand
        within = (ce(f1, c.centroids_1, c.labels_1, c.class_weights_1, scale)
                  + ce(f2, c.centroids_2, c.labels_2, c.class_weights_2, scale)) / 2
        cross = (ce(f1, c.centroids_2, c.labels_2, c.class_weights_2, scale)
                 + ce(f2, c.centroids_1, c.labels_1, c.class_weights_1, scale)) / 2
        total += weight * (0.5 * within + 0.5 * cross)
    loss = picie_loss(f1, f2, clusterings, scale=scale)
    torch.testing.assert_close(loss, torch.tensor(total, dtype=torch.float64), rtol=1e-12, atol=0)
    explicit = picie_loss(f1, f2, clusterings, scale=scale, clustering_weights=lam)
    torch.testing.assert_close(explicit, loss)
    f1.requires_grad_()
    f2.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: picie_loss(a, b, clusterings, scale=scale), (f1, f2),
                                    fast_mode=True)


def test_cluster_balance_weights():
    weights = cluster_balance_weights(torch.tensor([2, 0, 6]))
    torch.testing.assert_close(weights, torch.tensor([1.5, 0.0, 0.5]))
    # Balanced: each non-empty cluster contributes the same total weight.
    counts = torch.tensor([2.0, 0.0, 6.0], dtype=torch.float64)
    contribution = cluster_balance_weights(counts) * counts
    assert contribution[0] == contribution[2] and contribution.dtype == torch.float64
    with pytest.raises(ValueError, match="counts"):
        cluster_balance_weights(torch.tensor([1, -1]))
    with pytest.raises(ValueError, match="counts"):
        cluster_balance_weights(torch.ones(2, 2))


def test_picie_bad_inputs(generator):
    f = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    mu = torch.randn(4, 3, dtype=torch.float64)
    y = torch.zeros(1, 2, 2, dtype=torch.int64)
    good = PiCIEClustering(mu, mu, y, y)
    with pytest.raises(ValueError, match="features_2"):
        picie_loss(f, f[..., :1], good)
    with pytest.raises(ValueError, match=r"clusterings\[0\].labels_1"):
        picie_loss(f, f, good._replace(labels_1=torch.full((1, 2, 2), 4)))
    with pytest.raises(ValueError, match=r"clusterings\[0\].centroids_2"):
        picie_loss(f, f, good._replace(centroids_2=torch.randn(4, 5, dtype=torch.float64)))
    with pytest.raises(TypeError, match=r"clusterings\[0\].labels_2"):
        picie_loss(f, f, good._replace(labels_2=y.float()))
    with pytest.raises(ValueError, match="class_weights_1"):
        picie_loss(f, f, good._replace(class_weights_1=torch.ones(3, dtype=torch.float64)))
    with pytest.raises(TypeError, match="clusterings"):
        picie_loss(f, f, [])
    with pytest.raises(TypeError, match=r"clusterings\[1\]"):
        picie_loss(f, f, [good, (mu, mu, y, y)])
    with pytest.raises(ValueError, match="K >= 2"):
        single = PiCIEClustering(mu[:1], mu[:1], y, y)
        picie_loss(f, f, [good, single])
    with pytest.raises(ValueError, match="clustering_weights"):
        picie_loss(f, f, [good, good], clustering_weights=(1.0,))


def test_pixels_without_a_label_never_reach_the_loss(generator):
    features = torch.randn(2, 4, 3, 3, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, 3, (2, 3, 3), generator=generator)
    labels[0, 0, 0] = -1
    clustering = PiCIEClustering(torch.randn(3, 4, dtype=torch.float64, generator=generator),
                                 torch.randn(3, 4, dtype=torch.float64, generator=generator), labels, labels)
    clean = features.clone().requires_grad_()
    dirty = features.clone()
    dirty[0, :, 0, 0] = float("nan")
    dirty.requires_grad_()
    losses = [picie_loss(t, t, clustering) for t in (clean, dirty)]
    assert torch.equal(losses[1], losses[0])
    grads = [torch.autograd.grad(loss, t)[0] for loss, t in zip(losses, (clean, dirty))]
    assert torch.equal(grads[1], grads[0])
    dirty = dirty.detach()
    dirty[1, :, 1, 1] = float("nan")
    assert picie_loss(dirty, dirty, clustering).isnan()
