import math

import pytest
import torch
import torch.nn.functional as F

import segsort_ext
from segsort_ext.nn import losses
from segsort_ext.ops import reference
from segsort_ext.nn.losses import (
    PiCIEClustering,
    SegSortLoss,
    box_filter,
    cluster_balance_weights,
    guided_filter,
    pairwise_margin_loss,
    pca_project,
    picie_loss,
    rescale_to_unit,
    soft_segmentation_features,
    soft_segmentation_loss,
)
from segsort_ext.nn import PrototypeMemory
from segsort_ext.testing import random_labels


# ==================================================================================
# SegSortLoss
# ==================================================================================
def _segsort_by_hand(embeddings, labels, *, grid=(2, 3), iters=4, concentration=10.0, memory=None,
                     connectivity=None):
    """Algorithm 1 spelled out with the public ops and the dense reference losses."""
    B, D, H, W = embeddings.shape
    clusters = segsort_ext.spherical_kmeans(embeddings.detach(), grid, iters=iters).labels
    segments = segsort_ext.segment_partition(clusters, labels, connectivity=connectivity)
    unit = F.normalize(embeddings, dim=1)
    prototypes = reference.segment_mean(unit, segments.ids, segments.num_segments)
    pixels = unit.permute(0, 2, 3, 1).reshape(-1, D)
    ids = segments.ids.reshape(-1)
    if labels is None:
        return reference.vmf_loss(pixels, ids, prototypes, concentration=concentration, memory=memory), prototypes
    return reference.vmf_nca_loss(pixels, ids, prototypes, segments.label, concentration=concentration,
                                  memory=memory), prototypes


def _embeddings(generator, B=2, D=6, H=9, W=10):
    return torch.randn(B, D, H, W, dtype=torch.float64, generator=generator)


@pytest.mark.parametrize("supervised", [True, False])
@pytest.mark.parametrize("connectivity", [None, 4])
def test_segsort_loss_matches_algorithm_by_hand(device, generator, supervised, connectivity):
    x = _embeddings(generator)
    labels = random_labels(2, 9, 10, 3, generator=generator) if supervised else None
    module = SegSortLoss(grid=(2, 3), kmeans_iters=4, concentration=7.0, connectivity=connectivity)
    x_ours = x.clone().to(device).contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ref = x.clone().requires_grad_()
    loss, diagnostics = module(x_ours, None if labels is None else labels.to(device), return_diagnostics=True)
    expected, _ = _segsort_by_hand(x_ref, labels, concentration=7.0, connectivity=connectivity)
    torch.testing.assert_close(loss.cpu(), expected, rtol=1e-10, atol=1e-12)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(x_ours.grad.cpu(), x_ref.grad, rtol=1e-9, atol=1e-12)
    assert diagnostics["loss_type"] == ("vmf_nca" if supervised else "vmf")
    valid = diagnostics["segments"].ids >= 0
    assert diagnostics["num_pixels"] == int(valid.sum())
    if supervised:
        # Ignored pixels are no loss term and give no gradient.
        ignored = (labels == 255).to(device)
        assert bool(ignored.any()) and bool((x_ours.grad.permute(0, 2, 3, 1)[ignored] == 0).all())


def test_segsort_memory_pushed_after_the_loss(generator):
    x1, x2 = _embeddings(generator), _embeddings(generator)
    l1, l2 = (random_labels(2, 9, 10, 3, generator=generator) for _ in range(2))
    memory = PrototypeMemory.last_batches(6, num_batches=2, max_per_batch=200, dtype=torch.float64)
    module = SegSortLoss(grid=(2, 3), kmeans_iters=4, memory=memory)
    first = module(x1, l1)
    expected_first, prototypes_1 = _segsort_by_hand(x1, l1)
    torch.testing.assert_close(first, expected_first)  # the batch is not its own memory
    segments_1 = segsort_ext.segment_partition(segsort_ext.spherical_kmeans(x1, (2, 3), iters=4).labels, l1)
    assert len(memory) == segments_1.num_segments
    assert memory.tensors()[1].tolist() == segments_1.label.tolist()
    assert memory.provenance().image_ids.tolist() == segments_1.batch.tolist()
    second, diagnostics = module(x2, l2, image_ids=torch.tensor([40, 41]), return_diagnostics=True)
    expected_second, _ = _segsort_by_hand(x2, l2, memory=(prototypes_1, segments_1.label))
    torch.testing.assert_close(second, expected_second)
    assert diagnostics["memory_rows"] == segments_1.num_segments
    assert set(memory.provenance().image_ids.tolist()) == {0, 1, 40, 41}
    # Evaluation mode reads the memory but does not push.
    module.eval()
    before = len(memory)
    module(x2, l2)
    assert len(memory) == before
    # The memory is a submodule: the loss's state_dict restores it exactly.
    restored = SegSortLoss(grid=(2, 3), kmeans_iters=4,
                           memory=PrototypeMemory.last_batches(6, num_batches=2, max_per_batch=200,
                                                               dtype=torch.float64))
    restored.load_state_dict(module.state_dict())
    assert torch.equal(restored.memory.tensors()[0], memory.tensors()[0]) and len(restored.memory) == before


