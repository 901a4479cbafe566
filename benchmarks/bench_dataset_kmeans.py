"""SphericalKMeans.fit (dataset-level spherical k-means, PiCIE) against faiss.Kmeans on the
CPU: N points x D=128, K=27 and K=100, 10 iterations, both from the same K initial
centroids, both on all points (faiss subsamples 256 per centroid unless told otherwise).

Each test interleaves the two fits (faiss, ours, faiss, ours, ...) in one process, with
the same number of threads, and records in extra_info the median of each, the speedup
(faiss time / ours), the mean cosine of every point to its centroid for both (higher is
better; each computed the same way, by SphericalKMeans.objective), and our achieved
GFLOP/s on the E-step GEMMs (2 N D K per iteration; the final assignment pass not
counted) against the float32 GEMM peak measured in the same test.

test_default_fit_vs_faiss times the calls a user makes with the defaults: our
SphericalKMeans(K, max_iter=10, tol=-1).fit (k-means++ on its default sample, then 10
iterations over every point) against faiss.Kmeans(D, K, niter=10, spherical=True) with
faiss's defaults (random init, a training sample of 256 points per centroid) and with
every point (max_points_per_centroid=N), interleaved, with the mean cosine of each.

test_nearest_centroid_pass times one E+M pass alone (the nearest_centroid op with the
cluster sums, what each iteration of the fit runs) against the same pass in plain PyTorch
(reference.nearest_centroid: one GEMM, max, index_add_), interleaved, with its GFLOP/s.

    pytest benchmarks/bench_dataset_kmeans.py --benchmark-group-by=group

Environment: SEGSORT_BENCH_POINTS (N, default 300000), SEGSORT_BENCH_THREADS (default 2),
SEGSORT_BENCH_ROUNDS (fits of each, default 3).
"""
import os
import statistics

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.cluster import SphericalKMeans
from segsort_ext.ops import reference
from segsort_ext.ops.nearest_centroid import nearest_centroid

from machine_peak import interleaved, seconds, torch_threads

POINTS = int(os.environ.get("SEGSORT_BENCH_POINTS", 300_000))
THREADS = int(os.environ.get("SEGSORT_BENCH_THREADS", 2))
ROUNDS = int(os.environ.get("SEGSORT_BENCH_ROUNDS", 3))
D, ITERATIONS = 128, 10


def make_points(n: int = POINTS) -> torch.Tensor:
    """(n, D) unit float32 points around 200 random directions."""
    g = torch.Generator().manual_seed(0)
    centers = F.normalize(torch.randn(200, D, generator=g), dim=1)
    noisy = centers[torch.randint(0, 200, (n,), generator=g)].add_(0.3 * torch.randn(n, D, generator=g))
    return F.normalize(noisy, dim=1)


@pytest.fixture(scope="module")
def points():
    return make_points()


def initial_centroids(points: torch.Tensor, K: int) -> torch.Tensor:
    """The K initial centroids both fits start from."""
    return points[torch.randperm(points.shape[0], generator=torch.Generator().manual_seed(1))[:K]]


def mean_cosine(points: torch.Tensor, centroids: torch.Tensor) -> float:
    scorer = SphericalKMeans(centroids.shape[0])
    scorer.centroids = F.normalize(centroids.float(), dim=1)
    return 1 - scorer.objective(points) / points.shape[0]


