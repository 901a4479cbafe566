"""Instances from converged mean-shift embeddings (extract_instances) and Kong & Fowlkes'
multi-bandwidth proposals (instance_proposals)."""
import math

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.cluster import cosine_threshold_from_margin, extract_instances, instance_proposals
from segsort_ext.ops import bandwidth_from_margin, blurring_mean_shift


def _sequential(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """The specification, one point at a time: the lowest unassigned point is a seed and
    takes every unassigned point with cos >= threshold."""
    u = F.normalize(x.double(), dim=1)
    ids = torch.full((x.shape[0],), -1, dtype=torch.int64)
    next_id = 0
    for seed in range(x.shape[0]):
        if ids[seed] >= 0:
            continue
        for j in range(x.shape[0]):
            if ids[j] < 0 and (j == seed or float(u[j] @ u[seed]) >= threshold):
                ids[j] = next_id
        next_id += 1
    return ids


def _clusters(num_clusters=6, dim=8, n=300, noise=0.02, seed=0, dtype=torch.float64, max_cos=0.5):
    """Points around well separated unit centres (pairwise cosine < max_cos), labels in
    random order."""
    g = torch.Generator().manual_seed(seed)
    while True:
        centres = F.normalize(torch.randn(num_clusters, dim, generator=g, dtype=dtype), dim=1)
        cos = centres @ centres.t() - 2 * torch.eye(num_clusters, dtype=dtype)
        if cos.max() < max_cos:
            break
    labels = torch.randint(num_clusters, (n,), generator=g)
    labels[:num_clusters] = torch.randperm(num_clusters, generator=g)  # every cluster present
    points = centres[labels] + noise * torch.randn(n, dim, generator=g, dtype=dtype)
    return points * (0.5 + torch.rand(n, 1, generator=g, dtype=dtype)), labels  # scale must not matter


def _same_partition(ids: torch.Tensor, labels: torch.Tensor) -> bool:
    pairs = torch.unique(torch.stack([ids, labels], 1), dim=0)
    return pairs.shape[0] == torch.unique(ids).numel() == torch.unique(labels).numel()


def test_cosine_threshold_from_margin():
    # midpoint of [alpha, 1] in the calibrated similarity (1 + cos) / 2 is cos = alpha
    assert cosine_threshold_from_margin(0.5) == 0.5
    assert cosine_threshold_from_margin(0.5, calibrated=False) == 0.75
    assert cosine_threshold_from_margin(0.0) == 0.0
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="alpha"):
            cosine_threshold_from_margin(bad)
    with pytest.raises(TypeError, match="alpha"):
        cosine_threshold_from_margin("0.5")


def test_exact_recovery_of_clusters(device):
    points, labels = _clusters()
    result = extract_instances(points.to(device), 0.9)
    ids = result.ids.cpu()
    assert ids.shape == labels.shape and ids.dtype == torch.int64
    assert _same_partition(ids, labels)
    assert result.size.cpu().tolist() == torch.bincount(ids).tolist()
    assert result.size.sum() == points.shape[0] and (result.batch == 0).all()
    # ids are ordered by first member
    first = torch.tensor([int(torch.nonzero(ids == k)[0]) for k in range(result.size.numel())])
    assert (first.diff() > 0).all() and first[0] == 0
    # embeddings: normalised mean of the members' unit vectors
    unit = F.normalize(points, dim=1)
    expected = F.normalize(torch.stack([unit[ids == k].sum(0) for k in range(result.size.numel())]), dim=1)
    torch.testing.assert_close(result.embeddings.cpu(), expected)


