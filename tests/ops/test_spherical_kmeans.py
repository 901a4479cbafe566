import pytest
import torch

import segsort_ext
from segsort_ext.ops import reference, spherical_kmeans
from segsort_ext.testing import needs_cuda


def _compare(actual, expected, atol=1e-12):
    labels, centroids = expected
    assert torch.equal(actual.labels.cpu(), labels.cpu())
    torch.testing.assert_close(actual.centroids.cpu(), centroids.cpu(), rtol=0, atol=atol)


@pytest.mark.parametrize("shape", [(2, 8, 17, 23), (1, 16, 9, 9), (3, 32, 12, 20), (1, 5, 1, 7)])
@pytest.mark.parametrize("grid", [(1, 1), (3, 4), (5, 5)])
@pytest.mark.parametrize("coord_weight", [0.0, 1.0, 2.5])
def test_matches_reference(device, generator, shape, grid, coord_weight):
    x = torch.randn(shape, dtype=torch.float64, generator=generator)
    expected = reference.spherical_kmeans(x, grid, iters=6, coord_weight=coord_weight)
    _compare(spherical_kmeans(x.to(device), grid, iters=6, coord_weight=coord_weight), expected)


def test_mask_init_and_nan(device, generator):
    B, D, H, W = 2, 6, 10, 11
    x = torch.randn(B, D, H, W, dtype=torch.float64, generator=generator)
    mask = torch.rand(B, H, W, generator=generator) > 0.2
    init = torch.randint(0, 6, (B, H, W), generator=generator)
    init[0, 0, :3] = -1
    x_nan = x.clone()
    x_nan[1, 2, 4, 4] = float("nan")
    expected = reference.spherical_kmeans(x_nan, (2, 3), iters=5, mask=mask, init=init)
    actual = spherical_kmeans(x_nan.to(device), (2, 3), iters=5, mask=mask.to(device), init=init.to(device))
    _compare(actual, expected)
    assert int(actual.labels[1, 4, 4]) == -1 and bool((actual.labels[0, 0, :3] == -1).all())
    assert bool((actual.labels[~mask.to(device)] == -1).all())
    # A NaN pixel is simply masked: same result as masking it explicitly.
    mask2 = mask.clone()
    mask2[1, 4, 4] = False
    _compare(spherical_kmeans(x.to(device), (2, 3), iters=5, mask=mask2.to(device), init=init.to(device)),
             (actual.labels, actual.centroids))


def test_contract_by_hand(device):
    # 1 x 4 image, 1-D embeddings of +1/-1, grid (1, 2): cells [0, 0, 1, 1].
    x = torch.tensor([1.0, 1.0, -1.0, 1.0], dtype=torch.float64).view(1, 1, 1, 4).to(device)
    result = spherical_kmeans(x, (1, 2), iters=1, coord_weight=0.0)
    # M-step: c0 = normalize(1 + 1) = 1, c1 = normalize(-1 + 1) = 0 (zero sum -> zero vector).
    # E-step: +1 pixels pick c0 (1 > 0); the -1 pixel scores -1 vs 0 and picks c1.
    assert result.labels.tolist() == [[[0, 0, 1, 0]]]
    torch.testing.assert_close(result.centroids[0, :, 0].cpu(), torch.tensor([1.0, 0.0], dtype=torch.float64))
    # Ties go to the lowest index: two identical centroids.
    tie = torch.ones(1, 1, 2, 2, dtype=torch.float64, device=device)
    assert spherical_kmeans(tie, (1, 2), iters=2, coord_weight=0.0).labels.unique().tolist() == [0]


def test_empty_clusters_keep_centroids(device, generator):
    # K = 25 cells on a 3 x 3 image: most cells never have a member (zero centroids).
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64, generator=generator)
    expected = reference.spherical_kmeans(x, (5, 5), iters=4)
    actual = spherical_kmeans(x.to(device), (5, 5), iters=4)
    _compare(actual, expected)
    assert int((actual.centroids.norm(dim=2) == 0).sum()) >= 25 - 9


