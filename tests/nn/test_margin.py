"""pairwise_margin_loss against the dense double sum over all ordered pixel pairs:
values, gradients (also through the blocked hinge and mean-shift iterates), sampling."""
import pytest
import torch
import torch.nn.functional as F

from segsort_ext.nn import margin, pairwise_margin_loss
from segsort_ext.ops import bandwidth_from_margin, blurring_mean_shift


def _dense_pairwise(points, ids, alpha, calibrated=True):
    """(B, N, D) float64, ids (B, N): the double sum over all ordered pairs, N x N."""
    total, images = 0.0, 0
    for x, y in zip(points, ids):
        keep = y >= 0
        x, y = x[keep], y[keep]
        if y.numel() == 0:
            continue
        u = x / x.norm(dim=1, keepdim=True)
        cos = u @ u.t()
        s = (1 + cos) / 2 if calibrated else cos
        same = y[:, None] == y[None, :]
        pair_loss = torch.where(same, 1 - s, (s - alpha).clamp_min(0))
        sizes = (y[:, None] == y[None, :]).sum(1).double()  # n_{y_i}
        weight = 1.0 / (sizes[:, None] * sizes[None, :])
        total = total + (weight * pair_loss).sum() / weight.sum()
        images += 1
    return total / max(images, 1)


def _instances(generator, B, H, W, num_instances=4, ignore_fraction=0.15):
    ids = torch.randint(0, num_instances, (B, H, W), generator=generator) * 10 + 3  # ids need not be compact
    ids[torch.rand(B, H, W, generator=generator) < ignore_fraction] = -1
    return ids


@pytest.mark.parametrize("calibrated", [True, False])
@pytest.mark.parametrize("alpha", [0.5, 0.1])
def test_pairwise_margin_matches_dense_reference(device, generator, calibrated, alpha):
    x = torch.randn(3, 4, 6, 5, dtype=torch.float64, generator=generator)
    ids = _instances(generator, 3, 6, 5)
    ids[2] = -1  # an image without valid pixels does not count
    points = x.permute(0, 2, 3, 1).reshape(3, 30, 4)
    x_ours, x_ref = x.clone().to(device).requires_grad_(), points.clone().requires_grad_()
    loss = pairwise_margin_loss(x_ours, ids.to(device), alpha=alpha, calibrated=calibrated)
    expected = _dense_pairwise(x_ref, ids.reshape(3, 30), alpha, calibrated)
    torch.testing.assert_close(loss.cpu(), expected, rtol=1e-12, atol=1e-14)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(x_ours.grad.permute(0, 2, 3, 1).reshape(3, 30, 4).cpu(), x_ref.grad,
                               rtol=1e-10, atol=1e-14)


