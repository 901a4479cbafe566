"""soft_segmentation_loss against Eq. 1 summed over all pixel pairs, its sampling, and
soft_segmentation_features as the chain of the guided-filtering transforms."""
import math

import pytest
import torch

from segsort_ext.nn import soft_segmentation_features, soft_segmentation_loss
from segsort_ext.transforms import guided_filter, pca_project, rescale_to_unit


def _dense_soft_segmentation(points, ids):
    """(B, N, D), ids (B, N): Eq. 1 over all unordered pairs of valid pixels."""
    losses_per_image = []
    for x, y in zip(points, ids):
        keep = y >= 0
        x, y = x[keep], y[keep]
        n = y.numel()
        if n < 2:
            continue
        total = 0.0
        for p in range(n):
            for q in range(p + 1, n):
                d = (x[p] - x[q]).norm()
                total = total + (d if y[p] == y[q] else 2.0 / (1.0 + torch.exp(d)))
        losses_per_image.append(total / (n * (n - 1) / 2))
    return torch.stack(losses_per_image).mean()


def test_soft_segmentation_loss_matches_dense_reference(device, generator):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=generator)
    ids = torch.randint(-1, 3, (2, 4, 5), generator=generator)
    points = x.permute(0, 2, 3, 1).reshape(2, 20, 3)
    x_ours, x_ref = x.clone().to(device).requires_grad_(), points.clone().requires_grad_()
    loss = soft_segmentation_loss(x_ours, ids.to(device), num_instances=None, pixels_per_instance=None)
    expected = _dense_soft_segmentation(x_ref, ids.reshape(2, 20))
    torch.testing.assert_close(loss.cpu(), expected, rtol=1e-12, atol=1e-14)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(x_ours.grad.permute(0, 2, 3, 1).reshape(2, 20, 3).cpu(), x_ref.grad,
                               rtol=1e-10, atol=1e-14)
    # (N, D) form = one image.
    torch.testing.assert_close(soft_segmentation_loss(points[0], ids[0].reshape(-1), pixels_per_instance=None),
                               _dense_soft_segmentation(points[:1], ids[:1].reshape(1, 20)))


def test_soft_segmentation_gradcheck(generator):
    x = torch.randn(1, 3, 3, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    ids = torch.randint(-1, 3, (1, 3, 4), generator=generator)
    assert torch.autograd.gradcheck(
        lambda e: soft_segmentation_loss(e, ids, num_instances=2, pixels_per_instance=3,
                                         generator=torch.Generator().manual_seed(0)), (x,))


def test_soft_segmentation_sampling_counts(generator):
    # Two instances of 10 pixels; all pixels of an instance share one feature vector, so
    # the loss only depends on how many same- and cross-instance pairs were sampled.
    a, b, c = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1.0, 2.0, 2.0]), torch.tensor([0.0, 0.0, 5.0])
    ids = torch.tensor([0] * 10 + [1] * 10 + [2] * 10 + [-1] * 4)
    x = torch.stack([a] * 10 + [b] * 10 + [c] * 10 + [a] * 4).double()
    # |a - b| = 3, |a - c| = 5, |b - c| = sqrt(14)
    cross_ab, cross_ac, cross_bc = (2 / (1 + math.exp(d)) for d in (3.0, 5.0, math.sqrt(14)))
    same = 1e-6  # sqrt of the squared-distance floor eps = 1e-12
    # 3 pixels from each of the 3 instances: 3 * 3 same pairs, 27 cross pairs out of 36.
    loss = soft_segmentation_loss(x, ids, pixels_per_instance=3, generator=generator)
    expected = (9 * same + 9 * (cross_ab + cross_ac + cross_bc)) / 36
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=0)
    # One instance only: every pair is a same pair.
    one = soft_segmentation_loss(x, ids, num_instances=1, pixels_per_instance=4, generator=generator)
    torch.testing.assert_close(one, torch.tensor(same, dtype=torch.float64), rtol=1e-9, atol=0)
    # Two of the three instances, 2 pixels each: 2 same pairs + 4 cross pairs of 6, and
    # which two instances were drawn varies with the seed.
    seen = set()
    for seed in range(12):
        value = float(soft_segmentation_loss(x, ids, num_instances=2, pixels_per_instance=2,
                                             generator=torch.Generator().manual_seed(seed)))
        matches = [c for c in (cross_ab, cross_ac, cross_bc) if abs(value - (2 * same + 4 * c) / 6) < 1e-9]
        assert len(matches) == 1, value
        seen.add(matches[0])
    assert len(seen) >= 2


def test_soft_segmentation_bad_inputs(generator):
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    ids = torch.zeros(2, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="instance_ids"):
        soft_segmentation_loss(x, ids[0])
    with pytest.raises(ValueError, match="embeddings"):
        soft_segmentation_loss(x[0], ids[0])
    with pytest.raises(ValueError, match="pixels_per_instance"):
        soft_segmentation_loss(x, ids, pixels_per_instance=0)
    with pytest.raises(TypeError, match="num_instances"):
        soft_segmentation_loss(x, ids, num_instances=1.5)
    assert float(soft_segmentation_loss(x, torch.full_like(ids, -1))) == 0.0



def test_soft_segmentation_features_chain_the_transforms(generator):
    image = torch.rand(2, 3, 6, 7, dtype=torch.float64, generator=generator)
    features = torch.randn(2, 8, 6, 7, dtype=torch.float64, generator=generator)
    chained = soft_segmentation_features(image, features, radius=2, eps=1e-2)
    torch.testing.assert_close(chained, rescale_to_unit(pca_project(guided_filter(image, features, 2, 1e-2), 3)))
    assert chained.shape == (2, 3, 6, 7) and float(chained.min()) >= 0 and float(chained.max()) <= 1


def test_pixels_outside_the_sample_never_reach_the_loss(generator):
    # Pixel 0 is the placeholder of empty slots: a NaN there must not leak into the loss
    # or the gradient.
    x = torch.randn(2, 5, 4, 4, dtype=torch.float64, generator=generator)
    ids = torch.randint(0, 3, (2, 4, 4), generator=generator)
    ids[0, 0, 0] = -1
    ids[0, 1, 1] = 3  # a one-pixel instance: two of its three slots stay empty
    clean = x.clone().requires_grad_()
    dirty = x.clone()
    dirty[0, :, 0, 0] = float("nan")
    dirty.requires_grad_()
    losses = [soft_segmentation_loss(t, ids, pixels_per_instance=3, generator=torch.Generator().manual_seed(1))
              for t in (clean, dirty)]
    assert torch.equal(losses[1], losses[0])
    grads = [torch.autograd.grad(loss, t)[0] for loss, t in zip(losses, (clean, dirty))]
    assert torch.equal(grads[1], grads[0])
    dirty = dirty.detach()
    dirty[1, :, 3, 3] = float("nan")
    assert soft_segmentation_loss(dirty, ids, pixels_per_instance=None).isnan()