def test_segsort_unsupervised_memory_is_negatives_only(generator):
    x1, x2 = _embeddings(generator), _embeddings(generator)
    memory = PrototypeMemory(500, 6, dtype=torch.float64)
    module = SegSortLoss(grid=(2, 3), kmeans_iters=4, memory=memory)
    module(x1)
    _, prototypes_1 = _segsort_by_hand(x1, None)
    assert memory.tensors()[1].tolist() == [-1] * prototypes_1.shape[0]
    expected, _ = _segsort_by_hand(x2, None, memory=memory.tensors())
    torch.testing.assert_close(module(x2), expected)


def test_segsort_pixel_sampling(generator):
    x = _embeddings(generator)
    labels = random_labels(2, 9, 10, 3, generator=generator, ignore_fraction=0.3)
    valid_per_image = (labels != 255).sum((1, 2))
    module = SegSortLoss(grid=(2, 3), kmeans_iters=4, max_pixels_per_image=20)
    loss, diagnostics = module(x, labels, generator=torch.Generator().manual_seed(3), return_diagnostics=True)
    assert diagnostics["num_pixels"] == int(valid_per_image.clamp(max=20).sum()) == 40
    again = module(x, labels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(loss, again)
    other = module(x, labels, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(loss, other)
    # Sampling at least every valid pixel is no sampling.
    everything = SegSortLoss(grid=(2, 3), kmeans_iters=4, max_pixels_per_image=90)(x, labels, generator=generator)
    torch.testing.assert_close(everything, SegSortLoss(grid=(2, 3), kmeans_iters=4)(x, labels), rtol=1e-12, atol=0)


def test_segsort_float32_with_float64_memory(generator):
    x1, x2 = _embeddings(generator).float(), _embeddings(generator).float()
    labels = random_labels(2, 9, 10, 3, generator=generator)
    memory = PrototypeMemory(300, 6, dtype=torch.float64)
    module = SegSortLoss(grid=(2, 3), kmeans_iters=4, memory=memory)
    module(x1, labels)
    loss = module(x2, labels)
    assert loss.dtype == torch.float32 and memory.prototypes.dtype == torch.float64
    expected, _ = _segsort_by_hand(x2.double(), labels, memory=None)
    assert torch.isfinite(loss) and not torch.allclose(loss.double(), expected)  # the memory took part


def test_segsort_loss_gradcheck(generator):
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64, generator=generator).requires_grad_()
    labels = torch.randint(0, 2, (1, 4, 5), generator=generator)
    module = SegSortLoss(grid=(2, 2), kmeans_iters=3, concentration=3.0)
    assert torch.autograd.gradcheck(lambda e: module(e, labels), (x,))


def test_segsort_no_valid_pixel(generator):
    x = _embeddings(generator).requires_grad_()
    labels = torch.full((2, 9, 10), 255)
    loss = SegSortLoss(grid=(2, 2))(x, labels)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert bool((x.grad == 0).all())


def test_segsort_bad_inputs(generator):
    x = _embeddings(generator)
    module = SegSortLoss()
    with pytest.raises(ValueError, match="embeddings"):
        module(x[0])
    with pytest.raises(TypeError, match="embeddings"):
        module(x.long())
    with pytest.raises(ValueError, match="labels"):
        module(x, torch.zeros(2, 9, 9, dtype=torch.int64))
    with pytest.raises(TypeError, match="labels"):
        module(x, torch.zeros(2, 9, 10))
    with pytest.raises(ValueError, match="image_ids"):
        module(x, image_ids=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels are required"):
        SegSortLoss(loss="vmf_nca")(x)
    with pytest.raises(ValueError, match="loss"):
        SegSortLoss(loss="nca")
    with pytest.raises(TypeError, match="memory"):
        SegSortLoss(memory=torch.zeros(3))
    with pytest.raises(ValueError, match="max_pixels_per_image"):
        SegSortLoss(max_pixels_per_image=0)
    with pytest.raises(TypeError, match="generator"):
        module(x, generator=1)
    with pytest.raises(ValueError, match="memory"):
        SegSortLoss(memory=PrototypeMemory(10, 6, device="meta"))(x)


# ==================================================================================
# Kong & Fowlkes pairwise margin loss
# ==================================================================================
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
    monkeypatch.setattr(losses, "PAIR_BLOCK_ELEMENTS", 2 * 13 * 3)  # 3 rows per block, 5 blocks
    chunked = pairwise_margin_loss(x, ids, alpha=0.2)
    (grad_chunked,) = torch.autograd.grad(chunked, x)
    torch.testing.assert_close(chunked, expected, rtol=1e-13, atol=0)
    torch.testing.assert_close(grad_chunked, grad_expected, rtol=1e-12, atol=1e-15)
    assert torch.autograd.gradcheck(lambda e: pairwise_margin_loss(e, ids, alpha=0.2), (x,))


def test_pairwise_margin_gradcheck(generator):
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    ids = _instances(generator, 2, 3, 4, num_instances=3, ignore_fraction=0.1)
    for calibrated in (True, False):
        assert torch.autograd.gradcheck(lambda e: pairwise_margin_loss(e, ids, alpha=0.3, calibrated=calibrated),
                                        (x,))


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
    meanshift = pytest.importorskip("segsort_ext.ops")
    x = torch.randn(2, 25, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    ids = torch.randint(-1, 3, (2, 25), generator=generator)
    try:
        iterates = meanshift.blurring_mean_shift(x, bandwidth=meanshift.bandwidth_from_margin(0.5), iters=3,
                                                 return_all=True)
    except (AttributeError, NotImplementedError, RuntimeError) as exc:  # op not built yet in this checkout
        pytest.skip(f"blurring_mean_shift unavailable: {exc}")
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
    # Fewer: the loss of exactly the drawn pixels (same draw as the library makes),
    # the same pixels for every iterate.
    draw = torch.Generator().manual_seed(5)
    index, taken = losses._sample_rows(ids >= 0, 12, torch.Generator().manual_seed(5))
    assert bool(taken.all()) and index.shape == (2, 12)
    assert all(len(set(row.tolist())) == 12 for row in index)
    subset_points = points.gather(1, index[..., None].expand(-1, -1, 4))
    expected = _dense_pairwise(subset_points, ids.gather(1, index), 0.5)
    iterates = [points, points.flip(2)]
    sampled = pairwise_margin_loss(iterates, ids, num_samples=12, generator=draw)
    second = _dense_pairwise(subset_points.flip(2), ids.gather(1, index), 0.5)
    torch.testing.assert_close(sampled, (expected + second) / 2)


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


# ==================================================================================
# Semantic soft segmentation
# ==================================================================================
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
    ids = _instances(generator, 2, 4, 5, num_instances=3)
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
    ids = _instances(generator, 1, 3, 4, num_instances=3)
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


# -- guided filter, PCA, rescale ----------------------------------------------------
def _direct_guided_filter(guide, p, r, eps):
    """He et al.'s formulas pixel by pixel: per window k the linear model (a_k, b_k),
    then q_i = mean over the windows containing i of a_k . I_i + b_k."""
    G, H, W = guide.shape
    a = torch.zeros(H, W, G, dtype=torch.float64)
    b = torch.zeros(H, W, dtype=torch.float64)
    for y in range(H):
        for x in range(W):
            ys, xs = slice(max(0, y - r), min(H, y + r + 1)), slice(max(0, x - r), min(W, x + r + 1))
            I = guide[:, ys, xs].reshape(G, -1)
            q = p[ys, xs].reshape(-1)
            n = q.numel()
            mu = I.mean(1)
            sigma = I @ I.t() / n - torch.outer(mu, mu)
            cov = I @ q / n - mu * q.mean()
            a[y, x] = torch.linalg.solve(sigma + eps * torch.eye(G, dtype=torch.float64), cov)
            b[y, x] = q.mean() - a[y, x] @ mu
    out = torch.zeros(H, W, dtype=torch.float64)
    for y in range(H):
        for x in range(W):
            ys, xs = slice(max(0, y - r), min(H, y + r + 1)), slice(max(0, x - r), min(W, x + r + 1))
            out[y, x] = a[ys, xs].reshape(-1, G).mean(0) @ guide[:, y, x] + b[ys, xs].mean()
    return out


@pytest.mark.parametrize("guide_channels", [3, 1])
def test_guided_filter_matches_direct_formulas(device, generator, guide_channels):
    guide = torch.rand(2, guide_channels, 7, 8, dtype=torch.float64, generator=generator)
    features = torch.randn(2, 3, 7, 8, dtype=torch.float64, generator=generator)
    out = guided_filter(guide.to(device), features.to(device), 2, 0.05, channel_chunk=2).cpu()
    for bi in range(2):
        for c in range(3):
            torch.testing.assert_close(out[bi, c], _direct_guided_filter(guide[bi], features[bi, c], 2, 0.05),
                                       rtol=1e-9, atol=1e-11)


def test_box_filter_and_guided_filter_properties(generator):
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, generator=generator)
    for r in (0, 1, 3):
        expected = F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
        torch.testing.assert_close(box_filter(x, r), expected, rtol=1e-12, atol=1e-13)
    guide = torch.rand(2, 3, 9, 11, dtype=torch.float64, generator=generator)
    # Constant features are preserved; features equal to a guide channel pass through
    # almost unchanged with a tiny eps (the model q = a I + b fits them exactly).
    constant = torch.full((2, 2, 9, 11), 0.7, dtype=torch.float64)
    torch.testing.assert_close(guided_filter(guide, constant, 2, 1e-2), constant)
    torch.testing.assert_close(guided_filter(guide, guide[:, :1], 2, 1e-9), guide[:, :1], rtol=0, atol=1e-5)
    small = x[:1, :2, :5, :6].clone().requires_grad_()
    small_guide = guide[:1, :, :5, :6].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda g, f: guided_filter(g, f, 1, 0.1), (small_guide, small))


def test_pca_matches_svd(device, generator):
    features = torch.randn(2, 6, 5, 7, dtype=torch.float64, generator=generator)
    features[:, 0] *= 4  # distinct variances -> well separated components
    features[:, 1] *= 2
    out = pca_project(features.to(device), dims=3).cpu()
    assert out.shape == (2, 3, 5, 7)
    for b in range(2):
        X = features[b].reshape(6, -1).t()
        X = X - X.mean(0)
        _, _, Vh = torch.linalg.svd(X, full_matrices=False)
        V = Vh[:3].t()
        # The library's sign convention: largest-magnitude loading positive.
        V = V * torch.sign(V.gather(0, V.abs().argmax(0, keepdim=True)))
        torch.testing.assert_close(out[b].reshape(3, -1).t(), X @ V, rtol=1e-9, atol=1e-10)
    variances = out.flatten(2).var(2)
    assert bool((variances[:, :-1] >= variances[:, 1:]).all())


def test_rescale_and_feature_chain(generator):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=generator)
    x[1, 2] = 3.0  # a constant channel
    out = rescale_to_unit(x)
    assert torch.allclose(out.flatten(2).amin(2)[:, :2], torch.zeros(2, 2, dtype=torch.float64))
    assert torch.allclose(out.flatten(2).amax(2)[:, :2], torch.ones(2, 2, dtype=torch.float64))
    assert bool((out[1, 2] == 0).all())
    image = torch.rand(2, 3, 6, 7, dtype=torch.float64, generator=generator)
    features = torch.randn(2, 8, 6, 7, dtype=torch.float64, generator=generator)
    chained = soft_segmentation_features(image, features, radius=2, eps=1e-2)
    torch.testing.assert_close(chained, rescale_to_unit(pca_project(guided_filter(image, features, 2, 1e-2), 3)))
    assert chained.shape == (2, 3, 6, 7) and float(chained.min()) >= 0 and float(chained.max()) <= 1


def test_preprocessing_bad_inputs(generator):
    image = torch.rand(1, 3, 6, 7, dtype=torch.float64)
    with pytest.raises(ValueError, match="features"):
        guided_filter(image, torch.rand(1, 4, 3, 7, dtype=torch.float64), 1, 0.1)
    with pytest.raises(TypeError, match="dtype"):
        guided_filter(image, torch.rand(1, 4, 6, 7), 1, 0.1)
    with pytest.raises(ValueError, match="eps"):
        guided_filter(image, image, 1, 0.0)
    with pytest.raises(ValueError, match="radius"):
        guided_filter(image, image, -1, 0.1)
    with pytest.raises(ValueError, match="dims"):
        pca_project(image, dims=4)
    with pytest.raises(ValueError, match="features"):
        pca_project(image[0])


# ==================================================================================
# PiCIE
# ==================================================================================
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
