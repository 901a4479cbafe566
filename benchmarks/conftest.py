import pytest
import torch

from segsort_ext.testing import devices, random_clusters, random_labels

from machine_peak import measure_floor, roofline


def pytest_collect_file(file_path, parent):
    """Collects bench_*.py when pytest is given the folder (`make bench`: pytest benchmarks),
    which the project's python_files (test_*.py) would skip; a file named on the command
    line is collected by pytest itself."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param not in devices():
        pytest.skip("CUDA: no GPU or no CUDA kernels in this build")
    return request.param


@pytest.fixture(scope="session")
def machine_floor():
    """floor(device): the machine's Floor (GEMM peak, copy bandwidth) on `device` at the
    current torch thread count, measured once per session, at its first use."""
    floors = {}

    def floor(device):
        key = (device, torch.get_num_threads())
        if key not in floors:
            floors[key] = measure_floor(device)
        return floors[key]

    return floor


@pytest.fixture
def record_roofline(benchmark, machine_floor):
    """record(device, flop=... or nbytes=..., time_s=None): the row's work, achieved rate
    and fraction of the floor into extra_info (see machine_peak.roofline). time_s defaults
    to the benchmark's median; under --benchmark-disable nothing is timed, so nothing is
    recorded (the floor is still measured, so a smoke run exercises it)."""
    def record(device, *, time_s=None, **work):
        floor = machine_floor(device)
        if time_s is None and benchmark.stats is None:
            return
        time_s = benchmark.stats.stats.median if time_s is None else time_s
        benchmark.extra_info.update(roofline(time_s, floor, **work))

    return record


def run(benchmark, fn, device):
    """Times fn with the GPU synchronised after every call (pytest-benchmark times host
    wall clock, so each round must include the kernels it launched)."""
    if device == "cuda":
        def timed():
            out = fn()
            torch.cuda.synchronize()
            return out
    else:
        timed = fn
    timed()  # warm-up: allocator, lazy init
    return benchmark(timed)


# The SegSort training-size workload of the partition and pooling benchmarks.
B, H, W, NUM_CLASSES = 8, 129, 129, 21


def segsort_segments(device, K, batch=B, height=H, width=W):
    g = torch.Generator().manual_seed(0)
    blob = max(1, int(height / K ** 0.5))
    clusters = random_clusters(batch, height, width, K, blob=blob, ignore_fraction=0.0, generator=g).to(device)
    labels = random_labels(batch, height, width, NUM_CLASSES, generator=g).to(device)
    return clusters, labels