@pytest.mark.parametrize("threshold", [0.95, 0.6, 0.2, -0.3])
def test_matches_sequential_greedy_on_scattered_points(threshold):
    # Random points: many seeds per round, candidates taken by earlier seeds of the same
    # round, rounds that grow and shrink -- the result must be the sequential procedure's.
    x = torch.randn(160, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ids = extract_instances(x, threshold).ids
    assert torch.equal(ids, _sequential(x, threshold))


def test_ragged_batch_equals_images_alone(device):
    a, labels_a = _clusters(seed=1, n=120)
    b, _ = _clusters(seed=2, n=70)
    x = torch.zeros(3, 120, 8, dtype=torch.float64)
    x[0] = a
    x[1, :70] = b
    x[1, 70:] = float("nan")  # padding is never read
    x[2] = 1e3 * torch.randn(120, 8, dtype=torch.float64)
    lengths = torch.tensor([120, 70, 0])
    result = extract_instances(x.to(device), 0.9, lengths=lengths.to(device))
    alone_a = extract_instances(a, 0.9)
    alone_b = extract_instances(b, 0.9)
    ids = result.ids.cpu()
    n_a = alone_a.size.numel()
    assert torch.equal(ids[0], alone_a.ids)
    assert torch.equal(ids[1, :70], alone_b.ids + n_a)
    assert (ids[1, 70:] == -1).all() and (ids[2] == -1).all()
    assert result.batch.cpu().tolist() == [0] * n_a + [1] * alone_b.size.numel()
    torch.testing.assert_close(result.embeddings.cpu(), torch.cat([alone_a.embeddings, alone_b.embeddings]))
    assert _same_partition(ids[0], labels_a)


def test_deterministic_and_float32(device):
    points, labels = _clusters(seed=4, dtype=torch.float32)
    first = extract_instances(points.to(device)[None], 0.9)
    second = extract_instances(points.to(device)[None], 0.9)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert first.embeddings.dtype == torch.float32
    assert _same_partition(first.ids[0].cpu(), labels)


def test_min_size_and_invalid_points():
    points, labels = _clusters(num_clusters=3, n=60, seed=5)
    lonely = F.normalize(torch.ones(1, 8, dtype=torch.float64), dim=1)
    points = torch.cat([points, lonely, torch.zeros(1, 8, dtype=torch.float64),
                        torch.full((1, 8), float("inf"), dtype=torch.float64)])
    all_kept = extract_instances(points, 0.99)
    assert all_kept.ids[-2] == -1 and all_kept.ids[-1] == -1  # zero and non-finite rows
    assert all_kept.ids[60] >= 0 and all_kept.size[all_kept.ids[60]] == 1
    trimmed = extract_instances(points, 0.99, min_size=2)
    assert trimmed.ids[60] == -1
    assert trimmed.size.numel() == all_kept.size.numel() - 1 and (trimmed.size >= 2).all()
    assert torch.equal(torch.unique(trimmed.ids[trimmed.ids >= 0]), torch.arange(trimmed.size.numel()))
    assert _same_partition(trimmed.ids[:60], labels)


def test_empty_inputs():
    empty = extract_instances(torch.zeros(2, 0, 3), 0.5)
    assert empty.ids.shape == (2, 0) and empty.size.numel() == 0 and empty.embeddings.shape == (0, 3)
    none_valid = extract_instances(torch.randn(2, 5, 3), 0.5, lengths=torch.tensor([0, 0]))
    assert (none_valid.ids == -1).all() and none_valid.batch.numel() == 0


def test_bad_inputs():
    x = torch.randn(2, 5, 3)
    with pytest.raises(TypeError, match="x"):
        extract_instances(torch.ones(5, 3, dtype=torch.int64), 0.5)
    with pytest.raises(TypeError, match="x"):
        extract_instances(x.numpy(), 0.5)
    with pytest.raises(ValueError, match="x"):
        extract_instances(torch.randn(5), 0.5)
    with pytest.raises(ValueError, match="threshold"):
        extract_instances(x, 1.5)
    with pytest.raises(TypeError, match="threshold"):
        extract_instances(x, None)
    with pytest.raises(ValueError, match="threshold"):
        extract_instances(x, float("nan"))
    with pytest.raises(ValueError, match="min_size"):
        extract_instances(x, 0.5, min_size=0)
    with pytest.raises(ValueError, match="lengths"):
        extract_instances(x, 0.5, lengths=torch.tensor([5]))
    with pytest.raises(ValueError, match="lengths"):
        extract_instances(x, 0.5, lengths=torch.tensor([5, 6]))
    with pytest.raises(TypeError, match="lengths"):
        extract_instances(x, 0.5, lengths=torch.tensor([5.0, 1.0]))
    with pytest.raises(TypeError, match="bandwidths"):
        instance_proposals(x, 5.0, threshold=0.5)
    with pytest.raises(ValueError, match=r"bandwidths\[1\]"):
        instance_proposals(x, [5.0, -1.0], threshold=0.5)
    with pytest.raises(ValueError, match=r"bandwidths\[0\]"):
        instance_proposals(x, [float("inf")], threshold=0.5)
    with pytest.raises(ValueError, match="duplicate_iou"):
        instance_proposals(x, [5.0], threshold=0.5, duplicate_iou=0.0)


def test_mean_shift_then_margin_threshold_recovers_instances():
    # The pipeline of the paper: embeddings trained with margin alpha, mean shift at
    # bandwidth 3 / (1 - alpha), instances at cos >= threshold(alpha).
    # alpha = 0.5 on the calibrated similarity: different instances at cos <= 0
    points, labels = _clusters(num_clusters=4, n=200, noise=0.08, seed=6, max_cos=0.0)
    alpha = 0.5
    shifted = blurring_mean_shift(points[None], bandwidth=bandwidth_from_margin(alpha), iters=10)
    result = extract_instances(shifted, cosine_threshold_from_margin(alpha))
    assert _same_partition(result.ids[0], labels)
    # without mean shift the noisy points do not all pass a strict threshold
    assert extract_instances(points, 0.999).size.numel() > 4


def _two_level_points():
    """Four tight groups: A and A' close together (cos 0.8), B and B' close together, the
    pairs far apart. A wide kernel merges each pair, a narrow one keeps four groups."""
    d = 6
    e = torch.eye(d, dtype=torch.float64)
    a = e[0]
    a2 = 0.8 * e[0] + 0.6 * e[1]
    b = e[3]
    b2 = 0.8 * e[3] + 0.6 * e[4]
    g = torch.Generator().manual_seed(7)
    centres = torch.stack([a, a2, b, b2])
    labels = torch.arange(4).repeat_interleave(15)
    points = centres[labels] + 0.01 * torch.randn(60, d, generator=g, dtype=torch.float64)
    return points, labels


def test_proposals_over_bandwidths_without_duplicates(device):
    points, labels = _two_level_points()
    x = points.to(device)[None].repeat(2, 1, 1)
    lengths = torch.tensor([60, 30], device=device)  # image 1: only groups A and A'
    wide, narrow = 10.0, 60.0
    proposals = instance_proposals(x, [wide, narrow, narrow], threshold=0.95, lengths=lengths)
    level, batch, size = proposals.level.cpu(), proposals.batch.cpu(), proposals.size.cpu()
    # wide: {A+A', B+B'} in image 0, {A+A'} in image 1; narrow: the four groups, the two
    # in image 1; the repeated narrow bandwidth adds nothing (identical sets).
    assert level.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert batch.tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 1]
    assert size.tolist() == [30, 30, 30, 15, 15, 15, 15, 15, 15]
    assert (proposals.ids[2] == -1).all()
    masks = proposals.masks(0).cpu()
    assert masks.shape == (6, 60) and masks.sum(1).tolist() == [30, 30, 15, 15, 15, 15]
    pair_of = labels // 2
    assert torch.equal(masks[0], pair_of == 0) and torch.equal(masks[1], pair_of == 1)
    for k in range(4):
        assert torch.equal(masks[2 + k], labels == k)
    masks1 = proposals.masks(1).cpu()
    assert masks1.shape == (3, 60) and not masks1[:, 30:].any()
    # embeddings: unit means of the input points of each proposal
    unit = F.normalize(points, dim=1)
    torch.testing.assert_close(proposals.embeddings[0].cpu(), F.normalize(unit[:30].sum(0), dim=0))
    with pytest.raises(ValueError, match="image"):
        proposals.masks(2)


