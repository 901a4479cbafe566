import pytest
import torch

import segsort_ext
from segsort_ext.cluster import SphericalKMeans
from segsort_ext.ops import reference, spherical_kmeans
from segsort_ext.testing import devices


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


@pytest.mark.skipif("cuda" not in devices(), reason="needs a GPU")
@pytest.mark.parametrize("D", [16, 32, 64, 128, 20])
def test_cuda_matches_cpu(generator, D):
    x = torch.randn(3, D, 33, 41, dtype=torch.float64, generator=generator)
    cpu = spherical_kmeans(x, (5, 5), iters=10)
    _compare(spherical_kmeans(x.cuda(), (5, 5), iters=10), (cpu.labels, cpu.centroids), atol=1e-10)
    x32 = x.float()
    cpu32, gpu32 = spherical_kmeans(x32, (5, 5)), spherical_kmeans(x32.cuda(), (5, 5))
    assert (cpu32.labels == gpu32.labels.cpu()).float().mean() > 0.999


@pytest.mark.skipif("cuda" not in devices(), reason="needs a GPU")
def test_cuda_deterministic_mode(generator):
    x = torch.randn(4, 32, 65, 65, generator=generator).cuda()
    torch.use_deterministic_algorithms(True)
    try:
        runs = [spherical_kmeans(x, (5, 5)) for _ in range(3)]
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(runs[0].centroids, r.centroids) and torch.equal(runs[0].labels, r.labels) for r in runs)


# --- dataset-level -----------------------------------------------------------------

def _blobs(n=3000, k=6, d=16, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=1)
    truth = torch.randint(0, k, (n,), generator=g)
    points = centers[truth] + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return points, truth


def _agreement(a, b, k):
    # fraction of points whose cluster maps to the same truth cluster under the best matching
    from scipy.optimize import linear_sum_assignment

    table = torch.zeros(k, k)
    table.index_put_((a, b), torch.ones(len(a)), accumulate=True)
    rows, cols = linear_sum_assignment(-table.numpy())
    return float(table[rows, cols].sum()) / len(a)


def test_dataset_fit_recovers_blobs(device):
    points, truth = _blobs()
    km = SphericalKMeans(6, chunk_size=700, seed=1, device=device).fit(points)
    assert _agreement(km.predict(points).cpu(), truth, 6) > 0.99
    assert km.centroids.shape == (6, 16)
    torch.testing.assert_close(km.centroids.norm(dim=1).cpu(), torch.ones(6, dtype=torch.float64))
    assert abs(km.inertia_ - km.objective(points)) < 1e-6


def test_dataset_random_init_improves_objective():
    points, _ = _blobs()
    km = SphericalKMeans(6, init="random", seed=1)
    start = SphericalKMeans(6, init="random", seed=1)
    start.centroids = start._initial_centroids(points, torch.device("cpu"))
    km.fit(points)
    assert km.n_iter_ > 1 and km.objective(points) < start.objective(points)


def test_dataset_fit_matches_full_batch_reference():
    points, _ = _blobs(n=500, k=4)
    km = SphericalKMeans(4, chunk_size=64, max_iter=3, tol=-1.0, seed=3).fit(points)
    # The same EM done densely from the same initial centroids.
    centroids = SphericalKMeans(4, seed=3)._initial_centroids(points, torch.device("cpu"))
    unit = torch.nn.functional.normalize(points, dim=1)
    for _ in range(3):
        labels = (unit @ centroids.t()).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, unit)
        centroids = torch.where(torch.bincount(labels, minlength=4)[:, None] > 0,
                                torch.nn.functional.normalize(sums, dim=1), centroids)
    torch.testing.assert_close(km.centroids, centroids, rtol=0, atol=1e-12)


def test_dataset_deterministic_and_partial_fit():
    points, truth = _blobs(seed=2)
    a = SphericalKMeans(6, seed=5).fit(points)
    b = SphericalKMeans(6, seed=5).fit(points)
    assert torch.equal(a.centroids, b.centroids)
    online = SphericalKMeans(6, seed=5)
    for batch in points.split(500):
        online.partial_fit(batch)
    assert int(online.counts.sum()) == len(points)
    start = SphericalKMeans(6, seed=5)
    start.centroids = start._initial_centroids(points[:500], torch.device("cpu"))
    assert online.objective(points) < start.objective(points)
    # The online update is count-weighted: one batch moves each centroid to that batch's mean.
    single = SphericalKMeans(6, seed=5).partial_fit(points[:500])
    labels = single.predict(points[:500])
    unit = torch.nn.functional.normalize(points[:500], dim=1)
    cluster = int(labels[0])
    # compare against the assignment made before the update
    start = SphericalKMeans(6, seed=5)._initial_centroids(points[:500], torch.device("cpu"))
    pre = (unit @ start.t()).argmax(1)
    expected = torch.nn.functional.normalize(unit[pre == cluster].mean(0), dim=0)
    torch.testing.assert_close(single.centroids[cluster], expected)


def test_dataset_bad_inputs():
    with pytest.raises(ValueError, match="num_clusters"):
        SphericalKMeans(0)
    with pytest.raises(ValueError, match="init"):
        SphericalKMeans(3, init="kmeans")
    with pytest.raises(ValueError, match="fewer than num_clusters"):
        SphericalKMeans(10).fit(torch.randn(5, 3))
    with pytest.raises(ValueError, match="data"):
        SphericalKMeans(2).fit(torch.randn(5))
    with pytest.raises(RuntimeError, match="not fitted"):
        SphericalKMeans(2).predict(torch.randn(5, 3))
    km = SphericalKMeans(2).fit(torch.randn(20, 3))
    with pytest.raises(ValueError, match="D = 4"):
        km.predict(torch.randn(5, 4))


def test_dataset_state_dict_round_trip(tmp_path):
    points, _ = _blobs(seed=3)
    online = SphericalKMeans(6, seed=1)
    for batch in points[:1000].split(250):
        online.partial_fit(batch)
    torch.save(online.state_dict(), tmp_path / "kmeans.pt")
    restored = SphericalKMeans(6, seed=1).load_state_dict(torch.load(tmp_path / "kmeans.pt"))
    assert torch.equal(restored.centroids, online.centroids) and torch.equal(restored.counts, online.counts)
    assert restored.n_iter_ == online.n_iter_ and restored.inertia_ == online.inertia_
    # Continuing from the checkpoint is the uninterrupted run.
    for batch in points[1000:].split(250):
        online.partial_fit(batch)
        restored.partial_fit(batch)
    assert torch.equal(restored.centroids, online.centroids)
    fitted = SphericalKMeans(6, seed=1).fit(points)
    again = SphericalKMeans(6).load_state_dict(fitted.state_dict())
    assert torch.equal(again.predict(points), fitted.predict(points)) and again.inertia_ == fitted.inertia_
    assert SphericalKMeans(6).load_state_dict(SphericalKMeans(6).state_dict()).centroids is None
    with pytest.raises(ValueError, match="keys"):
        SphericalKMeans(6).load_state_dict({"centroids": fitted.centroids})
    with pytest.raises(ValueError, match="K = 5"):
        SphericalKMeans(5).load_state_dict(fitted.state_dict())
    with pytest.raises(TypeError, match="counts"):
        SphericalKMeans(6).load_state_dict({**fitted.state_dict(), "counts": fitted.counts.float()})