def test_pairwise_margin_chunked_blocks(generator, monkeypatch):
    x = torch.randn(2, 13, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    ids = torch.randint(0, 3, (2, 13), generator=generator)
    expected = pairwise_margin_loss(x, ids, alpha=0.2)
    (grad_expected,) = torch.autograd.grad(expected, x)
    monkeypatch.setattr(margin, "PAIR_BLOCK_ELEMENTS", 2 * 13 * 3)  # 3 rows per block, 5 blocks
    chunked = pairwise_margin_loss(x, ids, alpha=0.2)
    (grad_chunked,) = torch.autograd.grad(chunked, x)
    torch.testing.assert_close(chunked, expected, rtol=1e-13, atol=0)
    torch.testing.assert_close(grad_chunked, grad_expected, rtol=1e-12, atol=1e-15)
    assert torch.autograd.gradcheck(lambda e: pairwise_margin_loss(e, ids, alpha=0.2), (x,))


@pytest.mark.parametrize("calibrated", [True, False])
def test_pairwise_margin_gradcheck(generator, calibrated):
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    ids = _instances(generator, 2, 3, 4, num_instances=3, ignore_fraction=0.1)
    assert torch.autograd.gradcheck(lambda e: pairwise_margin_loss(e, ids, alpha=0.3, calibrated=calibrated), (x,))


def test_pairwise_margin_input_forms_and_iterates(generator):
    points = torch.randn(2, 20, 4, dtype=torch.float64, generator=generator)
    ids = torch.randint(-1, 3, (2, 20), generator=generator)
    single = [pairwise_margin_loss(points[b], ids[b]) for b in range(2)]
    torch.testing.assert_close(pairwise_margin_loss(points, ids), (single[0] + single[1]) / 2)
    torch.testing.assert_close(single[0], _dense_pairwise(points[:1], ids[:1], 0.5))
    iterates = [points, F.normalize(points + 0.3, dim=2), points * 2.0]
    per_iterate = torch.stack([pairwise_margin_loss(x, ids) for x in iterates])
    torch.testing.assert_close(pairwise_margin_loss(iterates, ids), per_iterate.mean())
    torch.testing.assert_close(pairwise_margin_loss(tuple(iterates), ids, iterate_reduction="sum"), per_iterate.sum())
    # Scale invariance (the loss uses unit vectors) and ignored pixels do not matter.
    changed = points.clone()
    changed[ids < 0] = 100.0
    torch.testing.assert_close(pairwise_margin_loss(changed, ids), pairwise_margin_loss(points, ids))


def test_pairwise_margin_on_mean_shift_iterates(generator):
    x = torch.randn(2, 25, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    ids = torch.randint(-1, 3, (2, 25), generator=generator)
    iterates = blurring_mean_shift(x, bandwidth=bandwidth_from_margin(0.5), iters=3, return_all=True)
    assert len(iterates) == 4
    loss = pairwise_margin_loss(iterates, ids)
    expected = torch.stack([_dense_pairwise(it, ids, 0.5) for it in iterates]).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
    (grad,) = torch.autograd.grad(loss, x, retain_graph=True)  # both losses share the iterates
    (grad_expected,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(grad, grad_expected, rtol=1e-9, atol=1e-13)


def test_pairwise_margin_sampling(generator):
    points = torch.randn(2, 40, 4, dtype=torch.float64, generator=generator)
    ids = torch.randint(-1, 4, (2, 40), generator=generator)
    # At least all valid pixels: no sampling.
    torch.testing.assert_close(pairwise_margin_loss(points, ids, num_samples=40, generator=generator),
                               pairwise_margin_loss(points, ids))
    # Fewer: the loss of exactly the drawn pixels, which are the pixels with a gradient
    # (alpha = 0: every pair of different instances is active, so every drawn pixel has one).
    x = points.clone().requires_grad_()
    sampled = pairwise_margin_loss(x, ids, alpha=0.0, num_samples=12, generator=torch.Generator().manual_seed(5))
    (grad,) = torch.autograd.grad(sampled, x)
    drawn = grad.abs().sum(2) > 0
    assert drawn.sum(1).tolist() == [12, 12] and bool((ids[drawn] >= 0).all())
    index = drawn.nonzero()[:, 1].view(2, 12)
    subset_points, subset_ids = points.gather(1, index[..., None].expand(-1, -1, 4)), ids.gather(1, index)
    torch.testing.assert_close(sampled, _dense_pairwise(subset_points, subset_ids, 0.0))
    # Another seed, other pixels; every iterate uses the same pixels.
    other = pairwise_margin_loss(x, ids, alpha=0.0, num_samples=12, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(torch.autograd.grad(other, x)[0].abs().sum(2) > 0, drawn)
    iterates = [points, points.flip(2)]
    sampled = pairwise_margin_loss(iterates, ids, alpha=0.0, num_samples=12, generator=torch.Generator().manual_seed(5))
    second = _dense_pairwise(subset_points.flip(2), subset_ids, 0.0)
    torch.testing.assert_close(sampled, (_dense_pairwise(subset_points, subset_ids, 0.0) + second) / 2)


def test_pairwise_margin_bad_inputs(generator):
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    ids = torch.zeros(2, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="instance_ids"):
        pairwise_margin_loss(x, ids[:, :3])
    with pytest.raises(TypeError, match="instance_ids"):
        pairwise_margin_loss(x, ids.float())
    with pytest.raises(ValueError, match=r"embeddings\[1\]"):
        pairwise_margin_loss([x, x[:, :2]], ids)
    with pytest.raises(ValueError, match="non-empty"):
        pairwise_margin_loss([], ids)
    with pytest.raises(ValueError, match="num_samples"):
        pairwise_margin_loss(x, ids, num_samples=0)
    with pytest.raises(ValueError, match="iterate_reduction"):
        pairwise_margin_loss(x, ids, iterate_reduction="max")
    with pytest.raises(ValueError, match="embeddings"):
        pairwise_margin_loss(torch.randn(5), ids)
    empty = pairwise_margin_loss(x.requires_grad_(), torch.full_like(ids, -1))
    empty.backward()
    assert float(empty.detach()) == 0.0 and bool((x.grad == 0).all())


def test_ignored_and_unsampled_pixels_never_reach_the_loss(generator):
    x = torch.randn(2, 30, 4, dtype=torch.float64, generator=generator)
    ids = torch.randint(-1, 3, (2, 30), generator=generator)
    ids[0, 0] = -1
    clean = x.clone().requires_grad_()
    dirty = x.clone()
    dirty[0, 0] = float("nan")
    dirty.requires_grad_()
    expected = pairwise_margin_loss(clean, ids)
    actual = pairwise_margin_loss(dirty, ids)
    assert torch.equal(actual, expected)
    (grad_clean,), (grad_dirty,) = torch.autograd.grad(expected, clean), torch.autograd.grad(actual, dirty)
    assert torch.equal(grad_dirty, grad_clean)
    dirty = dirty.detach()
    dirty[0, 1] = float("nan")
    ids[0, 1] = 0
    assert pairwise_margin_loss(dirty, ids).isnan()
