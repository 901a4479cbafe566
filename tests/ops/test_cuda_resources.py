"""benchmarks/cuda_resources.py: ptxas's resource report of every CUDA kernel on sm_90.
No kernel the ops launch may spill registers. Needs nvcc (skipped without it); the first
run compiles the device code of csrc/cuda (minutes), later runs read ptxas's cached output."""
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("cuda_resources", ROOT / "benchmarks" / "cuda_resources.py")
cuda_resources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cuda_resources)


def test_occupancy_on_sm90():
    assert cuda_resources.occupancy(32, 0) == (8, 1.0, "threads")
    assert cuda_resources.occupancy(64, 0) == (4, 0.5, "registers")  # 64 x 256 x 4 = 65536
    assert cuda_resources.occupancy(65, 0)[0] == 3  # 72 registers per thread once rounded per warp
    assert cuda_resources.occupancy(16, 47 * 1024) == (4, 0.5, "shared")  # 48 KiB with the reservation


def test_every_launch_uses_the_reported_block_size():
    # The occupancy column assumes 256-thread blocks: kThreads or kTileThreads at every launch.
    assert "constexpr int kThreads = 256;" in (ROOT / "csrc/include/segsort/cuda_utils.h").read_text()
    assert "constexpr int kTileThreads = 256;" in (ROOT / "csrc/include/segsort/tiles.cuh").read_text()
    for source in (ROOT / "csrc" / "cuda").glob("*.cu"):
        for config in re.findall(r"<<<(.*?)>>>", source.read_text(), flags=re.S):
            assert _arguments(config)[1] in ("kThreads", "kTileThreads"), f"{source.name}: <<<{config}>>>"


def _arguments(text):
    """Top-level comma-separated arguments of a launch configuration."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return parts + [text[start:].strip()]


@pytest.fixture(scope="module")
def kernels():
    if cuda_resources.find_nvcc() is None:
        pytest.skip("nvcc not found")
    return cuda_resources.collect()


def test_report_covers_every_kernel(kernels, tmp_path):
    sources = {k.source for k in kernels}
    assert sources == {p.name for p in (ROOT / "csrc" / "cuda").glob("*.cu")}
    names = {k.kernel for k in kernels}
    assert "vmf_forward_kernel<float, 32>" in names and "kmeans_converged_kernel" in names
    cuda_resources.main(["--out", str(tmp_path / "report.md")])
    assert (tmp_path / "report.json").exists()
    assert "| vmf_loss.cu | `vmf_forward_kernel<float, 32>` |" in (tmp_path / "report.md").read_text()


def test_no_kernel_spills_registers(kernels):
    spilling = [f"{k.source}: {k.kernel} ({k.spill_stores} B stored, {k.spill_loads} B loaded)"
                for k in kernels if k.spill_stores or k.spill_loads]  # fmt: skip
    assert not spilling, "register spills on sm_90:\n" + "\n".join(spilling)
