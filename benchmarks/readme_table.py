"""Every row of the README's benchmark table (CPU) in one run: ours and the outside tools
side by side, interleaved (ours, theirs, ours, theirs, ...) in one process with the same
threads, the median of each, their ratio, and our rate as a fraction of the machine's
floor (GEMM peak or copy bandwidth), measured at the start and again at the end of the
run. Prints a markdown table; the workloads are the pytest benchmarks' own.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/readme_table.py             # full sizes
    OMP_WAIT_POLICY=PASSIVE python benchmarks/readme_table.py --quick     # tiny sizes: checks it runs
    OMP_WAIT_POLICY=PASSIVE python benchmarks/readme_table.py --only "dataset k-means"   # some rows

OMP_WAIT_POLICY=PASSIVE: faiss and torch each bring an OpenMP runtime, whose spinning
threads otherwise starve each other. Run it on a quiet machine: a row's ratio is only as
good as the machine was steady while its rounds alternated.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Callable, NamedTuple, Optional

import torch

import segsort_ext
from segsort_ext.cluster import SphericalKMeans
from segsort_ext.ops import reference
from segsort_ext.retrieval import SegmentIndex

import bench_blurring_mean_shift
import bench_dataset_kmeans
import bench_retrieval
import bench_spherical_kmeans
import bench_vmf_loss
from conftest import segsort_segments
from machine_peak import Floor, measure_floor, roofline, seconds, torch_threads

try:
    import faiss
except ImportError:
    faiss = None

FULL = dict(segments=(8, 129, 129), pixel_train=(16, 32, 65, 65), pixel_infer=(1, 32, 375, 500), points=300_000,
            vmf=(4 * 128 * 128, 800, 1600), mean_shift=(2048, 8192), bank=1_500_000)
QUICK = dict(segments=(2, 33, 33), pixel_train=(2, 32, 17, 17), pixel_infer=(1, 32, 48, 64), points=5000,
             vmf=(2048, 50, 100), mean_shift=(128, 256), bank=20_000)


class Row(NamedTuple):
    workload: str
    ours: Callable
    theirs: dict  # outside tool's name -> callable (the first is the ratio's reference)
    work: dict  # roofline's flop= or nbytes= for our rate
    rounds: int = 5


def interleaved(fns: dict, rounds: int) -> dict:
    """Median seconds of each callable, called in turn (one warm-up call each first)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(seconds(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def _backward(fn, x):
    def step():
        fn(x).square().sum().backward()
        x.grad = None
    return step


def rows(sizes: dict, rounds: int) -> list[Row]:
    table = []
    batch, height, width = sizes["segments"]
    clusters, labels = segsort_segments("cpu", 144, batch, height, width)
    table.append(Row(f"partition, B={batch}, {height}x{width}, K=144, 21 classes",
                     lambda: segsort_ext.segment_partition(clusters, labels),
                     {"torch.unique (SPML)": lambda: reference.segment_partition(clusters, labels)},
                     {"nbytes": 3 * clusters.numel() * 8}, rounds))
    segments = segsort_ext.segment_partition(clusters, labels)
    ids, S = segments.ids, segments.num_segments
    for D, backward in ((64, False), (32, False), (64, True)):
        x = torch.randn(batch, D, height, width, requires_grad=backward)
        nbytes = x.numel() * 4 + ids.numel() * 8 + S * D * 4
        if backward:
            table.append(Row(f"pooling fwd+bwd, D={D}", _backward(lambda v: segsort_ext.segment_mean(v, ids, S), x),
                             {"index_add_ + autograd": _backward(lambda v: reference.segment_mean(v, ids, S), x)},
                             {"nbytes": 2 * nbytes}, rounds))
        else:
            table.append(Row(f"pooling fwd, B={batch}, {height}x{width}, D={D}, (B,D,H,W) input",
                             lambda x=x: segsort_ext.segment_mean(x, ids, S),
                             {"index_add_": lambda x=x: reference.segment_mean(x, ids, S)}, {"nbytes": nbytes}, rounds))

    for name, grid in (("training", (5, 5)), ("inference", (12, 12))):
        shape = sizes["pixel_train" if name == "training" else "pixel_infer"]
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        K = grid[0] * grid[1]
        theirs = {"per-image loop": lambda x=x, grid=grid: reference.spherical_kmeans(x, grid, iters=10)}
        if faiss is not None:
            theirs = {"faiss per image": _faiss_per_image(bench_spherical_kmeans.pixel_features(x).numpy(), K),
                      **theirs}
        B, D, H, W = shape
        table.append(Row(f"pixel sorting, {name}: B={B}, D={D}, {H}x{W}, K={K}, 10 iters",
                         lambda x=x, grid=grid: segsort_ext.spherical_kmeans(x, grid, iters=10), theirs,
                         {"flop": 2 * B * H * W * (D + 2) * K * 10}, rounds))

    points = bench_dataset_kmeans.make_points(sizes["points"])
    N, D = points.shape
    for K in (27, 100):
        init = bench_dataset_kmeans.initial_centroids(points, K)
        theirs = {}
        if faiss is not None:
            theirs["faiss (all points)"] = _faiss_fit(points.numpy(), init.numpy(), K)
        table.append(Row(f"dataset k-means from given centroids, N={N}, D={D}, K={K}, 10 iters",
                         lambda init=init, K=K: SphericalKMeans(K, init=init, max_iter=10, tol=-1.0).fit(points),
                         theirs, {"flop": 2 * N * D * K * 10}, max(3, rounds // 2)))
    for K in (27, 100):  # the calls a user makes: our defaults (k-means++), faiss's defaults and all points
        theirs = {}
        if faiss is not None:
            theirs["faiss (all points)"] = _faiss_fit(points.numpy(), None, K)
            theirs["faiss (defaults)"] = _faiss_fit(points.numpy(), None, K, all_points=False)
        table.append(Row(f"dataset k-means, default fit, N={N}, D={D}, K={K}, 10 iters",
                         lambda K=K: SphericalKMeans(K, max_iter=10, tol=-1.0).fit(points),
                         theirs, {"flop": 2 * N * D * K * 10}, max(3, rounds // 2)))

    n, s, m = sizes["vmf"]
    workload = bench_vmf_loss.problem("cpu", n=n, s=s, m=m)
    table.append(Row(f"vMF-NCA fwd+bwd, N={n}, S={s}, M={m}, D={bench_vmf_loss.D}",
                     lambda: bench_vmf_loss.step("segsort_ext", *workload),
                     {"dense logits + masks (TF/SPML)": lambda: bench_vmf_loss.step("dense", *workload)},
                     {"flop": bench_vmf_loss.flop(n, s, m)}, max(3, rounds // 2)))

    T, D, bandwidth = bench_blurring_mean_shift.T, bench_blurring_mean_shift.D, bench_blurring_mean_shift.BANDWIDTH
    for N in sizes["mean_shift"]:
        x = torch.randn(1, N, D, generator=torch.Generator().manual_seed(0)).requires_grad_()
        table.append(Row(
            f"mean shift fwd+bwd, T={T}, N={N}, D={D}",
            _backward(lambda v: segsort_ext.blurring_mean_shift(v, bandwidth=bandwidth, iters=T), x),
            {"SDPA, same math": _backward(lambda v: bench_blurring_mean_shift.sdpa_mean_shift(v, bandwidth, T), x)},
            {"flop": 14 * N * N * D * T}, rounds))

    vectors, bank_labels, queries = bench_retrieval.bank("cpu", sizes["bank"])
    M, D = vectors.shape
    Q, k, classes = queries.shape[0], bench_retrieval.K, bench_retrieval.NUM_CLASSES
    exact = SegmentIndex(D, backend="torch")
    exact.add(vectors, bank_labels)
    scores = torch.empty(Q, M)
    theirs = {"bare GEMM (queries x bank^T)": lambda: torch.mm(queries, vectors.T, out=scores)}
    if faiss is not None:
        flat = SegmentIndex(D, backend="faiss")
        flat.add(vectors, bank_labels)
        theirs["faiss CPU"] = lambda: flat.vote(queries, k, num_classes=classes)
    vote = lambda: exact.vote(queries, k, num_classes=classes)  # noqa: E731
    vote_workload = f"{k}-NN vote, {Q} queries, bank {M} x {D}"
    table.append(Row(vote_workload, vote, theirs, {"flop": 2 * Q * M * D}, rounds))
    # SPML's full argsort takes tens of seconds a call at full size: a row of one round.
    table.append(Row(vote_workload, vote, {"full argsort (SPML)": lambda: bench_retrieval.full_argsort_vote(
        vectors, bank_labels, queries)}, {"flop": 2 * Q * M * D}, 1))
    return table


def _faiss_per_image(features, K):
    def fit():
        for image in features:
            kmeans = faiss.Kmeans(image.shape[1], K, niter=10, spherical=True, seed=0,
                                  max_points_per_centroid=image.shape[0])
            kmeans.train(image)
    return fit


def _faiss_fit(points, init, K, all_points=True):
    options = {"max_points_per_centroid": points.shape[0]} if all_points else {}

    def fit():
        model = faiss.Kmeans(points.shape[1], K, niter=10, spherical=True, **options)
        model.train(points, init_centroids=init)
    return fit


def _ms(time_s: float) -> str:
    return f"{time_s * 1e3:.3g} ms" if time_s < 1 else f"{time_s:.3g} s"


def markdown(results: list, floors: tuple[Floor, Floor], threads: int) -> str:
    start, end = floors
    lines = [f"Threads: {threads}. Machine floor at the start / end of the run: GEMM peak "
             f"{start.gemm_gflops:.0f} / {end.gemm_gflops:.0f} GFLOP/s, copy bandwidth "
             f"{start.copy_gbps:.1f} / {end.copy_gbps:.1f} GB/s.", "",
             "| workload (CPU) | segsort_ext | outside tools, same run (their time / ours) | ours vs the floor |",
             "|---|---|---|---|"]
    for row, medians in results:
        ours = medians.pop("segsort_ext")
        rate = roofline(ours, start, **row.work)
        if "flop" in row.work:
            floor = f"{rate['achieved_gflops']:.3g} GFLOP/s, {rate['fraction_of_peak']:.0%} of the GEMM peak"
        else:
            floor = f"{rate['achieved_gbps']:.3g} GB/s, {rate['fraction_of_peak']:.0%} of the copy bandwidth"
        tools = "; ".join(f"{name} {_ms(t)} ({t / ours:.2f}x)" for name, t in medians.items()) or "(not installed)"
        lines.append(f"| {row.workload} | {_ms(ours)} | {tools} | {floor} |")
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds: checks that every row runs")
    parser.add_argument("--threads", type=int, default=2, help="torch and faiss threads (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="alternations per row (default 5; 2 with --quick)")
    parser.add_argument("--only", default="", help="measure only the rows whose workload contains this text")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    if faiss is not None:
        faiss.omp_set_num_threads(args.threads)
    with torch_threads(args.threads):
        start = measure_floor()
        results = []
        for row in rows(QUICK if args.quick else FULL, rounds):
            if args.only not in row.workload:
                continue
            medians = interleaved({"segsort_ext": row.ours, **row.theirs}, row.rounds)
            results.append((row, medians))
            print(f"measured: {row.workload}", file=sys.stderr, flush=True)
        end = measure_floor()
    table = markdown(results, (start, end), args.threads)
    print(table)
    return table


if __name__ == "__main__":
    main()
