"""spherical_kmeans (SegSort's pixel sorting) vs the per-image Python loop research code
uses (reference.py, SPML/HSG style) and faiss per image. Dataset-level SphericalKMeans:
bench_dataset_kmeans.py.

Workloads (issue 3): training B=16, D=32, 65x65, grid 5x5, 10 iterations; inference
B=1, D=32, 375x500, grid 12x12, 10 iterations.

    OMP_WAIT_POLICY=PASSIVE pytest benchmarks/bench_spherical_kmeans.py --benchmark-group-by=group

faiss and torch each bring an OpenMP runtime; on a machine shared with other work their
spinning threads starve each other (faiss ran up to 40x slower here), so compare with
OMP_WAIT_POLICY=PASSIVE. Every row records the E-step's GFLOP/s (2*P*(D+2)*K per
iteration, the work all three do) and its fraction of the GEMM peak measured in the run.
"""

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.ops import reference, spherical_kmeans

from conftest import run

try:
    import faiss
except ImportError:  # the GPU machines have no faiss
    faiss = None

WORKLOADS = {
    "train": dict(shape=(16, 32, 65, 65), grid=(5, 5)),
    "infer": dict(shape=(1, 32, 375, 500), grid=(12, 12)),
}


def pixel_features(x):
    """reference.py's features (normalised embeddings + coordinates), per image (P, D+2)."""
    B, D, H, W = x.shape
    ys = reference.pixel_coordinates(H, x.dtype, x.device).view(H, 1).expand(H, W).reshape(-1)
    xs = reference.pixel_coordinates(W, x.dtype, x.device).view(1, W).expand(H, W).reshape(-1)
    f = F.normalize(x.reshape(B, D, -1).transpose(1, 2), dim=2)
    f = torch.cat([f, ys.expand(B, -1)[..., None], xs.expand(B, -1)[..., None]], 2)
    return F.normalize(f, dim=2)


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("impl", ["segsort_ext", "per_image_loop", "faiss_per_image"])
def test_spherical_kmeans(benchmark, record_roofline, device, workload, impl):
    shape, grid = WORKLOADS[workload]["shape"], WORKLOADS[workload]["grid"]
    benchmark.group = (f"spherical_kmeans {workload} {device} B={shape[0]} D={shape[1]} {shape[2]}x{shape[3]} "
                       f"K={grid[0] * grid[1]}")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    if impl == "segsort_ext":
        fn = lambda: spherical_kmeans(x, grid, iters=10)  # noqa: E731
    elif impl == "per_image_loop":
        fn = lambda: reference.spherical_kmeans(x, grid, iters=10)  # noqa: E731
    else:
        if faiss is None or device != "cpu":
            pytest.skip("faiss CPU comparison only")
        features = pixel_features(x).numpy()
        K = grid[0] * grid[1]

        def fn():
            for image in features:
                kmeans = faiss.Kmeans(image.shape[1], K, niter=10, spherical=True, seed=0,
                                      max_points_per_centroid=image.shape[0])
                kmeans.train(image)
    run(benchmark, fn, device)
    B, D, H, W = shape
    record_roofline(device, flop=2 * B * H * W * (D + 2) * grid[0] * grid[1] * 10)