def test_tol_early_stop(device, generator):
    x = torch.randn(2, 8, 16, 16, dtype=torch.float64, generator=generator).to(device)
    full = spherical_kmeans(x, (4, 4), iters=50)
    fixed_point = spherical_kmeans(x, (4, 4), iters=50, tol=0.0)
    _compare(fixed_point, (full.labels, full.centroids))  # stopping at a fixed point changes nothing
    one = spherical_kmeans(x, (4, 4), iters=1)
    _compare(spherical_kmeans(x, (4, 4), iters=50, tol=1.0), (one.labels, one.centroids))


def test_all_masked_and_empty(device):
    x = torch.randn(2, 3, 4, 5, device=device)
    result = spherical_kmeans(x, (2, 2), mask=torch.zeros(2, 4, 5, dtype=torch.bool, device=device))
    assert bool((result.labels == -1).all()) and bool((result.centroids == 0).all())
    for shape in [(0, 3, 4, 5), (2, 3, 0, 5)]:
        result = spherical_kmeans(torch.randn(shape, device=device), (2, 2))
        assert result.labels.shape == (shape[0], shape[2], shape[3])
        assert result.centroids.shape == (shape[0], 4, 5)


def test_non_contiguous(device, generator):
    x = torch.randn(2, 8, 12, 10, dtype=torch.float64, generator=generator)
    expected = reference.spherical_kmeans(x, (3, 3), iters=4)
    _compare(spherical_kmeans(x.to(device).contiguous(memory_format=torch.channels_last), (3, 3), iters=4), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(device, generator, dtype):
    x = torch.randn(2, 16, 20, 20, generator=generator)
    expected = reference.spherical_kmeans(x.to(dtype).double(), (3, 3), iters=5)
    result = spherical_kmeans(x.to(dtype).to(device), (3, 3), iters=5)
    assert result.centroids.dtype == dtype
    agreement = (result.labels.cpu() == expected[0]).float().mean()
    assert agreement > 0.98, f"labels agree on {agreement:.3f} of pixels"


def test_opcheck(device, generator):
    x = torch.randn(2, 6, 7, 9, generator=generator).to(device)
    mask = (torch.rand(2, 7, 9, generator=generator) > 0.1).to(device)
    for args in [(x, None, None, 2, 3, 3, 1.0, -1.0), (x, mask, None, 3, 3, 2, 0.5, 0.0)]:
        torch.library.opcheck(torch.ops.segsort_ext.spherical_kmeans.default, args)


def test_feeds_segment_partition(generator):
    x = torch.randn(2, 8, 16, 16, generator=generator)
    labels = torch.randint(0, 3, (2, 16, 16), generator=generator)
    result = spherical_kmeans(x, (3, 3))
    segments = segsort_ext.segment_partition(result.labels, labels)
    assert int(segments.size.sum()) == 2 * 16 * 16


@needs_cuda
@pytest.mark.parametrize("D", [16, 32, 64, 128, 20])
def test_cuda_matches_cpu(generator, D):
    x = torch.randn(3, D, 33, 41, dtype=torch.float64, generator=generator)
    cpu = spherical_kmeans(x, (5, 5), iters=10)
    _compare(spherical_kmeans(x.cuda(), (5, 5), iters=10), (cpu.labels, cpu.centroids), atol=1e-10)
    x32 = x.float()
    cpu32, gpu32 = spherical_kmeans(x32, (5, 5)), spherical_kmeans(x32.cuda(), (5, 5))
    assert (cpu32.labels == gpu32.labels.cpu()).float().mean() > 0.999


@needs_cuda
def test_cuda_deterministic_mode(generator):
    x = torch.randn(4, 32, 65, 65, generator=generator).cuda()
    torch.use_deterministic_algorithms(True)
    try:
        runs = [spherical_kmeans(x, (5, 5)) for _ in range(3)]
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(runs[0].centroids, r.centroids) and torch.equal(runs[0].labels, r.labels) for r in runs)
