"""SphericalKMeans (dataset-level spherical k-means): fitting, streaming, the online update,
checkpoints, argument checks and points without a direction."""
import pytest
import torch

from segsort_ext.cluster import SphericalKMeans


def test_constructor_checks_arguments():
    with pytest.raises(TypeError, match="num_clusters"):
        SphericalKMeans(2.0)
    with pytest.raises(TypeError, match="tol"):
        SphericalKMeans(2, tol="1e-3")
    with pytest.raises(ValueError, match="tol"):
        SphericalKMeans(2, tol=float("nan"))
    with pytest.raises(ValueError, match="chunk_size"):
        SphericalKMeans(2, chunk_size=0)
    with pytest.raises(ValueError, match="init"):
        SphericalKMeans(2, init=torch.randn(3, 4))
    # tol = -inf: never stop early, run max_iter iterations.
    points = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    km = SphericalKMeans(2, tol=-float("inf"), max_iter=3).fit(points)
    assert km.n_iter_ == 3


def _with_rows_without_direction(points):
    """points with NaN, inf and zero rows interleaved; and the mask of the other rows."""
    bad = points.clone()
    bad[0::7, 0] = float("nan")
    bad[1::7, 1] = float("inf")
    bad[2::7] = 0.0
    usable = torch.ones(len(points), dtype=torch.bool)
    usable[0::7] = usable[1::7] = usable[2::7] = False
    return bad, usable


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_points_without_a_direction_take_no_part(init):
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(400, 5, generator=generator, dtype=torch.float64)
    bad, usable = _with_rows_without_direction(points)
    km = SphericalKMeans(4, init=init, seed=2, chunk_size=64).fit(bad)
    assert torch.isfinite(km.centroids).all()
    labels = km.predict(bad)
    assert (labels[~usable] == -1).all() and (labels[usable] >= 0).all()
    assert int(km.counts.sum()) == int(usable.sum())
    assert km.objective(bad) == pytest.approx(km.objective(points[usable]), abs=1e-9)
    assert km.inertia_ == pytest.approx(km.objective(points[usable]), abs=1e-9)
    # Fitting from given centroids: exactly the fit on the usable rows alone.
    start = points[:4]
    with_bad = SphericalKMeans(4, init=start, tol=-float("inf"), max_iter=5).fit(bad)
    clean = SphericalKMeans(4, init=start, tol=-float("inf"), max_iter=5).fit(points[usable])
    torch.testing.assert_close(with_bad.centroids, clean.centroids, rtol=0, atol=1e-12)
    assert torch.equal(with_bad.counts, clean.counts)
    online = SphericalKMeans(4, init=start).partial_fit(bad)
    assert torch.isfinite(online.centroids).all() and int(online.counts.sum()) == int(usable.sum())


def test_predict_ties_go_to_the_lowest_index_in_every_block():
    # K = 3000 spans many cluster blocks of the CPU micro-kernel and 2000 points many row
    # tiles and a partial one.
    generator = torch.Generator().manual_seed(3)
    centroids = torch.nn.functional.normalize(torch.randn(3000, 8, generator=generator), dim=1)
    centroids[2000:] = centroids[:1000]  # exact duplicates: each tie must go to the first copy
    points = centroids[torch.randint(0, 3000, (2000,), generator=generator)] * 3.0
    km = SphericalKMeans(3000)
    km.centroids = centroids
    labels = km.predict(points)
    # The reference scores only the distinct first 2000, in float64: a BLAS GEMM can round
    # two copies of one centroid differently (MKL's AVX2 path does), so it cannot judge ties.
    unit_points = torch.nn.functional.normalize(points.double(), dim=1)
    expected = (unit_points @ centroids[:2000].double().t()).max(1).indices
    assert torch.equal(labels, expected)
    # A point midway between two centroids scores equal cosines: the lower index wins.
    km = SphericalKMeans(2)
    km.centroids = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert km.predict(torch.tensor([[1.0, 1.0], [2.0, 0.0]])).tolist() == [0, 1]


def test_rows_of_tiny_or_huge_entries_keep_their_direction():
    # Their float32 norm underflows to 0 or overflows to inf; they are still points.
    points = torch.tensor([[1e-30, 2e-30], [3e30, -1e30], [0.0, 0.0], [1.0, 2.0]])
    km = SphericalKMeans(2)
    km.centroids = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0], [3.0, -1.0]]), dim=1)
    assert km.predict(points).tolist() == [0, 1, -1, 0]
    assert km.objective(points) == pytest.approx(0.0, abs=1e-6)