def test_near_duplicates_merge_below_one():
    # A group plus one straggler: the wide kernel pulls the straggler in, the narrow one
    # leaves it alone -> two proposals with IoU 20/21.
    g = torch.Generator().manual_seed(8)
    centre = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    group = centre + 0.01 * torch.randn(20, 4, generator=g, dtype=torch.float64)
    straggler = torch.tensor([[0.9, math.sqrt(1 - 0.81), 0, 0]], dtype=torch.float64)
    points = torch.cat([group, straggler])
    exact = instance_proposals(points, [3.0, 200.0], threshold=0.99)
    assert exact.size.tolist() == [21, 20, 1]
    assert exact.ids.shape == (2, 21)
    merged = instance_proposals(points, [3.0, 200.0], threshold=0.99, duplicate_iou=0.9)
    assert merged.size.tolist() == [21, 1] and merged.level.tolist() == [0, 1]


def test_a_non_finite_point_empties_its_image_only():
    # Mean shift carries a non-finite point to every point of its image; padding beyond
    # lengths never influences anything.
    x, _ = _clusters(num_clusters=3, n=40)
    x = x.view(2, 20, -1).clone()
    clean = instance_proposals(x, [2.0, 4.0], threshold=0.5)
    x[0, 3] = float("nan")
    x[1, 19] = float("inf")
    lengths = torch.tensor([20, 19])
    proposals = instance_proposals(x, [2.0, 4.0], threshold=0.5, lengths=lengths)
    assert (proposals.ids[:, 0] == -1).all()
    assert (proposals.batch == 1).all()
    expected = instance_proposals(x[1:, :19], [2.0, 4.0], threshold=0.5)
    assert torch.equal(proposals.size, expected.size)
    assert torch.equal(proposals.ids[:, 1, :19] >= 0, expected.ids[:, 0] >= 0)
    assert clean.size.numel() > proposals.size.numel()