@pytest.mark.parametrize("K", [27, 100])
def test_dataset_kmeans_vs_faiss(benchmark, record_roofline, points, K):
    faiss = pytest.importorskip("faiss")
    benchmark.group = f"dataset kmeans cpu N={POINTS} D={D} K={K} {ITERATIONS} iters {THREADS} threads"
    init = initial_centroids(points, K)
    host = points.numpy()
    faiss.omp_set_num_threads(THREADS)
    fitted = {}

    def fit_ours():
        fitted["ours"] = SphericalKMeans(K, init=init, max_iter=ITERATIONS, tol=-1.0).fit(points).centroids

    def fit_faiss():
        model = faiss.Kmeans(D, K, niter=ITERATIONS, spherical=True, max_points_per_centroid=POINTS)
        model.train(host, init_centroids=init.numpy())
        fitted["faiss"] = torch.from_numpy(model.centroids)

    with torch_threads(THREADS):
        ours_s, faiss_s = interleaved(benchmark, fit_ours, fit_faiss, ROUNDS)
        ours, theirs = statistics.median(ours_s), statistics.median(faiss_s)
        record_roofline("cpu", flop=2 * POINTS * D * K * ITERATIONS, time_s=ours)
    benchmark.extra_info.update({
        "threads": THREADS, "ours_s": ours, "faiss_s": theirs, "speedup_vs_faiss": theirs / ours,
        "ours_rounds_s": ours_s, "faiss_rounds_s": faiss_s,
        "mean_cosine_ours": mean_cosine(points, fitted["ours"]),
        "mean_cosine_faiss": mean_cosine(points, fitted["faiss"]),
    })


@pytest.mark.parametrize("K", [27, 100])
def test_default_fit_vs_faiss(benchmark, record_roofline, points, K):
    faiss = pytest.importorskip("faiss")
    benchmark.group = f"dataset kmeans defaults cpu N={POINTS} D={D} K={K} {ITERATIONS} iters {THREADS} threads"
    host = points.numpy()
    faiss.omp_set_num_threads(THREADS)
    fitted = {}

    def fit_ours():
        fitted["ours"] = SphericalKMeans(K, max_iter=ITERATIONS, tol=-1.0).fit(points).centroids

    def fit_faiss(name, **options):
        def fit():
            model = faiss.Kmeans(D, K, niter=ITERATIONS, spherical=True, **options)
            model.train(host)
            fitted[name] = torch.from_numpy(model.centroids)
        return fit

    faiss_defaults, faiss_all = fit_faiss("faiss_defaults"), fit_faiss("faiss_all", max_points_per_centroid=POINTS)
    with torch_threads(THREADS):
        fit_ours(), faiss_defaults(), faiss_all()  # warm-up
        times = {"ours": [], "faiss_defaults": [], "faiss_all": []}
        for _ in range(ROUNDS):
            for name, fit in (("faiss_all", faiss_all), ("faiss_defaults", faiss_defaults), ("ours", fit_ours)):
                times[name].append(seconds(fit))
        benchmark.pedantic(fit_ours, rounds=1, warmup_rounds=0)  # pytest-benchmark's own row
        median = {name: statistics.median(values) for name, values in times.items()}
        record_roofline("cpu", flop=2 * POINTS * D * K * ITERATIONS, time_s=median["ours"])
    benchmark.extra_info.update({
        "threads": THREADS, **{f"{name}_s": value for name, value in median.items()},
        "speedup_vs_faiss_all": median["faiss_all"] / median["ours"],
        "speedup_vs_faiss_defaults": median["faiss_defaults"] / median["ours"],
        **{f"mean_cosine_{name}": mean_cosine(points, centroids) for name, centroids in fitted.items()},
    })


@pytest.mark.parametrize("K", [27, 100])
def test_nearest_centroid_pass(benchmark, record_roofline, points, K):
    benchmark.group = f"nearest_centroid pass cpu N={POINTS} D={D} K={K} {THREADS} threads"
    centroids = F.normalize(initial_centroids(points, K), dim=1)

    def ours_pass():
        nearest_centroid(points, centroids, with_sums=True)

    def torch_pass():
        reference.nearest_centroid(points, centroids, with_sums=True)

    with torch_threads(THREADS):
        ours_pass(), torch_pass()  # warm-up
        ours_s, torch_s = interleaved(benchmark, ours_pass, torch_pass, 5 * ROUNDS)
        ours, theirs = statistics.median(ours_s), statistics.median(torch_s)
        record_roofline("cpu", flop=2 * POINTS * D * K, time_s=ours)
    benchmark.extra_info.update({"threads": THREADS, "ours_s": ours, "torch_s": theirs,
                                 "speedup_vs_torch": theirs / ours})