def test_streamed_chunks_fit_like_one_chunk():
    generator = torch.Generator().manual_seed(4)
    points = torch.randn(3000, 16, generator=generator)
    start = torch.nn.functional.normalize(points[:5].double(), dim=1)
    whole = SphericalKMeans(5, init=start, max_iter=6, tol=-1.0).fit(points)
    streamed = SphericalKMeans(5, init=start, max_iter=6, tol=-1.0, chunk_size=700).fit(points)
    torch.testing.assert_close(streamed.centroids, whole.centroids)
    assert torch.equal(streamed.counts, whole.counts)
    assert streamed.inertia_ == pytest.approx(whole.inertia_, rel=1e-5)


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


def test_fit_recovers_blobs(device):
    points, truth = _blobs()
    km = SphericalKMeans(6, chunk_size=700, seed=1, device=device).fit(points)
    assert _agreement(km.predict(points).cpu(), truth, 6) > 0.99
    assert km.centroids.shape == (6, 16)
    torch.testing.assert_close(km.centroids.norm(dim=1).cpu(), torch.ones(6, dtype=torch.float64))
    assert abs(km.inertia_ - km.objective(points)) < 1e-6


def test_random_init_improves_objective():
    points, _ = _blobs()
    km = SphericalKMeans(6, init="random", seed=1)
    start = SphericalKMeans(6, init="random", seed=1)
    start.centroids = start._initial_centroids(points, torch.device("cpu"))
    km.fit(points)
    assert km.n_iter_ > 1 and km.objective(points) < start.objective(points)


# 500 points in chunks of 64; 5000 points, K = 300 in one chunk: on the CPU two slices of
# 2500 rows, each 39 float64 tiles of 64 rows and a partial one, each slice with its sums.
@pytest.mark.parametrize("n, K, chunk_size", [(500, 4, 64), (5000, 300, 1 << 20)])
def test_fit_matches_full_batch_reference(n, K, chunk_size):
    points, _ = _blobs(n=n, k=4)
    km = SphericalKMeans(K, chunk_size=chunk_size, max_iter=3, tol=-1.0, seed=3).fit(points)
    # The same EM done densely from the same initial centroids.
    centroids = SphericalKMeans(K, seed=3)._initial_centroids(points, torch.device("cpu"))
    unit = torch.nn.functional.normalize(points, dim=1)
    for _ in range(3):
        labels = (unit @ centroids.t()).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, unit)
        centroids = torch.where(torch.bincount(labels, minlength=K)[:, None] > 0,
                                torch.nn.functional.normalize(sums, dim=1), centroids)
    torch.testing.assert_close(km.centroids, centroids, rtol=0, atol=1e-12)


def test_deterministic_and_partial_fit():
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


def test_bad_inputs():
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


def test_state_dict_round_trip(tmp_path):
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_default_fit_is_independent_of_the_thread_count(dtype):
    # k-means++ on the default sample, then the iterations: the same bits at any thread
    # count (the E/M passes sum in fixed slices; the seeding's products are per row).
    generator = torch.Generator().manual_seed(4)
    points = torch.randn(30_000, 24, generator=generator, dtype=dtype)
    threads = torch.get_num_threads()
    fitted = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            model = SphericalKMeans(40, max_iter=5, tol=-1.0).fit(points)
            fitted.append((model.centroids, model.counts, model.inertia_))
    finally:
        torch.set_num_threads(threads)
    for centroids, counts, inertia in fitted[1:]:
        assert torch.equal(centroids, fitted[0][0]) and torch.equal(counts, fitted[0][1]) and inertia == fitted[0][2]


def test_default_initialisation_sample_is_64_points_per_cluster_at_most_100000():
    assert SphericalKMeans(5).init_sample == 5 * 64
    assert SphericalKMeans(2000).init_sample == 100_000
    assert SphericalKMeans(5, init_sample=7).init_sample == 7  # at least K
    assert SphericalKMeans(9, init_sample=7).init_sample == 9
    # The sample bounds what k-means++ reads: a fit draws its seeds from that many rows.
    points = torch.nn.functional.normalize(torch.randn(5000, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    small = SphericalKMeans(4, init_sample=4, max_iter=0).fit(points).centroids
    assert bool(((small @ points.T).max(1).values > 1 - 1e-6).all())  # seeds are data rows


def test_a_converged_fit_stops_at_tol_zero():
    # tol=0 stops once the mean cosine no longer improves (it ran all max_iter before).
    points = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    model = SphericalKMeans(4, max_iter=10**6, tol=0.0).fit(points)
    assert model.n_iter_ < 100
